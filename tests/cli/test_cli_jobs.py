"""``vitrine jobs list|show|cancel`` and ``vitrine export-run``, through their Typer commands."""

from __future__ import annotations

import json
import time

import pytest
import typer
from typer.testing import CliRunner

from vitrine.cli.jobs import register
from vitrine.jobs import JobManager, register_kind
from vitrine.jobs.kinds import unregister_kind
from vitrine.store.db import database_url, open_database


def slow_handler(ctx, params):
    for _ in range(params["n"]):
        ctx.check_cancel("cancelled from the command line")
        time.sleep(0.02)
    return {}


@pytest.fixture
def cli_app():
    app = typer.Typer()

    @app.callback()
    def main():
        pass

    register(app)
    register_kind("t-cli", slow_handler)
    yield app
    unregister_kind("t-cli")


def test_list_show_and_cancel(cli_app, tmp_path):
    runner = CliRunner()
    engine = open_database(database_url(tmp_path))
    client = JobManager(engine, pool=False)  # nothing runs it: it stays queued
    queued = client.submit("t-cli", "x", {"n": 5})

    r = runner.invoke(cli_app, ["jobs", "list", "--root", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    assert [(j["id"], j["state"]) for j in json.loads(r.stdout)] == [(queued.id, "queued")]
    r = runner.invoke(cli_app, ["jobs", "list", "--root", str(tmp_path)])
    assert r.exit_code == 0 and queued.id in r.stdout and "t-cli" in r.stdout

    r = runner.invoke(cli_app, ["jobs", "cancel", queued.id, "--root", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert client.get(queued.id).state == "cancelled"

    pool = JobManager(engine)  # a server's pool runs the next one; the command line cancels it
    try:
        running = pool.submit("t-cli", "y", {"n": 3000})
        deadline = time.monotonic() + 20
        while client.get(running.id).state != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        r = runner.invoke(cli_app, ["jobs", "cancel", running.id, "--root", str(tmp_path)])
        assert r.exit_code == 0 and "cancelling" in r.output
        final = pool.wait(running.id, 20)
        assert final.state == "cancelled" and final.message == "cancelled from the command line"
    finally:
        pool.close()

    r = runner.invoke(cli_app, ["jobs", "show", running.id, "--root", str(tmp_path)])
    assert r.exit_code == 0 and json.loads(r.stdout)["state"] == "cancelled"
    r = runner.invoke(cli_app, ["jobs", "show", "0123456789ab", "--root", str(tmp_path)])
    assert r.exit_code == 2 and "no job" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli_app, ["jobs", "list", "--root", str(tmp_path), "--state", "cancelled", "--json"])
    assert len(json.loads(r.stdout)) == 2


def test_export_run(cli_app, tmp_path):
    from vitrine.core.workspace import Workspace
    from vitrine.runs import Run
    from vitrine.store.artifacts import ArtifactStore

    run = Run.create(Workspace(tmp_path / "ws"), "zero-shot", "shapes", "offline-concepts", {}, "zs-1")
    (run.dir / "metrics.json").write_text("{}")
    run.checkpoints_dir.mkdir(parents=True)
    (run.checkpoints_dir / "best.pt").write_bytes(b"weights")
    runner = CliRunner()
    dest = tmp_path / "exported"
    r = runner.invoke(cli_app, ["export-run", "zs-1", str(dest), "--root", str(tmp_path / "ws"), "--no-checkpoints"])
    assert r.exit_code == 0, r.output
    assert "exported 2 files" in r.output
    assert ArtifactStore(dest).list() == ["zs-1/metrics.json", "zs-1/run.json"]
    r = runner.invoke(cli_app, ["export-run", "zs-1", "memory://exports/here", "--root", str(tmp_path / "ws")])
    assert r.exit_code == 0, r.output
    assert ArtifactStore("memory://exports/here").read_bytes("zs-1/checkpoints/best.pt") == b"weights"
    r = runner.invoke(cli_app, ["export-run", "nope", str(dest), "--root", str(tmp_path / "ws")])
    assert r.exit_code == 2 and "no run 'nope'" in r.output and "zs-1" in r.output
