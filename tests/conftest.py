"""Shared fixtures. Tests run offline: no model hub is contacted (HF_HUB_OFFLINE)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VITRINE_OFFLINE", "1")
# exported models (the text towers an index run exports), label vectors: never in the user's cache
if "VITRINE_CACHE_DIR" not in os.environ:
    os.environ["VITRINE_CACHE_DIR"] = tempfile.mkdtemp(prefix="vitrine-test-cache-")
    atexit.register(shutil.rmtree, os.environ["VITRINE_CACHE_DIR"], True)
# indexing runs on torch unless a test asks for a runtime: a choice saved in the user's cache by
# `vitrine models --bench` must not change what the tests' indexes hold
os.environ.setdefault("VITRINE_RUNTIME", "torch")


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory) -> Path:
    """The demo project (real photos from scikit-image/scikit-learn), built once, never indexed."""
    from vitrine.demo import build_demo

    return build_demo(tmp_path_factory.mktemp("demo-source"))


@pytest.fixture(scope="session")
def indexed_demo(tmp_path_factory, demo_source) -> Path:
    """A copy of the demo project indexed with offline-concepts. Tests must not modify it."""
    import vitrine

    root = tmp_path_factory.mktemp("indexed-root")
    project_dir = root / demo_source.name
    shutil.copytree(demo_source, project_dir)
    vitrine.open_project(project_dir).index(model="offline-concepts")
    return project_dir


@pytest.fixture
def fresh_demo(tmp_path, demo_source) -> Path:
    """A private, unindexed copy of the demo project that a test may change."""
    project_dir = tmp_path / demo_source.name
    shutil.copytree(demo_source, project_dir)
    return project_dir


# ------------------------------------------------------------------------------ server databases
# Fixtures for the server database (jobs, users, ...), on SQLite and on a real PostgreSQL:
#   postgres       (session) a throwaway PostgreSQL server (tests/pg.py), started once, stopped at
#                  the end; skips when the binaries are missing, fails instead when
#                  VITRINE_REQUIRE_POSTGRES is set (CI sets it).
#   db_url         a fresh, empty database URL, parametrized: "sqlite" and "postgresql" (not migrated).
#   db_engine      an engine on ``db_url``, migrated to head (vitrine.store.db.open_database), disposed after.
#   server_db_backend  (session) the backend the apps built by the tests use for their server
#                  database: "sqlite" (a file in each app's root, the default) or "postgresql" when the
#                  suite runs with VITRINE_TEST_DATABASE=postgresql; then every root an app is created
#                  on gets its own fresh PostgreSQL database, so the API tests run unchanged on both:
#                      VITRINE_TEST_DATABASE=postgresql pytest tests/server
POSTGRES_SWITCH = "VITRINE_TEST_DATABASE"


@pytest.fixture(scope="session")
def postgres():
    import pg

    bin_dir = pg.find_bin_dir()
    if bin_dir is None:
        why = "PostgreSQL binaries (initdb, pg_ctl) not found: install Debian's postgresql package"
        if os.environ.get(pg.REQUIRE_ENV):
            pytest.fail(f"{why} ({pg.REQUIRE_ENV} is set)")
        pytest.skip(why)
    server = pg.PostgresServer(bin_dir)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'server.db'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def db_engine(db_url):
    from vitrine.store.db import open_database

    engine = open_database(db_url, shared=False)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def server_db_backend(request) -> str:
    backend = os.environ.get(POSTGRES_SWITCH, "sqlite").strip().lower() or "sqlite"
    if backend not in ("sqlite", "postgresql"):
        pytest.fail(f"{POSTGRES_SWITCH} must be sqlite or postgresql, not {backend!r}")
    if backend == "sqlite":
        yield backend
        return
    import hashlib
    import threading

    from vitrine.store import db as store_db

    server = request.getfixturevalue("postgres")
    original = store_db.database_url
    made: dict[str, str] = {}
    lock = threading.Lock()

    def per_root_database(root=None) -> str:
        if os.environ.get(store_db.ENV_URL):
            return original(root)
        key = str(Path(root).resolve() if root else Path.cwd())
        with lock:
            if key not in made:
                made[key] = server.create_database("r_" + hashlib.sha1(key.encode()).hexdigest()[:20])
            return made[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_db, "database_url", per_root_database)
        yield backend


# ------------------------------------------------------------------------------ broken environments
@pytest.fixture
def opencv_without_tf_importer(monkeypatch):
    """This process's OpenCV as OpenCV 5 is: no ``cv2.dnn.readNetFromTensorflow``, so the packaged
    SSD cannot load. The registry's cache of loaded models and of failures is emptied for the test
    and put back after, so that other tests keep their loaded detector."""
    import cv2

    from vitrine.models import registry

    monkeypatch.delattr(cv2.dnn, "readNetFromTensorflow")
    monkeypatch.setattr(registry, "_LOADED", {})
    monkeypatch.setattr(registry, "_FAILED", {})
    yield "ssd-mobilenet-v2-coco"
