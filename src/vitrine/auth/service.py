"""Accounts, tokens, sessions and object ownership over the server database (SQLAlchemy Core).

One :class:`AuthStore` per process, shared by the server and the ``vitrine users`` commands; every
method is one short transaction, so SQLite (WAL) and PostgreSQL behave the same.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from vitrine.auth import passwords, tokens
from vitrine.auth.policy import Access, Principal
from vitrine.auth.tables import KINDS, ROLES, VISIBILITIES, api_tokens, object_access, object_shares, sessions, users
from vitrine.core.errors import NotFound, VitrineError

_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
LAST_USED_EVERY = 60.0  # seconds between writes of a token's last use / a session's last sight
DEFAULT_SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    disabled: bool
    created_at: float
    has_password: bool = True

    def principal(self, via: str, csrf_token: str | None = None, session_id: str | None = None) -> Principal:
        return Principal(
            id=self.id, name=self.name, role=self.role, via=via, csrf_token=csrf_token, session_id=session_id
        )

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "disabled": self.disabled,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class TokenInfo:
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > time.time())

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
            "active": self.active,
        }


def check_user_name(name: str) -> str:
    if not _USER_NAME.match(name or ""):
        raise VitrineError(
            f"invalid user name {name!r}",
            hint="use letters, digits, '.', '_', '@' or '-' (at most 64 characters, starting with a letter or digit)",
        )
    return name


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise NotFound(f"no object kind {kind!r}", hint=f"kinds: {', '.join(KINDS)}")
    return kind


def _user(row) -> User:
    return User(
        id=row.id,
        name=row.name,
        role=row.role,
        disabled=bool(row.disabled),
        created_at=row.created_at,
        has_password=bool(row.password_hash),
    )


def _token(row) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class AuthStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    # ------------------------------------------------------------------ users
    def add_user(self, name: str, password: str | None, role: str = "member") -> User:
        check_user_name(name)
        if role not in ROLES:
            raise VitrineError(f"unknown role {role!r}", hint=f"one of {', '.join(ROLES)}")
        hashed = passwords.hash_password(password) if password is not None else None
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(users).values(
                        name=name, role=role, password_hash=hashed, disabled=False, created_at=time.time()
                    )
                )
        except IntegrityError:
            raise VitrineError(f"user {name!r} already exists", hint="pick another name") from None
        return self.user(name)

    def find_user(self, name: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        return _user(row) if row else None

    def user(self, name: str) -> User:
        found = self.find_user(name)
        if found is None:
            raise NotFound(f"no user {name!r}", hint="see the users with `vitrine users list`")
        return found

    def user_by_id(self, user_id: int) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
        return _user(row) if row else None

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.name))]

    def count_users(self) -> int:
        return len(self.list_users())

    def set_disabled(self, name: str, disabled: bool) -> User:
        user = self.user(name)
        with self.engine.begin() as conn:
            conn.execute(update(users).where(users.c.id == user.id).values(disabled=disabled))
            if disabled:  # signed-in browsers are signed out at once
                conn.execute(delete(sessions).where(sessions.c.user_id == user.id))
        return self.user(name)

    def set_password(self, name: str, password: str) -> None:
        user = self.user(name)
        hashed = passwords.hash_password(password)
        with self.engine.begin() as conn:
            conn.execute(update(users).where(users.c.id == user.id).values(password_hash=hashed))
            conn.execute(delete(sessions).where(sessions.c.user_id == user.id))

    def authenticate(self, name: str, password: str) -> User | None:
        """The enabled user with this name and password, else None (same time either way)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == (name or ""))).first()
        if row is None or not row.password_hash:
            passwords.burn_time(password or "")
            return None
        if not passwords.verify_password(row.password_hash, password or ""):
            return None
        if row.disabled:
            return None
        if passwords.needs_rehash(row.password_hash):
            with self.engine.begin() as conn:
                conn.execute(
                    update(users).where(users.c.id == row.id).values(password_hash=passwords.hash_password(password))
                )
        return _user(row)

    # ------------------------------------------------------------------ tokens
    def create_token(
        self, user_name: str, name: str = "default", expires_in: float | None = None
    ) -> tuple[TokenInfo, str]:
        """A new API token for the user: its record and the token itself (shown once, never stored)."""
        user = self.user(user_name)
        name = (name or "default").strip()
        if not name or len(name) > 100:
            raise VitrineError("a token name must have 1 to 100 characters")
        secret, prefix = tokens.new_token()
        now = time.time()
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(api_tokens).values(
                    user_id=user.id,
                    name=name,
                    prefix=prefix,
                    token_hash=tokens.digest(secret),
                    created_at=now,
                    expires_at=(now + expires_in) if expires_in else None,
                )
            )
            token_id = result.inserted_primary_key[0]
            row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).one()
        return _token(row), secret

    def list_tokens(self, user_name: str) -> list[TokenInfo]:
        user = self.user(user_name)
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_tokens).where(api_tokens.c.user_id == user.id).order_by(api_tokens.c.id))
            return [_token(r) for r in rows]

    def revoke_token(self, token_id: int, user_id: int | None = None) -> TokenInfo:
        """Revoke a token (only one of ``user_id``'s when given). Revoking twice keeps the first time."""
        cond = api_tokens.c.id == token_id
        if user_id is not None:
            cond = and_(cond, api_tokens.c.user_id == user_id)
        with self.engine.begin() as conn:
            row = conn.execute(select(api_tokens).where(cond)).first()
            if row is None:
                raise NotFound(f"no token {token_id}", hint="see your tokens with GET /api/v1/tokens")
            if row.revoked_at is None:
                conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(revoked_at=time.time()))
            row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).one()
        return _token(row)

    def revoke_all_tokens(self, user_name: str) -> int:
        user = self.user(user_name)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.user_id == user.id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return result.rowcount or 0

    def user_for_token(self, secret: str) -> User | None:
        """The enabled user a live (unexpired, unrevoked) token belongs to, else None."""
        if tokens.token_prefix(secret) is None:
            return None
        now = time.time()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    api_tokens,
                    users.c.name.label("user_name"),
                    users.c.role,
                    users.c.disabled,
                    users.c.created_at.label("user_created"),
                )
                .join(users, users.c.id == api_tokens.c.user_id)
                .where(api_tokens.c.token_hash == tokens.digest(secret))
            ).first()
        if row is None or row.revoked_at is not None or row.disabled:
            return None
        if row.expires_at is not None and row.expires_at <= now:
            return None
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
            with self.engine.begin() as conn:
                conn.execute(update(api_tokens).where(api_tokens.c.id == row.id).values(last_used_at=now))
        return User(id=row.user_id, name=row.user_name, role=row.role, disabled=False, created_at=row.user_created)

    # ------------------------------------------------------------------ sessions
    def create_session(self, user: User, lifetime: float = DEFAULT_SESSION_SECONDS) -> tuple[str, str]:
        """A new login session: ``(session id for the cookie, its CSRF token)``."""
        session_id, csrf = tokens.new_secret(), tokens.new_secret()
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.expires_at <= now))  # keep the table small
            conn.execute(
                insert(sessions).values(
                    id_hash=tokens.digest(session_id),
                    user_id=user.id,
                    csrf_token=csrf,
                    created_at=now,
                    expires_at=now + lifetime,
                    last_seen_at=now,
                )
            )
        return session_id, csrf

    def session_user(self, session_id: str) -> tuple[User, str] | None:
        """The enabled user of a live session and the session's CSRF token, else None."""
        if not session_id or len(session_id) > 200:
            return None
        now = time.time()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(sessions, users.c.name, users.c.role, users.c.disabled, users.c.created_at.label("user_created"))
                .join(users, users.c.id == sessions.c.user_id)
                .where(sessions.c.id_hash == tokens.digest(session_id))
            ).first()
        if row is None or row.disabled or row.expires_at <= now:
            return None
        if now - row.last_seen_at > LAST_USED_EVERY:
            with self.engine.begin() as conn:
                conn.execute(update(sessions).where(sessions.c.id_hash == row.id_hash).values(last_seen_at=now))
        user = User(id=row.user_id, name=row.name, role=row.role, disabled=False, created_at=row.user_created)
        return user, row.csrf_token

    def delete_session(self, session_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.id_hash == tokens.digest(session_id)))

    # ------------------------------------------------------------------ ownership
    def access(self, kind: str, key: str) -> Access | None:
        """The ownership record of an object, None when it has none (then it belongs to the admins)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(object_access, users.c.name.label("owner_name"))
                .select_from(object_access.outerjoin(users, users.c.id == object_access.c.owner_id))
                .where(object_access.c.kind == kind, object_access.c.key == key)
            ).first()
            if row is None:
                return None
            shares = conn.execute(
                select(users.c.id, users.c.name)
                .join(object_shares, object_shares.c.user_id == users.c.id)
                .where(object_shares.c.kind == kind, object_shares.c.key == key)
                .order_by(users.c.name)
            ).all()
        return Access(
            kind=kind,
            key=key,
            owner_id=row.owner_id,
            owner=row.owner_name,
            visibility=row.visibility,
            shared_with=tuple(s.name for s in shares),
            shared_ids=frozenset(s.id for s in shares),
        )

    def claim(self, kind: str, key: str, owner_id: int | None, visibility: str = "private") -> bool:
        """Record ``owner_id`` as the owner of a new object; False (and nothing changed) when it
        already has an owner record."""
        check_kind(kind)
        if visibility not in VISIBILITIES:
            raise VitrineError(f"unknown visibility {visibility!r}", hint=f"one of {', '.join(VISIBILITIES)}")
        try:
            with self.engine.begin() as conn:
                if conn.execute(
                    select(object_access.c.kind).where(object_access.c.kind == kind, object_access.c.key == key)
                ).first():
                    return False
                conn.execute(
                    insert(object_access).values(
                        kind=kind, key=key, owner_id=owner_id, visibility=visibility, created_at=time.time()
                    )
                )
        except IntegrityError:  # claimed at the same moment by another request
            return False
        return True

    def _ensure(self, conn, kind: str, key: str) -> None:
        if not conn.execute(
            select(object_access.c.kind).where(object_access.c.kind == kind, object_access.c.key == key)
        ).first():  # an object found on disk: the admins' until now
            conn.execute(
                insert(object_access).values(
                    kind=kind, key=key, owner_id=None, visibility="private", created_at=time.time()
                )
            )

    def set_access(self, kind: str, key: str, visibility: str | None = None, owner: str | None = None) -> Access:
        check_kind(kind)
        values: dict = {}
        if visibility is not None:
            if visibility not in VISIBILITIES:
                raise VitrineError(f"unknown visibility {visibility!r}", hint=f"one of {', '.join(VISIBILITIES)}")
            values["visibility"] = visibility
        if owner is not None:
            values["owner_id"] = self.user(owner).id
        with self.engine.begin() as conn:
            self._ensure(conn, kind, key)
            if values:
                conn.execute(
                    update(object_access)
                    .where(object_access.c.kind == kind, object_access.c.key == key)
                    .values(**values)
                )
        return self.access(kind, key)

    def share(self, kind: str, key: str, user_name: str) -> Access:
        """Share with a named user; a private object becomes ``shared``."""
        check_kind(kind)
        user = self.user(user_name)
        with self.engine.begin() as conn:
            self._ensure(conn, kind, key)
            exists = conn.execute(
                select(object_shares.c.user_id).where(
                    object_shares.c.kind == kind, object_shares.c.key == key, object_shares.c.user_id == user.id
                )
            ).first()
            if not exists:
                conn.execute(insert(object_shares).values(kind=kind, key=key, user_id=user.id, created_at=time.time()))
            conn.execute(
                update(object_access)
                .where(
                    object_access.c.kind == kind, object_access.c.key == key, object_access.c.visibility == "private"
                )
                .values(visibility="shared")
            )
        return self.access(kind, key)

    def unshare(self, kind: str, key: str, user_name: str) -> Access:
        """Stop sharing with a user; a ``shared`` object shared with nobody left becomes private."""
        check_kind(kind)
        user = self.user(user_name)
        with self.engine.begin() as conn:
            self._ensure(conn, kind, key)
            conn.execute(
                delete(object_shares).where(
                    object_shares.c.kind == kind, object_shares.c.key == key, object_shares.c.user_id == user.id
                )
            )
            left = conn.execute(
                select(object_shares.c.user_id).where(object_shares.c.kind == kind, object_shares.c.key == key)
            ).first()
            if left is None:
                conn.execute(
                    update(object_access)
                    .where(
                        object_access.c.kind == kind, object_access.c.key == key, object_access.c.visibility == "shared"
                    )
                    .values(visibility="private")
                )
        return self.access(kind, key)

    def readable_keys(self, principal: Principal, kind: str, keys: list[str]) -> set[str]:
        """Which of ``keys`` (objects of one kind) ``principal`` may read: one query, for list routes."""
        if principal.is_admin:
            return set(keys)
        if principal.id is None or not keys:
            return set()
        shared = select(object_shares.c.key).where(
            object_shares.c.kind == kind, object_shares.c.user_id == principal.id
        )
        cond = and_(
            object_access.c.kind == kind,
            or_(
                object_access.c.owner_id == principal.id,
                object_access.c.visibility == "public",
                and_(object_access.c.visibility == "shared", object_access.c.key.in_(shared)),
            ),
        )
        wanted = set(keys)
        with self.engine.connect() as conn:
            found = {r.key for r in conn.execute(select(object_access.c.key).where(cond))}
        return found & wanted
