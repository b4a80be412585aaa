"""Detection training through the API: the ``train-detector`` job (progress, cancel keeping
last.pt, resume after an interruption), the detection runs list and record, the PR curves as a
Plotly figure, and bad input (unknown dataset, paths leaving the dataset, bad options) refused
with a 4xx before any job starts.

Training is real but tiny: a from-scratch narrow Mask R-CNN on a few 64 px scenes of Fashion-MNIST
items (``generate_scenes``), one thread. Its numbers say nothing about quality.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from vitrine.server.app import create_app

API = "/api/v1"
DATASET = "scenes"
SIZE = 64
TINY = {
    "arch": "maskrcnn",
    "pretrained": False,
    "image_size": SIZE,
    "fpn_channels": 16,
    "box_head_dim": 32,
    "mask_head_channels": 16,
    "mask_head_layers": 1,
    "rpn_pre_nms_top_n_train": 100,
    "rpn_post_nms_top_n_train": 50,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 30,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 32,
    "box_detections_per_img": 20,
    "batch_size": 2,
    "epochs": 2,
    "lr": 0.01,
    "warmup_steps": 2,
    "threads": 1,
    "eval_batch_size": 4,
    "log_every": 1,
    "cache_mb": 16,
}

pytestmark = pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs Debian's dataset-fashion-mnist"
)


def _never_5xx(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.request.method} {response.request.url}: {response.status_code}"


def make_client(root: Path) -> TestClient:
    client = TestClient(create_app(root), raise_server_exceptions=False)
    client.event_hooks = {"request": [], "response": [_never_5xx]}
    return client


def build_root(root: Path) -> Path:
    from vitrine.data.detection.scenes import generate_scenes

    generate_scenes(
        root / "datasets" / DATASET, n_train=6, n_val=2, n_test=2, image_size=SIZE, classes=["T-shirt/top", "Trouser"]
    )
    (root / "secret").mkdir()
    (root / "secret" / "instances.json").write_text("{}", encoding="utf-8")
    return root


def wait_job(client: TestClient, job_id: str, until=("done", "failed", "cancelled"), timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"{API}/jobs/{job_id}").json()
        if job["state"] in until:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s: {job.get('message')}")


def error_of(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, f"{response.status_code}: {response.text[:300]}"
    error = response.json()["error"]
    for word in words:
        assert word in (error["message"] + " " + (error.get("hint") or "")), error
    return error


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace with one detector trained through the API (module-wide: it takes a while)."""
    from vitrine.jobs.types import JobContext

    root = build_root(tmp_path_factory.mktemp("dettrain") / "workspace")
    reported: set[str] = set()  # every stage the job reported (polling can miss the short ones)
    real_progress = JobContext.progress

    def progress(self, stage, *args, **kwargs):
        reported.add(stage)
        return real_progress(self, stage, *args, **kwargs)

    with make_client(root) as client, pytest.MonkeyPatch.context() as mp:
        mp.setattr(JobContext, "progress", progress)
        r = client.post(f"{API}/detection/train", json={"dataset": DATASET, "config": TINY, "run_id": "tiny-det"})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["kind"] == "train-detector" and job["run_id"] == "tiny-det"
        seen_stages = set()
        deadline = time.time() + 240
        while time.time() < deadline:
            j = client.get(f"{API}/jobs/{job['id']}").json()
            seen_stages.add(j["stage"])
            if j["state"] in ("done", "failed", "cancelled"):
                break
            time.sleep(0.1)
        assert seen_stages, "the job was never seen through the API"
        yield client, root, j, reported


# ------------------------------------------------------------------------------ training to the end
def test_training_job_finishes_with_metrics(trained):
    client, root, job, stages = trained
    assert job["state"] == "done", job
    assert "train" in stages, stages  # progress was reported while training, step by step
    result = job["result"]
    assert result["run_id"] == "tiny-det" and result["state"] == "done"
    for key in ("bbox_map50", "bbox_map", "segm_map50", "segm_map"):
        assert isinstance(result[key], float) and 0.0 <= result[key] <= 1.0, (key, result)
    assert result["ms_per_image"] > 0
    run_dir = root / "runs" / "tiny-det"
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "detection_metrics.json").is_file()


def test_runs_list_has_the_detection_run_with_map(trained):
    client, _, _, _ = trained
    rows = client.get(f"{API}/detection/runs").json()
    row = next(r for r in rows if r["id"] == "tiny-det")
    assert row["kind"] == "segmentation" and row["dataset"] == DATASET and row["state"] == "done"
    assert row["evaluated_on"] == "test" and row["n_images"] == 2
    for key in ("bbox_map50", "bbox_map", "segm_map50", "segm_map", "bbox_precision", "bbox_recall"):
        assert row[key] is not None and 0.0 <= row[key] <= 1.0, key
    assert row["bbox_map"] <= row["bbox_map50"] + 1e-9  # mAP@.5:.95 never exceeds mAP@.5


def test_run_record_has_per_class_table_and_curves(trained):
    client, _, job, _ = trained
    d = client.get(f"{API}/detection/runs/tiny-det").json()
    assert d["record"]["id"] == "tiny-det" and d["iou_types"] == ["bbox", "segm"]
    for t in ("bbox", "segm"):
        classes = [row["class"] for row in d["per_class"][t]]
        assert classes == ["T-shirt/top", "Trouser"]
        assert sum(row["gt"] for row in d["per_class"][t]) > 0
        for curve in d["pr_curves"][t]:
            assert len(curve["recall"]) == len(curve["precision"]) == 101
    assert d["job"]["id"] == job["id"] and d["job"]["state"] == "done"
    assert "detection_metrics.json" in d["files"]
    # the same run through the detectors list: it can be tried on /detect
    assert "tiny-det" in [m["name"] for m in client.get(f"{API}/detectors").json()]


def test_pr_curves_are_a_plotly_figure(trained):
    client, _, _, _ = trained
    r = client.get(f"{API}/detection/runs/tiny-det/pr-curves")
    assert r.status_code == 200
    fig = r.json()
    assert {"data", "layout"} <= set(fig)
    import plotly.graph_objects as go

    go.Figure(fig)  # plotly accepts it back: valid figure JSON
    names = {trace["name"] for trace in fig["data"]}
    assert names <= {"T-shirt/top", "Trouser"} and names
    assert all(trace["type"] == "scatter" for trace in fig["data"])
    one = client.get(f"{API}/detection/runs/tiny-det/pr-curves?iou_type=segm").json()
    assert len(one["data"]) < len(fig["data"]) or len(fig["data"]) == len(one["data"]) == 0
    error_of(client.get(f"{API}/detection/runs/tiny-det/pr-curves?iou_type=nope"), 422)


def test_openapi_lists_the_training_routes(trained):
    client, _, _, _ = trained
    paths = client.get("/openapi.json").json()["paths"]
    assert "post" in paths[f"{API}/detection/train"]
    for p in (
        f"{API}/detection/runs",
        f"{API}/detection/runs/{{run_id}}",
        f"{API}/detection/runs/{{run_id}}/pr-curves",
    ):
        assert "get" in paths[p], p


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"dataset": "no-such"}, 404, ("no dataset folder", "scenes")),
        ({"dataset": "../secret"}, 400, ()),
        ({"dataset": "/etc"}, 400, ()),
        ({"dataset": DATASET, "annotations": "../../secret/instances.json"}, 400, ("not inside",)),
        ({"dataset": DATASET, "annotations": "/etc/passwd"}, 400, ("not inside",)),
        ({"dataset": DATASET, "annotations": "annotations/none.json"}, 404, ("none.json",)),
        ({"dataset": DATASET, "config": {"arch": "yolo"}}, 400, ("arch",)),
        ({"dataset": DATASET, "config": {"epochs": 0}}, 400, ("epochs",)),
        ({"dataset": DATASET, "config": {"no_such_option": 1}}, 400, ("no_such_option",)),
        ({"dataset": DATASET, "config": {"weights": "/etc/passwd"}}, 400, ("weights",)),
        ({"dataset": DATASET, "config": {"image_size": "big"}}, 400, ()),
        ({"dataset": DATASET, "run_id": "../x"}, 400, ()),
        ({"dataset": DATASET, "run_id": "tiny-det"}, 400, ("already exists",)),
        ({"dataset": DATASET, "surprise": 1}, 422, ()),
        ({}, 422, ()),
    ],
)
def test_bad_requests_are_refused_before_any_job(trained, body, status, words):
    client, _, _, _ = trained
    before = len(client.get(f"{API}/jobs").json())
    error_of(client.post(f"{API}/detection/train", json=body), status, *words)
    assert len(client.get(f"{API}/jobs").json()) == before  # no job started


def test_a_symlink_leading_outside_the_dataset_is_refused(trained):
    client, root, _, _ = trained
    link = root / "datasets" / DATASET / "escape"
    link.symlink_to(root / "secret", target_is_directory=True)
    try:
        error_of(
            client.post(f"{API}/detection/train", json={"dataset": DATASET, "annotations": "escape/instances.json"}),
            400,
            "outside",
        )
    finally:
        link.unlink()


def test_unknown_and_non_detection_runs(trained):
    client, root, _, _ = trained
    error_of(client.get(f"{API}/detection/runs/no-such-run"), 404, "no run")
    other = root / "runs" / "a-classifier"
    other.mkdir(parents=True)
    (other / "run.json").write_text(json.dumps({"id": "a-classifier", "kind": "linear-probe", "state": "done"}))
    error_of(client.get(f"{API}/detection/runs/a-classifier"), 400, "not a detection run")
    assert "a-classifier" not in [r["id"] for r in client.get(f"{API}/detection/runs").json()]


# ------------------------------------------------------------------------------ cancel and resume
def test_cancel_keeps_last_checkpoint_and_resume_continues(tmp_path):
    """Cancel a running job once it has taken steps: the job is cancelled, the run too, and its
    last.pt stays; the job kind run again as after a restart resumes from it to the end."""
    from vitrine.jobs import get_kind

    root = build_root(tmp_path / "workspace")
    config = {**TINY, "epochs": 30}
    with make_client(root) as client:
        r = client.post(f"{API}/detection/train", json={"dataset": DATASET, "config": config, "run_id": "to-cancel"})
        assert r.status_code == 202, r.text
        job = r.json()
        last = root / "runs" / "to-cancel" / "checkpoints" / "last.pt"
        deadline = time.time() + 120
        while time.time() < deadline:
            j = client.get(f"{API}/jobs/{job['id']}").json()
            if j["stage"] == "train" and j["done"] >= 2:
                break
            assert j["state"] in ("queued", "running"), j
            time.sleep(0.1)
        assert client.post(f"{API}/jobs/{job['id']}/cancel").status_code == 200
        j = wait_job(client, job["id"])
        assert j["state"] == "cancelled", j
        assert last.is_file()
        record = client.get(f"{API}/detection/runs/to-cancel").json()["record"]
        assert record["state"] == "cancelled" and record["metrics"]["steps"] >= 2
        steps_before = record["metrics"]["steps"]
        # the cancel lands after however many epochs a fast machine got through: resume for two more
        target_epochs = int(record["metrics"].get("epochs_completed") or 0) + 2

        # as after a restart: the same params, a later attempt → resumes from last.pt
        class Ctx:
            params = j["params"]
            resumed = True
            services = client.app.state.vitrine
            cancel_event = threading.Event()
            logs: list[str] = []

            def log(self, line):
                self.logs.append(line)

            def progress(self, *args, **kwargs):
                pass

            def set_checkpoint(self, path):
                self.checkpoint = path

        ctx = Ctx()
        ctx.params = {**j["params"], "config": {**config, "epochs": target_epochs}}
        out = get_kind("train-detector").handler(ctx, ctx.params)
        assert out["state"] == "done" and out["run_id"] == "to-cancel"
        assert any("resuming" in line for line in ctx.logs)
        record = client.get(f"{API}/detection/runs/to-cancel").json()["record"]
        assert record["state"] == "done" and record["metrics"]["steps"] > steps_before
        assert record["metrics"]["epochs_completed"] == target_epochs


def test_run_pages(trained):
    """The detection run page renders for a run (and for a job's run not made yet); a run page
    of a detector sends to it; an unknown run is a 404 page."""
    client, _, job, _ = trained
    r = client.get("/detection/runs/tiny-det")
    assert r.status_code == 200 and 'data-run="tiny-det"' in r.text and "detection_runs.js" in r.text
    assert "/static/vendor/plotly.min.js" in r.text
    r = client.get(f"/detection/runs/not-yet?job_id={job['id']}")
    assert r.status_code == 200 and f'data-job="{job["id"]}"' in r.text
    assert client.get("/detection/runs/no-such-run").status_code == 404
    r = client.get("/runs/tiny-det", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/detection/runs/tiny-det"
    runs = client.get("/runs")
    assert runs.status_code == 200 and 'id="det-runs-table"' in runs.text and 'id="det-train-form"' in runs.text
