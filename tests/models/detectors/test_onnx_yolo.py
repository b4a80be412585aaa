"""YOLO detectors exported to ONNX (Ultralytics YOLOv8/11, YOLOv5, end-to-end with NMS) run with ONNX
Runtime: the three output layouts, the letterbox undone, per-class NMS, and parity with Ultralytics'
own ONNX pipeline. The exported models have fixed outputs or random weights: these tests check the
decoding, never detection quality."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrine.core.errors import ModelError
from vitrine.models.detectors.onnx_yolo import OnnxYoloDetector, detect_layout, letterbox

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import yolo_onnx  # noqa: E402

SIZE = 64  # model input (square)
NAMES = {0: "cat", 1: "dog", 2: "bird"}


def _export(tmp_path, output: np.ndarray, name: str, names=NAMES) -> str:
    return yolo_onnx.export(tmp_path, output, name, names, SIZE)


# an image of 128 x 64 (w x h): scale 0.5 into 64 x 64, 16 px of padding above and below
IMAGE = Image.new("RGB", (128, 64), (200, 10, 10))
R, TOP = 0.5, 16.0
# the boxes in the image, and the same boxes in the letterboxed frame
IN_IMAGE = np.array([[10, 10, 50, 40], [60, 5, 120, 60], [12, 12, 52, 42]], dtype=np.float32)
IN_FRAME = IN_IMAGE * R + np.array([0, TOP, 0, TOP], dtype=np.float32)


def _cxcywh(xyxy):
    return np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def test_letterbox_matches_the_exporters():
    x, r, left, top = letterbox(IMAGE, SIZE, SIZE)
    assert x.shape == (1, 3, SIZE, SIZE) and x.dtype == np.float32
    assert (r, left, top) == (R, 0.0, TOP)
    assert np.allclose(x[0, :, 0, 0], 114 / 255) and np.allclose(
        x[0, :, SIZE // 2, 10], [200 / 255, 10 / 255, 10 / 255]
    )


def test_yolov8_layout(tmp_path):
    rows = np.zeros((4 + 3, 20), dtype=np.float32)  # 20 anchors, most empty
    rows[:4, :3] = _cxcywh(IN_FRAME).T
    rows[4 + 0, 0], rows[4 + 1, 1], rows[4 + 0, 2] = 0.9, 0.8, 0.6  # the third box overlaps the first: NMS drops it
    rows[4 + 2, 2] = 0.7  # ... unless it is another class: bird 0.7 is its best class, so it stays
    det = OnnxYoloDetector(_export(tmp_path, rows[None], "v8"))
    assert det.layout == "v8" and det.classes == NAMES and (det.height, det.width) == (SIZE, SIZE)
    found = det.predict(IMAGE, threshold=0.25)
    assert found.labels == ["cat", "dog", "bird"] and np.allclose(found.scores, [0.9, 0.8, 0.7])
    assert np.allclose(found.boxes, IN_IMAGE, atol=1e-3)
    rows[4 + 2, 2] = 0.0  # now the third box is a cat: suppressed by the first
    found = OnnxYoloDetector(_export(tmp_path, rows[None], "v8b")).predict(IMAGE, threshold=0.25)
    assert found.labels == ["cat", "dog"]
    assert len(OnnxYoloDetector(_export(tmp_path, rows[None], "v8c")).predict(IMAGE, threshold=0.85)) == 1


def test_yolov5_layout_multiplies_objectness(tmp_path):
    rows = np.zeros((30, 5 + 3), dtype=np.float32)
    rows[:2, :4] = _cxcywh(IN_FRAME[:2])
    rows[0, 4], rows[0, 5:] = 0.9, [1.0, 0.0, 0.0]  # cat 0.9
    rows[1, 4], rows[1, 5:] = 0.5, [0.1, 0.1, 0.8]  # bird 0.4
    det = OnnxYoloDetector(_export(tmp_path, rows[None], "v5"))
    found = det.predict(IMAGE, threshold=0.3)
    assert det.layout == "v5" and found.labels == ["cat", "bird"] and np.allclose(found.scores, [0.9, 0.4])
    assert np.allclose(found.boxes, IN_IMAGE[:2], atol=1e-3)


def test_end_to_end_layout(tmp_path):
    rows = np.zeros((300, 6), dtype=np.float32)
    rows[:2, :4] = IN_FRAME[:2]
    rows[:2, 4], rows[:2, 5] = [0.95, 0.55], [1, 2]
    det = OnnxYoloDetector(_export(tmp_path, rows[None], "e2e"))
    found = det.predict(IMAGE, threshold=0.5)
    assert det.layout == "end2end" and found.labels == ["dog", "bird"] and np.allclose(found.scores, [0.95, 0.55])
    assert np.allclose(found.boxes, IN_IMAGE[:2], atol=1e-3)


def test_layouts_and_bad_files(tmp_path):
    assert detect_layout((1, 84, 8400), 80) == "v8" and detect_layout((1, 25200, 85), 80) == "v5"
    assert detect_layout((1, 300, 6), 80) == "end2end" and detect_layout((1, 25200, 6), 1) == "v5"
    assert detect_layout((1, 84, 8400), None) == "v8"
    with pytest.raises(ModelError, match="cannot tell the layout"):
        detect_layout((1, 90, 90), 80)
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="ONNX Runtime cannot load bad.onnx"):
        OnnxYoloDetector(tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match="not found"):
        OnnxYoloDetector(tmp_path / "missing.onnx")


# Ultralytics replaces PIL.Image.open process-wide when its engine is imported (its fallback for an
# unreadable file then needs pi_heif): it runs in a child process, so no other test sees the patch.
_ULTRALYTICS = """
import json, sys
import numpy as np, torch
from PIL import Image
from ultralytics import YOLO
nms, image = sys.argv[1] == "nms", sys.argv[2]
torch.manual_seed(0)
path = YOLO("yolov8n.yaml").export(format="onnx", imgsz=320, simplify=False, nms=nms, conf=0.0001)
pixels = np.asarray(Image.open(image).convert("RGB"))[:, :, ::-1]
r = YOLO(path, task="detect").predict(pixels, imgsz=320, conf=0.0001, iou=0.45, verbose=False)[0]
print(json.dumps({"path": str(path), "xyxy": r.boxes.xyxy.tolist(), "conf": r.boxes.conf.tolist(),
                  "cls": r.boxes.cls.tolist()}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("nms", [False, True], ids=["yolov8", "yolov8-nms-inside"])
def test_parity_with_ultralytics_onnx_pipeline(tmp_path, nms):
    """A random-weight YOLOv8n from its YAML (no download), exported by Ultralytics itself; our
    decoding must give the boxes Ultralytics' own ONNX predictor gives on the same image."""
    import json
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))  # no resize: padding only
    image.save(tmp_path / "noise.png")
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _ULTRALYTICS, "nms" if nms else "plain", str(tmp_path / "noise.png")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    ours = OnnxYoloDetector(tmp_path / theirs["path"]).predict(image, threshold=0.0001)
    conf = np.array(theirs["conf"])
    order = np.argsort(-conf, kind="stable")
    assert len(ours) > 0 and len(ours) == len(conf)
    assert np.allclose(ours.scores, conf[order], atol=1e-4)
    assert np.allclose(ours.boxes, np.array(theirs["xyxy"])[order], atol=0.05)
    assert (ours.class_ids == np.array(theirs["cls"])[order].astype(int)).all()


def test_the_cli_scores_and_runs_an_onnx_yolo_like_any_detector(tmp_path):
    """`vitrine eval --model FILE.onnx --data COCO` and `vitrine detect --model FILE.onnx`: the
    boxes the model gives are the ground truth, so every AP is 1 (a check of the plumbing)."""
    import json

    from typer.testing import CliRunner

    from vitrine.cli import app

    rows = np.zeros((4 + 3, 20), dtype=np.float32)
    rows[:4, :2] = _cxcywh(IN_FRAME[:2]).T
    rows[4 + 0, 0], rows[4 + 1, 1] = 0.9, 0.8
    model = _export(tmp_path, rows[None], "mine")
    IMAGE.save(tmp_path / "a.png")
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 128, "height": 64}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": k + 1, "image_id": 1, "category_id": k + 1, "iscrowd": 0,
             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
             "area": float((b[2] - b[0]) * (b[3] - b[1]))}
            for k, b in enumerate(IN_IMAGE[:2])
        ],
    }  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    runner = CliRunner()
    scored = runner.invoke(app, ["eval", "--model", model, "--data", str(tmp_path / "gt.json"), "--json"])
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    assert report["bbox"]["map50"] == pytest.approx(1.0) and report["bbox"]["map"] == pytest.approx(1.0)
    found = runner.invoke(
        app, ["detect", "--model", model, str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--json"]
    )
    assert found.exit_code == 0, found.output
    assert "cat" in found.stdout and "dog" in found.stdout


def test_an_imported_detector_is_recorded_and_ranked_on_the_leaderboard(tmp_path):
    """`vitrine eval --model FILE.onnx --data D --data-split S --record`: a run on the dataset's board,
    ranked with the others scored on the same split, kept apart from those scored on another."""
    import json

    from typer.testing import CliRunner

    from vitrine.cli import app

    good = np.zeros((4 + 3, 20), dtype=np.float32)
    good[:4, :2] = _cxcywh(IN_FRAME[:2]).T
    good[4 + 0, 0], good[4 + 1, 1] = 0.9, 0.8
    half = good.copy()
    half[4 + 1, 1] = 0.0  # finds the cat only
    (tmp_path / "shop" / "images").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        IMAGE.save(tmp_path / "shop" / "images" / name)
    boxes = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in IN_IMAGE[:2]]
    coco = {
        "images": [{"id": i + 1, "file_name": f"images/{n}", "width": 128, "height": 64, "split": s}
                   for i, (n, s) in enumerate((("a.png", "test"), ("b.png", "val")))],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [{"id": 10 * i + k + 1, "image_id": i + 1, "category_id": k + 1, "iscrowd": 0, "bbox": b,
                         "area": b[2] * b[3]} for i in range(2) for k, b in enumerate(boxes)],
    }  # fmt: skip
    (tmp_path / "shop" / "annotations").mkdir()
    data = tmp_path / "shop" / "annotations" / "instances.json"
    data.write_text(json.dumps(coco))
    runner = CliRunner()
    ws = ["--workspace", str(tmp_path / "ws")]

    def record(model, split, name):
        args = ["eval", "--model", model, "--data", str(data), "--data-split", split, "--record", "--name", name]
        result = runner.invoke(app, [*args, *ws, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert record(_export(tmp_path, good[None], "good"), "test", "yolo-good")["run"] == "yolo-good"
    record(_export(tmp_path, half[None], "half"), "test", "yolo-half")
    # the run keeps what it predicted: its errors view finds the data it was scored on and counts the same
    from vitrine.core.workspace import Workspace
    from vitrine.evaluate.run_errors import load_run_errors
    from vitrine.runs import Run

    home = Workspace(tmp_path / "ws")
    errs = load_run_errors(home, Run.load(home, "yolo-half"))
    counts = errs.errors(iou_threshold=0.5, score_threshold=0.5)["counts"]
    assert errs.split == "test" and (counts["tp"], counts["fp"], counts["fn"]) == (1, 0, 1)  # the dog is missed
    record(_export(tmp_path, good[None], "good2"), "val", "yolo-on-val")
    shown = runner.invoke(app, ["leaderboard", "shop", *ws, "--json"])
    assert shown.exit_code == 0, shown.output
    board = json.loads(shown.stdout)
    assert board["primary_metric"] == "bbox_map50" and len(board["groups"]) == 2 and board["note"]
    test_group = next(g for g in board["groups"] if g["split"] == "test")
    assert [r["id"] for r in test_group["rows"]] == ["yolo-good", "yolo-half"]  # ranked by box mAP@.5
    first = test_group["rows"][0]
    assert first["primary"] == pytest.approx(1.0) and first["latency_ms"] > 0
    assert first["weights_bytes"] > 0 and first["parameters"] == 7 * 20  # the fixed output is its one weight
    other = next(g for g in board["groups"] if g["split"] == "val")
    assert [r["id"] for r in other["rows"]] == ["yolo-on-val"]
    bad = runner.invoke(app, ["eval", "--model", "x.onnx", "--data", str(data), "--data-split", "train", *ws])
    assert bad.exit_code == 2 and "no image in split 'train'" in bad.output
