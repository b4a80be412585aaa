"""Per-user storage quota: sizes, limits stored with the account, usage on disk, refusals."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from vitrine.auth import quota
from vitrine.auth.quota import QuotaExceeded, QuotaService, human, parse_size
from vitrine.core.errors import NotFound, VitrineError
from vitrine.jobs import register_kind


def quota_noop(ctx, params: dict) -> dict:
    return {"ok": True}


register_kind("train-quota-test", quota_noop, description="does nothing (quota tests)")
register_kind("quota-noop", quota_noop, description="does nothing (quota tests)")


def test_parse_size_and_human():
    assert parse_size("500MB") == 500 << 20
    assert parse_size("2 GiB") == 2 << 30
    assert parse_size("1.5k") == 1536
    assert parse_size("300") == 300 << 20  # a bare number is megabytes, as VITRINE_STORAGE_QUOTA_MB
    assert parse_size("unlimited") is None
    with pytest.raises(VitrineError, match="cannot read the size"):
        parse_size("lots")
    with pytest.raises(VitrineError):
        parse_size("5 parsecs")
    assert human(None) == "unlimited"
    assert human(500 << 20) == "500 MiB"
    assert human(1536) == "1.5 KiB"


def test_server_default_from_the_environment(monkeypatch):
    monkeypatch.delenv(quota.ENV_DEFAULT, raising=False)
    assert quota.default_limit() is None
    monkeypatch.setenv(quota.ENV_DEFAULT, "2")
    assert quota.default_limit() == 2 << 20
    monkeypatch.setenv(quota.ENV_DEFAULT, "two")
    with pytest.raises(VitrineError, match=quota.ENV_DEFAULT):
        quota.default_limit()


def _write(path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * n)


def test_limits_and_usage_on_disk(store, tmp_path, monkeypatch):
    from vitrine.core.workspace import Workspace

    monkeypatch.delenv(quota.ENV_DEFAULT, raising=False)
    alice = store.add_user("alice", "alice-password")
    bob = store.add_user("bob", "bob-password")
    ws = Workspace(tmp_path)
    _write(ws.run_dir("alice-run") / "model.pt", 3000)
    _write(ws.run_dir("alice-run") / "sub" / "log.txt", 1000)
    _write(ws.dataset_dir("alice-data") / "dataset.json", 500)
    _write(ws.run_dir("bobs-run") / "model.pt", 7000)
    store.claim("run", "alice-run", alice.id)
    store.claim("dataset", "alice-data", alice.id)
    store.claim("project", "alice-project", alice.id)  # projects are not counted
    store.claim("run", "bobs-run", bob.id)
    svc = QuotaService(store.engine, tmp_path, cache_seconds=60)

    usage = svc.usage("alice")
    assert usage.used_bytes == 4500 and usage.objects == {"run:alice-run": 4000, "dataset:alice-data": 500}
    assert usage.limit_bytes is None and usage.source == "none" and not usage.over
    assert svc.usage("bob").used_bytes == 7000
    assert {(k, key) for k, key, _ in svc.owned("alice")} == {
        ("run", "alice-run"),
        ("dataset", "alice-data"),
        ("project", "alice-project"),
    }

    _write(ws.run_dir("alice-run") / "more.bin", 10_000)
    assert svc.usage("alice").used_bytes == 4500  # cached
    assert svc.usage("alice", fresh=True).used_bytes == 14_500

    monkeypatch.setenv(quota.ENV_DEFAULT, "1")  # 1 MiB for everyone
    assert svc.usage("alice").limit_bytes == 1 << 20 and svc.usage("alice").source == "server"
    svc.set_limit("alice", 10_000)  # stored with the account, over the server's
    usage = svc.usage("alice")
    assert (usage.limit_bytes, usage.source, usage.over) == (10_000, "user", True)
    assert svc.usage("bob").limit_bytes == 1 << 20
    with pytest.raises(QuotaExceeded) as err:
        svc.enforce("alice", "a new train job")
    assert err.value.status == 413
    assert "14.2 KiB" in str(err.value) and "9.8 KiB" in str(err.value) and "alice" in str(err.value)
    assert "vitrine users quota alice" in err.value.hint
    svc.enforce("bob")  # under the server's limit
    svc.set_limit("alice", None)  # unlimited for alice, whatever the server says
    assert svc.usage("alice").limit_bytes is None
    svc.enforce("alice")
    svc.clear_limit("alice")
    assert svc.usage("alice").source == "server"
    with pytest.raises(NotFound):
        svc.set_limit("nobody", 1)


def test_cli_sets_and_shows_the_quota(tmp_path, monkeypatch):
    from vitrine.cli import app

    monkeypatch.delenv(quota.ENV_DEFAULT, raising=False)
    monkeypatch.delenv("VITRINE_DATABASE_URL", raising=False)
    runner = CliRunner()
    ws = ["-w", str(tmp_path)]
    r = runner.invoke(app, ["users", "add", "alice", "--password-stdin", *ws], input="alice-password\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["users", "quota", "alice", "500MB", *ws])
    assert r.exit_code == 0, r.output
    assert "0 bytes used of 500 MiB (set for this user)" in r.stdout
    r = runner.invoke(app, ["users", "quota", "alice", *ws])
    assert "of 500 MiB" in r.stdout
    r = runner.invoke(app, ["users", "quota", "alice", "default", *ws])
    assert "of unlimited (no limit set)" in r.stdout
    r = runner.invoke(app, ["users", "quota", "alice", "heaps", *ws])
    assert r.exit_code != 0 and "cannot read the size" in r.output
    r = runner.invoke(app, ["users", "quota", "nobody", "1GB", *ws])
    assert r.exit_code != 0 and "nobody" in r.output


def test_api_refuses_new_training_over_quota_and_reports_usage(tmp_path, monkeypatch):
    from vitrine.core.workspace import Workspace
    from vitrine.server import security
    from vitrine.server.app import create_app
    from vitrine.server.security import RequestAuth

    monkeypatch.delenv(quota.ENV_DEFAULT, raising=False)
    app = create_app(tmp_path, multi_user=True, database_url=f"sqlite:///{tmp_path / 'server.db'}")
    store = app.state.auth.store
    alice = store.add_user("alice", "alice-password")
    store.add_user("bob", "bob-password")
    token = store.create_token("alice", "tests")[1]
    _write(Workspace(tmp_path).run_dir("alice-run") / "weights.bin", 50_000)
    store.claim("run", "alice-run", alice.id)
    svc = quota.service_for(store.engine, tmp_path)
    svc.set_limit("alice", 40_000)
    client = TestClient(app, raise_server_exceptions=False, headers={"authorization": f"Bearer {token}"})

    me = client.get("/api/v1/me").json()
    assert me["storage"]["used_bytes"] == 50_000 and me["storage"]["limit_bytes"] == 40_000
    assert me["storage"]["over"] is True and me["storage"]["source"] == "user"
    assert {"kind": "run", "key": "alice-run", "visibility": "private"} in me["owned"]

    def submit_as(name: str, kind: str, params: dict):
        principal = store.user(name).principal("token")
        reset = security._current.set(RequestAuth(principal, app.state.auth))
        try:
            return app.state.vitrine.jobs.submit(kind, f"quota-{name}-{time.monotonic()}", params)
        finally:
            security._current.reset(reset)

    with pytest.raises(QuotaExceeded, match="alice uses 48.8 KiB of 39.1 KiB"):
        submit_as("alice", "train-quota-test", {})
    with pytest.raises(QuotaExceeded):
        submit_as("alice", "authz-like", {"run_id": "alice-new-run"})  # any job that writes a new run
    assert submit_as("bob", "train-quota-test", {}).owner == "bob"  # bob has room
    assert submit_as("alice", "quota-noop", {}).owner == "alice"  # creates no dataset or run

    # the same refusal through HTTP: a 413 JSON naming usage and limit, not a 500
    from vitrine.data.dataset import ClassificationDataset, Sample

    images = tmp_path / "imgs"
    _write(images / "a.png", 10)
    ds = ClassificationDataset(name="alice-data", root=images, samples=[Sample("a.png", "x", "train")], source={})
    ds.save(Workspace(tmp_path).dataset_dir("alice-data"))
    store.claim("dataset", "alice-data", alice.id)
    r = client.post("/api/v1/datasets/alice-data/train", json={"method": "zero-shot"})
    assert r.status_code == 413, r.text
    body = r.json()["error"]
    assert body["code"] == "storage_quota_exceeded" and "of 39.1 KiB" in body["message"]

    svc.set_limit("alice", None)
    assert client.get("/api/v1/me").json()["storage"]["limit"] == "unlimited"


def test_the_migration_builds_the_declared_table(db_url):
    """Revision 0004 creates ``user_quotas`` as quota.py declares it (absent at 0003)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from vitrine.store.db import make_engine, upgrade
    from vitrine.store.schema import metadata

    def differences(engine) -> list:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        flat = [d for group in diffs for d in (group if isinstance(group, list) else [group])]
        return [d for d in flat if "user_quotas" in repr(d)]

    engine = make_engine(db_url)
    try:
        upgrade(engine, "0003")
        assert "user_quotas" not in inspect(engine).get_table_names()
        assert [d[0] for d in differences(engine)] == ["add_table"]
        upgrade(engine)
        assert "user_quotas" in inspect(engine).get_table_names()
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_exporting_search_results_as_a_dataset_is_refused_over_quota(tmp_path, monkeypatch):
    """A dataset made from search results counts toward its owner's storage: over the quota the
    export is a 413 and no dataset is written; a user with room gets it, owned by them."""
    from vitrine.collection.layout import init_project
    from vitrine.collection.scan import scan_project
    from vitrine.core.workspace import Workspace
    from vitrine.project import Project
    from vitrine.server.app import create_app

    monkeypatch.delenv(quota.ENV_DEFAULT, raising=False)
    paths = init_project(tmp_path / "photos", keywords={"Cat": "a cat"})
    _write(paths.images_dir / "a" / "x.png", 10)
    proj = Project(paths.project_dir)
    scan_project(proj.paths, proj.catalog)
    proj.close()
    app = create_app(tmp_path, multi_user=True, database_url=f"sqlite:///{tmp_path / 'server.db'}")
    store = app.state.auth.store
    alice = store.add_user("alice", "alice-password")
    store.add_user("bob", "bob-password")
    store.claim("project", "photos", alice.id)
    store.set_access("project", "photos", visibility="public")
    _write(Workspace(tmp_path).run_dir("alice-run") / "weights.bin", 50_000)
    store.claim("run", "alice-run", alice.id)
    quota.service_for(store.engine, tmp_path).set_limit("alice", 40_000)
    body = {"paths": ["a/x.png"], "format": "dataset", "dataset_name": "picked", "label": "cat"}

    def client(name: str) -> TestClient:
        token = store.create_token(name, "tests")[1]
        return TestClient(app, raise_server_exceptions=False, headers={"authorization": f"Bearer {token}"})

    r = client("alice").post("/api/v1/projects/photos/export", json=body)
    assert r.status_code == 413, r.text
    assert "so a new dataset cannot start" in r.json()["error"]["message"]
    assert not (tmp_path / "datasets" / "picked").exists()
    r = client("bob").post("/api/v1/projects/photos/export", json=body)
    assert r.status_code == 200, r.text
    assert store.access("dataset", "picked").owner == "bob"
    app.state.vitrine.close()


def test_jobs_that_write_runs_count_as_storage():
    from vitrine.auth.quota import creates_storage

    assert creates_storage("train", {})
    assert creates_storage("score-submission", {"run_id": "r1"})
    assert creates_storage("compare-embeddings", {"run_ids": ["a", "b"]})
    assert not creates_storage("index", {"project": "p"})
    assert not creates_storage("compare-embeddings", {"run_ids": []})
