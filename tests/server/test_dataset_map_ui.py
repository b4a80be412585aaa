"""The map page of a classification dataset in headless Chromium: the job runs, the points are
drawn coloured by label, a lasso drawn with the mouse selects them, the selection exports as a CSV
built in the page (path, label, split), colouring by split, and the dataset page's link.
Screenshots at 1280 and 800 px go to ``$VITRINE_SCREENSHOTS`` when set."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curate_helpers import CLASSES, make_pets  # noqa: E402
from ui_helpers import ServerThread, playwright_expect  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.slow]

expect = playwright_expect()

from vitrine.server.app import create_app  # noqa: E402

N = 6 * len(CLASSES)  # make_pets: 2 train and 4 test images per class


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset-map-ui")
    make_pets(root)
    with ServerThread(create_app(root), health_path="/api/v1/health") as srv:
        yield srv


def lasso_everything(page) -> None:
    box = page.locator("#map-plot .nsewdrag").first.bounding_box()
    corners = [(0.02, 0.02), (0.98, 0.02), (0.98, 0.98), (0.02, 0.98), (0.02, 0.03)]
    page.mouse.move(box["x"] + box["width"] * corners[0][0], box["y"] + box["height"] * corners[0][1])
    page.mouse.down()
    for fx, fy in corners[1:]:
        page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=8)
    page.mouse.up()


def legend(page) -> str:
    return " ".join(page.locator("#map-plot .legendtext").all_text_contents())


def test_the_dataset_map_by_label_lasso_csv_and_split(server, browser, shots):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/datasets/pets")
    page.click("#dataset-map-link")
    assert page.url.endswith("/datasets/pets/map")
    # the first job embeds the images and compiles UMAP (numba) in the server's process
    page.wait_for_function("window.vitrineMap && window.vitrineMap.drawMs !== undefined", timeout=120_000)
    assert page.evaluate("window.vitrineMap.points") == N
    expect(page.locator("#map-meta")).to_contain_text(f"{N} images placed by UMAP on offline-concepts")
    assert page.locator("#map-color").input_value() == "label"
    assert all(f"{c} (6)" in legend(page) for c in CLASSES)
    expect(page.locator("#map-query-form")).to_have_count(0)  # no text query on a dataset's map
    expect(page.locator("#map-export-dataset")).to_have_count(0)
    page.screenshot(path=str(shots / "dataset-map-label-1280.png"), full_page=True)

    lasso_everything(page)
    expect(page.locator("#map-selection-count")).to_have_text(f"{N} images selected on the map.")
    captions = page.locator("#map-results .result .caption").all_text_contents()
    assert len(captions) == N and "cat/train-0.png" in captions
    with page.expect_download() as info:
        page.click("#map-export-csv")
    assert info.value.suggested_filename == "pets_map_selection.csv"
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    assert len(rows) == N and {"path": "cat/test-3.png", "label": "cat", "split": "test"} in rows
    expect(page.locator("#map-export-done")).to_have_text(f"Exported {N} images as CSV.")
    page.screenshot(path=str(shots / "dataset-map-selection-1280.png"), full_page=True)

    page.select_option("#map-color", "split")
    page.wait_for_function("document.querySelector('#map-plot').dataset.colour === 'split'")
    assert "test (12)" in legend(page) and "train (6)" in legend(page)
    page.set_viewport_size({"width": 800, "height": 900})
    page.wait_for_timeout(400)  # Plotly resizes on the window's resize event
    page.screenshot(path=str(shots / "dataset-map-split-800.png"), full_page=True)
    assert errors == []
    context.close()
