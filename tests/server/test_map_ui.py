"""The map page in headless Chromium: it starts the map job, shows its progress and draws the
points (Plotly scattergl); hovering a point shows its thumbnail; a lasso drawn with the mouse
selects points; the selection opens as a result grid and exports as CSV and as a new dataset; a
text query is placed on the map; colours change; a project that is not indexed says so.

Selections: one is drawn with the mouse (Plotly computes a lasso's points from the data, not from
the WebGL pixels, so it holds in a headless browser); the export test emits ``plotly_selected``
on the graph with chosen points (exactly the event Plotly sends after a lasso), so it can pick
two given images whatever the layout UMAP found. Screenshots at 1280 and 800 px go to
``$VITRINE_SCREENSHOTS`` when set."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_helpers import DEMO_IMAGES, ServerThread, build_demo_project, playwright_expect  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.slow]

expect = playwright_expect()

from vitrine.collection.layout import init_project  # noqa: E402
from vitrine.data.importers import load_dataset  # noqa: E402
from vitrine.server.app import create_app  # noqa: E402

N = len(DEMO_IMAGES)  # the broken file has no vector: it is not on the map


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    import vitrine

    root = tmp_path_factory.mktemp("map-ui") / "root"
    project = build_demo_project(root)
    vitrine.open_project(project).index(model="offline-concepts")
    init_project(root / "empty", {"Chat": "a cat"})
    return root


@pytest.fixture(scope="module")
def server(demo_root):
    with ServerThread(create_app(demo_root), health_path="/api/v1/health") as srv:
        yield srv


def open_map(browser, server, width: int, project: str = "demo"):
    context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/p/{project}/map")
    return context, page, errors


def wait_drawn(page) -> None:
    # the first map job compiles UMAP (numba) in the server's process: up to a minute on a busy machine
    page.wait_for_function("window.vitrineMap && window.vitrineMap.drawMs !== undefined", timeout=120_000)


def point_pixel(page, path: str) -> tuple[float, float]:
    """Where a point is drawn, in page pixels (from Plotly's axes)."""
    return tuple(
        page.evaluate(
            """(path) => {
                const gd = document.querySelector('#map-plot');
                const row = gd.data.flatMap((t) => t.customdata.map((r, i) => [r, t.x[i], t.y[i]]))
                  .find(([r]) => r >= 0 && window.__points.path[r] === path);
                const fl = gd._fullLayout, box = gd.getBoundingClientRect();
                return [box.left + fl._size.l + fl.xaxis.l2p(row[1]), box.top + fl._size.t + fl.yaxis.l2p(row[2])];
            }""",
            path,
        )
    )


def expose_points(page) -> None:
    page.evaluate(
        """async () => {
            const r = await fetch(document.body.dataset.base + '/api/v1/projects/demo/map/points');
            window.__points = await r.json();
        }"""
    )


@pytest.mark.parametrize("width", [1280, 800])
def test_the_map_draws_hovers_and_selects_with_the_lasso(server, browser, shots, width):
    context, page, errors = open_map(browser, server, width)
    wait_drawn(page)
    assert page.evaluate("window.vitrineMap.points") == N
    expect(page.locator("#map-meta")).to_contain_text(f"{N} images placed by UMAP on offline-concepts")
    expect(page.locator("#map-job")).to_be_hidden()
    legend = " ".join(page.locator("#map-plot .legendtext").all_text_contents())
    assert "animals (2)" in legend and "objects (3)" in legend and "people (1)" in legend

    expose_points(page)
    x, y = point_pixel(page, "animals/cat.jpg")
    page.mouse.move(x, y)
    expect(page.locator("#map-hover")).to_be_visible()
    expect(page.locator("#map-hover-path")).to_have_text("animals/cat.jpg")
    assert "/thumbs/animals/cat.jpg" in page.locator("#map-hover-img").get_attribute("src")
    page.screenshot(path=str(shots / f"map-hover-{width}.png"))

    # a lasso drawn with the mouse around the whole plot area selects every point
    box = page.locator("#map-plot .nsewdrag").first.bounding_box()
    corners = [(0.02, 0.02), (0.98, 0.02), (0.98, 0.98), (0.02, 0.98), (0.02, 0.03)]
    page.mouse.move(box["x"] + box["width"] * corners[0][0], box["y"] + box["height"] * corners[0][1])
    page.mouse.down()
    for fx, fy in corners[1:]:
        page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=8)
    page.mouse.up()
    expect(page.locator("#map-selection")).to_be_visible()
    expect(page.locator("#map-selection-count")).to_have_text(f"{N} images selected on the map.")
    assert sorted(page.locator("#map-results .result .caption").all_text_contents()) == sorted(DEMO_IMAGES)
    page.screenshot(path=str(shots / f"map-lasso-{width}.png"), full_page=True)
    page.click("#map-selection-clear")
    expect(page.locator("#map-selection")).to_be_hidden()
    assert errors == []
    context.close()


def test_a_selection_exports_as_csv_and_as_a_dataset(server, browser, demo_root, shots):
    context, page, errors = open_map(browser, server, 1280)
    wait_drawn(page)
    expose_points(page)
    picked = ["animals/cat.jpg", "objects/coffee.jpg"]
    page.evaluate(
        """(picked) => {
            const gd = document.querySelector('#map-plot');
            const points = [];
            gd.data.forEach((t, curve) => t.customdata.forEach((row, i) => {
                if (picked.includes(window.__points.path[row])) {
                    const p = {curveNumber: curve, pointNumber: i, pointIndex: i, customdata: row};
                    points.push({...p, x: t.x[i], y: t.y[i]});
                }
            }));
            gd.emit('plotly_selected', {points});
        }""",
        picked,
    )
    expect(page.locator("#map-selection-count")).to_have_text("2 images selected on the map.")
    assert sorted(page.locator("#map-results .result .caption").all_text_contents()) == sorted(picked)

    with page.expect_download() as info:
        page.click("#map-export-csv")
    download = info.value
    assert download.suggested_filename == "demo_map_selection.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert sorted(r["path"] for r in rows) == sorted(picked)
    expect(page.locator("#map-export-done")).to_have_text("Exported 2 images as CSV.")

    page.fill("#map-dataset-name", "from-the-map")
    page.fill("#map-dataset-label", "picked")
    page.click("#map-export-dataset-button")
    expect(page.locator("#map-export-done")).to_contain_text("Saved 2 images as dataset from-the-map")
    ds = load_dataset(demo_root, "from-the-map")
    assert sorted(s.path for s in ds.samples) == sorted(picked) and ds.classes == ["picked"]

    # colours and a text query
    page.select_option("#map-color", "cluster")
    page.wait_for_function("document.querySelector('#map-plot').dataset.colour === 'cluster'")
    assert "cluster 1" in " ".join(page.locator("#map-plot .legendtext").all_text_contents())
    page.fill("#map-query", "a cat")
    page.click("#map-query-button")
    expect(page.locator("#map-query-info")).to_contain_text("best animals/cat.jpg")
    assert "query: a cat" in " ".join(page.locator("#map-plot .legendtext").all_text_contents())
    page.screenshot(path=str(shots / "map-query-clusters.png"), full_page=True)
    assert errors == []
    context.close()


def test_a_project_not_indexed_says_so(server, browser, shots):
    context, page, errors = open_map(browser, server, 800, project="empty")
    expect(page.locator("#map-empty")).to_be_visible()
    expect(page.locator("#map-empty-message")).to_contain_text("has not been indexed yet")
    expect(page.locator("#map-card")).to_be_hidden()
    page.screenshot(path=str(shots / "map-not-indexed.png"))
    assert errors == []
    context.close()


def test_the_project_page_links_to_the_map(server, browser):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/p/demo")
    page.click("#map-link")
    page.wait_for_url("**/p/demo/map")
    context.close()
