"""End-to-end tests of the web UI in headless Chromium (Playwright, sync API).

A small real project (photos from scikit-image) is indexed with the offline model, served by
uvicorn in a thread, and driven through a browser: search by text, keyword, image upload, the
image page, errors, indexing from the page, and the whole UI behind a path-prefix proxy.

Screenshots go to ``$VITRINE_SCREENSHOTS`` when set (else a pytest temporary folder).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_helpers import (  # noqa: E402
    DEMO_BROKEN,
    DEMO_IMAGES,
    ServerThread,
    build_demo_project,
    chromium_path,
    make_prefix_proxy,
)

pytestmark = [pytest.mark.ui, pytest.mark.slow]

IN_CI = bool(os.environ.get("CI"))
CHROMIUM = chromium_path()
if CHROMIUM is None and not IN_CI:
    pytest.skip(
        "Chromium is not installed (e.g. `apt-get install chromium`): UI tests skipped", allow_module_level=True
    )
try:
    from playwright.sync_api import expect
except ImportError:
    if IN_CI:
        raise
    pytest.skip("playwright (Python) is not installed: UI tests skipped", allow_module_level=True)

from vitrine.server.app import create_app  # noqa: E402

PREFIX = "/proxy/8000"
TIMEOUT_MS = 20_000
ACCENTED = "animals/cheval été.jpg"


def _default_model_reason() -> str:
    from vitrine.models import registry

    name, reason = registry.default_embedding_model(probe_hub=False)
    if name != "offline-concepts":  # CLIP weights are on this machine: say why in the same shape
        reason = "clip-vit-b-32 is not available (its weights could not be read here); offline-concepts works offline"
    return reason


WORDY_REASON = _default_model_reason()


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    import vitrine

    root = tmp_path_factory.mktemp("ui") / "root"
    project = build_demo_project(root)
    report = vitrine.open_project(project).index(model="offline-concepts")
    assert report.embedded == len(DEMO_IMAGES), report.to_dict()
    assert [f["path"] for f in report.failed] == [DEMO_BROKEN]
    # a second project whose model was chosen for a long reason (the real one when CLIP is missing)
    wordy = root / "wordy" / "images"
    wordy.mkdir(parents=True)
    for rel in list(DEMO_IMAGES)[:2]:
        (wordy / Path(rel).name).write_bytes((project / "images" / rel).read_bytes())
    vitrine.open_project(root / "wordy").index(model="offline-concepts", reason=WORDY_REASON)
    return root


@pytest.fixture(scope="module")
def server(demo_root):
    with ServerThread(create_app(demo_root), health_path="/api/v1/health") as srv:
        yield srv


@pytest.fixture
def page(browser):
    """A fresh page; any uncaught JavaScript error fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    js_errors: list[str] = []
    pg.on("pageerror", lambda exc: js_errors.append(str(exc)))
    yield pg
    context.close()
    assert not js_errors, f"JavaScript errors in the page: {js_errors}"


def wait_results(page, selector: str = "#results .result"):
    page.wait_for_selector(selector, state="visible")
    page.wait_for_function("() => document.querySelector('#results-section').getAttribute('aria-busy') === 'false'")


def thumbs_loaded(page, selector: str = "#results .result img") -> bool:
    return page.eval_on_selector_all(
        selector, "imgs => imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0)"
    )


def captions(page, selector: str = "#results .result .caption") -> list[str]:
    return page.locator(selector).all_text_contents()


def page_url(base: str, name: str = "demo", query: str = "") -> str:
    return f"{base}/p/{quote(name, safe='')}{query}"


# ------------------------------------------------------------------------------------ tests
def test_home_lists_the_project(server, page, shots):
    page.goto(server.url + "/")
    card = page.locator('.project-card[data-project="demo"]')
    expect(card).to_be_visible()
    expect(card.locator(".project-files")).to_have_text(str(len(DEMO_IMAGES) + 1))
    expect(card.locator(".project-model")).to_have_text("offline-concepts")
    card.locator("a").click()
    expect(page).to_have_url(re.compile(r"/p/demo$"))
    expect(page).to_have_title(re.compile("demo"))
    page.goto(server.url + "/")
    page.screenshot(path=str(shots / "home.png"), full_page=True)


def test_project_status_and_text_search(server, page, shots):
    page.goto(page_url(server.url))
    status = page.locator("#index-status")
    expect(status).to_contain_text("offline-concepts")
    expect(status).to_contain_text("chosen by the user")  # why this model
    expect(page.locator("#status-failed")).to_have_text("1 failed")
    page.locator("#failures summary").click()
    expect(page.locator("#failure-list")).to_contain_text(DEMO_BROKEN)
    expect(page.locator("#failure-list")).to_contain_text("corrupt")
    # with no query the page browses the catalogue
    wait_results(page)

    page.fill("#search-input", "a cat")
    page.press("#search-input", "Enter")
    expect(page).to_have_url(re.compile(r"\?q=a(\+|%20)cat$"))
    expect(page.locator("#results-query")).to_have_text("a cat")
    wait_results(page)
    assert captions(page)[0] == "animals/cat.jpg"
    expect(page.locator("#results .result .score").first).to_have_text(re.compile(r"^0\.\d{3}$"))
    page.wait_for_function("() => [...document.querySelectorAll('#results .result img')].every(i => i.complete)")
    assert thumbs_loaded(page)
    page.screenshot(path=str(shots / "project-search.png"), full_page=True)

    # the state is in the URL: reloading it runs the same search, and the back button works
    page.goto(page_url(server.url, query="?q=a%20cat&folder=objects"))
    wait_results(page)
    expect(page.locator("#folder-select")).to_have_value("objects")
    assert all(c.startswith("objects/") for c in captions(page))
    page.go_back()
    wait_results(page)
    assert captions(page)[0] == "animals/cat.jpg"


def test_keyword_chip(server, page):
    page.goto(page_url(server.url))
    chips = page.locator("#chips .chip")
    expect(chips).to_have_count(3)
    expect(chips).to_have_text(["Chat", "Café", "Fusée"])
    page.locator("#chips .chip", has_text="Chat").click()
    expect(page.locator("#results-keyword")).to_have_text("Chat")
    expect(page.locator("#results-description")).to_have_text("a cat")
    wait_results(page)
    assert captions(page)[0] == "animals/cat.jpg"
    expect(page).to_have_url(re.compile(r"\?keyword=Chat$"))
    expect(page.locator("#chips .chip.active")).to_have_text("Chat")
    # an accented keyword goes through the URL and back
    page.locator("#chips .chip", has_text="Fusée").click()
    expect(page.locator("#results-description")).to_have_text("a rocket launch")
    expect(page).to_have_url(re.compile(r"\?keyword=Fus%C3%A9e$"))


def test_image_page_and_more_like_this(server, page, shots):
    page.goto(page_url(server.url, query="?q=a%20cat"))
    wait_results(page)
    page.locator("#results .result a").first.click()
    expect(page).to_have_url(re.compile(r"/p/demo/image/animals/cat\.jpg$"))
    expect(page).to_have_title(re.compile("cat.jpg"))
    expect(page.locator("#meta-path")).to_have_text("animals/cat.jpg")
    expect(page.locator("#meta-folder")).to_have_text("animals")
    expect(page.locator("#meta-dims")).to_have_text("451 × 300 px")
    expect(page.locator("#meta-sha256")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    expect(page.locator("#meta-duplicates")).to_have_text("none")
    page.wait_for_function("() => document.querySelector('#main-image').naturalWidth > 0")
    similar = page.locator("#more-like-this .result")
    expect(similar.first).to_be_visible()
    paths = similar.locator(".caption").all_text_contents()
    assert paths and "animals/cat.jpg" not in paths
    page.wait_for_function("() => [...document.querySelectorAll('#more-like-this .result img')].every(i => i.complete)")
    assert thumbs_loaded(page, "#more-like-this .result img")
    page.screenshot(path=str(shots / "image-page.png"), full_page=True)

    target = paths[0]
    similar.first.locator("a").click()
    expect(page.locator("#meta-path")).to_have_text(target)
    assert page.url.endswith("/image/" + quote(target))

    # a path with a space and an accent
    page.goto(f"{server.url}/p/demo/image/{quote(ACCENTED)}")
    expect(page.locator("#meta-path")).to_have_text(ACCENTED)
    page.wait_for_function("() => document.querySelector('#main-image').naturalWidth > 0")
    expect(page.locator("#more-like-this .result").first).to_be_visible()
    expect(page.locator("#error")).to_be_hidden()


def test_search_by_uploaded_image(server, page, demo_root, shots):
    page.goto(page_url(server.url))
    page.set_input_files("#upload-input", str(demo_root / "demo" / "images" / "objects" / "rocket.jpg"))
    expect(page.locator("#results-title")).to_have_text("Similar to the uploaded image")
    expect(page.locator("#results-description")).to_have_text("rocket.jpg")
    expect(page.locator("#results-meta")).to_contain_text("offline-concepts")
    wait_results(page)
    assert captions(page)[0] == "objects/rocket.jpg"  # the same photo comes first
    expect(page.locator("#query-preview")).to_be_visible()
    page.screenshot(path=str(shots / "project-upload.png"), full_page=True)


def test_api_errors_are_shown(server, page, shots):
    page.goto(page_url(server.url, query="?keyword=Nope"))
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error.locator(".error-message")).to_contain_text("unknown keyword 'Nope'")
    expect(error.locator(".error-hint")).to_contain_text("Chat")  # the hint lists the known keywords
    page.screenshot(path=str(shots / "error.png"), full_page=True)
    error.locator(".error-close").click()
    expect(error).to_be_hidden()

    # an image that is not in the collection: a 404 error page, not a page with a broken picture
    resp = page.goto(f"{server.url}/p/demo/image/{quote('nowhere/missing.jpg')}")
    assert resp is not None and resp.status == 404
    expect(page.locator("#page-error")).to_contain_text("no image 'nowhere/missing.jpg'")
    expect(page.locator("#main-image")).to_have_count(0)

    # an unknown URL of the UI: an HTML page with a 404, not raw JSON
    resp = page.goto(f"{server.url}/no/such/page")
    assert resp is not None and resp.status == 404 and resp.headers["content-type"].startswith("text/html")
    expect(page.locator("#page-error")).to_contain_text("no page at /no/such/page")
    expect(page.locator("#error-home")).to_be_visible()

    resp = page.goto(page_url(server.url, "nope"))
    assert resp is not None and resp.status == 404
    expect(page.locator("#page-error")).to_contain_text("no project 'nope'")


def test_a_refused_upload_leaves_no_broken_preview(server, page, shots):
    page.goto(page_url(server.url))
    wait_results(page)
    page.set_input_files("#upload-input", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image\n"})
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error .error-message")).not_to_be_empty()
    expect(page.locator("#query-preview")).to_be_hidden()
    expect(page.locator("#results-title")).to_have_text("No search: the upload was refused")
    expect(page.locator("#results .result")).to_have_count(0)
    page.screenshot(path=str(shots / "project-upload-refused.png"), full_page=True)


def test_a_slow_search_says_it_is_loading_the_model(server, page, shots):
    """The first search after a start loads the model for seconds: the previous grid goes at once
    and the page says what it is waiting for (the search answer is held back here to see it)."""
    page.goto(page_url(server.url))
    wait_results(page)  # the "All images" grid
    held = []
    page.route(re.compile(r"/api/v1/projects/demo/search\?"), lambda route: held.append(route))
    page.fill("#search-input", "a cat")
    page.click("#search-form button[type=submit]")
    loading = page.locator("#results-loading")
    expect(loading).to_be_visible()
    expect(page.locator("#results .result")).to_have_count(0)  # not the stale "All images" grid
    expect(loading).to_contain_text("loading the model offline-concepts")
    page.screenshot(path=str(shots / "project-search-loading.png"), full_page=True)
    assert len(held) == 1
    held[0].continue_()
    wait_results(page)
    expect(loading).to_be_hidden()
    assert captions(page)[0] == "animals/cat.jpg"


def test_a_query_in_another_language_names_the_multilingual_model(server, page, shots):
    page.goto(page_url(server.url, query="?q=" + quote("une fusée")))
    wait_results(page)
    note = page.locator("#language-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("French")
    expect(note).to_contain_text("offline-concepts reads only English")
    expect(note).to_contain_text("clip-multilingual")
    page.screenshot(path=str(shots / "project-french-query.png"), full_page=True)
    page.goto(page_url(server.url, query="?q=" + quote("a rocket launch")))
    wait_results(page)
    expect(note).to_be_hidden()


def test_the_header_keeps_a_long_model_reason_short(server, page, demo_root):
    """The reason a model was chosen can carry a long hub error: one short line, details on demand."""
    page.goto(page_url(server.url, "wordy"))
    reason = page.locator("#status-reason")
    expect(reason).to_contain_text("clip-vit-b-32 is not available")
    full = WORDY_REASON
    assert "(" in full and "(" not in reason.inner_text() and len(reason.inner_text()) < len(full)
    details = page.locator("#index-status .reason-details")
    expect(details.locator("p")).to_be_hidden()
    details.locator("summary").click()
    expect(details.locator("p")).to_have_text(full)


def test_behind_a_path_prefix_proxy(demo_root, page, shots):
    app = create_app(demo_root, root_path=PREFIX)
    with ServerThread(app, health_path="/api/v1/health") as backend:
        proxy_app, escaped = make_prefix_proxy(backend.url, PREFIX)
        with ServerThread(proxy_app, health_path=PREFIX + "/api/v1/health") as proxy:
            base = proxy.url + PREFIX
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))

            page.goto(base + "/")
            card = page.locator('.project-card[data-project="demo"] a')
            expect(card).to_have_attribute("href", PREFIX + "/p/demo")
            card.click()
            expect(page).to_have_url(base + "/p/demo")
            # style.css was served and applied (through the prefix); the URL changes before the new
            # page's stylesheet is applied, so wait for it (up to the default timeout)
            page.wait_for_function("getComputedStyle(document.querySelector('.topbar')).position === 'sticky'")
            assert page.eval_on_selector(".topbar", "e => getComputedStyle(e).position") == "sticky"
            wait_results(page)

            page.fill("#search-input", "a cat")
            page.click("#search-form button[type=submit]")
            expect(page).to_have_url(base + "/p/demo?q=a+cat")
            wait_results(page)
            assert captions(page)[0] == "animals/cat.jpg"
            page.wait_for_function(
                "() => [...document.querySelectorAll('#results .result img')].every(i => i.complete)"
            )
            assert thumbs_loaded(page)

            page.locator("#chips .chip", has_text="Chat").click()
            expect(page.locator("#results-description")).to_have_text("a cat")

            page.goto(base + "/p/demo?q=a%20horse")
            wait_results(page)
            page.locator("#results .result a", has_text=ACCENTED).click()
            expect(page.locator("#meta-path")).to_have_text(ACCENTED)
            page.wait_for_function("() => document.querySelector('#main-image').naturalWidth > 0")
            expect(page.locator("#more-like-this .result").first).to_be_visible()
            page.locator("#more-like-this .result a").first.click()
            expect(page.locator("#meta-path")).not_to_have_text(ACCENTED)
            expect(page.locator("#error")).to_be_hidden()
            page.screenshot(path=str(shots / "proxy-image-page.png"), full_page=True)

            outside = [u for u in requests if not u.startswith(base + "/")]
            assert not outside, f"requests escaped the prefix: {outside}"
            assert not escaped, f"the proxy saw requests outside {PREFIX}: {escaped}"
            assert any("/api/v1/projects/demo/thumbs/" in u for u in requests)


def test_index_now_button(server, page, shots):
    page.goto(page_url(server.url))
    expect(page.locator("#index-status")).to_contain_text("offline-concepts")
    expect(page.locator("#index-model option[value='offline-concepts']")).to_have_count(1)
    page.click("#index-button")
    job = page.locator("#job")
    expect(job).to_be_visible()
    expect(job).to_have_attribute("data-state", "done", timeout=60_000)
    expect(page.locator("#job-state")).to_have_text("done")
    expect(page.locator("#job-text")).to_contain_text(f"{len(DEMO_IMAGES)} unchanged")
    # the status was refreshed in place: the reason is now that of a re-index
    expect(page.locator("#status-reason")).to_contain_text("the model this project was indexed with")
    expect(page.locator("#index-button")).to_be_enabled()
    expect(page.locator("#error")).to_be_hidden()
    page.screenshot(path=str(shots / "project-indexed.png"), full_page=True)


def test_static_files_stay_inside_their_folder(server):
    import httpx

    assert httpx.get(server.url + "/static/style.css").headers["content-type"].startswith("text/css")
    for path in ("/static/%2e%2e/routes.py", "/static/..%2Froutes.py", "/static/", "/static/nope.js"):
        assert httpx.get(server.url + path).status_code == 404, path
