"""The detection run page (/detection/runs/{id}) and the detection runs on /runs, in headless
Chromium: the metrics table, the per-class AP table, the PR curves drawn by Plotly (served by
vitrine), the "Try it" link preselecting the model on /detect, and the "Train a detector" form
starting a job whose progress the run page follows and whose cancel button stops it.

The detector is a tiny from-scratch Mask R-CNN trained for seconds on 64 px generated scenes: its
numbers say nothing about quality.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_detection_training_api import DATASET, TINY, build_root  # noqa: E402
from ui_helpers import ServerThread, chromium_path  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.slow]

IN_CI = bool(os.environ.get("CI"))
CHROMIUM = chromium_path()
if CHROMIUM is None and not IN_CI:
    pytest.skip("Chromium is not installed: UI tests skipped", allow_module_level=True)
if not Path("/usr/share/datasets/fashion-mnist").is_dir():
    pytest.skip("needs Debian's dataset-fashion-mnist", allow_module_level=True)
try:
    from playwright.sync_api import expect
except ImportError:
    if IN_CI:
        raise
    pytest.skip("playwright (Python) is not installed: UI tests skipped", allow_module_level=True)

from vitrine.server.app import create_app  # noqa: E402

RUN = "tiny-ui-det"
TIMEOUT_MS = 60_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    from vitrine.train.detection.trainer import train_detector

    root = build_root(tmp_path_factory.mktemp("detrun-ui") / "workspace")
    run = train_detector(root, str(root / "datasets" / DATASET), dict(TINY), run_id=RUN, dataset_name=DATASET)
    assert run.record["state"] == "done"
    return root


@pytest.fixture(scope="module")
def server(root):
    with ServerThread(create_app(root), health_path="/api/v1/health") as srv:
        yield srv


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def test_run_page_shows_metrics_table_and_pr_curves(server, page, shots):
    page.goto(f"{server.url}/detection/runs/{RUN}")
    expect(page.locator("#det-run-state")).to_have_text("done")
    rows = page.locator("#det-metrics-body tr")
    expect(rows).to_have_count(2)  # boxes and masks
    expect(rows.nth(0).locator("th")).to_have_text("Boxes")
    expect(rows.nth(1).locator("th")).to_have_text("Masks")
    cells = rows.nth(0).locator("td").all_inner_texts()
    assert len(cells) == 6 and all(c == "–" or 0.0 <= float(c) <= 1.0 for c in cells), cells
    assert float(cells[0]) >= float(cells[1])  # mAP@.5 ≥ mAP@.5:.95
    expect(page.locator("#det-eval-meta")).to_contain_text("ms/image")
    expect(page.locator("#det-eval-meta")).to_contain_text("test split")
    # per-class AP table: one row per class of the dataset, columns for boxes and masks
    expect(page.locator("#det-classes-body tr")).to_have_count(2)
    expect(page.locator("#det-classes-head")).to_contain_text("Masks AP@.5")
    expect(page.locator("#det-classes-body")).to_contain_text("Trouser")
    # the Plotly chart: drawn as SVG by plotly.min.js served from the installed package
    expect(page.locator("#det-pr .main-svg").first).to_be_attached()
    expect(page.locator("#det-pr .gtitle")).to_contain_text("Precision-recall")
    expect(page.locator("#det-pr")).to_contain_text("boxes: mAP@.5")
    # "Try it": /detect with the model preselected
    link = page.locator("#det-try")
    expect(link).to_be_visible()
    assert link.get_attribute("href").endswith(f"/detect?model={RUN}")
    page.screenshot(path=str(shots / "detection-run.png"), full_page=True)
    link.click()
    expect(page.locator("#detect-model")).to_be_enabled()
    expect(page.locator("#detect-model")).to_have_value(RUN)


def test_run_page_errors_view_counts_what_the_report_counts(server, page, root, shots):
    """The trained run kept its predictions: its errors view counts what its report counted, and the
    score slider re-counts as evaluate_detection does (random weights: no meaning beyond that)."""
    import re

    from vitrine.core.workspace import Workspace
    from vitrine.evaluate.detection import evaluate_detection
    from vitrine.evaluate.run_errors import load_run_errors
    from vitrine.runs import Run

    report = json.loads((root / "runs" / RUN / "detection_metrics.json").read_text())["bbox"]
    page.goto(f"{server.url}/detection/runs/{RUN}")
    counts = page.locator("#det-errors-counts")
    expect(counts).to_have_text(re.compile(rf"^{report['tp']} TP · {report['fp']} FP.* · {report['fn']} FN · "))
    expect(page.locator("#det-errors-grid .err-card")).to_have_count(2)  # the two test scenes
    errs = load_run_errors(Workspace(root), Run.load(Workspace(root), RUN))
    low = evaluate_detection(errs.gt, errs.results, iou_type="bbox", score_threshold=0.05, iou_threshold=0.5)["bbox"]
    page.eval_on_selector(
        "#det-errors-score", "el => { el.value = '0.05'; el.dispatchEvent(new Event('input', { bubbles: true })); }"
    )
    expect(counts).to_have_text(re.compile(rf"^{low['tp']} TP · {low['fp']} FP.* · {low['fn']} FN · "))
    page.locator("#det-errors").screenshot(path=str(shots / "detection-run-errors.png"))
    # a segmentation run: matched by masks on request, and the large view paints each box's mask
    page.select_option("#det-errors-type", "segm")
    seg = evaluate_detection(errs.gt, errs.results, iou_type="segm", score_threshold=0.05, iou_threshold=0.5)["segm"]
    expect(counts).to_have_text(re.compile(rf"^{seg['tp']} TP · {seg['fp']} FP.* · {seg['fn']} FN · "))
    page.locator("#det-errors-grid .err-card button").first.click()
    canvas = page.locator("#det-error-view .err-masks")
    expect(canvas).to_be_attached()
    painted = canvas.evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return [n, c.width, c.height]; }"
    )
    assert painted[0] > 20 and painted[1:] == [64, 64], painted
    page.screenshot(path=str(shots / "detection-run-errors-masks.png"))


def test_a_run_from_before_is_evaluated_again_from_its_page(server, page, root):
    """A copy of the run without its predictions (as runs were before they kept them): the errors
    view says so and its button evaluates the run again in a job, after which the grid shows."""
    import shutil

    old = "kept-no-predictions"
    shutil.copytree(root / "runs" / RUN, root / "runs" / old)
    record = json.loads((root / "runs" / old / "run.json").read_text())
    (root / "runs" / old / "run.json").write_text(json.dumps({**record, "id": old}))
    (root / "runs" / old / "predictions.json.gz").unlink()
    page.goto(f"{server.url}/detection/runs/{old}")
    expect(page.locator("#det-errors-note")).to_contain_text("evaluated before detection runs kept their predictions")
    page.locator("#det-errors-evaluate").click()
    expect(page.locator("#det-errors-grid .err-card")).to_have_count(2, timeout=120_000)
    expect(page.locator("#det-errors-note")).to_be_hidden()
    assert (root / "runs" / old / "predictions.json.gz").is_file()
    assert json.loads((root / "runs" / old / "run.json").read_text())["reevaluated_at"] > 0


def test_runs_page_lists_detection_runs_with_map(server, page, shots):
    page.goto(f"{server.url}/runs")
    row = page.locator("#det-runs-body tr", has_text=RUN)
    expect(row).to_have_count(1)
    cells = row.locator("td.num").all_inner_texts()
    assert len(cells) == 5 and cells[4].endswith("ms"), cells
    assert all(0.0 <= float(c) <= 1.0 for c in cells[:4]), cells
    page.screenshot(path=str(shots / "runs-with-detection.png"), full_page=True)
    row.locator("th a").click()
    expect(page).to_have_url(f"{server.url}/detection/runs/{RUN}")


def test_train_form_starts_a_job_the_run_page_follows_and_cancels(server, page, root, shots):
    page.goto(f"{server.url}/runs")
    form = page.locator("#det-train-form")
    form.locator("#det-train-dataset").fill("no-such-dataset")
    form.locator("#det-train-button").click()
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error .error-message")).to_contain_text("no dataset folder")
    # a real one: the job starts and the page goes to the run's page, which follows it
    form.locator("#det-train-dataset").fill(DATASET)
    form.locator("#det-train-arch").select_option("fasterrcnn")
    form.locator("#det-train-backbone").select_option("efficientnet-lite1")
    form.locator("#det-train-image-size").fill("64")
    form.locator("#det-train-epochs").fill("200")
    form.locator("#det-train-button").click()
    page.wait_for_url("**/detection/runs/**job_id=**")
    expect(page.locator("#det-job")).to_be_visible()
    expect(page.locator("#det-job-text")).to_contain_text("epoch", timeout=120_000)  # live progress
    page.screenshot(path=str(shots / "detection-run-training.png"), full_page=True)
    expect(page.locator("#det-cancel")).to_be_visible()
    page.locator("#det-cancel").click()
    expect(page.locator("#det-job-state")).to_have_text("cancelled", timeout=120_000)
    expect(page.locator("#det-cancel")).to_be_hidden()
    run_id = page.url.split("/detection/runs/")[1].split("?")[0]
    assert (root / "runs" / run_id / "checkpoints" / "last.pt").is_file()
    config = json.loads((root / "runs" / run_id / "run.json").read_text())["config"]
    assert (config["arch"], config["backbone"]) == ("fasterrcnn", "efficientnet-lite1")
