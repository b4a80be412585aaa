"""Server mode on the web: anonymous requests, the login page, session cookies, CSRF, rate limits,
API tokens, logout. Single-user mode needs none of it."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from vitrine.auth.ratelimit import LoginLimiter
from vitrine.server.app import create_app as _create_app

_made: list = []


def create_app(*args, **kwargs):
    """An app that is closed (its job workers stopped) after the test."""
    application = _create_app(*args, **kwargs)
    _made.append(application)
    return application


@pytest.fixture(autouse=True)
def close_apps():
    yield
    while _made:
        _made.pop().state.vitrine.close()


@pytest.fixture
def app(tmp_path, monkeypatch, db_url):
    """A multi-user app on SQLite and on PostgreSQL (``db_url`` is parametrized over both)."""
    monkeypatch.delenv("VITRINE_COOKIE_SECURE", raising=False)
    root = tmp_path / "ws"
    root.mkdir()
    application = create_app(root, multi_user=True, database_url=db_url)
    store = application.state.auth.store
    store.add_user("alice", "alice-password")
    store.add_user("root", "root-password", role="admin")
    return application


def client(app, **kwargs) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, follow_redirects=False, **kwargs)


def login_form(c: TestClient, path: str = "/login") -> dict:
    r = c.get(path)
    assert r.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    return {"csrf_token": token}


def sign_in(c: TestClient, name: str = "alice", password: str = "alice-password", nxt: str = "/"):
    form = login_form(c)
    return c.post("/login", data={**form, "username": name, "password": password, "next": nxt})


def csrf_of(c: TestClient) -> str:
    me = c.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["via"] == "session"
    return me.json()["csrf_token"]


def test_anonymous_api_is_401_and_pages_redirect_to_login(app):
    c = client(app)
    r = c.get("/api/v1/projects")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    assert c.post("/api/v1/jobs/x/cancel").status_code == 401
    assert c.get("/openapi.json").status_code == 401
    r = c.get("/datasets?x=1", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fdatasets%3Fx%3D1"
    assert c.get("/api/v1/health").json() == {"status": "ok"}
    assert c.get("/login").status_code == 200
    assert c.get("/static/style.css").status_code == 200


def test_bad_tokens_are_401(app):
    for header in ("Bearer vit_abcdefgh_" + "x" * 43, "Bearer nonsense", "Basic YWxpY2U6cHc=", "Bearer "):
        r = client(app, headers={"authorization": header}).get("/api/v1/me")
        assert r.status_code == 401, header


def test_root_path_prefix_is_kept(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    application = create_app(
        root, root_path="/proxy/8000", multi_user=True, database_url=f"sqlite:///{tmp_path / 's.db'}"
    )
    application.state.auth.store.add_user("alice", "alice-password")
    c = client(application)
    r = c.get("/proxy/8000/runs", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/proxy/8000/login?next=%2Fruns"
    page = c.get("/proxy/8000/login?next=/runs")
    assert 'action="/proxy/8000/login"' in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = c.post(
        "/proxy/8000/login",
        data={"csrf_token": token, "username": "alice", "password": "alice-password", "next": "/runs"},
    )
    assert r.status_code == 303 and r.headers["location"] == "/proxy/8000/runs"
    assert "Path=/proxy/8000" in r.headers["set-cookie"]
    assert c.get("/proxy/8000/api/v1/me").json()["name"] == "alice"


def test_login_sets_a_safe_session_cookie_and_logout_ends_it(app):
    c = client(app)
    r = sign_in(c, nxt="/datasets")
    assert r.status_code == 303 and r.headers["location"] == "/datasets"
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith("vitrine_session=")][0]
    flags = {f.strip().lower() for f in cookie.split(";")}
    assert "httponly" in flags and "samesite=lax" in flags and "secure" not in flags  # plain http here
    assert c.get("/api/v1/me").json()["name"] == "alice"
    page = c.get("/datasets")
    assert page.status_code == 200 and 'id="signed-in-as"' in page.text and "alice" in page.text
    csrf = csrf_of(c)
    assert f'name="csrf-token" content="{csrf}"' in page.text

    old = c.cookies.get("vitrine_session")
    r = c.post("/logout", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client(app, cookies={"vitrine_session": old}).get("/api/v1/me").status_code == 401


def test_cookie_is_secure_over_https_or_when_configured(app, monkeypatch):
    r = sign_in(client(app, base_url="https://testserver"))
    assert "secure" in r.headers["set-cookie"].lower()
    monkeypatch.setenv("VITRINE_COOKIE_SECURE", "1")
    root = app.state.auth.root
    forced = create_app(root, multi_user=True, database_url=app.state.vitrine.db.url.render_as_string(False))
    page = client(forced).get("/login")  # plain http behind a TLS proxy: Secure all the same
    assert page.status_code == 200 and "; secure" in page.headers["set-cookie"].lower()


@pytest.mark.parametrize("nxt", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"])
def test_login_never_redirects_elsewhere(app, nxt):
    r = sign_in(client(app), nxt=nxt)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_login_form_needs_its_csrf_token(app):
    c = client(app)
    login_form(c)
    r = c.post("/login", data={"csrf_token": "forged", "username": "alice", "password": "alice-password"})
    assert r.status_code == 403 and "vitrine_session" not in r.headers.get("set-cookie", "")


def test_cookie_requests_need_the_csrf_token_bearer_requests_do_not(app):
    c = client(app)
    sign_in(c)
    csrf = csrf_of(c)
    r = c.post("/api/v1/tokens", json={"name": "no csrf"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"]
    r = c.post("/api/v1/tokens", json={"name": "wrong"}, headers={"x-csrf-token": "x" + csrf})
    assert r.status_code == 403
    r = c.post("/api/v1/tokens", json={"name": "good"}, headers={"x-csrf-token": csrf})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert c.delete(f"/api/v1/tokens/{r.json()['id']}").status_code == 403  # DELETE too
    # the same call with the token: no cookie, no CSRF needed
    bearer = client(app, headers={"authorization": f"Bearer {token}"})
    me = bearer.get("/api/v1/me").json()
    storage, owned = me.pop("storage"), me.pop("owned")  # usage and quota: tests/auth/test_quota.py
    assert me == {"id": me["id"], "name": "alice", "role": "member", "via": "token", "multi_user": True}
    assert storage["used_bytes"] == 0 and owned == []
    r = bearer.post("/api/v1/tokens", json={"name": "second", "expires": "1d"})
    assert r.status_code == 201 and r.json()["expires_at"] is not None


def test_tokens_are_shown_once_listed_and_revoked(app):
    token = app.state.auth.store.create_token("alice", "seed")[1]
    c = client(app, headers={"authorization": f"Bearer {token}"})
    made = c.post("/api/v1/tokens", json={"name": "ci"}).json()
    listed = c.get("/api/v1/tokens").json()
    assert {t["name"] for t in listed} == {"seed", "ci"}
    assert all("token" not in t and made["token"] not in str(t) for t in listed)
    r = c.delete(f"/api/v1/tokens/{made['id']}")
    assert r.status_code == 200 and r.json()["active"] is False
    assert client(app, headers={"authorization": f"Bearer {made['token']}"}).get("/api/v1/me").status_code == 401
    other = app.state.auth.store.create_token("root", "admin's")[0]
    assert c.delete(f"/api/v1/tokens/{other.id}").status_code == 404  # not alice's
    assert c.get("/api/v1/users").status_code == 403


def test_login_is_rate_limited(app):
    c = client(app)
    for _ in range(5):
        r = sign_in(c, password="wrong-password")
        assert r.status_code == 401 and "wrong user name or password" in r.text
    r = sign_in(c)  # the right password, too late
    assert r.status_code == 429
    assert 0 < int(r.headers["retry-after"]) <= 300
    assert "vitrine_session" not in r.headers.get("set-cookie", "")
    assert client(app).get("/api/v1/me").status_code == 401


def test_disabled_account_cannot_sign_in(app):
    app.state.auth.store.set_disabled("alice", True)
    assert sign_in(client(app)).status_code == 401


def test_single_user_mode_needs_no_login(tmp_path, monkeypatch):
    monkeypatch.delenv("VITRINE_MULTI_USER", raising=False)
    root = tmp_path / "ws"
    root.mkdir()
    c = client(create_app(root, database_url=f"sqlite:///{tmp_path / 's.db'}"))
    assert c.get("/api/v1/me").json() == {
        "id": None,
        "name": "local",
        "role": "admin",
        "via": "local",
        "multi_user": False,
    }
    assert c.get("/api/v1/projects").status_code == 200
    assert c.get("/login").status_code == 303
    assert c.get("/api/v1/tokens").json()["error"]["code"] == "single_user"


def test_multi_user_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINE_MULTI_USER", "1")
    root = tmp_path / "ws"
    root.mkdir()
    c = client(create_app(root, database_url=f"sqlite:///{tmp_path / 's.db'}"))
    assert c.get("/api/v1/projects").status_code == 401


def test_database_trouble_is_a_503_not_a_500(app, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def down(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    token = app.state.auth.store.create_token("alice")[1]
    monkeypatch.setattr(app.state.auth.store, "access", down)
    r = client(app, headers={"authorization": f"Bearer {token}"}).get("/api/v1/datasets/anything")
    assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
    monkeypatch.setattr(app.state.auth.store, "user_for_token", down)
    r = client(app, headers={"authorization": f"Bearer {token}"}).get("/api/v1/me")
    assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
    assert r.headers["retry-after"] == "5"


def test_nobody_can_lock_a_known_user_out(app):
    attacker = client(app, client=("10.0.0.66", 40000))
    for _ in range(5):
        assert sign_in(attacker, password="guess").status_code == 401
    assert sign_in(attacker).status_code == 429  # that address, that name: blocked
    owner = client(app, client=("10.0.0.5", 40000))
    r = sign_in(owner)  # the owner, from their own address, signs in at once
    assert r.status_code == 303 and "vitrine_session" in r.headers.get("set-cookie", "")


def test_a_guesser_spread_over_addresses_is_slowed_not_blocking():
    clock = [1000.0]
    limiter = LoginLimiter(max_failures=5, window_seconds=300, clock=lambda: clock[0])
    for i in range(4):
        limiter.failure("alice", f"10.0.1.{i}")
    assert limiter.slowdown("alice") == 0
    for i in range(4, 40):
        limiter.failure("alice", f"10.0.1.{i}")
    assert limiter.retry_after("alice", "10.0.2.1") == 0  # never a lock for the name
    assert 0 < limiter.slowdown("alice") <= 5.0
    clock[0] += 301
    assert limiter.slowdown("alice") == 0


def _spray(c: TestClient, n: int) -> list[int]:
    """Wrong passwords at n names, each claiming another X-Forwarded-For address."""
    return [
        c.post(
            "/login",
            data={**login_form(c), "username": f"user{i}", "password": "x"},
            headers={"x-forwarded-for": f"203.0.113.{i}"},
        ).status_code
        for i in range(n)
    ]


def test_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path, monkeypatch, db_url):
    monkeypatch.delenv("VITRINE_TRUSTED_PROXIES", raising=False)
    application = create_app(tmp_path, multi_user=True, database_url=db_url)
    application.state.auth.limiter = LoginLimiter(max_failures=5, max_per_address=3)
    local = client(application, client=("127.0.0.1", 40000))
    assert _spray(local, 4) == [401, 401, 401, 429]  # one address, whatever the header says

    monkeypatch.setenv("VITRINE_TRUSTED_PROXIES", "127.0.0.1, 10.9.0.0/16")
    (tmp_path / "b").mkdir()
    behind = create_app(tmp_path / "b", multi_user=True, database_url=f"sqlite:///{tmp_path / 'b.db'}")
    behind.state.auth.limiter = LoginLimiter(max_failures=5, max_per_address=3)
    proxy = client(behind, client=("127.0.0.1", 40000))
    assert _spray(proxy, 4) == [401, 401, 401, 401]  # the proxy's clients, one each
    other = client(behind, client=("192.0.2.7", 40000))  # not a proxy: its header is not believed
    assert _spray(other, 4) == [401, 401, 401, 429]


def test_serve_leaves_proxy_headers_to_the_app(tmp_path, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from vitrine.cli import app as cli

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: seen.update(kw))
    result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--single-user"])
    assert result.exit_code == 0, result.output
    assert seen["proxy_headers"] is False  # uvicorn's default trusts X-Forwarded-For from localhost


def test_token_lifetime_is_bounded(app):
    c = client(app, headers={"authorization": f"Bearer {app.state.auth.store.create_token('alice', 't')[1]}"})
    for expires in ("99999999999999999999w", "11y", "4000d"):
        r = c.post("/api/v1/tokens", json={"name": "long", "expires": expires})
        assert r.status_code == 400, (expires, r.text)
        assert r.json()["error"]["hint"]
    assert c.post("/api/v1/tokens", json={"name": "ok", "expires": "52w"}).status_code == 201
