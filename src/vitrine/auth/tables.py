"""The tables of accounts and access, on the server database's one ``metadata``.

    users           name, role (admin | member), argon2 password hash, disabled flag, created
    api_tokens      per user: name, public prefix, SHA-256 of the token, expiry, revoked, last used
    sessions        server-side login sessions: SHA-256 of the cookie's id, CSRF token, expiry
    object_access   (kind, key) -> owner and visibility (private | shared | public)
    object_shares   (kind, key, user): the named users a shared object is visible to

Times are seconds since the epoch (floats): the same on SQLite and PostgreSQL.
Schema changes ship as Alembic revisions (``store/migrations``, revision ``0002_auth``).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
)

from vitrine.store.schema import metadata

ROLES = ("admin", "member")
KINDS = ("project", "dataset", "run", "job", "sweep")
VISIBILITIES = ("private", "shared", "public")

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    CheckConstraint("role IN ('admin', 'member')", name="role"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
)

object_access = Table(
    "object_access",
    metadata,
    Column("kind", String(16), nullable=False),
    Column("key", String(200), nullable=False),
    Column("owner_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True),
    Column("visibility", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("kind", "key"),
    CheckConstraint("visibility IN ('private', 'shared', 'public')", name="visibility"),
)

object_shares = Table(
    "object_shares",
    metadata,
    Column("kind", String(16), nullable=False),
    Column("key", String(200), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("kind", "key", "user_id"),
    Index("ix_object_shares_user_kind", "user_id", "kind"),
)
