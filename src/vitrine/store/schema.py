"""The server database: one SQLAlchemy ``MetaData`` for every table of the server (jobs, users,
tokens, ownership, shares). Per-project catalogs (``store/catalog.py``) are separate databases.

Tables are declared in the modules that own them (``vitrine.jobs``, ``vitrine.auth``) on this
``metadata``; schema changes ship as Alembic revisions (``store/migrations``).
"""

from __future__ import annotations

from sqlalchemy import MetaData

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
