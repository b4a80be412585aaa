"""The server database: where it is, connecting (SQLite WAL, PostgreSQL), and the migrations that
upgrade an existing database in place. Runs on SQLite and on the real PostgreSQL the tests start."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import inspect, text

from vitrine.store import db as store_db
from vitrine.store.db import (
    DatabaseError,
    current_revision,
    database_url,
    head_revision,
    make_engine,
    open_database,
    safe_url,
    upgrade,
)


def test_default_url_is_a_sqlite_file_in_the_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv(store_db.ENV_URL, raising=False)
    monkeypatch.setenv("VITRINE_HOME", str(tmp_path / "home"))
    assert database_url() == f"sqlite:///{tmp_path / 'home' / '.vitrine' / 'server.db'}"
    assert database_url(tmp_path / "root") == f"sqlite:///{tmp_path / 'root' / '.vitrine' / 'server.db'}"
    monkeypatch.delenv("VITRINE_HOME")
    monkeypatch.chdir(tmp_path)
    assert database_url() == f"sqlite:///{tmp_path / '.vitrine' / 'server.db'}"
    monkeypatch.setenv(store_db.ENV_URL, "postgresql+psycopg://u:pw@db.example/vitrine")
    assert database_url(tmp_path) == "postgresql+psycopg://u:pw@db.example/vitrine"


def test_sqlite_engine_settings(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'deep' / 'er' / 'server.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == store_db.SQLITE_BUSY_TIMEOUT_MS
        assert (tmp_path / "deep" / "er" / "server.db").is_file()
    finally:
        engine.dispose()


def test_postgresql_urls_use_psycopg_3(postgres):
    engine = make_engine(postgres.url(driver="postgresql"))
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_upgrade_to_head(db_url):
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        assert upgrade(engine) == head_revision()
        assert "jobs" in inspect(engine).get_table_names()
        assert upgrade(engine) == head_revision()  # again: nothing to do, nothing breaks
    finally:
        engine.dispose()


def _jobs_differences(engine) -> list:
    """Autogenerate's differences between the database and the declared ``jobs`` table."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import vitrine.jobs.table  # noqa: F401  (declares the table on metadata)
    from vitrine.store.schema import metadata

    def table_of(diff) -> str | None:
        op, *rest = diff[0] if isinstance(diff, list) else diff
        if op in ("add_table", "remove_table"):
            return rest[0].name
        if op in ("add_index", "remove_index"):
            return rest[0].table.name
        return rest[1]  # add_column / remove_column / modify_*: (schema, table, ...)

    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    return [d for d in diffs if table_of(d) == "jobs"]


def test_migrations_match_the_declared_tables(db_url):
    """What the migrations build is what the code declares; the check sees a missing column."""
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0001")
        assert [(d[0], d[2], d[3].name) for d in _jobs_differences(engine)] == [("add_column", "jobs", "log_tail")]
        upgrade(engine)
        assert _jobs_differences(engine) == []
    finally:
        engine.dispose()


def test_an_old_database_is_upgraded_in_place_keeping_its_rows(db_url):
    """A database at revision 0001 (jobs without log_tail) with rows in it, upgraded to head."""
    engine = make_engine(db_url)
    try:
        assert upgrade(engine, "0001") == "0001"
        assert "log_tail" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
        now = time.time()
        with engine.begin() as conn:
            for i, state in enumerate(["done", "failed", "queued"]):
                conn.execute(
                    text(
                        "INSERT INTO jobs (id, kind, target, params, state, created_at, attempts, done, total, "
                        "stage, message, cancel_requested, result) "
                        "VALUES (:id, 'index', 'demo', :params, :state, :t, 1, :done, 20, 'embed', 'm', :c, :r)"
                    ),
                    {
                        "id": f"old{i:09d}",
                        "params": '{"project": "demo", "model": null}',
                        "state": state,
                        "t": now + i,
                        "done": i * 5,
                        "c": False,
                        "r": '{"embedded": 20}' if state == "done" else None,
                    },
                )
        assert upgrade(engine) == head_revision()
        assert "log_tail" in {c["name"] for c in inspect(engine).get_columns("jobs")}

        from vitrine.jobs import JobManager

        jobs = JobManager(engine)
        try:
            listed = jobs.list()
            assert [j.id for j in listed] == ["old000000002", "old000000001", "old000000000"]
            old = jobs.get("old000000000")
            assert (old.state, old.kind, old.target, old.done, old.total) == ("done", "index", "demo", 0, 20)
            assert old.params == {"project": "demo", "model": None}
            assert old.result == {"embedded": 20} and old.log == []
            assert jobs.get("old000000001").done == 5
        finally:
            jobs.close()
    finally:
        engine.dispose()


def test_unreachable_postgresql_is_a_clear_error_without_the_password(tmp_path):
    url = f"postgresql+psycopg://someone:s3cr3t-pw@/vitrine?host={tmp_path}&port=1"
    with pytest.raises(DatabaseError) as caught:
        open_database(url)
    message = str(caught.value)
    assert "cannot reach the database" in message and "VITRINE_DATABASE_URL" in message
    assert "s3cr3t-pw" not in message and "***" in message
    assert caught.value.status == 503
    assert "s3cr3t" not in safe_url("postgresql://a:s3cr3t@h/db")


def test_a_bad_url_is_a_clear_error():
    with pytest.raises(DatabaseError, match="cannot be parsed"):
        make_engine("not a url at all")
    with pytest.raises(DatabaseError, match="no database driver"):
        make_engine("nosuchdb://x/y")


def test_open_database_shares_one_engine_per_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'server.db'}"
    first = open_database(url)
    assert open_database(url) is first
    assert current_revision(first) == head_revision()
    own = open_database(url, shared=False)
    try:
        assert own is not first
    finally:
        own.dispose()


def test_migrations_ship_inside_the_package():
    assert (store_db.MIGRATIONS_DIR / "env.py").is_file()
    assert (store_db.MIGRATIONS_DIR / "versions" / "0001_jobs.py").is_file()
    assert store_db.MIGRATIONS_DIR.parent == __import__("pathlib").Path(store_db.__file__).parent


def test_served_apps_use_the_backend_the_suite_runs_on(server_db_backend, tmp_path):
    """With VITRINE_TEST_DATABASE=postgresql, each root served by the tests gets its own
    PostgreSQL database (that is how the API tests run on both backends)."""
    from vitrine.server.app import create_app

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = create_app(tmp_path / "a"), create_app(tmp_path / "b")
    try:
        engines = [app.state.vitrine.db for app in (first, second)]
        assert {e.dialect.name for e in engines} == {server_db_backend}
        assert engines[0].url != engines[1].url
        assert create_app(tmp_path / "a").state.vitrine.db is engines[0]  # one engine per database
        if server_db_backend == "sqlite":
            assert (tmp_path / "a" / ".vitrine" / "server.db").is_file()
    finally:
        for app in (first, second):
            app.state.vitrine.close()
