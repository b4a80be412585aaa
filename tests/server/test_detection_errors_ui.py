"""The errors view of a detection run's page, in headless Chromium: the grid of scored images, most
errors first, with TP / FP / FN drawn over each; the IoU slider re-querying and changing the
counts; the score threshold and the class filter; an image opened large with its boxes; and a run
evaluated before predictions were kept saying how to get them. Screenshots at desktop width and
at 800 px.

The run is a COCO-results submission made by hand (tests/server/test_detection_errors_api.py), so
every count is known."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_detection_errors_api import RESULTS, make_dataset  # noqa: E402
from ui_helpers import ServerThread, playwright_expect  # noqa: E402

pytestmark = [pytest.mark.ui]

expect = playwright_expect()

from vitrine.core.workspace import Workspace  # noqa: E402
from vitrine.evaluate.submission import score_submission  # noqa: E402
from vitrine.runs import Run  # noqa: E402
from vitrine.server.app import create_app  # noqa: E402

TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    ws = Workspace(tmp_path_factory.mktemp("deterr-ui") / "workspace")
    make_dataset(ws)
    score_submission(ws, "boxes", json.dumps(RESULTS).encode(), "hand-made.json", run_id="hand-made")
    old = Run.create(ws, "detection", "boxes", "fasterrcnn", {}, run_id="old-run")
    old.update(state="done", metrics={"test": {"bbox_map50": 0.4, "n_images": 4}})
    (old.dir / "detection_metrics.json").write_text(
        json.dumps(json.loads((ws.run_dir("hand-made") / "detection_metrics.json").read_text()))
    )
    return ws.root


@pytest.fixture(scope="module")
def server(root):
    with ServerThread(create_app(root), health_path="/api/v1/health") as srv:
        yield srv


def new_page(browser, width: int):
    context = browser.new_context(viewport={"width": width, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


@pytest.fixture
def page(browser):
    context, pg, errors = new_page(browser, 1280)
    yield pg
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def set_range(page, selector: str, value: float) -> None:
    page.eval_on_selector(
        selector,
        "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', { bubbles: true })); }",
        value,
    )


def test_errors_grid_sliders_class_filter_and_large_view(server, page, shots):
    page.goto(f"{server.url}/detection/runs/hand-made")
    counts = page.locator("#det-errors-counts")
    expect(counts).to_contain_text("2 TP")
    expect(counts).to_contain_text("3 FP (1 duplicate, 1 class confusion, 1 background)")
    expect(counts).to_contain_text("2 FN")
    expect(counts).to_contain_text("4 of 4 images with errors")
    cards = page.locator("#det-errors-grid .err-card")
    expect(cards).to_have_count(4)
    assert [cards.nth(i).get_attribute("data-errors") for i in range(4)] == ["2", "1", "1", "1"]
    first = cards.nth(0)
    assert first.get_attribute("data-image") == "3"
    # image 3: a TP (green), a class confusion (red, its kind in the label), the missed box (dashed orange)
    expect(first.locator("rect.box-tp")).to_have_count(1)
    expect(first.locator("rect.box-fp")).to_have_count(1)
    expect(first.locator("rect.box-fn")).to_have_count(1)
    expect(first.locator(".box-label.label-fp")).to_have_text("FP class")
    assert first.locator("rect.box-fn").evaluate("el => getComputedStyle(el).strokeDasharray") not in ("none", "")
    # the boxes line up with the image: the SVG covers it exactly
    img_box = first.locator("img").bounding_box()
    svg_box = first.locator("svg").bounding_box()
    assert abs(img_box["width"] - svg_box["width"]) < 1 and abs(img_box["height"] - svg_box["height"]) < 1
    assert first.locator("img").evaluate("el => el.complete && el.naturalWidth") == 64
    page.screenshot(path=str(shots / "detection-errors.png"), full_page=True)

    # a stricter IoU re-queries: image 4's first box becomes a localisation error
    set_range(page, "#det-errors-iou", 0.75)
    expect(page.locator("#det-errors-iou-value")).to_have_text("0.75")
    expect(counts).to_contain_text("1 poor localisation")
    expect(counts).not_to_contain_text("duplicate")
    # a lower score threshold brings in the 0.1 box on nothing
    set_range(page, "#det-errors-score", 0.05)
    expect(counts).to_contain_text("4 FP")
    set_range(page, "#det-errors-iou", 0.5)
    set_range(page, "#det-errors-score", 0.5)
    expect(counts).to_contain_text("3 FP (1 duplicate")
    # one class
    page.select_option("#det-errors-class", "box")
    expect(cards).to_have_count(3)
    expect(page.locator("#det-errors-grid .box-label.label-tp")).to_have_count(0)
    page.select_option("#det-errors-class", "")
    expect(cards).to_have_count(4)

    # the large view: the image with labels that say it all, and the list of its boxes
    cards.nth(0).locator("button").click()
    dialog = page.locator("#det-error-view")
    expect(dialog).to_be_visible()
    expect(page.locator("#det-error-view-title")).to_contain_text("3.png")
    rows = page.locator("#det-error-view-boxes tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("FP · class confusion")
    expect(rows.nth(0)).to_contain_text("box [36, 16, 20, 24]")
    expect(rows.nth(1)).to_contain_text("itself [36, 16, 20, 24]")
    expect(dialog.locator(".box-label.label-fp")).to_contain_text("FP · class confusion · ball 0.80")
    page.screenshot(path=str(shots / "detection-errors-image.png"))
    page.locator("#det-error-view-close").click()
    expect(dialog).to_be_hidden()


def test_errors_view_at_800_px(server, browser, shots):
    context, page, errors = new_page(browser, 800)
    try:
        page.goto(f"{server.url}/detection/runs/hand-made")
        expect(page.locator("#det-errors-grid .err-card")).to_have_count(4)
        expect(page.locator("#det-errors-counts")).to_contain_text("2 TP")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 800 px"
        page.locator("#det-errors").screenshot(path=str(shots / "detection-errors-800.png"))
        page.locator("#det-errors-grid .err-card button").first.click()
        expect(page.locator("#det-error-view")).to_be_visible()
        page.screenshot(path=str(shots / "detection-errors-image-800.png"))
    finally:
        context.close()
    assert not errors, errors


def test_a_run_from_before_says_how_to_get_its_errors(server, page):
    page.goto(f"{server.url}/detection/runs/old-run")
    note = page.locator("#det-errors-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("evaluated before detection runs kept their predictions")
    expect(note).to_contain_text("vitrine eval old-run")
    expect(page.locator("#det-errors-grid .err-card")).to_have_count(0)
    expect(page.locator("#error")).to_be_hidden()
