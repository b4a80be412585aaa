"""A damaged catalog.db is reported at open, with how to rebuild it: CLI exit 2, API 503."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from vitrine.collection.layout import init_project, project_paths
from vitrine.server.app import create_app
from vitrine.store.catalog import Catalog, CatalogCorrupt, check_sqlite_catalog, contents, embeddings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cli_helpers as cli  # noqa: E402


def _fill(path: Path, n: int = 1500) -> int:
    """A real catalog with ``n`` contents and a 384-float vector each, checkpointed; its size."""
    cat = Catalog(path)
    with cat.engine.begin() as conn:
        conn.execute(contents.insert(), [dict(sha256=f"{i:064x}", size=i + 1) for i in range(n)])
        vec = np.ones(384, np.float32).tobytes()
        conn.execute(embeddings.insert(), [dict(content_id=i + 1, model="m", space="s", vector=vec) for i in range(n)])
    cat.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path.stat().st_size


def _damage(path: Path, kind: str) -> None:
    size = path.stat().st_size
    if kind == "truncated":
        with open(path, "r+b") as f:
            f.truncate(size // 2)
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(size))
    elif kind == "garbage in the middle":
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(np.random.default_rng(1).bytes(8192))


DAMAGE = {
    "truncated": "truncated",
    "garbage": "not a SQLite database",
    "garbage in the middle": "malformed",
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damage_is_found_when_opening(tmp_path, kind):
    db = tmp_path / "catalog.db"
    _fill(db)
    Catalog(db).close()  # sound: opens (and records its clean check)
    _damage(db, kind)
    with pytest.raises(CatalogCorrupt) as err:
        Catalog(db)
    assert DAMAGE[kind] in err.value.message and str(db) in err.value.message
    assert "vitrine index" in err.value.hint and f"mv {db}" in err.value.hint
    assert err.value.status == 503


def test_full_check_runs_only_when_the_file_changed(tmp_path, monkeypatch):
    db = tmp_path / "catalog.db"
    _fill(db)
    Path(tmp_path / ".catalog.db.checked").unlink(missing_ok=True)  # as if written by something else
    calls = []
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: calls.append(a) or real(*a, **k))
    check_sqlite_catalog(db)
    check_sqlite_catalog(db)  # same size and mtime: header checks only
    assert len(calls) == 1
    with open(db, "r+b") as f:  # same size, new mtime: checked again, and found damaged
        f.seek(db.stat().st_size // 2)
        f.write(b"\xff" * 8192)
    os.utime(db, ns=(db.stat().st_atime_ns, db.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(CatalogCorrupt):
        check_sqlite_catalog(db)
    assert len(calls) == 2


def test_vitrines_own_writes_need_no_full_check(tmp_path, monkeypatch):
    """A catalog vitrine closed cleanly after writing is recorded as sound: the next open skips the
    quick_check (2-20 s on a large catalog). A crash needs none either: SQLite's write-ahead log
    recovers it; what the check is for is damage from outside, which changes the file's mtime."""
    db = tmp_path / "catalog.db"
    cat = Catalog(db)
    cat.set_meta("written", 1)
    cat.close()
    calls = []
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: calls.append(a) or real(*a, **k))
    check_sqlite_catalog(db)
    assert calls == []
    os.utime(db, ns=(db.stat().st_atime_ns, db.stat().st_mtime_ns + 1_000_000))  # touched from outside
    check_sqlite_catalog(db)
    assert len(calls) == 1


def test_new_and_empty_catalogs_open(tmp_path):
    Catalog(tmp_path / "new" / "catalog.db").close()
    (tmp_path / "empty.db").write_bytes(b"")
    Catalog(tmp_path / "empty.db").close()


@pytest.fixture
def damaged_project(tmp_path):
    project = tmp_path / "proj"
    init_project(project)
    db = project_paths(project).catalog_db
    _fill(db, n=200)
    _damage(db, "garbage")
    return project, db


def test_cli_says_what_is_wrong_and_what_to_do(damaged_project):
    project, db = damaged_project
    for args in (("status", str(project)), ("search", str(project), "a cat")):
        r = cli.run(*args)
        assert r.returncode == 2, (args, r.stderr)
        text = cli.flat(r.stdout + r.stderr)
        assert "Traceback" not in text and "sqlalchemy" not in text.lower()
        assert "not a SQLite database" in text and "vitrine index" in text, text


def test_api_answers_503_with_the_reason(damaged_project):
    project, _db = damaged_project
    client = TestClient(create_app(project.parent, multi_user=False), raise_server_exceptions=False)
    r = client.get("/api/v1/projects/proj")
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "catalog_corrupt" and "vitrine index" in error["hint"]


@pytest.mark.slow  # indexes twice with the offline model (loaded once)
def test_following_the_hint_rebuilds_the_same_catalog(tmp_path):
    from PIL import Image
    from skimage import data

    from vitrine.project import Project

    project = tmp_path / "proj"
    init_project(project)
    for folder, name in (("animals", "chelsea"), ("objects", "coffee"), ("objects", "rocket")):
        (project / "images" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(data, name)()).save(project / "images" / folder / f"{name}.jpg")
    p = Project(project)
    p.index(model=cli.OFFLINE)
    before = [(h.path, round(h.score, 4)) for h in p.search("a cup of coffee", k=3).hits]
    p.close()
    db = project_paths(project).catalog_db
    _damage(db, "garbage in the middle")
    r = cli.run("status", project)
    assert r.returncode == 2 and "vitrine index" in cli.flat(r.stderr + r.stdout)
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):  # what the hint says
        if path.exists():
            path.rename(f"{path}.corrupt")
    p = Project(project)
    assert p.index(model=cli.OFFLINE).embedded == 3
    assert [(h.path, round(h.score, 4)) for h in p.search("a cup of coffee", k=3).hits] == before
    p.close()
