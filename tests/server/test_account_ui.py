"""The account page: in headless Chromium on a multi-user server (sign in through the login page,
storage against the quota, create an API token that is shown once, use it, revoke it, share an
object), and its single-user answer."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import pytest
from argon2 import profiles
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_helpers import CHROMIUM_ARGS, ServerThread, chromium_path  # noqa: E402

from vitrine.auth import passwords  # noqa: E402
from vitrine.server.app import create_app  # noqa: E402

CHROMIUM = chromium_path()


def test_single_user_mode_says_there_are_no_accounts(tmp_path):
    app = create_app(tmp_path, multi_user=False)
    with TestClient(app) as client:
        page = client.get("/account")
    assert page.status_code == 200
    assert 'id="single-user-note"' in page.text and "single-user mode" in page.text
    assert 'id="token-form"' not in page.text


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from vitrine.auth.quota import service_for
    from vitrine.core.workspace import Workspace

    passwords.use_profile(profiles.CHEAPEST)
    root = tmp_path_factory.mktemp("account-ui")
    app = create_app(root, multi_user=True, database_url=f"sqlite:///{root / 'server.db'}")
    store = app.state.auth.store
    alice = store.add_user("alice", "alice-password")
    store.add_user("bob", "bob-password")
    run = Workspace(root).run_dir("alice-run")
    run.mkdir(parents=True)
    (run / "weights.bin").write_bytes(b"w" * 300_000)
    store.claim("run", "alice-run", alice.id)
    service_for(store.engine, root).set_limit("alice", 1 << 20)
    with ServerThread(app, health_path="/api/v1/health") as srv:
        srv.store = store
        yield srv
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


@pytest.mark.ui
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="Chromium is not installed")
def test_account_page_tokens_and_sharing(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(server.url + "/account")
            assert page.url == server.url + "/login?next=%2Faccount"
            page.fill("#login-name", "alice")
            page.fill("#login-password", "alice-password")
            page.click("#login-form button[type=submit]")
            page.wait_for_url(server.url + "/account")
            assert page.inner_text("#account-name") == "alice" and page.inner_text("#account-role") == "member"
            page.wait_for_function("() => !document.querySelector('#storage-text').textContent.includes('measuring')")
            assert "293 KiB used of 1 MiB (set for you)" in page.inner_text("#storage-text")
            assert page.get_attribute("#storage-bar", "hidden") is None

            # create a token: shown once, works as a Bearer token
            page.fill("#token-name", "laptop")
            page.select_option("#token-expires", "30d")
            page.click("#token-create")
            page.wait_for_selector("#new-token:not([hidden])")
            secret = page.inner_text("#new-token-secret").strip()
            assert len(secret) > 20
            page.wait_for_selector("#token-table tr.token-row")
            row = page.locator("#token-table tr.token-row", has_text="laptop")
            assert row.count() == 1 and secret not in page.inner_text("#token-table")
            me = httpx.get(server.url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
            assert me.status_code == 200 and me.json()["name"] == "alice"
            page.screenshot(path=str(Path(os.environ.get("ACCOUNT_SCREENSHOT", tmp_path / "account.png"))))
            page.click("#new-token-hide")
            assert page.inner_text("#new-token-secret") == "" and page.is_hidden("#new-token")
            page.reload()
            page.wait_for_selector("#token-table tr.token-row")
            assert secret not in page.content()  # never shown again

            # revoke it (a DELETE with the session's CSRF header): the token stops working
            page.click("#token-table tr.token-row:has-text('laptop') .token-revoke")
            page.wait_for_selector("#token-table tr.token-revoked:has-text('laptop')")
            me = httpx.get(server.url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
            assert me.status_code == 401

            # share the run alice owns with bob, then make it public
            assert page.input_value("#share-object") == "run/alice-run"
            page.fill("#share-user", "bob")
            page.click("#share-add button[type=submit]")
            page.wait_for_selector("#share-users .share-chip:has-text('bob')")
            access = server.store.access("run", "alice-run")
            assert access.shared_with == ("bob",) and access.visibility == "shared"
            assert page.input_value("#share-visibility") == "shared"
            page.fill("#share-user", "nobody-here")
            page.click("#share-add button[type=submit]")
            page.wait_for_selector("#error:not([hidden])")
            assert "nobody-here" in page.inner_text("#error")
            page.click("#share-users .share-remove[data-user='bob']")
            page.wait_for_selector("#share-users .share-chip", state="detached")
            assert server.store.access("run", "alice-run").shared_with == ()
            page.select_option("#share-visibility", "public")
            page.click("#visibility-form button[type=submit]")
            deadline = time.monotonic() + 10
            while server.store.access("run", "alice-run").visibility != "public" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.store.access("run", "alice-run").visibility == "public"
            assert page.input_value("#share-visibility") == "public"
            assert not errors, errors
        finally:
            browser.close()
