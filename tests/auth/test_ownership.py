from __future__ import annotations

import pytest
from sqlalchemy import inspect

from vitrine.auth.policy import can
from vitrine.core.errors import NotFound


@pytest.fixture
def people(store):
    alice = store.add_user("alice", "alice-password")
    bob = store.add_user("bob", "bob-password")
    carol = store.add_user("carol", "carol-password")
    root = store.add_user("root", "root-password", role="admin")
    return {u.name: u.principal("token") for u in (alice, bob, carol, root)}


def test_the_migration_made_every_table(store):
    names = set(inspect(store.engine).get_table_names())
    assert {"users", "api_tokens", "sessions", "object_access", "object_shares", "jobs"} <= names


def test_claim_share_unshare(store, people):
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    assert store.claim("dataset", "flowers", alice.id)
    assert not store.claim("dataset", "flowers", bob.id)  # the first claim wins
    rec = store.access("dataset", "flowers")
    assert (rec.owner, rec.visibility, rec.shared_with) == ("alice", "private", ())
    assert not can(bob, "read", rec)

    rec = store.share("dataset", "flowers", "bob")
    assert rec.visibility == "shared" and rec.shared_with == ("bob",)
    assert can(bob, "read", rec) and not can(carol, "read", rec) and not can(bob, "write", rec)

    rec = store.set_access("dataset", "flowers", visibility="public")
    assert can(carol, "use", rec)
    rec = store.set_access("dataset", "flowers", visibility="shared")
    rec = store.unshare("dataset", "flowers", "bob")
    assert rec.visibility == "private" and rec.shared_with == ()
    assert not can(bob, "read", rec)


def test_objects_without_a_record_belong_to_the_admins(store, people):
    assert store.access("project", "found-on-disk") is None
    assert store.readable_keys(people["alice"], "project", ["found-on-disk"]) == set()
    assert store.readable_keys(people["root"], "project", ["found-on-disk"]) == {"found-on-disk"}
    rec = store.set_access("project", "found-on-disk", owner="alice")  # an admin gives it away
    assert rec.owner == "alice" and can(people["alice"], "manage", rec)


def test_readable_keys(store, people):
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    store.claim("run", "mine", bob.id)
    store.claim("run", "private", alice.id)
    store.claim("run", "public", alice.id, visibility="public")
    store.claim("run", "shared", alice.id)
    store.share("run", "shared", "bob")
    keys = ["mine", "private", "public", "shared", "unknown"]
    assert store.readable_keys(bob, "run", keys) == {"mine", "public", "shared"}
    assert store.readable_keys(carol, "run", keys) == {"public"}
    assert store.readable_keys(alice, "run", keys) == {"private", "public", "shared"}
    assert store.readable_keys(bob, "dataset", keys) == set()  # kinds are separate


def test_unknown_kind_and_user(store, people):
    with pytest.raises(NotFound, match="kind"):
        store.claim("planet", "x", people["alice"].id)
    store.claim("job", "j1", people["alice"].id)
    with pytest.raises(NotFound, match="no user"):
        store.share("job", "j1", "nobody")
