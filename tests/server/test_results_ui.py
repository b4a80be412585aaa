"""The project page's search results in headless Chromium: the score cut-off and sort controls, and
ticking results to export them as CSV or as a new classification dataset, at a wide and a narrow
window. Screenshots go to ``$VITRINE_SCREENSHOTS`` when set (else a pytest temporary folder)."""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_helpers import DEMO_IMAGES, ServerThread, build_demo_project, playwright_expect  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.slow]

expect = playwright_expect()

from vitrine.data.importers import load_dataset  # noqa: E402
from vitrine.server.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    import vitrine

    root = tmp_path_factory.mktemp("results-ui") / "root"
    project = build_demo_project(root)
    vitrine.open_project(project).index(model="offline-concepts")
    return root


@pytest.fixture(scope="module")
def server(demo_root):
    with ServerThread(create_app(demo_root), health_path="/api/v1/health") as srv:
        yield srv


def open_page(browser, width: int):
    context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


def wait_results(page):
    page.wait_for_selector("#results .result", state="visible")
    page.wait_for_function("() => document.querySelector('#results-section').getAttribute('aria-busy') === 'false'")


def captions(page) -> list[str]:
    return page.locator("#results .result .caption").all_text_contents()


@pytest.mark.parametrize("width", [1280, 800])
def test_tick_two_results_and_export_them(server, browser, demo_root, shots, width):
    context, page, errors = open_page(browser, width)
    page.goto(f"{server.url}/p/demo?q=a%20cat")
    wait_results(page)
    shown = captions(page)
    assert shown[0] == "animals/cat.jpg" and len(shown) == len(DEMO_IMAGES)
    expect(page.locator("#selection-bar")).to_be_visible()
    expect(page.locator("#export-csv")).to_be_disabled()

    boxes = page.locator("#results .result .result-pick input")
    boxes.nth(0).check()
    boxes.nth(2).check()
    expect(page.locator("#selection-count")).to_have_text("2 selected")
    expect(page.locator("#results .result.picked")).to_have_count(2)
    expect(page).to_have_url(re.compile(r"\?q=a(\+|%20)cat$"))  # ticking is not following the link
    page.screenshot(path=str(shots / f"results-picked-{width}.png"), full_page=True)

    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    assert download.suggested_filename == "demo_results.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert [r["path"] for r in rows] == [shown[0], shown[2]]
    scores = page.locator("#results .result .score").all_text_contents()
    assert [f"{float(r['score']):.3f}" for r in rows] == [scores[0], scores[2]]
    assert all(int(r["size_bytes"]) > 0 and r["folder"] for r in rows)
    expect(page.locator("#export-done")).to_have_text("Exported 2 images as CSV.")

    name = f"picked-{width}"
    page.fill("#dataset-name", name)
    page.click("#export-dataset-button")
    expect(page.locator("#export-done")).to_contain_text(f"Saved 2 images as dataset {name}")
    expect(page.locator("#export-done a")).to_have_attribute("href", re.compile(f"/datasets/{name}$"))
    dataset = load_dataset(demo_root, name)
    assert [s.path for s in dataset.samples] == [shown[0], shown[2]] and dataset.classes == ["a cat"]
    page.screenshot(path=str(shots / f"results-exported-{width}.png"), full_page=True)

    # the same name again: the error is shown, nothing is replaced
    page.click("#export-dataset-button")
    expect(page.locator("#error")).to_contain_text("already exists")

    # select all shown, then untick one
    page.check("#select-all")
    expect(page.locator("#selection-count")).to_have_text(f"{len(shown)} selected")
    boxes.nth(1).uncheck()
    expect(page.locator("#selection-count")).to_have_text(f"{len(shown) - 1} selected")
    assert page.evaluate("() => document.querySelector('#select-all').indeterminate")
    # nothing in the bar runs off a narrow window
    overflow = page.evaluate(
        "() => [...document.querySelectorAll('#selection-bar *, .search-options *')]"
        ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.id || e.tagName)"
    )
    assert overflow == [], overflow
    context.close()
    assert not errors, errors


def test_cutoff_and_sort_controls(server, browser, shots):
    context, page, errors = open_page(browser, 1280)
    page.goto(f"{server.url}/p/demo?q=a%20cat")
    wait_results(page)
    scores = [float(s) for s in page.locator("#results .result .score").all_text_contents()]
    everything = captions(page)
    page.locator("#results .result .result-pick input").nth(0).check()
    cutoff = f"{(scores[1] + scores[2]) / 2:.3f}"
    page.fill("#min-score", cutoff)
    page.press("#min-score", "Enter")
    page.locator("#min-score").blur()
    expect(page).to_have_url(re.compile(f"min_score={re.escape(cutoff)}"))
    wait_results(page)
    expect(page.locator("#results .result")).to_have_count(2)
    assert captions(page) == everything[:2]
    expect(page.locator("#selection-count")).to_have_text("0 selected")  # another query: chosen afresh

    page.select_option("#sort-select", "name")
    expect(page).to_have_url(re.compile("sort=name"))
    wait_results(page)
    assert captions(page) == sorted(everything[:2])
    page.screenshot(path=str(shots / "results-cutoff-sorted.png"), full_page=True)
    page.reload()  # the state is in the URL
    wait_results(page)
    expect(page.locator("#sort-select")).to_have_value("name")
    expect(page.locator("#min-score")).to_have_value(cutoff)
    assert captions(page) == sorted(everything[:2])

    page.fill("#min-score", "5")  # out of range: the field says so, no query runs
    page.locator("#min-score").dispatch_event("change")
    expect(page).to_have_url(re.compile(f"min_score={re.escape(cutoff)}"))
    context.close()
    assert not errors, errors
