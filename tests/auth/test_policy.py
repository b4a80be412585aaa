from __future__ import annotations

import pytest

from vitrine.auth.policy import LOCAL_ADMIN, Access, Forbidden, Hidden, Principal, can, check

ALICE = Principal(id=1, name="alice", role="member", via="token")
BOB = Principal(id=2, name="bob", role="member", via="token")
CAROL = Principal(id=3, name="carol", role="member", via="token")
ROOT = Principal(id=9, name="root", role="admin", via="token")


def access(visibility: str, owner: int | None = 1, shared: tuple[int, ...] = ()) -> Access:
    return Access("dataset", "d", owner, "alice" if owner == 1 else None, visibility, (), frozenset(shared))


@pytest.mark.parametrize("action", ["read", "use", "write", "manage"])
def test_owner_and_admins_may_do_everything(action):
    for rec in (access("private"), access("shared", shared=(2,)), access("public")):
        assert can(ALICE, action, rec)
        assert can(ROOT, action, rec)
        assert can(LOCAL_ADMIN, action, rec)


def test_private_is_the_owners_alone():
    rec = access("private", shared=(2,))  # shares are kept but do not count while private
    for action in ("read", "use", "write", "manage"):
        assert not can(BOB, action, rec)


def test_shared_is_readable_by_the_named_users_only():
    rec = access("shared", shared=(2,))
    assert can(BOB, "read", rec) and can(BOB, "use", rec)
    assert not can(BOB, "write", rec) and not can(BOB, "manage", rec)
    assert not can(CAROL, "read", rec)


def test_public_is_readable_by_everyone_signed_in():
    rec = access("public")
    assert can(CAROL, "read", rec) and can(CAROL, "use", rec) and not can(CAROL, "write", rec)


def test_no_record_or_no_owner_means_the_admins():
    for rec in (None, access("public", owner=None)):
        assert can(ROOT, "write", rec)
        assert not can(ALICE, "write", rec)
    assert not can(ALICE, "read", None)


def test_check_answers_404_when_unreadable_and_403_when_read_only():
    with pytest.raises(Hidden) as hidden:
        check(BOB, "write", "dataset", "d", access("private"))
    assert hidden.value.status == 404 and hidden.value.message == "no dataset 'd'"
    with pytest.raises(Forbidden) as forbidden:
        check(BOB, "write", "dataset", "d", access("public"))
    assert forbidden.value.status == 403
    check(BOB, "read", "dataset", "d", access("public"))
    with pytest.raises(ValueError):
        can(BOB, "delete", access("public"))
