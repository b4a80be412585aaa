"""A detection run's errors over HTTP (GET /api/v1/detection/runs/{id}/errors and /images/{id}):
counts equal to the run's report, paging, parameters refused with what is allowed, runs evaluated
before predictions were kept, and a hidden split's images kept from members."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from argon2 import profiles
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from vitrine.auth import passwords
from vitrine.core.jsonio import read_json
from vitrine.core.workspace import Workspace
from vitrine.evaluate.predictions_file import PREDICTIONS_FILE
from vitrine.evaluate.submission import score_submission
from vitrine.runs import Run
from vitrine.server.app import create_app

API = "/api/v1"
W, H = 64, 48
# image id -> [(category id, x, y, w, h)]; images 1-2 train, 3-6 test
OBJECTS = {
    1: [(1, 4, 4, 20, 16)],
    2: [(2, 30, 20, 20, 20)],
    3: [(1, 4, 4, 20, 16), (2, 36, 16, 20, 24)],
    4: [(1, 10, 10, 24, 20)],
    5: [(2, 8, 8, 16, 16)],
    6: [],
}
RESULTS = [
    {"image_id": 3, "category_id": 1, "bbox": [4, 4, 20, 16], "score": 0.9},  # TP
    {"image_id": 3, "category_id": 1, "bbox": [36, 16, 20, 24], "score": 0.8},  # ball on the box: class confusion + FN
    {"image_id": 4, "category_id": 1, "bbox": [12, 12, 24, 20], "score": 0.7},  # TP (IoU 0.69)
    {"image_id": 4, "category_id": 1, "bbox": [10, 10, 24, 20], "score": 0.6},  # duplicate
    {"image_id": 6, "category_id": 2, "bbox": [40, 4, 10, 10], "score": 0.95},  # background
    {"image_id": 6, "category_id": 2, "bbox": [2, 30, 10, 10], "score": 0.1},  # below the score threshold
]  # image 5: its box is missed (FN)


def make_dataset(ws: Workspace, name: str = "boxes") -> Path:
    folder = ws.dataset_dir(name)
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    colours = {1: (230, 60, 40), 2: (40, 90, 230)}
    for image_id, objects in OBJECTS.items():
        im = Image.new("RGB", (W, H), (200, 200, 190))
        draw = ImageDraw.Draw(im)
        for cat, x, y, w, h in objects:
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=colours[cat])
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
        im.save(folder / "images" / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": W, "height": H,
                       "split": "train" if image_id <= 2 else "test"})  # fmt: skip
    doc = {"images": images, "annotations": annotations,
           "categories": [{"id": 1, "name": "ball"}, {"id": 2, "name": "box"}]}  # fmt: skip
    (folder / "annotations").mkdir()
    (folder / "annotations" / "instances.json").write_text(json.dumps(doc))
    return folder


@pytest.fixture
def ws(tmp_path) -> Workspace:
    ws = Workspace(tmp_path)
    make_dataset(ws)
    return ws


def errors(client, run_id: str, **params):
    return client.get(f"{API}/detection/runs/{run_id}/errors", params=params)


def test_errors_of_a_submission_agree_with_its_report_and_page(ws):
    run = score_submission(ws, "boxes", json.dumps(RESULTS).encode(), "mine.json", run_id="sub")
    assert (run.dir / PREDICTIONS_FILE).is_file()
    report = read_json(run.dir / "detection_metrics.json")["bbox"]
    with TestClient(create_app(ws.root)) as client:
        r = errors(client, "sub", iou=0.5, score=0.5)
        assert r.status_code == 200, r.text
        d = r.json()
        assert (d["counts"]["tp"], d["counts"]["fp"], d["counts"]["fn"]) == (report["tp"], report["fp"], report["fn"])
        assert (d["counts"]["tp"], d["counts"]["fp"], d["counts"]["fn"]) == (2, 3, 2)
        assert d["counts"]["fp_kinds"] == {"duplicate": 1, "class": 1, "localisation": 0, "background": 1}
        assert d["split"] == "test" and d["total"] == 4 and d["dataset"] == "boxes"
        assert [im["errors"] for im in d["images"]] == [2, 1, 1, 1] and d["images"][0]["image_id"] == 3
        first = d["images"][0]
        assert sorted((b["kind"], b.get("fp_kind")) for b in first["boxes"]) == [
            ("fn", None),
            ("fp", "class"),
            ("tp", None),
        ]
        # paging: two at a time, the same order
        p1, p2 = errors(client, "sub", limit=2).json(), errors(client, "sub", limit=2, offset=2).json()
        assert [i["image_id"] for i in p1["images"] + p2["images"]] == [i["image_id"] for i in d["images"]]
        assert p2["total"] == 4 and p2["offset"] == 2
        # a stricter IoU: image 4's first box (IoU 0.70) is a localisation error, and the exact box the
        # duplicate was takes the object (the greedy matching goes by score, at each threshold)
        strict = errors(client, "sub", iou=0.75).json()
        assert strict["counts"]["fp_kinds"] == {"duplicate": 0, "class": 1, "localisation": 1, "background": 1}
        assert (strict["counts"]["tp"], strict["counts"]["fn"]) == (2, 2)
        # one class
        boxes = errors(client, "sub", category="box").json()
        assert boxes["category"] == 2 and {b["class"] for im in boxes["images"] for b in im["boxes"]} == {"box"}
        # the images themselves, only those the run was scored on
        img = client.get(f"{API}/detection/runs/sub/images/3")
        assert img.status_code == 200 and Image.open(io.BytesIO(img.content)).size == (W, H)
        assert client.get(f"{API}/detection/runs/sub/images/1").status_code == 404  # a train image
        assert client.get(f"{API}/detection/runs/sub/images/999").status_code == 404


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"iou": 0.05}, "query.iou"),
        ({"iou": 0.99}, "query.iou"),
        ({"score": -0.1}, "query.score"),
        ({"limit": 0}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"iou_type": "keypoints"}, "query.iou_type"),
        ({"iou": "high"}, "query.iou"),
    ],
)
def test_bad_parameters_are_422_saying_what_is_allowed(ws, params, where):
    score_submission(ws, "boxes", json.dumps(RESULTS).encode(), "mine.json", run_id="sub")
    with TestClient(create_app(ws.root)) as client:
        r = errors(client, "sub", **params)
    assert r.status_code == 422, r.text
    details = r.json()["error"]["details"]
    assert details[0]["where"] == where and details[0]["message"]


def test_a_class_or_mask_matching_the_run_cannot_take_is_422(ws):
    score_submission(ws, "boxes", json.dumps(RESULTS).encode(), "mine.json", run_id="sub")
    with TestClient(create_app(ws.root)) as client:
        r = errors(client, "sub", category="horse")
        assert r.status_code == 422 and "no class 'horse'" in r.json()["error"]["message"]
        assert r.json()["error"]["hint"] == "its classes: ball, box"
        r = errors(client, "sub", iou_type="segm")
        assert r.status_code == 422 and r.json()["error"]["hint"] == "iou_type: bbox"
        assert errors(client, "missing-run").status_code == 404


def test_runs_evaluated_before_predictions_were_kept(ws):
    # a submission keeps its file: its errors are read from it
    run = score_submission(ws, "boxes", json.dumps(RESULTS).encode(), "old.json", run_id="old-sub")
    (run.dir / PREDICTIONS_FILE).unlink()
    # a trained run from before: no predictions anywhere
    trained = Run.create(ws, "detection", "boxes", "fasterrcnn", {}, run_id="old-trained")
    trained.update(state="done", metrics={"test": {"bbox_map50": 0.4, "n_images": 4}})
    with TestClient(create_app(ws.root)) as client:
        d = errors(client, "old-sub").json()
        assert (d["counts"]["tp"], d["counts"]["fp"], d["counts"]["fn"]) == (2, 3, 2)
        r = errors(client, "old-trained")
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "no_predictions"
        assert r.json()["error"]["hint"].startswith("evaluate it again to keep them: vitrine eval old-trained")
        assert client.get(f"{API}/detection/runs/old-trained/images/3").status_code == 409
        # evaluating again needs a model of the run's own and a checkpoint: refused before any job
        r = client.post(f"{API}/detection/runs/old-sub/evaluate")
        assert r.status_code == 400 and "no model of its own" in r.json()["error"]["message"]
        r = client.post(f"{API}/detection/runs/old-trained/evaluate")
        assert r.status_code == 409 and "no checkpoint" in r.json()["error"]["message"]


@pytest.fixture
def multi(ws):
    passwords.use_profile(profiles.CHEAPEST)
    app = create_app(ws.root, multi_user=True, database_url=f"sqlite:///{ws.root / 'server.db'}")
    store = app.state.auth.store
    users = {
        n: store.add_user(n, f"{n}-password", role="admin" if n == "root" else "member")
        for n in ("root", "alice", "bob")
    }
    store.claim("dataset", "boxes", users["alice"].id)
    store.share("dataset", "boxes", "bob")
    clients = {n: TestClient(app, headers={"authorization": f"Bearer {store.create_token(n, 't')[1]}"}) for n in users}
    yield app, store, clients
    app.state.vitrine.close()
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


def test_a_member_never_sees_a_hidden_split_through_a_runs_errors(ws, multi):
    app, store, clients = multi
    r = clients["alice"].put(f"{API}/datasets/boxes/board", json={"hidden": ["test"], "group": True})
    assert r.status_code == 200, r.text
    # bob submits on the hidden test split: the run is his, its scores on the board...
    r = clients["bob"].post(f"{API}/datasets/boxes/submissions",
                            files={"file": ("bob.json", json.dumps(RESULTS).encode(), "application/json")})  # fmt: skip
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    assert clients["bob"].get(f"{API}/detection/runs/{run_id}").status_code == 200
    # ...but not the hidden split's images and boxes through its errors
    for url in (f"{API}/detection/runs/{run_id}/errors", f"{API}/detection/runs/{run_id}/images/3"):
        r = clients["bob"].get(url)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "hidden_split" and "hidden test split" in r.json()["error"]["message"]
        assert "bbox" not in r.text
    # the dataset's owner (who may read the run once it is shared) and the admins see them
    store.share("run", run_id, "alice")
    assert clients["alice"].get(f"{API}/detection/runs/{run_id}/errors").status_code == 200
    assert clients["root"].get(f"{API}/detection/runs/{run_id}/images/3").status_code == 200
    # once the split is shown again, so does bob
    assert clients["alice"].put(f"{API}/datasets/boxes/board", json={"hidden": []}).status_code == 200
    assert clients["bob"].get(f"{API}/detection/runs/{run_id}/errors").json()["counts"]["tp"] == 2


def test_a_shared_run_does_not_open_its_private_dataset(ws, multi):
    """Sharing a run shares its scores, not the images of the dataset it was scored on."""
    app, store, clients = multi
    run = score_submission(ws, "boxes", json.dumps(RESULTS).encode(), "alice.json", run_id="alice-sub")
    store.claim("run", run.id, store.user("alice").id)
    store.unshare("dataset", "boxes", "bob")
    store.share("run", run.id, "bob")
    assert clients["bob"].get(f"{API}/detection/runs/{run.id}").status_code == 200
    for url in (f"{API}/detection/runs/{run.id}/errors", f"{API}/detection/runs/{run.id}/images/3"):
        r = clients["bob"].get(url)
        assert r.status_code == 404 and r.json()["error"]["message"] == "no dataset 'boxes'", r.text
    assert clients["alice"].get(f"{API}/detection/runs/{run.id}/errors").status_code == 200
