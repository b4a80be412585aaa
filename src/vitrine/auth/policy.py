"""Who may do what: the one ownership rule, as plain functions over a principal and a record.

Objects are named by ``(kind, key)``: a project by its folder name, a dataset by its name, a run
(trained model) by its id, a job by its id. Each has an owner and a visibility:

    private   only the owner
    shared    the owner and the users it is shared with
    public    every signed-in user

Actions: ``read`` (see it, its files and thumbnails), ``use`` (search it, predict with it, train
on it: what one does with someone else's object without changing it), ``write`` (change it:
index, cancel, delete) and ``manage`` (change its visibility and shares). Readers may read and
use; only the owner writes and manages. Admins may do everything. An object with no record, or
whose owner was deleted, belongs to the admins.

Answers: a user who may not even read an object gets 404, the same as for an object that does not
exist (existence is not leaked); one who may read it but not change it gets 403.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vitrine.core.errors import NotFound, VitrineError

ACTIONS = ("read", "use", "write", "manage")
READ_ACTIONS = ("read", "use")


class Forbidden(VitrineError):
    status = 403
    code = "forbidden"


class Unauthorized(VitrineError):
    status = 401
    code = "unauthorized"


class Hidden(NotFound):
    """An object the user may not see: answered like one that does not exist."""


@dataclass(frozen=True)
class Principal:
    """Who a request acts for. ``via`` is how it was authenticated: ``local`` (single-user mode),
    ``token`` (Authorization: Bearer) or ``session`` (the login cookie, which needs CSRF tokens)."""

    id: int | None
    name: str
    role: str
    via: str = "local"
    csrf_token: str | None = None
    session_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "role": self.role, "via": self.via}


LOCAL_ADMIN = Principal(id=None, name="local", role="admin", via="local")


@dataclass(frozen=True)
class Access:
    kind: str
    key: str
    owner_id: int | None
    owner: str | None
    visibility: str
    shared_with: tuple[str, ...] = ()
    shared_ids: frozenset[int] = field(default_factory=frozenset)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "key": self.key,
            "owner": self.owner,
            "visibility": self.visibility,
            "shared_with": list(self.shared_with),
        }


def can(principal: Principal, action: str, access: Access | None) -> bool:
    """Whether ``principal`` may do ``action`` on the object whose record is ``access`` (None: no record)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if principal.is_admin:
        return True
    if access is None or principal.id is None:
        return False
    if access.owner_id is not None and access.owner_id == principal.id:
        return True
    if action not in READ_ACTIONS:
        return False
    if access.visibility == "public":
        return True
    return access.visibility == "shared" and principal.id in access.shared_ids


def check(principal: Principal, action: str, kind: str, key: str, access: Access | None) -> None:
    """Raise :class:`Hidden` (404) when the object may not be read, :class:`Forbidden` (403) when
    it may be read but not ``action``; return when allowed."""
    if can(principal, action, access):
        return
    if action in READ_ACTIONS or not can(principal, "read", access):
        raise Hidden(f"no {kind} {key!r}", hint="or it is not shared with you")
    raise Forbidden(
        f"{kind} {key!r} belongs to {access.owner if access else 'the admins'}; you may read it but not change it",
        hint="ask its owner or an admin",
    )
