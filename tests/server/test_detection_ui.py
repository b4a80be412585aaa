"""End-to-end tests of the detection page (/detect) in headless Chromium (Playwright, sync API).

The real offline detector on chelsea (a cat), uploaded and picked from a collection: the overlay is
drawn on a canvas over the image (pixels read back in the page), the threshold slider and the
class toggles redraw without a request, the PNG and JSON downloads hold what is shown; a fake
segmenter (registered in this process) shows its masks; the page works behind a path-prefix proxy.

Screenshots go to ``$VITRINE_SCREENSHOTS`` when set (else a pytest temporary folder).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_detection_api import FAKE_SEG, register_fake_segmenter, scan_demo, unregister_fake_segmenter  # noqa: E402
from ui_helpers import ServerThread, chromium_path, demo_photo, make_prefix_proxy  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.slow]

IN_CI = bool(os.environ.get("CI"))
CHROMIUM = chromium_path()
if CHROMIUM is None and not IN_CI:
    pytest.skip("Chromium is not installed: UI tests skipped", allow_module_level=True)
try:
    from playwright.sync_api import expect
except ImportError:
    if IN_CI:
        raise
    pytest.skip("playwright (Python) is not installed: UI tests skipped", allow_module_level=True)

from PIL import Image  # noqa: E402

from vitrine.predict.overlay import class_color  # noqa: E402
from vitrine.server.app import create_app  # noqa: E402

SSD = "ssd-mobilenet-v2-coco"
PREFIX = "/proxy/8000"
TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    register_fake_segmenter()
    root = tmp_path_factory.mktemp("detect-ui")
    scan_demo(root)
    yield root
    unregister_fake_segmenter()


@pytest.fixture(scope="module")
def server(root):
    with ServerThread(create_app(root), health_path="/api/v1/health") as srv:
        yield srv


@pytest.fixture(scope="module")
def chelsea_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("upload") / "chelsea.jpg"
    demo_photo("chelsea").save(path, quality=92)
    return path


class Tab:
    """A fresh page that records its requests; JavaScript errors fail the test."""

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.js_errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda exc: self.js_errors.append(str(exc)))
        self.page.on("request", lambda r: self.requests.append(r.url))


@pytest.fixture
def tab(browser):
    t = Tab(browser)
    yield t
    t.context.close()
    assert not t.js_errors, f"JavaScript errors in the page: {t.js_errors}"


# ------------------------------------------------------------------------------------ helpers
def open_page(page, url: str, model: str = SSD) -> None:
    page.goto(url)
    expect(page.locator("#detect-model")).to_be_enabled()
    expect(page.locator("#detect-model")).to_have_value(model)


def wait_result(page, model: str) -> None:
    expect(page.locator("#detect-result")).to_be_visible()
    expect(page.locator("#detect-meta")).to_contain_text(model)
    page.wait_for_function(
        "() => { const i = document.querySelector('#detect-image'); return i.complete && i.naturalWidth > 0; }"
    )


def drawn(page) -> int:
    return int(page.locator("#detect-canvas").get_attribute("data-drawn"))


def set_threshold(page, value: float) -> None:
    page.eval_on_selector(
        "#detect-threshold", "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input')); }", value
    )


def pixel(page, x: int, y: int) -> list[int]:
    """RGBA of the overlay canvas at (x, y) in image pixels."""
    return page.eval_on_selector(
        "#detect-canvas", "(c, [x, y]) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data)", [x, y]
    )


def table_boxes(page) -> list[tuple[str, list[float]]]:
    rows = page.locator("#detect-table tbody tr").all()
    out = []
    for row in rows:
        cells = row.locator("td, th").all_text_contents()
        if len(cells) == 5:
            out.append((cells[1].strip(), [float(v) for v in cells[3].split(",")]))
    return out


def close(a, b, tol: int = 40) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b, strict=False))


# ------------------------------------------------------------------------------------ tests
def test_upload_draws_the_cat_and_filters_without_requests(server, tab, chelsea_file, shots, tmp_path):
    page = tab.page
    open_page(page, server.url + "/detect")
    expect(page.locator("#nav-detect")).to_have_attribute("aria-current", "true")
    page.set_input_files("#detect-upload", str(chelsea_file))
    wait_result(page, SSD)
    expect(page.locator("#detect-threshold-value")).to_have_text("0.50")
    assert drawn(page) == 1
    ((label, box),) = table_boxes(page)
    assert label == "cat"
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    assert x2 - x1 > 300 and y2 - y1 > 200
    # the box's left edge is drawn in the colour of "cat" (the same as the server's overlays); inside it is clear
    edge = pixel(page, x1, (y1 + y2) // 2)
    assert edge[3] > 200 and close(edge[:3], class_color("cat"), 2), edge
    assert pixel(page, (x1 + x2) // 2, (y1 + y2) // 2)[3] == 0
    page.screenshot(path=str(shots / "detect-cat.png"), full_page=True)

    posts = sum(1 for u in tab.requests if u.endswith("/api/v1/detect"))
    set_threshold(page, 0.1)
    expect(page.locator("#detect-threshold-value")).to_have_text("0.10")
    low = drawn(page)
    assert low > 1 and len(table_boxes(page)) == low
    beds = int(page.locator('#detect-classes input[data-label="bed"] ~ .class-count').text_content())
    assert beds >= 1
    page.locator('#detect-classes input[data-label="bed"]').uncheck()
    assert drawn(page) == low - beds and all(lab != "bed" for lab, _ in table_boxes(page))
    expect(page.locator("#detect-summary")).to_contain_text("hidden by the class toggles")
    set_threshold(page, 0.99)
    assert drawn(page) == 0
    set_threshold(page, 0.1)
    assert drawn(page) == low - beds  # the toggle is kept
    assert sum(1 for u in tab.requests if u.endswith("/api/v1/detect")) == posts  # no new request
    page.screenshot(path=str(shots / "detect-filtered.png"), full_page=True)

    with page.expect_download() as dl:
        page.click("#detect-download-png")
    png = tmp_path / dl.value.suggested_filename
    dl.value.save_as(png)
    assert png.name == "chelsea_detections.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (451, 300)
        assert close(im.convert("RGB").getpixel((x1, (y1 + y2) // 2)), class_color("cat"), 2)
    with page.expect_download() as dl:
        page.click("#detect-download-json")
    saved = tmp_path / dl.value.suggested_filename
    dl.value.save_as(saved)
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert data["model"] == SSD and data["threshold"] == pytest.approx(0.1) and data["hidden_classes"] == ["bed"]
    assert len(data["detections"]) == low - beds and "cat" in [d["label"] for d in data["detections"]]


def test_segmentation_masks_are_drawn(server, tab, chelsea_file, shots):
    page = tab.page
    open_page(page, server.url + f"/detect?model={FAKE_SEG}", model=FAKE_SEG)
    expect(page.locator("#detect-model-task")).to_have_text("boxes + masks")
    page.set_input_files("#detect-upload", str(chelsea_file))
    wait_result(page, FAKE_SEG)
    assert drawn(page) == 1  # the disc; the square scores 0.3
    centre = pixel(page, 225, 150)  # inside the disc: translucent mask colour
    assert 80 <= centre[3] <= 150 and close(centre[:3], class_color("disc"), 3), centre
    assert pixel(page, 440, 290)[3] == 0
    set_threshold(page, 0.2)
    assert drawn(page) == 2
    assert pixel(page, 30, 30)[3] > 0  # the square's mask
    page.screenshot(path=str(shots / "detect-masks.png"), full_page=True)


def test_collection_image(server, tab, shots):
    page = tab.page
    open_page(page, server.url + "/detect")
    expect(page.locator("#detect-project")).to_be_enabled()
    page.select_option("#detect-project", "demo")
    expect(page.locator("#detect-image-select")).to_be_enabled()
    page.select_option("#detect-image-select", "animals/cat.jpg")
    wait_result(page, SSD)
    expect(page.locator("#detect-caption")).to_contain_text("cat.jpg")
    assert "cat" in [lab for lab, _ in table_boxes(page)]


def test_errors_are_shown(server, tab, tmp_path):
    page = tab.page
    open_page(page, server.url + "/detect")
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"not an image at all " * 10)
    page.set_input_files("#detect-upload", str(bad))
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error .error-message")).to_contain_text("notes.jpg")


def test_behind_a_path_prefix(root, tab, chelsea_file):
    backend = ServerThread(create_app(root, root_path=PREFIX), health_path="/api/v1/health")
    proxy_app, escaped = make_prefix_proxy(backend.url, PREFIX)
    with backend, ServerThread(proxy_app, health_path=PREFIX + "/api/v1/health") as proxy:
        page = tab.page
        open_page(page, proxy.url + PREFIX + "/detect")
        page.set_input_files("#detect-upload", str(chelsea_file))
        wait_result(page, SSD)
        assert drawn(page) == 1
        outside = [u for u in tab.requests if not (u.startswith(proxy.url + PREFIX + "/") or u.startswith("blob:"))]
        assert not outside and not escaped, (outside, escaped)


def test_models_that_cannot_run_here_say_why(root, tab, chelsea_file, shots, opencv_without_tf_importer):
    """OpenCV 5 (no TensorFlow importer): the SSD is offered disabled, a folded note says why, the
    page picks a model that runs; an explicit request for the SSD shows the server's 503 reason."""
    with ServerThread(create_app(root), health_path="/api/v1/health") as srv:
        page = tab.page
        page.goto(srv.url + "/detect")
        expect(page.locator("#detect-model")).to_have_value(FAKE_SEG)
        note = page.locator("#detect-unavailable")
        expect(note).to_be_visible()
        expect(note.locator("summary")).to_contain_text("not available on this server")
        note.locator("summary").click()
        expect(note.locator("li").filter(has_text=SSD)).to_contain_text("readNetFromTensorflow")
        assert page.locator(f"#detect-model option[value='{SSD}']").is_disabled()
        page.set_viewport_size({"width": 800, "height": 900})
        page.screenshot(path=str(shots / "detect-model-unavailable-800.png"), full_page=True)
