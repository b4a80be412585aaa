"""The server database: where it is, how to connect, and its schema migrations.

SQLite (WAL) in ``<workspace>/.vitrine/server.db`` by default; any SQLAlchemy URL through
``VITRINE_DATABASE_URL``, PostgreSQL being the one meant for deployments
(``postgresql+psycopg://user:password@host/dbname``). The schema is the one ``metadata`` of
:mod:`vitrine.store.schema`; it changes only through the Alembic revisions shipped in
``vitrine/store/migrations``, which :func:`upgrade` applies in place, programmatically (no
``alembic.ini`` needed). :func:`open_database` is what the server and the CLI call at start-up.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from vitrine.core.errors import VitrineError
from vitrine.core.workspace import default_workspace

ENV_URL = "VITRINE_DATABASE_URL"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_MIGRATION_LOCK_ID = 0x76697472  # "vitr": the PostgreSQL advisory lock held while migrating


class DatabaseError(VitrineError):
    """The server database cannot be reached or used."""

    status = 503
    code = "database_unavailable"


def database_url(root: str | os.PathLike | None = None) -> str:
    """``VITRINE_DATABASE_URL`` when set, else the SQLite file ``<root>/.vitrine/server.db``,
    ``root`` being the workspace (``VITRINE_HOME`` or the current folder by default)."""
    url = os.environ.get(ENV_URL, "").strip()
    if url:
        return url
    base = Path(root).resolve() if root else default_workspace()
    return f"sqlite:///{base / '.vitrine' / 'server.db'}"


def safe_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _parse(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            "the database URL cannot be parsed",
            hint=f"set {ENV_URL} to e.g. sqlite:///path/server.db or postgresql+psycopg://user:pw@host/vitrine",
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver vitrine ships with
    return parsed


def _sqlite_connect(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


def make_engine(url: str | URL | None = None) -> Engine:
    """An engine for the server database. SQLite: WAL, ``busy_timeout``, foreign keys on, usable
    from any thread (its folder is created). PostgreSQL (psycopg 3): a small pool that checks
    connections before use and recycles them every 30 minutes."""
    parsed = _parse(url or database_url())
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            memory = not parsed.database or parsed.database == ":memory:"
            if not memory and not parsed.database.startswith("file:"):
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                parsed,
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                **({"poolclass": StaticPool} if memory else {}),  # one in-memory database for every thread
            )
            event.listen(engine, "connect", _sqlite_connect)
        elif backend == "postgresql":
            engine = create_engine(
                parsed, pool_size=5, max_overflow=10, pool_timeout=30, pool_pre_ping=True, pool_recycle=1800
            )
        else:
            engine = create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError) as exc:
        raise DatabaseError(
            f"no database driver for {safe_url(parsed)} ({exc})",
            hint="use sqlite:///… or postgresql+psycopg://…",
        ) from None
    return engine


def check_connection(engine: Engine) -> None:
    """Connect once; a :class:`DatabaseError` naming the URL (password hidden) when that fails."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc).strip() else type(exc).__name__
        raise DatabaseError(
            f"cannot reach the database {safe_url(engine.url)}: {reason}",
            hint=f"check {ENV_URL} (host, port, user, password, database name) and that the server is running",
        ) from None


def _alembic_config(connection: Connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def _migration_lock(engine: Engine):
    """Only one process migrates a database at a time: a file lock beside a SQLite file, an
    advisory lock on PostgreSQL (held on the connection the migration runs on)."""
    if engine.dialect.name == "sqlite" and engine.url.database and engine.url.database != ":memory:":
        from filelock import FileLock

        with FileLock(str(Path(engine.url.database).expanduser()) + ".migrate.lock", timeout=120):
            with engine.connect() as conn:
                yield conn
    elif engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_ID})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_ID})
                conn.commit()
    else:
        with engine.connect() as conn:
            yield conn


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Apply the schema migrations up to ``revision`` (all of them by default) in place; return
    the revision the database is at afterwards."""
    from alembic import command

    check_connection(engine)
    with _migration_lock(engine) as conn:
        command.upgrade(_alembic_config(conn), revision)
        conn.commit()
    return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


_opened: dict[str, Engine] = {}
_opened_lock = threading.Lock()


def open_database(url: str | None = None, *, root: str | os.PathLike | None = None, shared: bool = True) -> Engine:
    """The engine of the server database, its schema upgraded to the latest revision. ``url``
    defaults to :func:`database_url` for ``root``. With ``shared`` (the default) one engine per URL
    is kept for the process, and migrations run once; pass ``shared=False`` for an engine of your
    own (dispose it when done)."""
    url = url or database_url(root)
    if not shared:
        engine = make_engine(url)
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return engine
    with _opened_lock:
        engine = _opened.get(url)
        if engine is None:
            engine = make_engine(url)
            try:
                upgrade(engine)
            except BaseException:
                engine.dispose()
                raise
            _opened[url] = engine
        return engine
