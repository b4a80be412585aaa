"""Per-user storage quota: the bytes on disk of the datasets and runs a user owns.

The limit of a user is their own (``vitrine users quota NAME 500MB``, stored in ``user_quotas``
next to the account; ``unlimited`` is a value too), else the server's ``VITRINE_STORAGE_QUOTA_MB``,
else unlimited. Usage is measured on disk (the folders of the user's owned datasets and runs,
from ``object_access``) and cached for a few seconds per user, so that a burst of requests does
not walk the folders every time.

A user at or over their limit cannot start work that creates objects (training jobs, which write a
new run): :func:`enforce` raises :class:`QuotaExceeded` (HTTP 413) naming the usage and the limit.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import BigInteger, Column, Float, ForeignKey, Integer, Table, delete, insert, select
from sqlalchemy.engine import Engine

from vitrine.auth.tables import object_access, users
from vitrine.core.errors import NotFound, PayloadTooLarge, VitrineError
from vitrine.store.schema import metadata

ENV_DEFAULT = "VITRINE_STORAGE_QUOTA_MB"
CACHE_SECONDS = 5.0
COUNTED_KINDS = ("dataset", "run")

user_quotas = Table(
    "user_quotas",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("storage_bytes", BigInteger, nullable=True),  # NULL: unlimited for this user
    Column("updated_at", Float, nullable=False),
)

_UNITS = {
    "": 1 << 20,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1 << 40,
    "tib": 1 << 40,
}
UNLIMITED_WORDS = ("unlimited", "none", "off")


class QuotaExceeded(PayloadTooLarge):
    code = "storage_quota_exceeded"


def parse_size(text: str) -> int | None:
    """``"500MB"`` -> bytes (binary units: 1 MB = 1 MiB; a bare number is MB); ``"unlimited"`` -> None."""
    value = (text or "").strip().lower()
    if value in UNLIMITED_WORDS:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    if not m or m.group(2) not in _UNITS:
        raise VitrineError(
            f"cannot read the size {text!r}",
            hint="write a number with a unit, e.g. 500MB, 2GB, 750MiB, or 'unlimited'",
        )
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def human(n: int | None) -> str:
    if n is None:
        return "unlimited"
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def default_limit() -> int | None:
    """The server-wide limit from ``VITRINE_STORAGE_QUOTA_MB`` (None: unlimited)."""
    raw = os.environ.get(ENV_DEFAULT, "").strip()
    if not raw or raw.lower() in UNLIMITED_WORDS:
        return None
    try:
        mb = float(raw)
    except ValueError:
        raise VitrineError(
            f"{ENV_DEFAULT}={raw!r} is not a number of megabytes", hint=f"e.g. {ENV_DEFAULT}=2048, or unset it"
        ) from None
    return None if mb < 0 else int(mb * (1 << 20))


def folder_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed), 0 when it does not exist."""
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total


@dataclass(frozen=True)
class Usage:
    user: str
    used_bytes: int
    limit_bytes: int | None
    source: str  # "user" (set for this user), "server" (VITRINE_STORAGE_QUOTA_MB) or "none"
    objects: dict[str, int]  # "kind:key" -> bytes

    @property
    def over(self) -> bool:
        return self.limit_bytes is not None and self.used_bytes >= self.limit_bytes

    def to_dict(self) -> dict:
        return {
            "used_bytes": self.used_bytes,
            "limit_bytes": self.limit_bytes,
            "used": human(self.used_bytes),
            "limit": human(self.limit_bytes),
            "source": self.source,
            "over": self.over,
        }


class QuotaService:
    """Limits and usage for the accounts of one server database and workspace."""

    def __init__(self, engine: Engine, root: Path, cache_seconds: float = CACHE_SECONDS):
        self.engine = engine
        self.root = Path(root)
        self.cache_seconds = cache_seconds
        self._cache: dict[int, tuple[float, int, dict[str, int]]] = {}
        self._lock = threading.Lock()

    def _user_id(self, conn, name: str) -> int:
        row = conn.execute(select(users.c.id).where(users.c.name == name)).first()
        if row is None:
            raise NotFound(f"no user {name!r}", hint="`vitrine users list` shows the accounts")
        return row.id

    # limits
    def set_limit(self, name: str, limit_bytes: int | None) -> None:
        """Give ``name`` their own limit (None: unlimited whatever the server default)."""
        with self.engine.begin() as conn:
            uid = self._user_id(conn, name)
            conn.execute(delete(user_quotas).where(user_quotas.c.user_id == uid))
            conn.execute(insert(user_quotas).values(user_id=uid, storage_bytes=limit_bytes, updated_at=time.time()))

    def clear_limit(self, name: str) -> None:
        """Back to the server default."""
        with self.engine.begin() as conn:
            uid = self._user_id(conn, name)
            conn.execute(delete(user_quotas).where(user_quotas.c.user_id == uid))

    def limit(self, name: str) -> tuple[int | None, str]:
        with self.engine.connect() as conn:
            uid = self._user_id(conn, name)
            row = conn.execute(select(user_quotas.c.storage_bytes).where(user_quotas.c.user_id == uid)).first()
        if row is not None:
            return row.storage_bytes, "user"
        server = default_limit()
        return server, ("server" if server is not None else "none")

    # usage
    def owned(self, name: str, kinds: tuple[str, ...] | None = None) -> list[tuple[str, str, str]]:
        """``(kind, key, visibility)`` of the objects ``name`` owns."""
        with self.engine.connect() as conn:
            uid = self._user_id(conn, name)
            query = select(object_access.c.kind, object_access.c.key, object_access.c.visibility).where(
                object_access.c.owner_id == uid
            )
            if kinds:
                query = query.where(object_access.c.kind.in_(kinds))
            rows = conn.execute(query.order_by(object_access.c.kind, object_access.c.key))
            return [(r.kind, r.key, r.visibility) for r in rows]

    def _folder(self, kind: str, key: str) -> Path | None:
        from vitrine.core.workspace import Workspace

        ws = Workspace(self.root)
        try:
            return ws.dataset_dir(key) if kind == "dataset" else ws.run_dir(key)
        except Exception:  # a key that is not a valid folder name has no folder
            return None

    def usage(self, name: str, fresh: bool = False) -> Usage:
        with self.engine.connect() as conn:
            uid = self._user_id(conn, name)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(uid)
        if cached and not fresh and now - cached[0] < self.cache_seconds:
            used, objects = cached[1], cached[2]
        else:
            objects = {}
            for kind, key, _vis in self.owned(name, COUNTED_KINDS):
                folder = self._folder(kind, key)
                objects[f"{kind}:{key}"] = folder_bytes(folder) if folder else 0
            used = sum(objects.values())
            with self._lock:
                self._cache[uid] = (now, used, objects)
        limit, source = self.limit(name)
        return Usage(name, used, limit, source, dict(objects))

    def forget(self, name: str | None = None) -> None:
        """Drop cached usage (all users when ``name`` is None)."""
        with self._lock:
            if name is None:
                self._cache.clear()
                return
        with self.engine.connect() as conn:
            uid = self._user_id(conn, name)
        with self._lock:
            self._cache.pop(uid, None)

    def enforce(self, name: str, what: str = "this") -> Usage:
        """Raise :class:`QuotaExceeded` when ``name`` is at or over their limit (measured afresh)."""
        usage = self.usage(name, fresh=True)
        if usage.over:
            where = "their own limit" if usage.source == "user" else f"the server's limit ({ENV_DEFAULT})"
            raise QuotaExceeded(
                f"storage quota exceeded: {name} uses {human(usage.used_bytes)} of {human(usage.limit_bytes)} "
                f"({where}), so {what} cannot start",
                hint="delete some of your runs or datasets, or ask an admin to raise it "
                f"(`vitrine users quota {name} SIZE`)",
            )
        return usage


_services: dict[tuple[int, str], QuotaService] = {}
_services_lock = threading.Lock()


def service_for(engine: Engine, root: Path) -> QuotaService:
    """One service (one usage cache) per database engine and workspace."""
    key = (id(engine), str(Path(root).resolve()))
    with _services_lock:
        svc = _services.get(key)
        if svc is None or svc.engine is not engine:
            svc = _services[key] = QuotaService(engine, root)
        return svc


def creates_storage(kind: str, params: dict | None) -> bool:
    """Whether a job of ``kind`` writes new objects counted by the quota (training writes a run; a
    job given ``run_id`` or ``run_ids`` writes those runs: a scored submission, an embedding
    comparison)."""
    writes_runs = isinstance(params, dict) and (params.get("run_id") or params.get("run_ids"))
    return kind.startswith("train") or bool(writes_runs)
