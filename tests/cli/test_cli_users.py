"""``vitrine users``: add, list, disable, enable, reset-token, passwd (in-process, Typer's runner)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vitrine.auth.service import AuthStore
from vitrine.cli import app
from vitrine.store.db import open_database


@pytest.fixture
def env(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'users.db'}"
    monkeypatch.setenv("VITRINE_DATABASE_URL", url)
    return url


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["users", *args], input=stdin)


def store_of(url: str) -> AuthStore:
    return AuthStore(open_database(url, shared=False))


def test_add_list_disable_enable(env):
    r = run("add", "alice", "--admin", "--password-stdin", stdin="alice-password\n")
    assert r.exit_code == 0, r.output
    assert "added admin alice" in r.output
    r = run("add", "bob", "--password-stdin", stdin="bob-password\n")
    assert r.exit_code == 0, r.output
    r = run("list", "--json")
    assert r.exit_code == 0, r.output
    rows = {u["name"]: u for u in json.loads(r.stdout)}
    assert rows["alice"]["role"] == "admin" and rows["bob"]["role"] == "member"
    assert not rows["bob"]["disabled"]

    store = store_of(env)
    try:
        assert store.authenticate("bob", "bob-password") is not None
        assert run("disable", "bob").exit_code == 0
        assert store.authenticate("bob", "bob-password") is None
        assert run("enable", "bob").exit_code == 0
        assert store.authenticate("bob", "bob-password") is not None
    finally:
        store.engine.dispose()
    r = run("list")
    assert r.exit_code == 0 and "alice" in r.output and "admin" in r.output


def test_reset_token_prints_a_working_token_once(env):
    assert run("add", "carol", "--password-stdin", stdin="carol-password\n").exit_code == 0
    first = run("reset-token", "carol", "--expires", "30d")
    assert first.exit_code == 0, first.output
    token = first.stdout.strip().splitlines()[-1]
    assert token.startswith("vit_")
    second = run("reset-token", "carol")
    new = second.stdout.strip().splitlines()[-1]
    store = store_of(env)
    try:
        assert store.user_for_token(token) is None  # reset: the old one is revoked
        user = store.user_for_token(new)
        assert user is not None and user.name == "carol"
        tokens = store.list_tokens("carol")
        assert tokens[0].expires_at is not None and tokens[1].expires_at is None
        assert all(new not in (t.prefix, t.name) for t in tokens)
    finally:
        store.engine.dispose()


def test_errors_are_messages_not_tracebacks(env):
    r = run("add", "dave", "--password-stdin", stdin="short\n")
    assert r.exit_code == 2 and "too short" in r.output and "Traceback" not in r.output
    r = run("add", "bad name", "--password-stdin", stdin="long-enough-password\n")
    assert r.exit_code == 2 and "invalid user name" in r.output
    r = run("disable", "nobody")
    assert r.exit_code == 2 and "no user 'nobody'" in r.output
    r = run("reset-token", "nobody", "--expires", "soon")
    assert r.exit_code == 2 and "duration" in r.output
    assert run("add", "erin", "--password-stdin", stdin="erin-password\n").exit_code == 0
    r = run("add", "erin", "--password-stdin", stdin="erin-password\n")
    assert r.exit_code == 2 and "already exists" in r.output


def test_passwd(env):
    assert run("add", "frank", "--password-stdin", stdin="frank-password\n").exit_code == 0
    assert run("passwd", "frank", "--password-stdin", stdin="new-frank-password\n").exit_code == 0
    store = store_of(env)
    try:
        assert store.authenticate("frank", "frank-password") is None
        assert store.authenticate("frank", "new-frank-password") is not None
    finally:
        store.engine.dispose()
