"""The login page in headless Chromium: anonymous pages go to /login, signing in lands on the page
asked for, the pages' own API calls carry the session's CSRF token, signing out ends the session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from argon2 import profiles

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from ui_helpers import CHROMIUM_ARGS, ServerThread, chromium_path  # noqa: E402

from vitrine.auth import passwords  # noqa: E402
from vitrine.server.app import create_app  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.slow]

CHROMIUM = chromium_path()
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("Chromium is not installed: UI tests skipped", allow_module_level=True)
from playwright.sync_api import sync_playwright  # noqa: E402

CREATE_TOKEN = """async (base) => {
  const r = await fetch(base + "/api/v1/tokens", {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({name: "from the page"}),
  });
  return r.status;
}"""
WITHOUT_WRAPPER = """(base) => new Promise((resolve) => {
  const x = new XMLHttpRequest();  // not the page's fetch: no CSRF header
  x.open("POST", base + "/api/v1/tokens");
  x.setRequestHeader("Content-Type", "application/json");
  x.onload = () => resolve(x.status);
  x.send(JSON.stringify({name: "forged"}));
})"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    passwords.use_profile(profiles.CHEAPEST)
    root = tmp_path_factory.mktemp("login-ui")
    app = create_app(root, multi_user=True, database_url=f"sqlite:///{root / 'server.db'}")
    app.state.auth.store.add_user("alice", "alice-password")
    with ServerThread(app, health_path="/api/v1/health") as srv:
        yield srv
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


def test_sign_in_use_the_api_and_sign_out(server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(server.url + "/runs")
            assert page.url == server.url + "/login?next=%2Fruns"
            page.fill("#login-name", "alice")
            page.fill("#login-password", "wrong password")
            page.click("#login-form button[type=submit]")
            assert "wrong user name or password" in page.inner_text("#login-error")
            page.fill("#login-password", "alice-password")
            page.click("#login-form button[type=submit]")
            page.wait_for_url(server.url + "/runs")
            assert page.inner_text("#signed-in-as") == "alice"
            cookie = next(c for c in page.context.cookies() if c["name"] == "vitrine_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            assert page.evaluate("() => document.cookie").find("vitrine_session") == -1  # not readable by scripts

            assert page.evaluate(CREATE_TOKEN, "") == 201  # the page's fetch adds the CSRF token
            assert page.evaluate(WITHOUT_WRAPPER, "") == 403

            page.click("#signout button[type=submit]")
            page.wait_for_url(server.url + "/login")
            assert page.evaluate("async () => (await fetch('/api/v1/me')).status") == 401
            assert not errors, errors
        finally:
            browser.close()
