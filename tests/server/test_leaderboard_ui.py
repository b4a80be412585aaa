"""The leaderboard page (/leaderboards/{dataset}) in headless Chromium: one card per split
fingerprint with its speed-vs-accuracy chart (a Plotly point per run, the Pareto front, a click
opening the run), the sortable table with the Pareto badges the API gives, the runs kept apart
(unranked), the compare panel of 2 ticked runs with the options that differ, per-class AP, the
detectors' PR curves in one chart and the classifiers' confusion matrices, the sweep form (the
trial count, a sweep started through the API and followed in the list, cancelled; the API's errors
beside the form), the empty state, the 404 page, a path prefix, and no horizontal page overflow at
800 px.

The sweeps started here run a stand-in job (no Ray: ``_fake_sweep``) on the real sweep record the
API made; the engine itself is tested in tests/experiments and tests/server/test_sweeps_api.py.

The runs are ONNX "detectors" with fixed outputs scored by `vitrine eval --record` on a two-image
COCO file, so their numbers are known, and say nothing about any real model; the classifiers are
random-init EfficientNet-Lite0 at 32 px trained for one epoch: their scores test code paths only.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "models" / "detectors"))
sys.path.insert(0, str(HERE.parent / "train" / "classification"))
from test_finetune import make_shapes, tiny  # noqa: E402
from test_onnx_yolo import IMAGE, IN_FRAME, IN_IMAGE, _cxcywh, _export  # noqa: E402
from ui_helpers import ServerThread, make_prefix_proxy, playwright_expect  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.slow]

expect = playwright_expect()

from vitrine.server.app import create_app  # noqa: E402

TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)
DATASET = "shop"
PREFIX = "/proxy/8000"
TEST_RUNS = ("yolo-finds-both", "yolo-finds-cat", "yolo-finds-both-2", "yolo-finds-nothing")


def _outputs() -> dict[str, np.ndarray]:
    both = np.zeros((4 + 3, 20), dtype=np.float32)
    both[:4, :2] = _cxcywh(IN_FRAME[:2]).T
    both[4 + 0, 0], both[4 + 1, 1] = 0.9, 0.8
    cat = both.copy()
    cat[4 + 1, 1] = 0.0  # finds the cat only
    nothing = both.copy()
    nothing[4:, :] = 0.0
    return {"both": both, "cat": cat, "nothing": nothing}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from vitrine.cli import app
    from vitrine.core.workspace import Workspace
    from vitrine.data.importers import from_imagefolder, import_dataset
    from vitrine.runs import Run
    from vitrine.train.classification.finetune import train_finetune

    tmp = tmp_path_factory.mktemp("board-ui")
    (tmp / DATASET / "images").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        IMAGE.save(tmp / DATASET / "images" / name)
    boxes = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in IN_IMAGE[:2]]
    coco = {
        "images": [{"id": i + 1, "file_name": f"images/{n}", "width": 128, "height": 64, "split": s}
                   for i, (n, s) in enumerate((("a.png", "test"), ("b.png", "val")))],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [{"id": 10 * i + k + 1, "image_id": i + 1, "category_id": k + 1, "iscrowd": 0, "bbox": b,
                         "area": b[2] * b[3]} for i in range(2) for k, b in enumerate(boxes)],
    }  # fmt: skip
    (tmp / DATASET / "annotations").mkdir()
    data = tmp / DATASET / "annotations" / "instances.json"
    data.write_text(json.dumps(coco))
    ws = tmp / "workspace"
    runner = CliRunner()
    outputs = _outputs()
    kinds = ("both", "cat", "both", "nothing")
    plan = [(run_id, output, "test") for run_id, output in zip(TEST_RUNS, kinds, strict=True)]
    plan.append(("yolo-on-val", "both", "val"))
    for run_id, output, split in plan:
        model = _export(tmp, outputs[output][None], run_id.replace("yolo-", "yolov8-"))
        args = ["eval", "--model", model, "--data", str(data), "--data-split", split, "--record", "--name", run_id]
        result = runner.invoke(app, [*args, "--workspace", str(ws), "--json"])
        assert result.exit_code == 0, result.output
    # a run not evaluated yet: no split fingerprint, listed apart
    Run.create(Workspace(ws), "detection", DATASET, "fasterrcnn", {"epochs": 1}, run_id="not-evaluated")
    # a dataset of the workspace without runs: the empty state
    folder = tmp / "empty-images"
    for label in ("red", "blue"):
        (folder / label).mkdir(parents=True)
        Image.new("RGB", (8, 8), (200, 0, 0) if label == "red" else (0, 0, 200)).save(folder / label / "x.png")
    import_dataset(ws, from_imagefolder(folder, "empty"))
    # two tiny classifiers (random init, 32 px, 1 epoch) that differ by their learning rate
    shapes = make_shapes(tmp / "shapes-images", per_class=8, broken=False)
    import_dataset(ws, shapes)
    for run_id, lr in (("cls-slow-lr", 1e-3), ("cls-fast-lr", 1e-2)):
        train_finetune(Workspace(ws), shapes, tiny(epochs=1, lr=lr), run_id=run_id)
    return ws


@pytest.fixture(scope="module")
def server(root):
    with ServerThread(create_app(root), health_path="/api/v1/health") as srv:
        yield srv


@pytest.fixture(scope="module")
def board(server) -> dict:
    import httpx

    return httpx.get(f"{server.url}/api/v1/leaderboards/{DATASET}", timeout=30).json()


def _page(browser, width: int):
    context = browser.new_context(viewport={"width": width, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


@pytest.fixture
def page(browser):
    context, pg, errors = _page(browser, 1280)
    yield pg
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def _test_card(page):
    return page.locator(".board-group[data-split='test']")


def test_groups_chart_and_pareto_badges_match_the_api(server, page, board, shots):
    page.goto(f"{server.url}/leaderboards/{DATASET}")
    expect(page.locator(".board-group")).to_have_count(2)  # test and val: kept apart
    expect(page.locator("#board-note")).to_be_visible()
    expect(page.locator("#board-note")).to_contain_text("kept apart")
    card = _test_card(page)
    group = next(g for g in board["groups"] if g["split"] == "test")
    expect(card.locator("tbody tr")).to_have_count(len(TEST_RUNS))
    # a Plotly point per run (the Pareto step line has no markers)
    expect(card.locator(".scatterlayer .trace .points path")).to_have_count(len(TEST_RUNS))
    on_front = {r["id"] for r in group["rows"] if r["pareto"]}
    assert on_front, group["rows"]
    for row in group["rows"]:
        tr = card.locator(f"tbody tr[data-run='{row['id']}']")
        badge = tr.locator(".badge-pareto")
        expect(badge).to_have_count(1 if row["id"] in on_front else 0)
        if row["id"] in on_front:
            expect(badge).to_have_attribute("aria-label", "on the Pareto front")
    if len(on_front) > 1:
        expect(card.locator(".scatterlayer .trace .js-line")).not_to_have_count(0)
    # ranked by box mAP@.5 as the API ranks them
    ids = card.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert ids == [r["id"] for r in group["rows"]]
    assert ids[-1] == "yolo-finds-nothing"
    # the run not evaluated yet is listed apart, with why
    expect(page.locator("#unranked-list li")).to_have_count(1)
    expect(page.locator("#unranked-list li")).to_contain_text("not evaluated yet")
    page.screenshot(path=str(shots / "leaderboard-1280.png"), full_page=True)


def test_sorting_by_a_column(server, page, board):
    page.goto(f"{server.url}/leaderboards/{DATASET}")
    card = _test_card(page)
    expect(card.locator("tbody tr")).to_have_count(len(TEST_RUNS))
    group = next(g for g in board["groups"] if g["split"] == "test")
    button = card.locator("button.sort[data-sort='latency_ms']")
    button.click()  # fastest first
    expect(button.locator("xpath=..")).to_have_attribute("aria-sort", "ascending")
    by_speed = [r["id"] for r in sorted(group["rows"], key=lambda r: r["latency_ms"])]
    ids = card.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert ids == by_speed
    button.click()  # slowest first
    expect(button.locator("xpath=..")).to_have_attribute("aria-sort", "descending")
    ids = card.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert ids == by_speed[::-1]
    card.locator("button.sort[data-sort='id']").click()
    ids = card.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert ids == sorted(TEST_RUNS)


def test_comparing_two_runs_shows_the_config_diff_and_per_class_ap(server, page, shots):
    page.goto(f"{server.url}/leaderboards/{DATASET}")
    card = _test_card(page)
    expect(page.locator("#compare")).to_be_hidden()
    card.locator("input.compare-pick[data-run='yolo-finds-both']").check()
    expect(page.locator("#compare")).to_be_hidden()  # one run: nothing to compare yet
    expect(page.locator("#compare-status")).to_contain_text("tick another")
    card.locator("input.compare-pick[data-run='yolo-finds-cat']").check()
    panel = page.locator("#compare")
    expect(panel).to_be_visible()
    expect(panel.locator("#compare-head-row th")).to_have_text(["", "yolo-finds-both", "yolo-finds-cat"])
    # the options that differ (the model file and its checksum), highlighted; equal ones left out
    options = panel.locator("#compare-config-body tr")
    expect(options.locator("th")).to_contain_text(["sha256"])
    assert "layout" not in options.locator("th").all_inner_texts()
    expect(options.first.locator("td.diff mark")).to_have_count(2)
    # box mAP@.5: 1.0 against 0.5, the better one in bold
    map_row = panel.locator("#compare-body tr", has=page.locator("th", has_text=re.compile(r"^Box mAP@\.5$")))
    expect(map_row.locator("td")).to_have_text(["1.000", "0.500"])
    expect(map_row.locator("td.best")).to_have_text("1.000")
    # per-class AP@.5 from the detection run API: the dog is found by one run only
    dog = panel.locator("#compare-classes-body tr", has=page.locator("th", has_text="dog"))
    expect(dog.locator("td")).to_have_text(["1.000", "0.000"])
    # their PR curves at IoU .5 in one chart, one line per run; the mean over the classes by default
    curves = panel.locator("#compare-pr-chart .scatterlayer .trace")
    expect(curves).to_have_count(2)
    expect(panel.locator("#compare-pr-chart .legendtext")).to_have_text(
        ["yolo-finds-both (AP 1.000)", "yolo-finds-cat (AP 0.500)"]
    )
    panel.locator("#compare-pr-class").select_option("dog")  # one class: the run that never finds it is flat at 0
    expect(panel.locator("#compare-pr-chart .legendtext")).to_have_text(
        ["yolo-finds-both (AP 1.000)", "yolo-finds-cat (AP 0.000)"]
    )
    expect(panel.locator("#compare-pr-missing")).to_be_hidden()
    panel.locator("#compare-pr-class").select_option("")
    expect(curves).to_have_count(2)
    expect(panel.locator("#compare-confusion")).to_be_hidden()  # detectors: no confusion matrix
    page.screenshot(path=str(shots / "leaderboard-compare-1280.png"), full_page=True)
    # at most 4 runs: the other boxes are disabled once 4 are ticked
    for run_id in TEST_RUNS[2:]:
        card.locator(f"input.compare-pick[data-run='{run_id}']").check()
    expect(page.locator("input.compare-pick[data-run='yolo-on-val']")).to_be_disabled()
    expect(panel.locator("#compare-head-row th")).to_have_count(5)
    page.locator("#compare-clear").click()
    expect(panel).to_be_hidden()


def test_comparing_two_classifiers_shows_accuracy_the_lr_and_per_class_f1(server, page, shots):
    page.goto(f"{server.url}/leaderboards/shapes")
    card = page.locator(".board-group")
    expect(card).to_have_count(1)
    expect(card.locator(".scatterlayer .trace .points path")).to_have_count(2)
    expect(page.locator("#board-note")).to_be_hidden()
    for run_id in ("cls-slow-lr", "cls-fast-lr"):
        expect(card.locator(f"tbody tr[data-run='{run_id}'] a").first).to_have_attribute("href", f"/runs/{run_id}")
        card.locator(f"input.compare-pick[data-run='{run_id}']").check()
    panel = page.locator("#compare")
    expect(panel).to_be_visible()
    lr = panel.locator("#compare-config-body tr[data-option='lr'] td")
    expect(lr).to_have_text(["0.001", "0.01"])
    expect(panel.locator("#compare-config-body tr[data-option='image_size']")).to_have_count(0)  # the same: not shown
    expect(panel.locator("#compare-classes-title")).to_have_text("Per class (F1)")
    expect(panel.locator("#compare-classes-body tr th")).to_have_text(["blue", "green", "red"])
    accuracy = panel.locator("#compare-body tr", has=page.locator("th", has_text=re.compile(r"^Accuracy$")))
    expect(accuracy.locator("td").first).to_have_text(re.compile(r"^\d+\.\d %$"))
    # their confusion matrices side by side, one Plotly heatmap each; no PR chart for classifiers
    matrices = panel.locator("#compare-confusion-grid .compare-confusion-chart")
    expect(matrices).to_have_count(2)
    expect(panel.locator("#compare-confusion-grid figcaption")).to_have_text(
        [re.compile("^cls-slow-lr"), re.compile("^cls-fast-lr")]
    )
    expect(panel.locator("#compare-confusion-grid .heatmaplayer .hm")).to_have_count(2)
    expect(panel.locator("#compare-pr")).to_be_hidden()
    page.screenshot(path=str(shots / "leaderboard-classify-1280.png"), full_page=True)


def test_clicking_a_chart_point_opens_the_run(server, page):
    page.goto(f"{server.url}/leaderboards/{DATASET}")
    card = page.locator(".board-group[data-split='val']")
    point = card.locator(".scatterlayer .trace .points path")
    expect(point).to_have_count(1)
    card.locator(".board-chart").scroll_into_view_if_needed()
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(card.locator(".hoverlayer .hovertext")).to_contain_text("yolo-on-val")
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(re.compile(r"/detection/runs/yolo-on-val$"))
    expect(page.locator("#det-board-link")).to_have_attribute("href", f"/leaderboards/{DATASET}")


def test_empty_board_and_unknown_dataset(server, page):
    page.goto(f"{server.url}/leaderboards/empty")
    expect(page.locator("#board-empty")).to_be_visible()
    expect(page.locator(".board-group")).to_have_count(0)
    expect(page.locator("#board-unranked")).to_be_hidden()
    response = page.goto(f"{server.url}/leaderboards/no-such-dataset")
    assert response.status == 404
    expect(page.locator("body")).to_contain_text("no dataset 'no-such-dataset'")
    page.goto(f"{server.url}/datasets/empty")
    expect(page.locator("#dataset-board-link")).to_have_attribute("href", "/leaderboards/empty")


def test_narrow_window_and_path_prefix(root, browser, shots):
    backend = ServerThread(create_app(root, root_path=PREFIX), health_path="/api/v1/health")
    proxy_app, escaped = make_prefix_proxy(backend.url, PREFIX)
    with backend, ServerThread(proxy_app, health_path=f"{PREFIX}/api/v1/health") as proxy:
        context, page, errors = _page(browser, 800)
        try:
            page.goto(f"{proxy.url}{PREFIX}/leaderboards/{DATASET}")
            card = _test_card(page)
            expect(card.locator(".scatterlayer .trace .points path")).to_have_count(len(TEST_RUNS))
            link = card.locator("tbody tr a").first
            expect(link).to_have_attribute("href", re.compile(rf"^{PREFIX}/detection/runs/"))
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 800 px"
            chart_width = card.locator(".board-chart .main-svg").first.evaluate("e => e.getBoundingClientRect().width")
            card_width = card.evaluate("e => e.clientWidth")
            assert chart_width <= card_width
            page.screenshot(path=str(shots / "leaderboard-800.png"), full_page=True)
            for run_id in TEST_RUNS[:2]:  # the compare panel, with its long config values, fits too
                card.locator(f"input.compare-pick[data-run='{run_id}']").check()
            expect(page.locator("#compare-classes-body tr")).to_have_count(2)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"the compare panel makes the page scroll sideways by {overflow} px at 800 px"
            page.locator("#compare").screenshot(path=str(shots / "leaderboard-compare-800.png"))
            page.locator("#sweep-details summary").click()  # the sweep form, unfolded, fits as well
            expect(page.locator("#sweep-rows .sweep-row")).to_have_count(1)
            expect(page.locator("#sweep-task")).to_have_value("detect")
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"the sweep form makes the page scroll sideways by {overflow} px at 800 px"
            page.locator("#sweep-card").screenshot(path=str(shots / "leaderboard-sweep-form-800.png"))
            page.set_viewport_size({"width": 1200, "height": 1000})  # the chart follows its card
            page.wait_for_function(
                "w => document.querySelector(\".board-group[data-split='test'] .board-chart .main-svg\")"
                ".getBoundingClientRect().width > w",
                arg=chart_width,
            )
        finally:
            context.close()
        assert not errors, f"JavaScript errors in the page: {errors}"
    assert not escaped, f"requests outside the prefix: {escaped}"


def test_a_member_sees_only_the_runs_the_api_gives_them_with_their_owners(root, browser, tmp_path):
    from argon2 import profiles

    from vitrine.auth import passwords

    passwords.use_profile(profiles.CHEAPEST)
    app = create_app(root, multi_user=True, database_url=f"sqlite:///{tmp_path / 'server.db'}")
    store = app.state.auth.store
    users = {n: store.add_user(n, f"{n}-password") for n in ("alice", "bob")}
    store.claim("dataset", "shapes", users["alice"].id, visibility="public")
    store.claim("run", "cls-slow-lr", users["alice"].id)  # private: bob never sees it
    store.claim("run", "cls-fast-lr", users["alice"].id)
    store.share("run", "cls-fast-lr", "bob")
    store.claim("run", "yolo-finds-both", users["alice"].id)  # a run of a board whose dataset bob may not use
    store.share("run", "yolo-finds-both", "bob")
    token = store.create_token("bob", "tests")[1]
    try:
        with ServerThread(app, health_path="/api/v1/health") as srv:
            context = browser.new_context(
                viewport={"width": 1280, "height": 1000}, extra_http_headers={"authorization": f"Bearer {token}"}
            )
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            try:
                page.goto(f"{srv.url}/leaderboards/shapes")
                rows = page.locator(".board-group tbody tr")
                expect(rows).to_have_count(1)
                expect(rows.first).to_have_attribute("data-run", "cls-fast-lr")
                expect(rows.first.locator("td[data-col='owner']")).to_have_text("alice")
                expect(page.locator(".scatterlayer .trace .points path")).to_have_count(1)
                assert "cls-slow-lr" not in page.content()  # alice's private run: not even named
                expect(page.locator("#sweep-card")).to_be_visible()  # a public dataset: bob may train on it
                page.goto(f"{srv.url}/leaderboards/{DATASET}")
                expect(page.locator(".board-group tbody tr")).to_have_count(1)
                expect(page.locator("#sweep-card")).to_have_count(0)  # no dataset of his to sweep on: no form
            finally:
                context.close()
    finally:
        app.state.vitrine.close()
        passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


# ------------------------------------------------------------------------------ sweeps
def _fake_sweep(ctx, params: dict) -> dict:
    """The ``sweep`` job without Ray: trial 0 runs until the test writes ``go`` in the sweep's
    folder, then ends with a metric; the sweep then runs until it is cancelled."""
    from vitrine.core.errors import Cancelled
    from vitrine.core.workspace import Workspace
    from vitrine.experiments.sweep import Sweep

    sweep = Sweep.load(Workspace(ctx.services.settings.root), params["sweep_id"])
    sweep.trials[0].update(state="running", epoch=1, epochs=1)
    sweep.update(state="running")
    deadline = time.monotonic() + 120
    stop = lambda: ctx.cancelled or sweep.cancel_requested() or time.monotonic() > deadline  # noqa: E731
    while not stop() and not (sweep.dir / "go").exists():
        time.sleep(0.05)
    if (sweep.dir / "go").exists():
        sweep.trials[0].update(state="done", metric=0.5)
        sweep.save()
    while not stop():
        time.sleep(0.05)
    for trial in sweep.trials:
        if trial["state"] != "done":
            trial["state"] = "cancelled"
    sweep.update(state="cancelled")
    raise Cancelled(f"sweep {sweep.id} cancelled")


@pytest.fixture
def fake_sweeps():
    """The ``sweep`` job kind replaced by :func:`_fake_sweep` while the test runs (the route, the
    sweep record and the job store are the real ones)."""
    from vitrine.jobs import register_kind
    from vitrine.jobs.kinds import get_kind

    saved = get_kind("sweep")
    register_kind("sweep", _fake_sweep, description="stand-in without Ray (UI tests)")
    yield
    register_kind("sweep", saved.handler, resumable=saved.resumable, concurrency=saved.concurrency)


def test_starting_following_and_cancelling_a_sweep_from_the_board(server, root, page, fake_sweeps, shots):
    import httpx

    boards = []
    page.on("request", lambda r: boards.append(r.url) if "/api/v1/leaderboards/shapes" in r.url else None)
    page.goto(f"{server.url}/leaderboards/shapes")
    expect(page.locator(".board-group tbody tr")).to_have_count(2)
    form = page.locator("#sweep-form")
    expect(form).to_be_hidden()  # folded
    page.locator("#sweep-details summary").click()
    expect(page.locator("#sweep-task")).to_have_value("classify")  # the board's task
    expect(page.locator("#sweep-dataset")).to_be_hidden()  # a classification sweep runs on this dataset
    rows = form.locator(".sweep-row")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".sweep-option")).to_have_value("image_size")
    expect(rows.first.locator(".sweep-hint")).to_contain_text("int · default 224")
    rows.first.locator(".sweep-values").fill("32, 40")
    expect(page.locator("#sweep-count")).to_have_text("2 trials: 2 image_size")
    page.locator("#sweep-add-row").click()
    rows.nth(1).locator(".sweep-option").select_option("lr")
    rows.nth(1).locator(".sweep-values").fill("0.001,0.01, 0.01")  # a repeated value counts once
    expect(page.locator("#sweep-count")).to_have_text("4 trials: 2 image_size × 2 lr")
    page.locator("#sweep-add-row").click()
    rows.nth(2).locator(".sweep-option").select_option("backbone")
    expect(rows.nth(2).locator(".sweep-hint")).to_contain_text("one of efficientnet-lite0")
    rows.nth(2).locator(".sweep-values").fill("efficientnet-lite0")  # one value: the same for every trial
    page.locator("#sweep-add-row").click()
    rows.nth(3).locator(".sweep-option").select_option("lr")
    rows.nth(3).locator(".sweep-values").fill("0.1")
    expect(page.locator("#sweep-count")).to_contain_text("option lr is given twice")
    expect(page.locator("#sweep-submit")).to_be_disabled()
    rows.nth(3).locator(".sweep-remove").click()
    expect(page.locator("#sweep-count")).to_have_text("4 trials: 2 image_size × 2 lr")
    page.locator("#sweep-minutes").fill("2")
    page.locator("#sweep-cpus").fill("1")
    page.locator("#sweep-asha").check()
    page.locator("#sweep-submit").click()
    expect(page.locator("#sweep-started")).to_contain_text("started: 4 trials")
    expect(page.locator("#sweep-error")).to_be_hidden()
    sweep_id = re.search(r"Sweep (\S+) started", page.locator("#sweep-started").inner_text()).group(1)
    # what the API made: the spec the form described, and its job
    detail = httpx.get(f"{server.url}/api/v1/sweeps/{sweep_id}", timeout=30).json()
    assert detail["spec"]["space"]["grid"] == {"image_size": [32, 40], "lr": [0.001, 0.01]}
    assert detail["spec"]["space"]["base"] == {"backbone": "efficientnet-lite0"}
    assert detail["spec"]["trial_minutes"] == 2 and detail["spec"]["cpus_per_trial"] == 1
    assert detail["spec"]["early_stopping"] is True and detail["dataset_name"] == "shapes"
    assert detail["job"] is not None and detail["job"]["id"]
    # the list: the sweep, running, its trials unfolded, a cancel button
    item = page.locator(f"#sweep-list li[data-sweep='{sweep_id}']")
    expect(item).to_have_attribute("data-state", "running")
    trials = item.locator("tbody tr")
    expect(trials).to_have_count(4)
    expect(trials.first).to_have_attribute("data-state", "running")
    expect(trials.first.locator(".trial-params")).to_have_text("image_size=32 · lr=0.001")
    expect(trials.nth(1).locator("a")).to_have_count(0)  # pending: its run does not exist yet
    expect(trials.first.locator("a")).to_have_attribute("href", f"/runs/{sweep_id}-t000")
    page.locator("#sweep-card").screenshot(path=str(shots / "leaderboard-sweep-1280.png"))
    # a trial finishes: the list follows it and the board is loaded again
    loads = len(boards)
    (root / "sweeps" / sweep_id / "go").touch()
    expect(trials.first).to_have_attribute("data-state", "done")
    expect(trials.first.locator(".trial-metric")).to_have_text("50.0 %")
    expect(item.locator(".sweep-facts")).to_contain_text("1/4 trials finished")
    deadline = time.monotonic() + 10
    while len(boards) <= loads and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(boards) > loads, "the board was not loaded again when a trial finished"
    page.screenshot(path=str(shots / "leaderboard-sweeps-1280.png"), full_page=True)
    # cancel
    item.locator(".sweep-cancel").click()
    expect(item).to_have_attribute("data-state", "cancelled")
    expect(item.locator(".sweep-cancel")).to_have_count(0)
    expect(trials.nth(1)).to_have_attribute("data-state", "cancelled")


def test_the_apis_refusals_are_shown_beside_the_sweep_form(server, page, fake_sweeps):
    import httpx

    before = {s["id"] for s in httpx.get(f"{server.url}/api/v1/sweeps", timeout=30).json()}
    page.goto(f"{server.url}/leaderboards/shapes")
    page.locator("#sweep-details summary").click()
    values = page.locator("#sweep-rows .sweep-row .sweep-values").first
    values.fill("big, 32")
    page.locator("#sweep-submit").click()
    error = page.locator("#sweep-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("option image_size: 'big' is not an integer")  # the API's 400, word for word
    expect(page.locator("#error")).to_be_hidden()  # beside the form, not in the page's error box
    # a detection board named by a COCO file, not a dataset folder: the API's 404 and its hint
    page.goto(f"{server.url}/leaderboards/{DATASET}")
    page.locator("#sweep-details summary").click()
    expect(page.locator("#sweep-task")).to_have_value("detect")  # from the board's runs
    expect(page.locator("#sweep-dataset")).to_have_value(DATASET)
    row = page.locator("#sweep-rows .sweep-row").first
    row.locator(".sweep-option").select_option("arch")
    row.locator(".sweep-values").fill("fasterrcnn, retinanet")
    expect(page.locator("#sweep-count")).to_have_text("2 trials: 2 arch")
    page.locator("#sweep-submit").click()
    expect(error).to_contain_text(f"no dataset folder '{DATASET}' in the workspace")
    expect(error.locator(".sweep-error-hint")).to_be_visible()
    after = {s["id"] for s in httpx.get(f"{server.url}/api/v1/sweeps", timeout=30).json()}
    assert after == before  # nothing made


def test_a_signed_in_member_starts_a_sweep_with_the_pages_csrf_token(root, browser, tmp_path, fake_sweeps):
    """Through the login page (a session cookie): the form's POST carries the session's CSRF token,
    and the sweep, its job and its trials' runs are the member's."""
    from argon2 import profiles

    from vitrine.auth import passwords

    passwords.use_profile(profiles.CHEAPEST)
    app = create_app(root, multi_user=True, database_url=f"sqlite:///{tmp_path / 'server.db'}")
    store = app.state.auth.store
    carol = store.add_user("carol", "carol-password")
    store.claim("dataset", "shapes", carol.id)
    store.claim("run", "cls-fast-lr", carol.id)
    try:
        with ServerThread(app, health_path="/api/v1/health") as srv:
            context, page, errors = _page(browser, 1280)
            try:
                page.goto(f"{srv.url}/leaderboards/shapes")
                page.fill("#login-name", "carol")
                page.fill("#login-password", "carol-password")
                page.click("#login-form button[type=submit]")
                page.wait_for_url(f"{srv.url}/leaderboards/shapes")
                page.locator("#sweep-details summary").click()
                page.locator("#sweep-rows .sweep-values").first.fill("32, 40")
                with page.expect_request(lambda r: r.url.endswith("/api/v1/sweeps") and r.method == "POST") as sent:
                    page.locator("#sweep-submit").click()
                assert sent.value.headers.get("x-csrf-token")
                expect(page.locator("#sweep-started")).to_contain_text("started: 2 trials")
                sweep_id = re.search(r"Sweep (\S+) started", page.locator("#sweep-started").inner_text()).group(1)
                expect(page.locator(f"#sweep-list li[data-sweep='{sweep_id}'] .sweep-facts")).to_contain_text(
                    "by carol"
                )
                assert store.access("sweep", sweep_id).owner == "carol"
                assert store.access("run", f"{sweep_id}-t001").owner == "carol"
                page.locator(
                    f"#sweep-list li[data-sweep='{sweep_id}'] .sweep-cancel"
                ).click()  # a POST with the token too
                expect(page.locator(f"#sweep-list li[data-sweep='{sweep_id}']")).to_have_attribute(
                    "data-state", "cancelled"
                )
            finally:
                context.close()
            assert not errors, f"JavaScript errors in the page: {errors}"
    finally:
        app.state.vitrine.close()
        passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)
