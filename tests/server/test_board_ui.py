"""The leaderboard page's board card in headless Chromium on a multi-user server: the owner hides
the test split and makes the board the group's; a member sees the split only as a download of
images by id, submits a CSV with mistakes (every problem listed with its line, nothing recorded),
then a right one (scored at once, listed, ranked on the board), at 1280 px and 800 px."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from argon2 import profiles

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_submissions_api import make_workspace  # noqa: E402
from ui_helpers import CHROMIUM_ARGS, ServerThread, chromium_path  # noqa: E402

from vitrine.auth import passwords  # noqa: E402
from vitrine.server.app import create_app  # noqa: E402

CHROMIUM = chromium_path()
pytestmark = [
    pytest.mark.ui,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="Chromium is not installed"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    passwords.use_profile(profiles.CHEAPEST)
    root = tmp_path_factory.mktemp("board-ui")
    make_workspace(root)
    app = create_app(root, multi_user=True, database_url=f"sqlite:///{root / 'server.db'}")
    store = app.state.auth.store
    alice = store.add_user("alice", "alice-password")
    store.add_user("bob", "bob-password")
    store.claim("dataset", "fm", alice.id)
    store.share("dataset", "fm", "bob")
    store.claim("run", "alice-trained", alice.id)
    with ServerThread(app, health_path="/api/v1/health") as srv:
        yield srv
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


def sign_in(page, server, who: str) -> None:
    page.goto(server.url + "/leaderboards/fm")
    page.fill("#login-name", who)
    page.fill("#login-password", f"{who}-password")
    page.click("#login-form button[type=submit]")
    page.wait_for_url(server.url + "/leaderboards/fm")
    page.wait_for_selector("#board-card:not([hidden])")


def test_owner_hides_the_test_split_and_a_member_submits(server, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("BOARD_SCREENSHOTS", tmp_path))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        errors: list[str] = []
        owner = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        owner.on("pageerror", lambda exc: errors.append(str(exc)))
        sign_in(owner, server, "alice")
        assert owner.is_visible("#board-settings") and "No split is hidden" in owner.inner_text("#board-state")
        owner.check("#hide-test")
        owner.check("#group-board")
        owner.click("#board-settings button[type=submit]")
        owner.wait_for_function("() => document.querySelector('#board-state').textContent.includes('hidden from')")

        member = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        member.on("pageerror", lambda exc: errors.append(str(exc)))
        sign_in(member, server, "bob")
        member.wait_for_selector("#submit-box:not([hidden])")
        assert member.is_hidden("#board-settings")  # only the owner changes the board
        assert member.inner_text("#submit-count") == "4 images"
        assert member.get_attribute("#submit-zip", "href").endswith(
            "/api/v1/datasets/fm/submission/images.zip?split=test"
        )
        ids = [im["id"] for im in member.request.get(server.url + "/api/v1/datasets/fm/submission").json()["images"]]

        bad = tmp_path / "bad.csv"
        bad.write_text(f"image,class\n{ids[0]},Boot\nimg-nope,Coat\n")
        member.set_input_files("#submit-file", str(bad))
        member.click("#submit-form button[type=submit]")
        member.wait_for_selector("#submit-problems:not([hidden])")
        problems = member.locator("#submit-problems li").all_inner_texts()
        assert problems == [
            "line 2: class 'Boot' is not one of the dataset's classes",
            "line 3: image 'img-nope' is not an image of the test split",
        ]
        assert "2 problems in the file" in member.inner_text("#submit-result")
        member.screenshot(path=str(shots / "board-errors-1280.png"), full_page=True)

        good = tmp_path / "coats.csv"
        good.write_text("image,class\n" + "".join(f"{i},Coat\n" for i in ids))
        member.set_input_files("#submit-file", str(good))
        member.fill("#submit-form input[name=label]", "all coats")
        member.click("#submit-form button[type=submit]")
        member.wait_for_function("() => document.querySelector('#submit-result').textContent.startsWith('Scored')")
        assert "accuracy 0.5000 on the test split" in member.inner_text("#submit-result")
        assert member.is_hidden("#submit-problems")
        member.wait_for_selector("#submissions-body tr")
        assert "all coats" in member.inner_text("#submissions-body")
        # ranked on the group's board at once (the board reloads), and after a reload
        member.wait_for_function("() => document.querySelector('#board-groups').textContent.includes('all coats')")
        member.reload()
        member.wait_for_selector("#board-groups table")
        assert "all coats" in member.inner_text("#board-groups")
        member.set_viewport_size({"width": 800, "height": 900})
        member.wait_for_timeout(300)
        overflow = member.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 800 px"
        member.screenshot(path=str(shots / "board-800.png"), full_page=True)
        browser.close()
    assert not errors, errors
