from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from vitrine.auth import tokens
from vitrine.auth.tables import api_tokens, sessions
from vitrine.core.errors import NotFound, VitrineError


def test_token_format_and_digest():
    token, prefix = tokens.new_token()
    assert token.startswith(f"vit_{prefix}_") and len(token) > 40
    assert tokens.token_prefix(token) == prefix
    assert tokens.token_prefix("vit_short") is None
    assert tokens.digest(token) != tokens.digest(token + "x")
    assert len(tokens.digest(token)) == 64


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("2w", 1209600)])
def test_parse_duration(text, seconds):
    assert tokens.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1d", "0d", "3y", "99999999999999999999w", "3651d", "1e400"])
def test_bad_duration(text):
    with pytest.raises(VitrineError, match="duration"):
        tokens.parse_duration(text)


def test_token_is_stored_hashed_and_authenticates(store):
    store.add_user("alice", "alice-password")
    info, secret = store.create_token("alice", "laptop")
    with store.engine.connect() as conn:
        row = conn.execute(select(api_tokens)).one()
    assert row.token_hash == tokens.digest(secret) and secret not in (row.token_hash, row.prefix)
    assert row.prefix == info.prefix == tokens.token_prefix(secret)
    user = store.user_for_token(secret)
    assert user is not None and user.name == "alice" and user.role == "member"
    assert store.list_tokens("alice")[0].last_used_at is not None
    assert store.user_for_token(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.user_for_token("") is None


def test_expired_token_is_refused(store):
    store.add_user("alice", "alice-password")
    info, secret = store.create_token("alice", expires_in=0.2)
    assert info.expires_at is not None and store.user_for_token(secret) is not None
    time.sleep(0.3)
    assert store.user_for_token(secret) is None
    assert not store.list_tokens("alice")[0].active


def test_revoked_token_is_refused_at_once(store):
    store.add_user("alice", "alice-password")
    info, secret = store.create_token("alice")
    revoked = store.revoke_token(info.id)
    assert revoked.revoked_at is not None and not revoked.active
    assert store.user_for_token(secret) is None


def test_a_user_revokes_only_their_own_tokens(store):
    store.add_user("alice", "alice-password")
    bob = store.add_user("bob", "bob-password")
    info, secret = store.create_token("alice")
    with pytest.raises(NotFound):
        store.revoke_token(info.id, user_id=bob.id)
    assert store.user_for_token(secret) is not None


def test_disabled_user_tokens_and_sessions_stop_working(store):
    alice = store.add_user("alice", "alice-password")
    _, secret = store.create_token("alice")
    session_id, _ = store.create_session(alice)
    store.set_disabled("alice", True)
    assert store.user_for_token(secret) is None
    assert store.session_user(session_id) is None
    assert store.authenticate("alice", "alice-password") is None
    store.set_disabled("alice", False)
    assert store.user_for_token(secret) is not None  # tokens come back; sessions do not
    assert store.session_user(session_id) is None


def test_reset_revokes_all_tokens(store):
    store.add_user("alice", "alice-password")
    secrets_ = [store.create_token("alice", f"t{i}")[1] for i in range(3)]
    assert store.revoke_all_tokens("alice") == 3
    assert all(store.user_for_token(s) is None for s in secrets_)


def test_sessions(store):
    alice = store.add_user("alice", "alice-password")
    session_id, csrf = store.create_session(alice, lifetime=0.3)
    found = store.session_user(session_id)
    assert found is not None and found[0].name == "alice" and found[1] == csrf
    with store.engine.connect() as conn:
        stored = conn.execute(select(sessions.c.id_hash)).scalar_one()
    assert stored == tokens.digest(session_id) != session_id
    time.sleep(0.4)
    assert store.session_user(session_id) is None
    session_id, _ = store.create_session(alice)
    store.delete_session(session_id)
    assert store.session_user(session_id) is None


def test_authenticate(store):
    store.add_user("alice", "alice-password", role="admin")
    user = store.authenticate("alice", "alice-password")
    assert user is not None and user.role == "admin"
    assert store.authenticate("alice", "wrong-password") is None
    assert store.authenticate("nobody", "alice-password") is None


def test_user_names_and_duplicates(store):
    store.add_user("alice", "alice-password")
    with pytest.raises(VitrineError, match="already exists"):
        store.add_user("alice", "other-password")
    for bad in ("", "../x", "a b", "x" * 65, "-dash"):
        with pytest.raises(VitrineError, match="invalid user name"):
            store.add_user(bad, "alice-password")
    with pytest.raises(VitrineError, match="unknown role"):
        store.add_user("carol", "carol-password", role="root")
