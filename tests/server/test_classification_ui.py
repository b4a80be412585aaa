"""End-to-end tests of the classification pages in headless Chromium (Playwright, sync API).

The workspace of test_classification_api.py (tiny colour images, a dataset with a leaked
duplicate and an unreadable file, a run of a fake mean-colour classifier) is served by uvicorn in
a thread: the dataset dashboard (Plotly charts, warnings, counts, samples, the Train form with its
progress bar and Cancel), the runs table, and the run page (model card, prediction from a dataset
image and from an upload, confusion matrix), directly and behind a path-prefix proxy. Every page
must draw its charts with no JavaScript error and no request leaving the server (Plotly is served
by vitrine).

Screenshots go to ``$VITRINE_SCREENSHOTS`` when set (else a pytest temporary folder).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_classification_api import (  # noqa: E402
    ACCENTED,
    CLASSES,
    DATASET,
    RUN_ID,
    RUNNING_ID,
    build_workspace,
    colour_image,
    register_fake_classifier,
    unregister_fake_classifier,
)
from ui_helpers import ServerThread, chromium_path, make_prefix_proxy  # noqa: E402

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

from vitrine.core.errors import Cancelled  # noqa: E402
from vitrine.runs import Run  # noqa: E402
from vitrine.server.app import create_app  # noqa: E402

PREFIX = "/proxy/8000"
TIMEOUT_MS = 20_000
CHARTS = ["#chart-classes", "#chart-width", "#chart-height", "#chart-aspect", "#chart-file-size"]


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    register_fake_classifier()
    root = tmp_path_factory.mktemp("classify-ui") / "workspace"
    build_workspace(root)
    yield root
    unregister_fake_classifier()


@pytest.fixture(scope="module")
def server(root):
    with ServerThread(create_app(root), health_path="/api/v1/health") as srv:
        yield srv


class Page:
    """A fresh page that records its requests; JavaScript errors fail the test."""

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.js_errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda exc: self.js_errors.append(str(exc)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def outside(self, origin: str) -> list[str]:
        return [u for u in self.requests if not (u.startswith(origin + "/") or u.startswith("blob:"))]


@pytest.fixture
def tab(browser):
    t = Page(browser)
    yield t
    t.context.close()
    assert not t.js_errors, f"JavaScript errors in the page: {t.js_errors}"


def wait_charts(page, selectors=CHARTS):
    for sel in selectors:
        page.wait_for_selector(f"{sel} .plot-container svg.main-svg", state="attached")


def wait_images(page, selector: str):
    page.wait_for_function(
        "sel => { const imgs = [...document.querySelectorAll(sel)];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=selector,
    )


def chart_text(page, selector: str) -> str:
    return " ".join(page.locator(f"{selector} svg.main-svg text").all_text_contents())


# ------------------------------------------------------------------------------------ tests
def test_nav_links_lead_to_the_datasets(server, tab, shots):
    page = tab.page
    page.goto(server.url + "/")
    nav = page.locator(".mainnav a")
    expect(nav).to_have_text(["Collections", "Datasets", "Runs", "Detect", "Models"])
    expect(page.locator("#nav-collections")).to_have_class(re.compile("active"))
    page.click("#nav-datasets")
    expect(page).to_have_url(server.url + "/datasets")
    expect(page.locator("#nav-datasets")).to_have_attribute("aria-current", "true")
    card = page.locator(f'.dataset-card[data-dataset="{DATASET}"]')
    expect(card.locator(".dataset-samples")).to_have_text("26")
    expect(card.locator(".dataset-classes")).to_have_text("3")
    page.screenshot(path=str(shots / "datasets.png"), full_page=True)
    card.locator("a").click()
    expect(page).to_have_url(f"{server.url}/datasets/{DATASET}")
    expect(page.locator("#dataset-name")).to_have_text(DATASET)


def test_dataset_dashboard(server, tab, shots):
    page = tab.page
    page.goto(f"{server.url}/datasets/{DATASET}")
    wait_charts(page)
    expect(page.locator("#charts")).to_have_attribute("aria-busy", "false")
    # images per class, stacked by split: one trace per split, the class names on the axis
    assert page.locator("#chart-classes g.trace.bars").count() == 3
    text = chart_text(page, "#chart-classes")
    for word in (*CLASSES, "train", "val", "test"):
        assert word in text, (word, text)
    expect(page.locator("#dataset-facts")).to_contain_text("26 images")
    expect(page.locator("#dataset-facts")).to_contain_text("3 classes")
    # duplicates leaking across splits, and the unreadable file
    warn = page.locator("#stats-warnings")
    expect(warn).to_be_visible()
    expect(warn).to_contain_text("Leakage")
    expect(page.locator("#leakage-summary")).to_have_text("1 group of identical images across splits")
    page.click("#leakage-summary")
    expect(page.locator("#leakage-list")).to_contain_text(ACCENTED)
    expect(page.locator("#unreadable-summary")).to_have_text("1 unreadable image")
    # counts table: a row per class and the totals
    rows = page.locator("#counts-table tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator('#counts-table tbody tr[data-class="red"] td.total')).to_have_text("9")
    expect(page.locator("#counts-table tfoot td.total")).to_have_text("26")
    expect(page.locator("#pct-width")).to_contain_text("median")
    # sample thumbnails per class
    expect(page.locator("#samples .class-row")).to_have_count(3)
    page.locator("#samples .class-row").last.scroll_into_view_if_needed()  # thumbnails load lazily
    wait_images(page, "#samples .class-row:not(:has(.broken)) img")
    expect(page.locator("#samples .sample")).to_have_count(24)
    # the train form: embedding models from the server (the first listing may import model
    # libraries: seconds), fields by method
    expect(page.locator("#train-embedding option[value='offline-concepts']")).to_have_count(1, timeout=30_000)
    expect(page.locator("#train-epochs")).to_be_hidden()
    page.select_option("#train-method", "finetune")
    expect(page.locator("#train-epochs")).to_be_visible()
    expect(page.locator("#train-embedding")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()
    page.select_option("#train-method", "linear-probe")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "dataset-dashboard.png"), full_page=True)
    assert not tab.outside(server.url), f"requests left the server: {tab.outside(server.url)}"
    assert any(u.startswith(server.url + "/static/vendor/plotly.min.js") for u in tab.requests)


def test_train_from_the_dashboard_then_open_the_run(server, tab, shots):
    """A real linear probe on the offline model: progress, then a link to the new run."""
    page = tab.page
    page.goto(f"{server.url}/datasets/{DATASET}")
    expect(page.locator("#train-embedding option[value='offline-concepts']")).to_have_count(1, timeout=30_000)
    page.select_option("#train-method", "linear-probe")
    page.select_option("#train-embedding", "offline-concepts")
    page.click("#train-button")
    job = page.locator("#train-job")
    expect(job).to_be_visible()
    expect(job).to_have_attribute("data-state", "done", timeout=120_000)
    expect(page.locator("#train-text")).to_contain_text("accuracy")
    link = page.locator("#train-run-link")
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    assert re.fullmatch(r"/runs/\d{8}-\d{6}-linear-probe-colours-[0-9a-f]{4}", href), href
    page.screenshot(path=str(shots / "dataset-trained.png"), full_page=False)
    link.click()
    expect(page.locator("#card-kind")).to_have_text("linear-probe")
    expect(page.locator("#card-model")).to_have_text("offline-concepts")
    expect(page.locator("#card-accuracy")).to_have_text(re.compile(r"^\d+\.\d %$"))
    expect(page.locator("#run-state")).to_have_text("done")
    wait_charts(page, ["#chart-confusion"])
    page.screenshot(path=str(shots / "run-linear-probe.png"), full_page=True)


def test_training_progress_and_cancel(server, tab, shots, monkeypatch):
    """Progress with epochs, steps and time left (as fine-tuning reports them), then Cancel."""
    import vitrine.train.classification.finetune as ft

    def slow_finetune(workspace, dataset, config, *, progress=None, cancel=None, run_id=None, **kw):
        run = Run.create(workspace, "finetune", dataset.name, config.backbone, config.to_dict(), run_id)
        run.update(state="running")
        steps = 3 * 40
        for step in range(1, steps + 1):
            if cancel.is_set():
                run.update(state="cancelled")
                raise Cancelled("training was cancelled")
            info = {"epoch": (step - 1) // 40 + 1, "epochs": 3, "step": step, "steps": steps, "loss": 1.5 / step}
            info["eta_seconds"] = (steps - step) * 0.25
            progress("train", step, steps, info)
            time.sleep(0.25)
        raise AssertionError("never cancelled")

    monkeypatch.setattr(ft, "train_finetune", slow_finetune)
    page = tab.page
    page.goto(f"{server.url}/datasets/{DATASET}")
    page.select_option("#train-method", "finetune")
    page.fill("#train-epochs", "3")
    page.fill("#train-image-size", "64")
    page.fill("#train-max-minutes", "5")
    page.click("#train-button")
    expect(page.locator("#train-job")).to_have_attribute("data-state", "running")
    expect(page.locator("#train-text")).to_contain_text(re.compile(r"Training · epoch 1/3 · step \d+/120 · loss"))
    expect(page.locator("#train-text")).to_contain_text("left")
    page.wait_for_function("() => document.querySelector('#train-progress').value > 0")
    expect(page.locator("#train-cancel")).to_be_visible()
    expect(page.locator("#train-button")).to_be_disabled()
    page.screenshot(path=str(shots / "dataset-training.png"), full_page=False)
    page.click("#train-cancel")
    expect(page.locator("#train-job")).to_have_attribute("data-state", "cancelled")
    expect(page.locator("#train-state")).to_have_text("cancelled")
    expect(page.locator("#train-button")).to_be_enabled()
    expect(page.locator("#train-run-link")).to_have_attribute("href", re.compile("/runs/.*-finetune-colours-"))


def test_runs_table(server, tab, shots):
    page = tab.page
    page.goto(server.url + "/runs")
    row = page.locator(f'#runs-body tr[data-run="{RUN_ID}"]')
    expect(row).to_be_visible()
    expect(row.locator(".run-speed")).to_have_text("512 img/s")
    expect(row.locator(".run-accuracy")).to_have_text(re.compile(r"^\d+\.\d %$"))
    expect(page.locator(f'#runs-body tr[data-run="{RUNNING_ID}"] .badge')).to_have_text("running")
    # sort by accuracy: the best first (runs without a score last)
    page.click("button[data-sort='accuracy']")
    first = page.locator("#runs-body tr").first
    expect(first).not_to_have_attribute("data-run", RUNNING_ID)
    page.screenshot(path=str(shots / "runs.png"), full_page=True)
    row.locator(".run-id a").click()
    expect(page).to_have_url(f"{server.url}/runs/{RUN_ID}")


def test_predict_a_dataset_image(server, tab, shots):
    page = tab.page
    page.goto(f"{server.url}/runs/{RUN_ID}/predict")
    expect(page.locator("#card-kind")).to_have_text("test-fake")
    expect(page.locator("#card-dataset")).to_have_text(DATASET)
    expect(page.locator("#card-accuracy")).to_have_text(re.compile(r"^\d+\.\d %$"))
    expect(page.locator("#sample-select")).to_be_enabled()
    page.select_option("#sample-select", ACCENTED)
    wait_charts(page, ["#chart-predict"])
    expect(page.locator("#predict-label")).to_have_text("red")
    expect(page.locator("#predict-top")).to_contain_text("correct")
    text = chart_text(page, "#chart-predict")
    for name in CLASSES:
        assert name in text, (name, text)
    expect(page.locator("#predict-list .label")).to_have_text(["red", "blue", "green"])
    page.wait_for_function("() => document.querySelector('#predict-image').naturalWidth > 0")
    assert urlencode({"sample": ACCENTED}) in page.url  # the choice is in the URL
    # the evaluation: a confusion-matrix heatmap and the per-class table
    wait_charts(page, ["#chart-confusion"])
    expect(page.locator("#per-class-table tbody tr")).to_have_count(3)
    expect(page.locator("#confusion-download")).to_be_visible()
    expect(page.locator("#error")).to_be_hidden()
    page.screenshot(path=str(shots / "predict-sample.png"), full_page=True)
    # reloading the URL predicts the same image again
    page.reload()
    expect(page.locator("#predict-label")).to_have_text("red")
    assert not tab.outside(server.url), f"requests left the server: {tab.outside(server.url)}"


def test_predict_an_upload(server, tab, shots, tmp_path):
    image = tmp_path / "my blue.png"
    colour_image("blue", (120, 90), seed=42).save(image)
    page = tab.page
    page.goto(f"{server.url}/runs/{RUN_ID}/predict")
    expect(page.locator("#sample-select")).to_be_enabled()
    page.set_input_files("#predict-upload", str(image))
    wait_charts(page, ["#chart-predict"])
    expect(page.locator("#predict-label")).to_have_text("blue")
    expect(page.locator("#predict-caption")).to_contain_text("my blue.png")
    assert "blue" in chart_text(page, "#chart-predict")
    page.wait_for_function("() => document.querySelector('#predict-image').naturalWidth > 0")
    page.screenshot(path=str(shots / "predict-upload.png"), full_page=True)
    # a file that is not an image: the error is shown
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image" * 20)
    page.set_input_files("#predict-upload", str(bad))
    expect(page.locator("#error .error-message")).to_contain_text("notes.png")


def test_run_still_training(server, tab):
    page = tab.page
    page.goto(f"{server.url}/runs/{RUNNING_ID}")
    expect(page.locator("#run-state")).to_have_text("running")
    expect(page.locator("#run-progress-text")).to_contain_text("epoch 2/5 · step 3/8")
    expect(page.locator("#evaluation")).to_be_hidden()
    expect(page.locator("#sample-select")).to_be_enabled()
    page.select_option("#sample-select", ACCENTED)
    expect(page.locator("#error .error-message")).to_contain_text("no trained model yet")


def test_behind_a_path_prefix_proxy(root, tab, shots):
    app = create_app(root, root_path=PREFIX)
    with ServerThread(app, health_path="/api/v1/health") as backend:
        proxy_app, escaped = make_prefix_proxy(backend.url, PREFIX)
        with ServerThread(proxy_app, health_path=PREFIX + "/api/v1/health") as proxy:
            base = proxy.url + PREFIX
            page = tab.page
            page.goto(base + "/datasets")
            expect(page.locator("#nav-runs")).to_have_attribute("href", PREFIX + "/runs")
            page.locator(f'.dataset-card[data-dataset="{DATASET}"] a').click()
            expect(page).to_have_url(f"{base}/datasets/{DATASET}")
            wait_charts(page)
            page.locator("#samples .class-row").last.scroll_into_view_if_needed()  # thumbnails load lazily
            wait_images(page, "#samples .class-row:not(:has(.broken)) img")
            page.click("#nav-runs")
            page.locator(f'#runs-body tr[data-run="{RUN_ID}"] .run-id a').click()
            expect(page).to_have_url(f"{base}/runs/{RUN_ID}")
            expect(page.locator("#sample-select")).to_be_enabled()
            page.select_option("#sample-select", ACCENTED)
            wait_charts(page, ["#chart-predict", "#chart-confusion"])
            expect(page.locator("#predict-label")).to_have_text("red")
            page.wait_for_function("() => document.querySelector('#predict-image').naturalWidth > 0")
            expect(page.locator("#error")).to_be_hidden()
            page.screenshot(path=str(shots / "proxy-run.png"), full_page=True)
            outside = [u for u in tab.requests if not (u.startswith(base + "/") or u.startswith("blob:"))]
            assert not outside, f"requests escaped the prefix: {outside}"
            assert not escaped, f"the proxy saw requests outside {PREFIX}: {escaped}"
            assert any(u.startswith(base + "/static/vendor/plotly.min.js") for u in tab.requests)


def test_no_training_left_running(server):
    """The jobs the tests started are over (a cancelled one stops at its next step)."""
    import httpx

    deadline = time.monotonic() + 10
    while True:
        jobs = httpx.get(server.url + "/api/v1/jobs").json()
        if all(j["state"] not in ("queued", "running") for j in jobs):
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(0.1)
    assert threading.active_count() < 50
