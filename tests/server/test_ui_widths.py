"""Every page of the UI at 800 px (the narrowest width it supports) and at 1,400 px, in Chromium.

One workspace holds what every page needs: an indexed collection (search results, an image page),
a classification dataset with runs (dashboard, runs table with a long run id, run and predict
pages), a detection run, and a multi-user server for the login and account pages. At each width
every page must fit: no horizontal scroll of the page itself (a wide table scrolls in its own box),
and no heading or table cell squeezed to one character per line. Screenshots go to
``$VITRINE_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_classification_api import (  # noqa: E402
    DATASET,
    RUN_ID,
    build_workspace,
    register_fake_classifier,
    unregister_fake_classifier,
    write_fake_run,
)
from ui_helpers import ServerThread, build_demo_project, chromium_path  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.slow]

if chromium_path() is None and not os.environ.get("CI"):
    pytest.skip("Chromium is not installed: UI tests skipped", allow_module_level=True)

from vitrine.server.app import create_app  # noqa: E402

WIDTHS = (800, 1400)
# a run id as long as the ones trainers make: the runs table must not grow past the page for it
LONG_RUN = "colours-efficientnet-lite0-finetune-2026-12-05T14-22-33"
DET_RUN = "scenes-maskrcnn-tiny"
TIMEOUT_MS = 30_000

# What "works" means, measured in the page: the page does not scroll sideways; every table wider
# than the page sits in a box that scrolls; no text is squeezed to a column a few characters wide.
LAYOUT_PROBLEMS = r"""() => {
  const vw = document.documentElement.clientWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > vw + 1)
    problems.push(`the page is ${document.documentElement.scrollWidth} px wide in a ${vw} px window`);
  for (const table of document.querySelectorAll("table")) {
    const r = table.getBoundingClientRect();
    const parent = table.parentElement.getBoundingClientRect();
    if (!r.width || (r.width <= vw && r.right <= parent.right + 1)) continue;
    let box = table.parentElement;
    let scrolls = false;
    while (box && box !== document.body && !scrolls) {
      const ox = getComputedStyle(box).overflowX;
      scrolls = (ox === "auto" || ox === "scroll") && box.getBoundingClientRect().width <= vw;
      box = box.parentElement;
    }
    if (!scrolls) problems.push(`table #${table.id || "?"} is ${Math.round(r.width)} px wide, wider than its box`);
  }
  for (const cell of document.querySelectorAll("th, td")) {  // one word broken over lines ("Trous/er")
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const word = node.textContent.trim();
      if (word.length < 4 || /[\s\-\/_.]/.test(word)) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      const lines = new Set([...range.getClientRects()].filter((x) => x.width).map((x) => Math.round(x.top)));
      if (lines.size > 1) problems.push(`the word "${word}" is broken over lines in a table cell`);
    }
  }
  const squeezed = document.querySelectorAll(
    "h1, h2, h3, p, li, a, span, code, strong, th, td, dt, dd, label, summary");
  for (const el of squeezed) {
    const text = (el.textContent || "").trim();
    const r = el.getBoundingClientRect();
    if (text.length < 6 || !r.width || !r.height || getComputedStyle(el).visibility === "hidden") continue;
    const line = parseFloat(getComputedStyle(el).lineHeight) || 20;
    const chars = r.width / (parseFloat(getComputedStyle(el).fontSize) * 0.6);
    if (chars < 4 && r.height > 3 * line)
      problems.push(`${el.tagName.toLowerCase()} "${text.slice(0, 30)}" squeezed to ${Math.round(r.width)} px`);
  }
  return problems;
}"""


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    import vitrine
    from vitrine.core.workspace import Workspace

    register_fake_classifier()
    root = tmp_path_factory.mktemp("widths") / "workspace"
    ws = build_workspace(root)
    from vitrine.data.dataset import ClassificationDataset

    write_fake_run(ws, LONG_RUN, ClassificationDataset.load(Workspace(root).dataset_dir(DATASET)))
    vitrine.open_project(build_demo_project(root)).index(model="offline-concepts")
    if Path("/usr/share/datasets/fashion-mnist").is_dir():
        from test_detection_training_api import TINY

        from vitrine.data.detection.scenes import generate_scenes
        from vitrine.train.detection.trainer import train_detector

        generate_scenes(
            root / "datasets" / "scenes",
            n_train=4,
            n_val=2,
            n_test=2,
            image_size=64,
            classes=["T-shirt/top", "Trouser"],
        )
        train_detector(
            root, str(root / "datasets" / "scenes"), dict(TINY, epochs=1), run_id=DET_RUN, dataset_name="scenes"
        )
    yield root
    unregister_fake_classifier()


@pytest.fixture(scope="module")
def server(root):
    with ServerThread(create_app(root), health_path="/api/v1/health") as srv:
        yield srv


@pytest.fixture(scope="module")
def accounts(tmp_path_factory):
    from argon2 import profiles

    from vitrine.auth import passwords

    passwords.use_profile(profiles.CHEAPEST)
    root = tmp_path_factory.mktemp("widths-accounts")
    app = create_app(root, multi_user=True, database_url=f"sqlite:///{root / 'server.db'}")
    app.state.auth.store.add_user("alice", "alice-password")
    with ServerThread(app, health_path="/api/v1/health") as srv:
        yield srv
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


# page name -> (path, a selector that is there once the page has drawn its data)
PAGES = {
    "collections": ("/", ".project-card"),
    "collection-search": ("/p/demo?q=a%20cat", "#results li"),
    "image": ("/p/demo/image/animals/cat.jpg", "#meta dt"),
    "collection-curate": ("/p/demo/curate?tab=outliers", "#curate-list li"),
    "map": ("/p/demo/map", "#map-plot[data-points]"),  # the first visit runs the map job (UMAP)
    "datasets": ("/datasets", ".dataset-card"),
    "dataset": (f"/datasets/{DATASET}", "#chart-classes .plot-container"),
    "dataset-map": (f"/datasets/{DATASET}/map", "#map-plot[data-points]"),  # embeds, then UMAP
    "runs": ("/runs", "#runs-table tbody tr"),
    "leaderboard": (f"/leaderboards/{DATASET}", "#board-groups[aria-busy='false']"),
    "run": (f"/runs/{RUN_ID}", "#run-id"),
    "predict": (f"/runs/{RUN_ID}/predict", "#predict-title"),
    "detect": ("/detect", "#detect-model:not([disabled])"),
    "models": ("/models", "#models[aria-busy='false']"),
    "detection-run": (f"/detection/runs/{DET_RUN}", "#metrics-table, table"),
    "error": ("/no/such/page", "#page-error"),
}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_works_at_this_width(browser, server, shots, name, width):
    path, ready = PAGES[name]
    if name == "detection-run" and not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist for the detection run")
    context = browser.new_context(viewport={"width": width, "height": 900})
    # the map's first visit compiles UMAP (numba) in the server: up to a minute on a busy machine
    context.set_default_timeout(TIMEOUT_MS * 4 if name in ("map", "dataset-map") else TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        response = page.goto(server.url + path)
        assert response is not None and response.status == (404 if name == "error" else 200), name
        page.wait_for_selector(ready, state="attached")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
        assert page.evaluate(LAYOUT_PROBLEMS) == [], name
    finally:
        context.close()
    assert not errors, f"JavaScript errors on {name}: {errors}"


@pytest.mark.parametrize("width", WIDTHS)
def test_login_and_account_pages_work_at_this_width(browser, accounts, shots, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(accounts.url + "/account")
        page.wait_for_selector("#login-form")
        page.screenshot(path=str(shots / f"login-{width}.png"), full_page=True)
        assert page.evaluate(LAYOUT_PROBLEMS) == []
        page.fill("#login-name", "alice")
        page.fill("#login-password", "alice-password")
        page.click("#login-form button[type=submit]")
        page.wait_for_url(accounts.url + "/account")
        page.wait_for_selector("#account-name")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(shots / f"account-{width}.png"), full_page=True)
        assert page.evaluate(LAYOUT_PROBLEMS) == []
    finally:
        context.close()
