"""A server killed (SIGKILL) in the middle of jobs, started again on the same database: the
resumable job resumes from its checkpoint, the other one fails naming its checkpoint; neither is
lost or run twice (one row each, one run folder each). On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import cli_helpers as cli  # noqa: E402
import restart_kinds  # noqa: E402, F401  (the kinds must be known here to submit them)

from vitrine.jobs import JobManager  # noqa: E402
from vitrine.store.db import open_database  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read().decode("utf-8"))


def _serve(root: Path, env: dict, log: Path) -> tuple:
    """``vitrine serve ROOT`` in a subprocess, its output appended to ``log`` (a file, not a pipe:
    a busy server's access log would fill a pipe nobody reads and block the server)."""
    port = _free_port()
    with open(log, "a", encoding="utf-8") as fh:
        proc = subprocess.Popen(
            [*cli.vitrine_command(), "serve", str(root), "--port", str(port)], stdout=fh, stderr=fh, env=env
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vitrine serve exited with {proc.returncode}\n{log.read_text()[-5000:]}")
        try:
            if _get_json(base + "/api/v1/health") == {"status": "ok"}:
                return proc, base
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("vitrine serve did not come up")


def _wait(predicate, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_killed_server_resumes_or_fails_its_jobs_when_it_starts_again(db_url, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    pythonpath = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    env = cli.cli_env(VITRINE_DATABASE_URL=db_url, VITRINE_JOB_MODULES="restart_kinds", PYTHONPATH=pythonpath)
    engine = open_database(db_url, shared=False)
    jobs = JobManager(engine, pool=False)  # a client: submits and reads, runs nothing
    log = tmp_path / "server.log"
    server, base = _serve(root, env, log)
    second = None
    try:
        resumable = jobs.submit("test-checkpointed", "r1", {"run": "r1", "steps": 30, "pause": 0.15})
        plain = jobs.submit("test-not-resumable", "r2", {"run": "r2", "steps": 30, "pause": 0.15})
        _wait(lambda: all(jobs.get(j.id).done >= 3 for j in (resumable, plain)), "both jobs under way", 120)
        assert _get_json(f"{base}/api/v1/jobs/{resumable.id}")["state"] == "running"

        server.send_signal(signal.SIGKILL)
        server.wait(30)
        assert {jobs.get(j.id).state for j in (resumable, plain)} == {"running"}  # as the dead server left them
        killed_at = json.loads((root / "runs" / "r1" / "last.json").read_text())["step"]
        assert 3 <= killed_at < 30

        second, base = _serve(root, env, log)
        final = _wait(
            lambda: (j := _get_json(f"{base}/api/v1/jobs/{resumable.id}"))["state"] in ("done", "failed") and j,
            "the resumed job to finish",
            180,
        )
        assert final["state"] == "done", final
        assert final["attempts"] == 2
        assert final["result"] == {"steps": 30, "resumed_from": killed_at, "attempt": 2}
        assert any("re-queued" in line for line in final["log"])

        failed = _get_json(f"{base}/api/v1/jobs/{plain.id}")
        assert failed["state"] == "failed" and failed["error"]["code"] == "interrupted"
        assert f"last checkpoint kept at {root / 'runs' / 'r2' / 'last.json'}" in failed["message"]
        assert (root / "runs" / "r2" / "last.json").is_file()

        # never lost, never duplicated
        assert sorted(j.id for j in jobs.list()) == sorted([resumable.id, plain.id])
        assert sorted(p.name for p in (root / "runs").iterdir()) == ["r1", "r2"]
        attempts = (root / "runs" / "r1" / "attempts.log").read_text().splitlines()
        assert [line.split(" from step ")[1] for line in attempts] == ["0", str(killed_at)]
        assert (root / "runs" / "r2" / "attempts.log").read_text().count("attempt") == 1
        assert json.loads((root / "runs" / "r1" / "last.json").read_text())["step"] == 30
    finally:
        for proc in (server, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        engine.dispose()
    assert "Traceback" not in log.read_text()
