"""The group leaderboard over HTTP: a hidden test split that members never see on any route, its
images by id, submissions scored by the server, and the board the group shares."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from argon2 import profiles
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from PIL import Image

from vitrine.auth import passwords
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.runs import Run
from vitrine.server.app import create_app

CLASSES = ["Coat", "Sneaker"]
HIDDEN_PATH = "test/Sneaker/1.png"  # an image-folder path: it holds its class


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), colour).save(buf, "PNG")
    return buf.getvalue()


def make_workspace(root: Path) -> Workspace:
    ws = Workspace(root)
    images = root / "fm-images"
    samples = []
    for split in ("train", "test"):
        for c, label in enumerate(CLASSES):
            for i in range(2):
                rel = f"{split}/{label}/{i}.png"
                (images / rel).parent.mkdir(parents=True, exist_ok=True)
                (images / rel).write_bytes(png((c * 200, i * 100, 50)))
                samples.append(Sample(rel, label, split))
    ClassificationDataset(name="fm", root=images, samples=samples, classes=CLASSES).save(ws.dataset_dir("fm"))
    folder = ws.dataset_dir("boxes")
    (folder / "images").mkdir(parents=True)
    imgs, anns = [], []
    for i in range(1, 5):
        (folder / "images" / f"{i}.png").write_bytes(png((i * 40, 0, 0)))
        imgs.append({"id": i, "file_name": f"{i}.png", "width": 12, "height": 12,
                     "split": "test" if i > 2 else "train"})  # fmt: skip
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [2, 2, 6, 6], "area": 36, "iscrowd": 0})
    (folder / "annotations").mkdir()
    (folder / "annotations" / "instances.json").write_text(
        json.dumps({"images": imgs, "annotations": anns, "categories": [{"id": 1, "name": "ball"}]})
    )
    # alice's own trained run on fm, scored on its test split like every run
    from vitrine.data.importers import load_dataset
    from vitrine.evaluate.comparable import split_record

    test = {"accuracy": 0.75, **split_record(load_dataset(ws, "fm"), "test")}
    run = Run.create(ws, "finetune", "fm", "efficientnet-lite0", {"image_size": 32}, run_id="alice-trained")
    run.update(state="done", metrics={"test": test, "speed": {"latency_ms": 4.0}})
    return ws


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "board.json" and "thumbs" not in p.parts:
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def world(tmp_path):
    passwords.use_profile(profiles.CHEAPEST)
    ws = make_workspace(tmp_path)
    app = create_app(tmp_path, multi_user=True, database_url=f"sqlite:///{tmp_path / 'server.db'}")
    store = app.state.auth.store
    users = {n: store.add_user(n, f"{n}-password", role="admin" if n == "root" else "member")
             for n in ("root", "alice", "bob", "carol")}  # fmt: skip
    for name in ("fm", "boxes"):
        store.claim("dataset", name, users["alice"].id)
        store.share("dataset", name, "bob")
    store.claim("run", "alice-trained", users["alice"].id)
    bob_run = Run.create(ws, "linear-probe", "fm", "offline-concepts", {}, run_id="bob-probe")
    bob_run.update(state="done", classes=CLASSES)
    store.claim("run", "bob-probe", users["bob"].id)
    clients = {n: TestClient(app, headers={"authorization": f"Bearer {store.create_token(n, 't')[1]}"}) for n in users}
    for name in ("fm", "boxes"):
        r = clients["alice"].put(f"/api/v1/datasets/{name}/board", json={"hidden": ["test"], "group": True})
        assert r.status_code == 200 and r.json()["hidden"] == ["test"], r.text
    yield ws, app, clients
    app.state.vitrine.close()
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


# every route that serves a dataset's content, with the request that would give a hidden image,
# its path or its label away
PROBES = {
    ("GET", "/api/v1/datasets/{name}"): "/api/v1/datasets/fm",
    ("GET", "/api/v1/datasets/{name}/stats"): "/api/v1/datasets/fm/stats?per_image=true",
    ("GET", "/api/v1/datasets/{name}/samples"): "/api/v1/datasets/fm/samples?per_class=64",
    ("GET", "/api/v1/datasets/{name}/images/{path}"): f"/api/v1/datasets/fm/images/{HIDDEN_PATH}",
    ("GET", "/api/v1/datasets/{name}/thumbs/{path}"): f"/api/v1/datasets/fm/thumbs/{HIDDEN_PATH}?size=64",
    ("GET", "/api/v1/datasets/{name}/annotations"): "/api/v1/datasets/fm/annotations?split=test",
    ("GET", "/api/v1/runs/{run_id}/predict"): f"/api/v1/runs/alice-trained/predict?sample={HIDDEN_PATH}",
    # the member's own run scored on the hidden split: its per-image predictions are refused (403)
    ("GET", "/api/v1/runs/{run_id}/predictions"): "/api/v1/runs/alice-trained/predictions?true=Sneaker",
    ("GET", "/api/v1/datasets/{name}/submission"): "/api/v1/datasets/fm/submission",
    ("GET", "/api/v1/datasets/{name}/submissions"): "/api/v1/datasets/fm/submissions",
    ("GET", "/api/v1/datasets/{name}/submission/images.zip"): "/api/v1/datasets/fm/submission/images.zip",
    # a hidden image by its opaque id (what a member predicts from): pixels, never its path or label
    ("GET", "/api/v1/datasets/{name}/submission/images/{image_id}"): "/api/v1/datasets/fm/submission/images/{first_id}",
    # the map of the member's view (no map computed here: "none yet" answers, 409 for points and
    # colours; tests/server/test_dataset_map_api.py maps a dataset as a member and finds no hidden image)
    ("GET", "/api/v1/datasets/{name}/map"): "/api/v1/datasets/fm/map",
    ("GET", "/api/v1/datasets/{name}/map/points"): "/api/v1/datasets/fm/map/points",
    ("GET", "/api/v1/datasets/{name}/map/colors"): "/api/v1/datasets/fm/map/colors?by=label",
    ("GET", "/api/v1/datasets/{name}/board"): "/api/v1/datasets/fm/board",
    ("GET", "/api/v1/datasets/{name}/jobs"): "/api/v1/datasets/fm/jobs",
    # computed on the member's view: the hidden images are neither listed nor anyone's neighbour
    ("GET", "/api/v1/datasets/{name}/label-errors"): "/api/v1/datasets/fm/label-errors?k=3",
    ("GET", "/api/v1/datasets/{name}/duplicates"): "/api/v1/datasets/fm/duplicates?threshold=0.5",
    ("GET", "/api/v1/datasets/{name}/outliers"): "/api/v1/datasets/fm/outliers?k=3",
    ("GET", "/api/v1/leaderboards/{board}"): "/api/v1/leaderboards/fm",
    ("GET", "/datasets/{name}"): "/datasets/fm",
    ("GET", "/datasets/{name}/curate"): "/datasets/fm/curate",  # a shell: its lists are the routes above
    # a shell too: its points are the map routes, built from the member's view
    # (tests/server/test_dataset_map_api.py maps a dataset as a member and finds no hidden image)
    ("GET", "/datasets/{name}/map"): "/datasets/fm/map",
    ("GET", "/runs/{run_id}/predict"): "/runs/alice-trained/predict",
    ("GET", "/leaderboards/{board}"): "/leaderboards/fm",
}
NOT_FOUND = {"/images/", "/thumbs/", "/annotations", "/predict?"}


def test_a_member_never_gets_a_hidden_split_on_any_route(world):
    ws, app, clients = world
    dataset_routes = {  # the included routers' routes too (app.routes lists a router as one entry)
        (m, ctx.path_format)
        for ctx in iter_route_contexts(app.routes)
        if "{name}" in ctx.path_format and "datasets" in ctx.path_format or "predict" in ctx.path_format
        for m in ctx.methods or ()
        if m == "GET"
    }
    unprobed = {r for r in dataset_routes if r not in PROBES and "/detection/" not in r[1]}
    assert not unprobed, f"dataset routes not checked for hidden splits: {sorted(unprobed)}"
    from vitrine.evaluate.predictions import write_predictions

    bob_run = Run.load(ws, "bob-probe")  # as if evaluated on the hidden test split
    (bob_run.dir / "metrics.json").write_text(json.dumps({"split": "test"}))
    write_predictions(bob_run.dir, [HIDDEN_PATH], [1], [[0.2, 0.8]], CLASSES)
    first_id = clients["bob"].get("/api/v1/datasets/fm/submission").json()["images"][0]["id"]
    for route, url in PROBES.items():
        url = url.replace("alice-trained", "bob-probe").replace("{first_id}", first_id)
        r = clients["bob"].get(url)
        if "/map/" in url and r.status_code == 409:
            assert "test/" not in r.text, route
        elif "/submission/images/" in url:
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", route
            assert "test/" not in str(r.headers), route
        elif "/predictions" in url:
            assert r.status_code == 403 and "test/Sneaker" not in r.text, (route, r.status_code, r.text[:200])
        elif any(part in url for part in NOT_FOUND):
            # answered exactly as for an image that does not exist: nothing to learn from it
            nowhere = clients["bob"].get(url.replace(HIDDEN_PATH, "test/Sneaker/999.png"))
            assert r.status_code == 404 == nowhere.status_code, (route, r.status_code, r.text[:200])
            assert r.text.replace("1.png", "999.png") == nowhere.text, route
        else:
            assert r.status_code == 200, (route, r.status_code, r.text[:200])
            assert "test/Sneaker" not in r.text and "test/Coat" not in r.text, route
            assert "test/" not in str(r.headers), route
    summary = clients["bob"].get("/api/v1/datasets/fm").json()
    assert "test" not in summary["counts"] and summary["samples"] == 4
    assert "test" not in json.dumps(clients["bob"].get("/api/v1/datasets/fm/stats?per_image=false").json()["counts"])
    # the owner sees everything
    assert clients["alice"].get(f"/api/v1/datasets/fm/images/{HIDDEN_PATH}").status_code == 200
    owner_csv = clients["alice"].get("/api/v1/datasets/fm/annotations?split=test").text
    assert owner_csv.splitlines()[0] == "path,label,split" and f"{HIDDEN_PATH},Sneaker,test" in owner_csv
    member_csv = clients["bob"].get("/api/v1/datasets/fm/annotations").text
    assert "train/Coat/0.png,Coat,train" in member_csv and ",test" not in member_csv
    # detection folders too: the hidden split's images and boxes are not in the member's COCO file
    assert clients["bob"].get("/api/v1/datasets/boxes/annotations?split=test").status_code == 404
    coco = clients["bob"].get("/api/v1/datasets/boxes/annotations").json()
    assert sorted(im["id"] for im in coco["images"]) == [1, 2] and {a["image_id"] for a in coco["annotations"]} == {
        1,
        2,
    }
    assert len(clients["alice"].get("/api/v1/datasets/boxes/annotations").json()["images"]) == 4
    # only the owner changes the board; carol, who may not read the dataset, learns nothing
    assert clients["bob"].put("/api/v1/datasets/fm/board", json={"hidden": []}).status_code == 403
    assert clients["carol"].get("/api/v1/datasets/fm/submission").status_code == 404
    assert clients["alice"].put("/api/v1/datasets/fm/board", json={"hidden": ["train"]}).status_code == 400


def test_members_submit_and_the_group_shares_one_board(world):
    ws, _app, clients = world
    before = digest(ws.dataset_dir("fm")), digest(ws.root / "fm-images")
    listing = clients["bob"].get("/api/v1/datasets/fm/submission").json()
    assert listing["hidden"] and listing["classes"] == CLASSES and listing["format"] == "csv"
    ids = [im["id"] for im in listing["images"]]
    assert len(ids) == 4 and all(set(im) == {"id"} for im in listing["images"])
    import zipfile

    bundle = zipfile.ZipFile(io.BytesIO(clients["bob"].get("/api/v1/datasets/fm/submission/images.zip").content))
    assert sorted(bundle.namelist()) == sorted([f"{i}.png" for i in ids] + ["images.json"])
    assert json.loads(bundle.read("images.json"))["images"] == listing["images"]
    # the member fetches each image by id and "predicts" from its pixels (red channel = class)
    rows = ["image,class"]
    for image_id in ids:
        r = clients["bob"].get(f"/api/v1/datasets/fm/submission/images/{image_id}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        red = Image.open(io.BytesIO(r.content)).getpixel((0, 0))[0]
        rows.append(f"{image_id},{'Sneaker' if red > 100 else 'Coat'}")
    r = clients["bob"].post(
        "/api/v1/datasets/fm/submissions",
        files={"file": ("pairs.csv", ("\n".join(rows) + "\n").encode(), "text/csv")},
        data={"label": "bob's pixels"},
    )
    assert r.status_code == 201, r.text
    row = r.json()
    assert row["primary"] == 1.0 and row["arch"] == "bob's pixels" and row["kind"] == "submission"
    bad = clients["bob"].post(
        "/api/v1/datasets/fm/submissions",
        files={"file": ("bad.csv", f"image,class\n{ids[0]},Boot\nimg-x,Coat\n".encode(), "text/csv")},
    )
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "bad_submission"
    assert [d["message"] for d in error["details"]] == [
        "line 2: class 'Boot' is not one of the dataset's classes",
        "line 3: image 'img-x' is not an image of the test split",
    ]
    # the group's board: bob's submission beside alice's trained run, for both, on one fingerprint
    for who in ("alice", "bob"):
        board = clients[who].get("/api/v1/leaderboards/fm").json()
        assert [[(r["id"] == row["id"], r["primary"]) for r in g["rows"]] for g in board["groups"]] == [
            [(True, 1.0), (False, 0.75)]
        ], who
    assert [s["id"] for s in clients["alice"].get("/api/v1/datasets/fm/submissions").json()] == [row["id"]]
    assert (digest(ws.dataset_dir("fm")), digest(ws.root / "fm-images")) == before


def test_a_detection_submission_over_http(world):
    _ws, _app, clients = world
    listing = clients["bob"].get("/api/v1/datasets/boxes/submission").json()
    assert listing["format"] == "coco-results" and [im["id"] for im in listing["images"]] == [3, 4]
    assert "file_name" not in listing["images"][0] and listing["categories"] == [{"id": 1, "name": "ball"}]
    results = [{"image_id": i, "category_name": "ball", "bbox": [2, 2, 6, 6], "score": 0.9} for i in (3, 4)]
    r = clients["bob"].post(
        "/api/v1/datasets/boxes/submissions",
        files={"file": ("dets.json", json.dumps(results).encode(), "application/json")},
    )
    assert r.status_code == 201, r.text
    assert r.json()["primary"] == pytest.approx(1.0) and r.json()["task"] == "detect"
    bad = clients["bob"].post(
        "/api/v1/datasets/boxes/submissions",
        files={"file": ("dets.jsonl", b'{"image_id": 3, "category_id": 1, "bbox": [1,1,1,1], "score": 1}\n{oops\n')},
    )
    assert bad.status_code == 422 and "line 2: not valid JSON" in bad.json()["error"]["message"]


def wait_for_job(client, job_id: str, timeout: float = 60.0) -> dict:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def test_a_detector_submitted_as_a_model_file_is_run_and_scored_by_the_server(world, tmp_path):
    import sys

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import yolo_onnx

    ws, _app, clients = world
    # the ball of every image ([2, 2, 6, 6] on 12 px) in the 64-px frame: scale 64/12, no padding
    output = np.zeros((1, 4 + 1, 20), dtype=np.float32)
    output[0, :4, 0] = [5 * 64 / 12, 5 * 64 / 12, 6 * 64 / 12, 6 * 64 / 12]
    output[0, 4, 0] = 0.9
    good = Path(yolo_onnx.export(tmp_path, output, "ball", {0: "ball"}))
    r = clients["bob"].post(
        "/api/v1/datasets/boxes/submissions",
        files={"file": ("yolo11n-ball.onnx", good.read_bytes(), "application/octet-stream")},
        data={"label": "bob's yolo"},
    )
    assert r.status_code == 202, r.text
    job = wait_for_job(clients["bob"], r.json()["id"])
    assert job["state"] == "done", job
    board = clients["alice"].get("/api/v1/leaderboards/boxes").json()  # the group's board: alice sees it
    (row,) = [row for g in board["groups"] for row in g["rows"]]
    assert row["arch"] == "bob's yolo" and row["primary"] == pytest.approx(1.0)
    assert row["latency_ms"] is not None  # timed by the speed harness on the server
    assert row["id"] == job["params"]["run_id"]
    detail = clients["bob"].get(f"/api/v1/detection/runs/{row['id']}")  # the submitter owns the run
    assert detail.status_code == 200 and detail.json()["record"]["submission"] is True
    assert clients["carol"].get(f"/api/v1/detection/runs/{row['id']}").status_code == 404
    # its predictions are kept, but the hidden split's images and boxes are not shown to the member
    assert (ws.run_dir(row["id"]) / "predictions.json.gz").is_file()
    hidden = clients["bob"].get(f"/api/v1/detection/runs/{row['id']}/errors")
    assert hidden.status_code == 403 and hidden.json()["error"]["code"] == "hidden_split"
    assert clients["root"].get(f"/api/v1/detection/runs/{row['id']}/errors").json()["counts"]["tp"] == 2
    # a model whose classes are not the dataset's, and a file that is no model: 400, no run left
    cats = Path(yolo_onnx.export(tmp_path, output, "cat", {0: "cat"}))
    before = sorted(p.name for p in (ws.root / "runs").iterdir())
    for name, data, message in (
        ("cat.onnx", cats.read_bytes(), "none of the model's classes is a category of dataset 'boxes'"),
        ("junk.onnx", b"not an onnx file", "junk.onnx: "),
    ):
        r = clients["bob"].post("/api/v1/datasets/boxes/submissions", files={"file": (name, data)})
        assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
    assert sorted(p.name for p in (ws.root / "runs").iterdir()) == before
    r = clients["bob"].post("/api/v1/datasets/fm/submissions", files={"file": ("m.onnx", good.read_bytes())})
    assert r.status_code == 400 and "submit predictions (a CSV" in r.json()["error"]["message"]


def test_a_torchvision_checkpoint_can_be_submitted_too(world, tmp_path):
    """A reference-script checkpoint (random weights: the code path, not quality; SSDlite, small
    enough for the upload limit) whose one class is the dataset's one category, named from it."""
    import argparse

    import torch
    from torchvision.models import get_model

    _ws, _app, clients = world
    torch.manual_seed(0)
    arch = "ssdlite320_mobilenet_v3_large"
    network = get_model(arch, weights=None, weights_backbone=None, num_classes=2)
    path = tmp_path / "model_25.pth"
    torch.save({"model": network.state_dict(), "args": argparse.Namespace(model=arch), "epoch": 25}, path)
    r = clients["bob"].post("/api/v1/datasets/boxes/submissions", files={"file": ("model_25.pth", path.read_bytes())})
    assert r.status_code == 202, r.text
    job = wait_for_job(clients["bob"], r.json()["id"])
    assert job["state"] == "done", job
    (row,) = [row for g in clients["bob"].get("/api/v1/leaderboards/boxes").json()["groups"] for row in g["rows"]]
    assert (row["arch"], row["model"]) == (arch, "model_25")  # the builder, and the submission's name
    assert row["parameters"] > 1e6 and row["latency_ms"] > 0


def test_the_openapi_schema_documents_the_board_routes(world):
    _ws, app, clients = world
    paths = clients["root"].get("/openapi.json").json()["paths"]
    board = {p: sorted(m for m in ops if m != "parameters") for p, ops in paths.items() if "/datasets/{name}/" in p}
    expected = {
        "/api/v1/datasets/{name}/board": ["get", "put"],
        "/api/v1/datasets/{name}/annotations": ["get"],
        "/api/v1/datasets/{name}/submission": ["get"],
        "/api/v1/datasets/{name}/submission/images.zip": ["get"],
        "/api/v1/datasets/{name}/submission/images/{image_id}": ["get"],
        "/api/v1/datasets/{name}/submissions": ["get", "post"],
    }
    assert {p: board[p] for p in expected} == expected
    post = paths["/api/v1/datasets/{name}/submissions"]["post"]["responses"]
    assert {"201", "202", "422", "413"} <= set(post)


def test_label_errors_of_a_member_leave_the_hidden_split_out(world):
    """The owner's list is computed over every split; a member's over the splits they may see, so
    a hidden image is neither listed nor counted as anyone's neighbour."""
    ws, app, clients = world
    owner = clients["alice"].get("/api/v1/datasets/fm/label-errors?k=3")
    member = clients["bob"].get("/api/v1/datasets/fm/label-errors?k=3")
    assert owner.status_code == 200 == member.status_code, (owner.text, member.text)
    assert owner.json()["images"] == 8 and member.json()["images"] == 4
    assert all(e["split"] == "train" for e in member.json()["errors"])
    dups = clients["bob"].get("/api/v1/datasets/fm/duplicates?threshold=0.5").json()
    assert dups["images"] == 4 and "test/" not in str(dups["groups"])
