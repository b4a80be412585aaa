"""The packaged SSD-MobileNet-v2 COCO detector (real weights, offline): it finds the cat in
scikit-image's ``chelsea`` photo, batches agree with single images, it is safe across threads, and
it feeds the evaluation end to end."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from skimage import data

from vitrine.core.errors import ModelError
from vitrine.data.detection.model import Annotation, Category, DetectionDataset, ImageRecord
from vitrine.evaluate.detection import evaluate_detection, measure_detector_speed, predict_dataset
from vitrine.models.detectors.ssd import CONFIG_FILE, GRAPH_FILE, OpenCVSSDDetector, package_files
from vitrine.predict.detector import load_detector

# chelsea is 451x300; the cat's face fills most of it: eyes near (170, 115) and (320, 140), nose (260, 240)
FACE_POINTS = [(170, 115), (320, 140), (260, 240)]
FACE_REGION = (60, 0, 420, 300)


@pytest.fixture(scope="module")
def ssd():
    import cv2

    cv2.setNumThreads(1)
    return load_detector("ssd-mobilenet-v2-coco")


@pytest.fixture(scope="module")
def chelsea():
    return Image.fromarray(data.chelsea())


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_finds_the_cat(ssd, chelsea):
    assert package_files() is not None  # found without importing the package
    out = ssd.predict(chelsea, threshold=0.5)
    assert out.labels[0] == "cat" and out.class_ids[0] == 17
    assert out.scores[0] > 0.5
    assert "cat" not in out.labels[1:]  # one cat
    x1, y1, x2, y2 = out.boxes[0]
    for px, py in FACE_POINTS:
        assert x1 <= px <= x2 and y1 <= py <= y2
    assert box_iou(out.boxes[0], FACE_REGION) > 0.6
    assert (out.width, out.height) == chelsea.size

    speed = measure_detector_speed(ssd, [chelsea], warmup=2, repeats=10)
    print(f"\nssd-mobilenet-v2-coco: {speed['ms_per_image']:.1f} ms/image (median of 10) on chelsea, CPU")
    assert speed["images"] == 10 and speed["model"] == "ssd-mobilenet-v2-coco"
    assert 0 < speed["ms_min"] <= speed["ms_per_image"] <= speed["ms_max"] < 5000


def test_batches_threads_and_other_photos(ssd, chelsea):
    astronaut = Image.fromarray(data.astronaut())
    small = chelsea.resize((150, 100))
    grey = chelsea.convert("L")
    outs = ssd.predict_batch([chelsea, astronaut, small, grey], threshold=0.5)
    assert outs[0].labels[0] == "cat" and outs[2].labels[0] == "cat" and outs[3].labels[0] == "cat"
    assert outs[1].labels[0] == "person"
    single = ssd.predict(chelsea, threshold=0.5)
    assert np.allclose(outs[0].boxes, single.boxes, atol=1.0) and outs[0].labels == single.labels
    assert outs[2].boxes[0][2] <= 150 and outs[2].boxes[0][3] <= 100  # in the small image's pixels
    with ThreadPoolExecutor(4) as pool:  # one net, four threads: the lock keeps results right
        results = list(pool.map(lambda im: ssd.predict(im, threshold=0.5), [chelsea, astronaut] * 4))
    assert [r.labels[0] for r in results] == ["cat", "person"] * 4
    assert len(ssd.predict(Image.new("RGB", (64, 64), (255, 255, 255)), threshold=0.5)) == 0


def test_weights_from_a_folder_or_missing(tmp_path):
    pb, pbtxt = package_files()
    folder = tmp_path / "ssd"
    folder.mkdir()
    (folder / GRAPH_FILE).symlink_to(pb)
    (folder / CONFIG_FILE).symlink_to(pbtxt)
    det = OpenCVSSDDetector(weights=folder)
    assert det.predict(Image.fromarray(data.chelsea())).labels[0] == "cat"
    with pytest.raises(ModelError, match="not found"):
        OpenCVSSDDetector(weights=tmp_path / "nothing-here")


def test_evaluation_end_to_end(ssd, tmp_path):
    """A one-image dataset with the cat (dataset id 1, COCO id 17: mapped by name)."""
    Image.fromarray(data.chelsea()).save(tmp_path / "chelsea.png")
    gt = DetectionDataset(
        images=[ImageRecord(id=5, file_name="chelsea.png", width=451, height=300)],
        categories=[Category(1, "cat"), Category(2, "dog")],
        annotations=[Annotation(id=1, image_id=5, category_id=1, bbox=(10, 0, 400, 297))],
        root=tmp_path,
    )
    seen = []
    preds = predict_dataset(ssd, gt, threshold=0.05, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 1)] and set(preds) == {5}
    report = evaluate_detection(gt, preds)
    assert report["iou_types"] == ["bbox"]
    assert report["bbox"]["map50"] == pytest.approx(1.0)
    assert report["bbox"]["tp"] == 1 and report["bbox"]["fn"] == 0
    assert report["ms_per_image"] > 0
