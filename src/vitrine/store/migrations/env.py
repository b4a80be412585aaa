"""Alembic environment: runs on the connection :func:`vitrine.store.db.upgrade` passes in, or on
``-x url=…`` / ``VITRINE_DATABASE_URL`` when the ``alembic`` command is used from a checkout."""

from __future__ import annotations

from alembic import context

from vitrine.store.schema import metadata


def _load_tables() -> None:
    """Import the modules that declare tables on ``metadata`` (for autogenerate)."""
    import importlib

    for module in ("vitrine.jobs.table", "vitrine.auth.tables", "vitrine.auth.models", "vitrine.auth.quota"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass


_load_tables()
config = context.config
target_metadata = metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    from vitrine.store.db import database_url

    url = context.get_x_argument(as_dictionary=True).get("url") or database_url()
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from vitrine.store.db import database_url, make_engine

    engine = make_engine(context.get_x_argument(as_dictionary=True).get("url") or database_url())
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
