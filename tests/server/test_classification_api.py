"""REST API for classification: datasets (summary, stats, samples, images, thumbnails), training
jobs, runs (list, details, CSV files) and predictions, with their bad input.

The workspace is built here from tiny generated colour images (a dataset ``colours`` with a
duplicate across splits and an unreadable file). Runs use a fake classifier kind (``test-fake``)
registered for these tests: it answers from the image's mean colour, so predictions are
predictable. Training routes are checked with the core training function replaced by a fake
(progress, cancel), and once with a real linear probe on the offline model.

The helpers at the top are shared with test_classification_ui.py.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vitrine.core.atomic import atomic_write_json
from vitrine.core.errors import Cancelled
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.predict import classifier as classifier_module
from vitrine.runs import Run
from vitrine.server.app import create_app

API = "/api/v1"
DATASET = "colours"
CLASSES = ["blue", "green", "red"]
COLOURS = {"red": (215, 35, 35), "green": (35, 190, 45), "blue": (35, 45, 210)}
SPLITS = ["train", "train", "train", "train", "val", "val", "test", "test"]  # per class
ACCENTED = "red/rouge été 0.png"  # a space and an accent: URLs must be encoded
LEAKED_COPY = "red/copy of rouge.png"  # the same bytes as ACCENTED (train), in the test split
BROKEN = "blue/broken.png"  # not an image
OUTSIDE_DATASET = "red/not-in-dataset.png"  # an image under the root that is no sample
FAKE_KIND = "test-fake"
RUN_ID = "fake-colours"
RUNNING_ID = "fake-running"
SECRET = b"TOP SECRET: never served\n"
CLASS_ROUTES = {
    "/api/v1/datasets": {"get"},
    "/api/v1/datasets/{name}": {"get"},
    "/api/v1/datasets/{name}/stats": {"get"},
    "/api/v1/datasets/{name}/samples": {"get"},
    "/api/v1/datasets/{name}/images/{path}": {"get"},
    "/api/v1/datasets/{name}/thumbs/{path}": {"get"},
    "/api/v1/datasets/{name}/train": {"post"},
    "/api/v1/datasets/{name}/jobs": {"get"},
    "/api/v1/train/options": {"get"},
    "/api/v1/runs": {"get"},
    "/api/v1/runs/{run_id}": {"get"},
    "/api/v1/runs/{run_id}/confusion.csv": {"get"},
    "/api/v1/runs/{run_id}/per_class.csv": {"get"},
    "/api/v1/runs/{run_id}/predict": {"get", "post"},
}


# ------------------------------------------------------------------------------ shared helpers
def colour_image(label: str, size: tuple[int, int], seed: int) -> Image.Image:
    """A noisy image of one colour (noise: no two images are byte-identical by accident)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.array(COLOURS[label], dtype=np.int16)
    arr = np.clip(base + rng.integers(-25, 26, size=(h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def image_size(i: int) -> tuple[int, int]:
    return (32 + 8 * i, 32)


class FakeColourClassifier:
    """Probabilities from the mean colour: a softmax over the R, G, B means (blue, green, red)."""

    classes = CLASSES

    def predict_proba(self, images) -> np.ndarray:
        out = []
        for im in images:
            r, g, b = np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0) / 255.0
            logits = 8.0 * np.array([b, g, r])
            e = np.exp(logits - logits.max())
            out.append(e / e.sum())
        return np.array(out)


def load_fake(run: Run) -> FakeColourClassifier:
    return FakeColourClassifier()


def register_fake_classifier() -> None:
    classifier_module.register_loader(FAKE_KIND, load_fake)


def unregister_fake_classifier() -> None:
    # load_classifier imports the real kinds only while no loader is registered: leave it empty
    classifier_module._LOADERS.pop(FAKE_KIND, None)


def write_fake_run(ws: Workspace, run_id: str, dataset: ClassificationDataset, state: str = "done") -> Path:
    """A run of the fake kind, evaluated on the test split with the real report writer."""
    from vitrine.collection.imageio import open_image
    from vitrine.evaluate.classification import classification_report, summary, write_report

    directory = ws.run_dir(run_id)
    directory.mkdir(parents=True, exist_ok=True)
    now = time.time()
    record = {
        "id": run_id,
        "kind": FAKE_KIND,
        "dataset": dataset.name,
        "model": "mean-colour",
        "config": {},
        "state": state,
        "progress": {"stage": "train", "epoch": 2, "epochs": 5, "step": 3, "steps": 8, "eta_seconds": 95}
        if state == "running"
        else {"stage": "done"},
        "metrics": {},
        "classes": CLASSES,
        "created_at": now - (100 if state == "done" else 0),
        "updated_at": now,
    }
    if state == "done":
        test = [s for s in dataset.split("test") if s.path != BROKEN]
        probs = FakeColourClassifier().predict_proba([open_image(dataset.path_of(s)) for s in test])
        y = [CLASSES.index(s.label) for s in test]
        report = {"split": "test", **classification_report(y, probs, CLASSES, (1, 2))}
        report["speed"] = {"images_per_second": 512.0, "ms_per_image": 1.95}
        write_report(directory, report)
        record["metrics"] = {"test": summary(report), "speed": report["speed"]}
    atomic_write_json(directory / "run.json", record)
    return directory


def build_workspace(root: Path) -> Workspace:
    """``root`` with ``colour-images/`` (the files), ``datasets/colours`` and two fake runs."""
    images = root / "colour-images"
    samples = []
    for label in CLASSES:
        fmt = "JPEG" if label == "green" else "PNG"
        for i, split in enumerate(SPLITS):
            ext = ".jpg" if fmt == "JPEG" else ".png"
            rel = ACCENTED if (label == "red" and i == 0) else f"{label}/{label}-{i}{ext}"
            path = images / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            colour_image(label, image_size(i), seed=CLASSES.index(label) * 100 + i).save(
                path, fmt, **({"quality": 95} if fmt == "JPEG" else {})
            )
            samples.append(Sample(rel, label, split))
    shutil.copyfile(images / ACCENTED, images / LEAKED_COPY)
    samples.append(Sample(LEAKED_COPY, "red", "test"))
    (images / BROKEN).write_bytes(b"\x89PNG\r\n\x1a\n but not really a PNG " * 8)
    samples.append(Sample(BROKEN, "blue", "test"))
    colour_image("red", (40, 40), seed=1).save(images / OUTSIDE_DATASET)
    (root / "secret.txt").write_bytes(SECRET)

    ws = Workspace(root)
    dataset = ClassificationDataset(name=DATASET, root=images, samples=samples, source={"kind": "test"})
    dataset.save(ws.dataset_dir(DATASET))
    write_fake_run(ws, RUN_ID, dataset)
    write_fake_run(ws, RUNNING_ID, dataset, state="running")
    return ws


# ------------------------------------------------------------------------------ test helpers
def _never_5xx(response: httpx.Response) -> None:
    response.read()
    assert response.status_code < 500, f"{response.request.url}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.text[:300]
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"].strip(), response.text[:300]


def make_client(root: Path, **kwargs) -> TestClient:
    client = TestClient(create_app(root, **kwargs), raise_server_exceptions=False)
    client.event_hooks = {"request": [], "response": [_never_5xx]}
    return client


def error_of(response: httpx.Response, status: int, code: str | None = None, *words: str) -> dict:
    assert response.status_code == status, f"{response.status_code}: {response.text[:300]}"
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "hint"}
    if code is not None:
        assert error["code"] == code, error
    for word in words:
        assert word in error["message"], (word, error)
    return error


def wait_for(client: TestClient, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"{API}/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {timeout} s: {job}"
        time.sleep(0.05)


async def _raw_get(app, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as given (HTTP clients remove ``..`` segments; a raw client need not)."""
    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=30)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def fake_classifier():
    register_fake_classifier()
    yield
    unregister_fake_classifier()


@pytest.fixture(scope="module")
def root(tmp_path_factory, fake_classifier) -> Path:
    root = tmp_path_factory.mktemp("classification") / "workspace"
    build_workspace(root)
    # a dataset whose files are damaged: listed with its error, never a 500
    damaged = root / "datasets" / "damaged"
    damaged.mkdir(parents=True)
    (damaged / "dataset.json").write_text("{not json", encoding="utf-8")
    # a run whose run.json is damaged
    (root / "runs" / "damaged-run").mkdir(parents=True)
    (root / "runs" / "damaged-run" / "run.json").write_text("{not json", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def client(root) -> TestClient:
    with make_client(root) as c:
        yield c


@pytest.fixture(scope="module")
def small_client(root) -> TestClient:
    """Uploads limited to 5 000 bytes."""
    with make_client(root, max_upload_bytes=5_000) as c:
        yield c


@pytest.fixture
def private_root(tmp_path, fake_classifier) -> Path:
    """A workspace of its own, free to change (training writes runs into it)."""
    root = tmp_path / "workspace"
    build_workspace(root)
    return root


D = f"{API}/datasets/{DATASET}"
R = f"{API}/runs/{RUN_ID}"


# ------------------------------------------------------------------------------ schema
def test_openapi_lists_the_classification_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    found = {p: {m for m in ops if m != "parameters"} for p, ops in paths.items() if p in CLASS_ROUTES}
    assert found == CLASS_ROUTES
    from vitrine.server.api.classification import router

    declared = {route.path.replace("{path:path}", "{path}") for route in router.routes}
    assert declared == set(CLASS_ROUTES)


# ------------------------------------------------------------------------------ datasets
def test_datasets_list(client):
    r = client.get(f"{API}/datasets")
    assert r.status_code == 200
    rows = {d["name"]: d for d in r.json()}
    assert set(rows) == {DATASET, "damaged"}
    colours = rows[DATASET]
    assert colours["classes"] == 3
    assert colours["samples"] == 3 * len(SPLITS) + 2
    assert colours["splits"] == {"train": 12, "val": 6, "test": 8}
    assert colours["source"] == "test"
    assert rows["damaged"]["error"]["message"]


def test_dataset_summary(client):
    r = client.get(D)
    assert r.status_code == 200
    s = r.json()
    assert s["name"] == DATASET
    assert s["classes"] == CLASSES
    assert s["samples"] == 26
    assert s["problems"] == []
    assert s["counts"]["test"] == {"blue": 3, "green": 2, "red": 3}
    assert s["counts"]["train"] == {"blue": 4, "green": 4, "red": 4}


def test_damaged_dataset_is_a_4xx(client):
    error_of(client.get(f"{API}/datasets/damaged"), 400, None, "damaged")


@pytest.mark.parametrize("rest", ["", "/stats", "/samples", "/images/red/red-1.png", "/thumbs/red/red-1.png", "/jobs"])
@pytest.mark.parametrize("name", ["nope", "a b", "-x", "dataset.json", "%2e%2e"])
def test_unknown_dataset_is_404(client, name, rest):
    error_of(client.get(f"{API}/datasets/{quote(name, safe='')}{rest}"), 404, "not_found")


@pytest.mark.parametrize("rest", ["", "/stats", "/samples", "/images/red/red-1.png"])
def test_dot_dot_as_the_dataset_name_is_404(client, rest):
    status, body = asyncio.run(_raw_get(client.app, f"{API}/datasets/..{rest}"))
    assert status == 404, body[:200]


def test_unknown_dataset_train_is_404(client):
    error_of(client.post(f"{API}/datasets/nope/train", json={"method": "zero-shot"}), 404, "not_found", "nope")


def test_stats_numbers(client):
    r = client.get(f"{D}/stats")
    assert r.status_code == 200
    st = r.json()
    assert st["total"] == 26
    assert st["classes"] == CLASSES
    assert st["counts"]["train"] == {"blue": 4, "green": 4, "red": 4}
    assert st["counts"]["test"] == {"blue": 3, "green": 2, "red": 3}
    assert st["per_class"] == {"blue": 9, "green": 8, "red": 9}
    assert st["measured"] == 26
    widths = [image_size(i)[0] for i in range(len(SPLITS))]
    assert st["width"]["min"] == min(widths) and st["width"]["max"] == max(widths)
    assert st["width"]["n"] == 25  # the broken file has no size
    assert st["height"]["min"] == st["height"]["max"] == 32
    assert st["aspect"]["min"] == 1 and st["aspect"]["max"] == pytest.approx(max(widths) / 32)
    assert sum(st["width"]["histogram"]["counts"]) == 25
    assert st["formats"] == {"PNG": 17, "JPEG": 8}
    assert [u["path"] for u in st["unreadable"]] == [BROKEN]
    assert st["duplicates"]["n_groups"] == 1
    assert sorted(st["duplicates"]["groups"][0]["paths"]) == sorted([ACCENTED, LEAKED_COPY])
    assert len(st["leakage"]) == 1
    assert sorted(st["leakage"][0]["splits"]) == ["test", "train"]
    assert any("leakage" in w for w in st["warnings"])
    assert len(st["per_image"]["width"]) == 25
    # the second answer comes from the cache; per_image=false leaves the raw values out
    again = client.get(f"{D}/stats", params={"per_image": "false"}).json()
    assert "per_image" not in again
    assert again["width"] == st["width"]


def test_stats_bad_flag_is_422(client):
    error_of(client.get(f"{D}/stats", params={"per_image": "maybe"}), 422, "invalid_request")


def test_samples(client, root):
    r = client.get(f"{D}/samples", params={"per_class": 2})
    assert r.status_code == 200
    data = r.json()
    assert data["classes"] == CLASSES and data["per_class"] == 2
    known = {s.path for s in ClassificationDataset.load(root / "datasets" / DATASET).samples}
    for label in CLASSES:
        rows = data["samples"][label]
        assert len(rows) == 2
        for row in rows:
            assert row["path"] in known and row["path"].startswith(label + "/")
            assert row["split"] in ("train", "val", "test")
    every = client.get(f"{D}/samples", params={"per_class": 64}).json()
    assert sum(len(v) for v in every["samples"].values()) == 26
    # the same seed picks the same images
    assert client.get(f"{D}/samples", params={"per_class": 2}).json() == data


@pytest.mark.parametrize("params", [{"per_class": 0}, {"per_class": 65}, {"per_class": "x"}, {"seed": -1}])
def test_samples_bad_numbers_are_422(client, params):
    error_of(client.get(f"{D}/samples", params=params), 422, "invalid_request")


def test_image_file(client, root):
    r = client.get(f"{D}/images/{quote(ACCENTED)}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.content == (root / "colour-images" / ACCENTED).read_bytes()
    r = client.get(f"{D}/images/green/green-1.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("size", [None, 64])
def test_thumbnail(client, root, size):
    params = {"size": size} if size else {}
    r = client.get(f"{D}/thumbs/{quote(ACCENTED)}", params=params)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    im = Image.open(io.BytesIO(r.content))
    assert im.format == "JPEG"
    assert max(im.size) == min(size or 320, image_size(0)[0])
    # cached under the dataset's folder
    assert list((root / "datasets" / DATASET / "thumbs").rglob("*.jpg"))


def test_thumbnail_is_made_smaller(client):
    r = client.get(f"{D}/thumbs/red/red-7.png", params={"size": 40})
    assert Image.open(io.BytesIO(r.content)).size == (40, round(32 * 40 / 88))


@pytest.mark.parametrize("size", [0, 31, 1025, "big"])
def test_thumbnail_bad_size_is_422(client, size):
    error_of(client.get(f"{D}/thumbs/red/red-1.png", params={"size": size}), 422, "invalid_request")


def test_thumbnail_when_the_dataset_folder_cannot_be_written(private_root, monkeypatch):
    import vitrine.server.api.classification as classification

    monkeypatch.setattr(classification, "THUMBS_DIR", "dataset.json/thumbs")  # under a file: mkdir fails
    with make_client(private_root) as c:
        r = c.get(f"{D}/thumbs/red/red-3.png", params={"size": 48})
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(r.content)).size) == 48


def test_thumbnail_of_an_unreadable_sample_is_400(client):
    error_of(client.get(f"{D}/thumbs/{BROKEN}"), 400, "bad_image")


def test_missing_file_of_a_sample_is_404(private_root):
    (private_root / "colour-images" / "red" / "red-2.png").unlink()
    with make_client(private_root) as c:
        error_of(c.get(f"{D}/images/red/red-2.png"), 404, "not_found", "missing")
        error_of(c.get(f"{D}/thumbs/red/red-2.png"), 404, "not_found", "missing")


@pytest.mark.parametrize("kind", ["images", "thumbs"])
@pytest.mark.parametrize(
    "path",
    [
        OUTSIDE_DATASET,  # on disk, under the image root, but not a sample
        "red/nothing.png",
        "../secret.txt",
        "red/../../secret.txt",
        "%2e%2e/secret.txt",
        "..%2Fsecret.txt",
        "%2Fetc%2Fpasswd",
        "red/%2e%2e/%2e%2e/secret.txt",
        "colour-images/red/red-1.png",
    ],
)
def test_paths_that_are_not_samples_are_404(client, kind, path):
    r = client.get(f"{D}/{kind}/{path}")
    error_of(r, 404)
    assert SECRET not in r.content


@pytest.mark.parametrize("kind", ["images", "thumbs"])
@pytest.mark.parametrize("path", ["../../secret.txt", "red/../../../secret.txt", "/../secret.txt"])
def test_literal_dot_dot_in_the_raw_path_is_refused(client, kind, path):
    status, body = asyncio.run(_raw_get(client.app, f"{D}/{kind}/{path}"))
    assert status == 404, body[:200]
    assert SECRET not in body


# ------------------------------------------------------------------------------ training
def test_train_options(client):
    r = client.get(f"{API}/train/options")
    assert r.status_code == 200
    opts = r.json()
    assert [m["name"] for m in opts["methods"]] == ["linear-probe", "zero-shot", "finetune"]
    assert "offline-concepts" in {m["name"] for m in opts["embedding_models"]}
    assert all(m["task"] == "embedding" for m in opts["embedding_models"])
    assert all(m["task"] == "classification" for m in opts["backbones"])


@pytest.mark.parametrize(
    "body, where",
    [
        ({}, "method"),
        ({"method": "svm"}, "method"),
        ({"method": "finetune", "epochs": 0}, "epochs"),
        ({"method": "finetune", "epochs": "many"}, "epochs"),
        ({"method": "finetune", "lr": -1}, "lr"),
        ({"method": "finetune", "image_size": 8}, "image_size"),
        ({"method": "finetune", "max_minutes": 0}, "max_minutes"),
        ({"method": "linear-probe", "colour": "red"}, "colour"),
        ({"method": "zero-shot", "prompts": "poems"}, "prompts"),
        ([1, 2], "body"),
    ],
)
def test_train_bad_body_is_422(client, body, where):
    error = error_of(client.post(f"{D}/train", json=body), 422, "invalid_request")
    assert where in error["message"]


def test_train_not_json_is_422(client):
    r = client.post(f"{D}/train", content=b"method=finetune", headers={"content-type": "application/json"})
    error_of(r, 422, "invalid_request")


@pytest.mark.parametrize(
    "body, words",
    [
        ({"method": "linear-probe", "backbone": "efficientnet-lite0"}, "backbone"),
        ({"method": "zero-shot", "epochs": 3}, "epochs"),
        ({"method": "finetune", "embedding_model": "offline-concepts"}, "embedding_model"),
        ({"method": "zero-shot", "embedding_model": "no-such-model"}, "no-such-model"),
        ({"method": "finetune", "backbone": "offline-concepts"}, "backbone"),
        ({"method": "linear-probe", "run_id": "../escape"}, "run id"),
        ({"method": "linear-probe", "run_id": RUN_ID}, "already exists"),
    ],
)
def test_train_bad_options_are_400_and_start_nothing(client, body, words):
    before = client.get(f"{D}/jobs").json()
    error = error_of(client.post(f"{D}/train", json=body), 400)
    assert words in error["message"] or words in (error["hint"] or ""), error
    assert client.get(f"{D}/jobs").json() == before


def test_train_job_reports_progress_and_makes_a_run(private_root, monkeypatch):
    """The route maps the core's progress (stage, done, total, info) onto the job."""
    import vitrine.train.classification.linear_probe as lp

    seen = {}
    release = threading.Event()

    def fake_train(workspace, dataset, *, config=None, progress=None, cancel=None, run_id=None, **kw):
        seen.update(dataset=dataset.name, config=config, run_id=run_id, kw=kw)
        run = Run.create(workspace, "linear-probe", dataset.name, "offline-concepts", config or {}, run_id)
        progress("embed", 3, 10)
        progress("train", 4, 8, {"epoch": 2, "epochs": 5, "step": 4, "steps": 8, "loss": 0.4321, "eta_seconds": 75})
        release.wait(10)
        run.update(state="done", metrics={"test": {"split": "test", "accuracy": 0.75, "macro_f1": 0.7}})
        return run

    monkeypatch.setattr(lp, "train_linear_probe", fake_train)
    with make_client(private_root) as c:
        r = c.post(f"{D}/train", json={"method": "linear-probe", "embedding_model": "offline-concepts", "C": 0.5})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["kind"] == "train" and job["target"] == f"dataset:{DATASET}"
        run_id = job["run_id"]
        assert run_id.startswith("20") and "linear-probe" in run_id
        deadline = time.monotonic() + 10
        while (j := c.get(f"{API}/jobs/{job['id']}").json())["stage"] != "train":
            assert time.monotonic() < deadline, j
            time.sleep(0.02)
        assert (j["done"], j["total"]) == (4, 8)
        assert j["message"] == "epoch 2/5 · step 4/8 · loss 0.4321 · about 1 min 15 s left"
        # a second request while it runs follows the same job
        again = c.post(f"{D}/train", json={"method": "zero-shot"})
        assert again.status_code == 202 and again.json()["id"] == job["id"]
        assert again.json()["run_id"] == run_id
        release.set()
        done = wait_for(c, job["id"])
        assert done["state"] == "done", done
        assert done["result"]["run_id"] == run_id and done["result"]["accuracy"] == 0.75
        assert seen == {
            "dataset": DATASET,
            "config": {"C": 0.5},
            "run_id": run_id,
            "kw": {"embedding_model": "offline-concepts"},
        }
        jobs = c.get(f"{D}/jobs").json()
        assert [x["id"] for x in jobs] == [job["id"]] and jobs[0]["run_id"] == run_id
        rows = {x["id"]: x for x in c.get(f"{API}/runs").json()}
        assert rows[run_id]["accuracy"] == 0.75 and rows[run_id]["kind"] == "linear-probe"


def test_cancel_a_training_job(private_root, monkeypatch):
    import vitrine.train.classification.zero_shot as zs

    def fake_zero_shot(workspace, dataset, *, progress=None, cancel=None, run_id=None, **kw):
        run = Run.create(workspace, "zero-shot", dataset.name, "offline-concepts", {}, run_id)
        for i in range(400):
            if cancel.is_set():
                run.update(state="cancelled")
                raise Cancelled("training was cancelled")
            progress("embed", i, 400)
            time.sleep(0.025)
        raise AssertionError("not cancelled")

    monkeypatch.setattr(zs, "make_zero_shot", fake_zero_shot)
    with make_client(private_root) as c:
        job = c.post(f"{D}/train", json={"method": "zero-shot"}).json()
        time.sleep(0.1)
        assert c.post(f"{API}/jobs/{job['id']}/cancel").status_code == 200
        done = wait_for(c, job["id"])
        assert done["state"] == "cancelled"
        assert c.get(f"{API}/runs/{job['run_id']}").json()["record"]["state"] == "cancelled"


def test_failed_training_is_reported_on_the_job(private_root, monkeypatch):
    import vitrine.train.classification.linear_probe as lp
    from vitrine.core.errors import VitrineError

    def failing(*args, **kwargs):
        raise VitrineError("the train split needs images of at least 2 classes")

    monkeypatch.setattr(lp, "train_linear_probe", failing)
    with make_client(private_root) as c:
        job = c.post(f"{D}/train", json={"method": "linear-probe"}).json()
        done = wait_for(c, job["id"])
        assert done["state"] == "failed"
        assert "2 classes" in done["error"]["message"]


@pytest.mark.slow
def test_real_linear_probe_then_predict(private_root):
    """End to end with the core: a linear probe on the offline model, then a prediction."""
    with make_client(private_root) as c:
        r = c.post(f"{D}/train", json={"method": "linear-probe", "embedding_model": "offline-concepts"})
        assert r.status_code == 202, r.text
        job = wait_for(c, r.json()["id"], timeout=300)
        assert job["state"] == "done", job
        run_id = job["result"]["run_id"]
        assert run_id == r.json()["run_id"]
        detail = c.get(f"{API}/runs/{run_id}").json()
        assert detail["record"]["kind"] == "linear-probe" and detail["record"]["state"] == "done"
        assert detail["summary"]["accuracy"] is not None
        assert "confusion.csv" in detail["files"]
        p = c.get(f"{API}/runs/{run_id}/predict", params={"sample": "green/green-1.jpg"})
        assert p.status_code == 200, p.text
        labels = [x["label"] for x in p.json()["classes"]]
        assert sorted(labels) == CLASSES
        assert p.json()["model"]["kind"] == "linear-probe"


# ------------------------------------------------------------------------------ runs
def test_runs_list(client):
    r = client.get(f"{API}/runs")
    assert r.status_code == 200
    rows = r.json()
    assert [x["id"] for x in rows] == [RUNNING_ID, RUN_ID]  # newest first; the damaged one is left out
    done = rows[1]
    assert done["kind"] == FAKE_KIND and done["dataset"] == DATASET and done["model"] == "mean-colour"
    assert done["state"] == "done"
    assert 0 < done["accuracy"] <= 1 and 0 < done["macro_f1"] <= 1
    assert done["images_per_second"] == 512.0
    assert done["evaluated_on"] == "test"
    running = rows[0]
    assert running["state"] == "running" and running["accuracy"] is None
    assert running["progress"]["epoch"] == 2


def test_runs_sorted_and_filtered(client):
    assert [x["id"] for x in client.get(f"{API}/runs", params={"sort": "accuracy"}).json()] == [RUN_ID, RUNNING_ID]
    assert client.get(f"{API}/runs", params={"dataset": "nope"}).json() == []
    assert len(client.get(f"{API}/runs", params={"dataset": DATASET}).json()) == 2
    error_of(client.get(f"{API}/runs", params={"sort": "luck"}), 422, "invalid_request")


def test_run_detail(client):
    r = client.get(R)
    assert r.status_code == 200
    d = r.json()
    assert d["record"]["id"] == RUN_ID and d["record"]["classes"] == CLASSES
    assert d["metrics"]["split"] == "test"
    assert d["metrics"]["classes"] == CLASSES
    matrix = d["metrics"]["confusion_matrix"]
    assert len(matrix) == 3 and sum(map(sum, matrix)) == 7  # the test split without the broken file
    assert [row["class"] for row in d["per_class"]] == CLASSES
    assert set(d["files"]) >= {"metrics.json", "per_class.csv", "confusion.csv"}
    assert d["summary"]["accuracy"] == d["metrics"]["accuracy"]


def test_damaged_run_is_a_4xx(client):
    error_of(client.get(f"{API}/runs/damaged-run"), 400, None, "damaged")


@pytest.mark.parametrize("name, header", [("confusion.csv", "true \\ predicted"), ("per_class.csv", "class")])
def test_run_csv_downloads(client, name, header):
    r = client.get(f"{R}/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert f'filename="{RUN_ID}_{name}"' in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][0] == header and len(rows) == 4


@pytest.mark.parametrize("name", ["confusion.csv", "per_class.csv"])
def test_run_csv_not_written_yet_is_404(client, name):
    error_of(client.get(f"{API}/runs/{RUNNING_ID}/{name}"), 404, "not_found", name)


@pytest.mark.parametrize("rest", ["", "/confusion.csv", "/per_class.csv", "/predict?sample=red/red-1.png"])
@pytest.mark.parametrize("run_id", ["nope", "%2e%2e", "a b", ".hidden"])
def test_unknown_run_is_404(client, run_id, rest):
    error_of(client.get(f"{API}/runs/{quote(run_id, safe='')}{rest}"), 404, "not_found")


def test_unknown_run_upload_is_404(client):
    files = {"file": ("x.png", image_bytes(colour_image("red", (20, 20), 1)), "image/png")}
    error_of(client.post(f"{API}/runs/nope/predict", files=files), 404, "not_found")


# ------------------------------------------------------------------------------ predictions
@pytest.mark.parametrize(
    "path, label", [(ACCENTED, "red"), ("green/green-5.jpg", "green"), ("blue/blue-0.png", "blue")]
)
def test_predict_a_sample(client, path, label):
    r = client.get(f"{R}/predict", params={"sample": path})
    assert r.status_code == 200, r.text
    out = r.json()
    classes = out["classes"]
    assert classes[0]["label"] == label
    assert [c["label"] for c in classes] != [] and sorted(c["label"] for c in classes) == CLASSES
    probs = [c["probability"] for c in classes]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0)
    card = out["model"]
    assert card["id"] == RUN_ID and card["kind"] == FAKE_KIND and card["model"] == "mean-colour"
    assert card["dataset"] == DATASET
    assert 0 < card["metrics"]["accuracy"] <= 1 and 0 < card["metrics"]["macro_f1"] <= 1
    assert out["image"] == {"source": "dataset", "dataset": DATASET, "path": path, "label": label}


def test_predict_top(client):
    out = client.get(f"{R}/predict", params={"sample": ACCENTED, "top": 1}).json()
    assert [c["label"] for c in out["classes"]] == ["red"]


@pytest.mark.parametrize("params", [{}, {"sample": ""}, {"sample": ACCENTED, "top": 0}])
def test_predict_bad_query_is_422(client, params):
    error_of(client.get(f"{R}/predict", params=params), 422, "invalid_request")


@pytest.mark.parametrize(
    "sample", [OUTSIDE_DATASET, "../secret.txt", "red/../../secret.txt", "/etc/passwd", "red/nothing.png"]
)
def test_predict_a_path_that_is_no_sample_is_404(client, sample):
    error_of(client.get(f"{R}/predict", params={"sample": sample}), 404, "not_found")


def test_predict_from_an_unknown_dataset_is_404(client):
    error_of(client.get(f"{R}/predict", params={"sample": ACCENTED, "dataset": "nope"}), 404, "not_found", "nope")


def test_predict_an_unreadable_sample_is_400(client):
    error_of(client.get(f"{R}/predict", params={"sample": BROKEN}), 400, "bad_image")


def test_predict_with_a_run_still_training_is_400(client):
    error_of(client.get(f"{API}/runs/{RUNNING_ID}/predict", params={"sample": ACCENTED}), 400, None, "no trained model")


@pytest.mark.parametrize("fmt, label", [("PNG", "red"), ("JPEG", "blue"), ("WEBP", "green")])
def test_predict_an_upload(client, fmt, label):
    data = image_bytes(colour_image(label, (50, 40), seed=7), fmt)
    r = client.post(f"{R}/predict", files={"file": (f"mine.{fmt.lower()}", data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["classes"][0]["label"] == label
    assert out["image"] == {"source": "upload", "name": f"mine.{fmt.lower()}", "bytes": len(data)}
    assert out["model"]["id"] == RUN_ID


def test_predict_upload_top(client):
    data = image_bytes(colour_image("red", (20, 20), seed=3))
    out = client.post(f"{R}/predict", files={"file": ("r.png", data, "image/png")}, data={"top": "2"}).json()
    assert len(out["classes"]) == 2


@pytest.mark.parametrize(
    "data, words",
    [
        (b"this is not an image at all" * 10, "r.png"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "r.png"),
        (image_bytes(colour_image("red", (60, 60), 2))[:300], "r.png"),  # truncated
    ],
)
def test_predict_corrupt_upload_is_400(client, data, words):
    error = error_of(client.post(f"{R}/predict", files={"file": ("r.png", data, "image/png")}), 400)
    assert words in error["message"]


def test_predict_empty_upload_is_400(client):
    error_of(client.post(f"{R}/predict", files={"file": ("e.png", b"", "image/png")}), 400, None, "empty")


def test_predict_without_a_file_is_422(client):
    error_of(client.post(f"{R}/predict", data={"top": "3"}), 422, "invalid_request")


def test_predict_bad_top_is_422(client):
    data = image_bytes(colour_image("red", (20, 20), seed=3))
    error_of(client.post(f"{R}/predict", files={"file": ("r.png", data)}, data={"top": "0"}), 422, "invalid_request")


def test_predict_oversized_upload_is_413(small_client):
    big = image_bytes(colour_image("red", (300, 300), seed=4))  # noisy: does not compress
    assert len(big) > 5_000 + 64 * 1024
    error_of(small_client.post(f"{R}/predict", files={"file": ("big.png", big, "image/png")}), 413, "payload_too_large")
    # over the limit but within the framing allowance: refused by read_upload
    mid = image_bytes(colour_image("red", (60, 60), seed=5))
    assert 5_000 < len(mid) < 5_000 + 64 * 1024
    error_of(small_client.post(f"{R}/predict", files={"file": ("mid.png", mid, "image/png")}), 413, "payload_too_large")
    small = image_bytes(colour_image("red", (16, 16), seed=6))
    assert small_client.post(f"{R}/predict", files={"file": ("s.png", small, "image/png")}).status_code == 200


def test_predict_with_a_prefix(root):
    """Behind a proxy prefix the API answers the same (root_path only changes the UI's links)."""
    with make_client(root, root_path="/proxy/8000") as c:
        assert c.get(f"{R}/predict", params={"sample": ACCENTED}).json()["classes"][0]["label"] == "red"


# ------------------------------------------------------------------------------ Plotly, locally
def test_plotly_is_served_by_vitrine(client):
    r = client.get("/static/vendor/plotly.min.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert len(r.content) > 1_000_000
    assert b"plotly.js" in r.content[:2000]


def test_pages_use_no_cdn(client):
    for url in ["/datasets", f"/datasets/{DATASET}", "/runs", f"/runs/{RUN_ID}", f"/runs/{RUN_ID}/predict"]:
        r = client.get(url)
        assert r.status_code == 200, url
        assert "cdn" not in r.text.lower() and "https://" not in r.text, url
    page = client.get(f"/datasets/{DATASET}").text
    assert 'src="/static/vendor/plotly.min.js' in page


def test_pages_of_unknown_things_are_404(root):
    plain = TestClient(create_app(root), raise_server_exceptions=False)  # HTML errors: no JSON check
    for url in ["/datasets/nope", "/runs/nope", "/runs/nope/predict"]:
        r = plain.get(url)
        assert r.status_code == 404, url
        assert "text/html" in r.headers["content-type"]
        assert 'id="page-error"' in r.text
    r = plain.get("/runs/damaged-run")
    assert r.status_code == 400 and "damaged" in r.text
