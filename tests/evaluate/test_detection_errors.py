"""Error browsing for detection runs: the per-image matching on hand-made boxes whose answers are
known, its agreement with evaluate_detection's counts, and the predictions file runs keep."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from vitrine.core.errors import VitrineError
from vitrine.data.detection.model import Annotation, Category, DetectionDataset, ImageRecord
from vitrine.evaluate.detection import evaluate_detection
from vitrine.evaluate.detection_errors import detection_errors
from vitrine.evaluate.predictions_file import PREDICTIONS_FILE, read_predictions, write_predictions

CAT, DOG = 1, 2


def box(x1, y1, x2, y2) -> list[float]:
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def gt_dataset() -> DetectionDataset:
    """Image 1: cat A (10..50) and dog B (60..90); image 2: cat C (20..60); image 3: nothing;
    image 4: a crowd of cats (0..40)."""
    objects = [
        (1, CAT, (10, 10, 50, 50), 0),
        (1, DOG, (60, 60, 90, 90), 0),
        (2, CAT, (20, 20, 60, 60), 0),
        (4, CAT, (0, 0, 40, 40), 1),
    ]
    anns = [
        Annotation(id=n, image_id=i, category_id=c, bbox=tuple(box(*b)), iscrowd=crowd)
        for n, (i, c, b, crowd) in enumerate(objects, start=1)
    ]
    return DetectionDataset(
        images=[ImageRecord(id=i, file_name=f"{i}.png", width=100, height=100) for i in (1, 2, 3, 4)],
        categories=[Category(CAT, "cat"), Category(DOG, "dog")],
        annotations=anns,
    )


def result(image_id, cat, score, b) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": box(*b), "score": score}


RESULTS = [
    result(1, CAT, 0.9, (10, 10, 50, 50)),  # A exactly: TP
    result(1, CAT, 0.8, (12, 12, 52, 52)),  # A again (IoU 0.822): a duplicate -> FP
    result(1, CAT, 0.7, (60, 60, 90, 90)),  # on dog B, called cat: class confusion -> FP, and B is missed (FN)
    result(2, CAT, 0.75, (20, 20, 60, 51)),  # C, IoU 0.775: TP at 0.5, localisation FP + FN at 0.8
    result(2, DOG, 0.2, (0, 0, 10, 10)),  # below the score threshold: not counted
    result(3, CAT, 0.95, (0, 0, 30, 30)),  # nothing there: background FP
    result(3, DOG, 0.6, (60, 60, 70, 70)),  # nothing there either: background FP
    result(4, CAT, 0.85, (0, 0, 38, 38)),  # on the crowd region: ignored
]


def by_image(report) -> dict:
    return {row["image_id"]: row for row in report["images"]}


def kinds(row) -> list[tuple]:
    return sorted((b["kind"], b.get("fp_kind", ""), b["class"]) for b in row["boxes"])


def test_hand_made_boxes_at_iou_half():
    report = detection_errors(gt_dataset(), RESULTS, iou_threshold=0.5, score_threshold=0.5)
    rows = by_image(report)
    assert kinds(rows[1]) == [
        ("fn", "", "dog"),
        ("fp", "class", "cat"),
        ("fp", "duplicate", "cat"),
        ("tp", "", "cat"),
    ]
    dup = next(b for b in rows[1]["boxes"] if b.get("fp_kind") == "duplicate")
    assert dup["gt"]["bbox"] == box(10, 10, 50, 50) and dup["iou"] == pytest.approx(
        38 * 38 / (2 * 1600 - 38 * 38), abs=1e-3
    )
    confused = next(b for b in rows[1]["boxes"] if b.get("fp_kind") == "class")
    assert confused["gt"]["class"] == "dog" and confused["iou"] == 1.0
    tp = next(b for b in rows[1]["boxes"] if b["kind"] == "tp")
    assert tp["score"] == 0.9 and tp["iou"] == 1.0 and tp["gt"]["class"] == "cat"
    assert kinds(rows[2]) == [("tp", "", "cat")]
    assert rows[2]["boxes"][0]["iou"] == pytest.approx(0.775, abs=1e-3)
    assert kinds(rows[3]) == [("fp", "background", "cat"), ("fp", "background", "dog")]
    assert rows[4]["boxes"] == [] and rows[4]["ignored"] == 1
    # most errors first: image 1 (3 errors), image 3 (2), then 2 and 4 (none) by id
    assert [r["image_id"] for r in report["images"]] == [1, 3, 2, 4]
    assert [r["errors"] for r in report["images"]] == [3, 2, 0, 0]
    c = report["counts"]
    assert (c["tp"], c["fp"], c["fn"], c["ignored"], c["images_with_errors"]) == (2, 4, 1, 1, 2)
    assert c["fp_kinds"] == {"duplicate": 1, "class": 1, "localisation": 0, "background": 2}


def test_a_higher_iou_threshold_turns_a_true_positive_into_a_localisation_error_and_a_miss():
    report = detection_errors(gt_dataset(), RESULTS, iou_threshold=0.8, score_threshold=0.5)
    row = by_image(report)[2]
    assert kinds(row) == [("fn", "", "cat"), ("fp", "localisation", "cat")]
    assert row["boxes"][0]["iou"] == pytest.approx(0.775, abs=1e-3) or row["boxes"][1]["iou"] == pytest.approx(
        0.775, abs=1e-3
    )
    # the duplicate (IoU 0.822 with A) is still a duplicate at 0.8
    assert ("fp", "duplicate", "cat") in kinds(by_image(report)[1])


def test_the_score_threshold_and_the_class_filter():
    low = detection_errors(gt_dataset(), RESULTS, iou_threshold=0.5, score_threshold=0.1)
    assert kinds(by_image(low)[2]) == [("fp", "background", "dog"), ("tp", "", "cat")]
    dogs = detection_errors(gt_dataset(), RESULTS, iou_threshold=0.5, score_threshold=0.5, category="Dog")
    assert dogs["category"] == DOG
    # only dog boxes: the missed dog B (image 1) and the dog on nothing (image 3); no image without one
    assert {r["image_id"]: kinds(r) for r in dogs["images"]} == {
        1: [("fn", "", "dog")],
        3: [("fp", "background", "dog")],
    }
    assert dogs["per_class"] == [{"category_id": DOG, "class": "dog", "tp": 0, "fp": 1, "fn": 1}]
    assert detection_errors(gt_dataset(), RESULTS, category=str(CAT))["category"] == CAT


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iou_threshold": 0.05}, "IoU threshold 0.05 is out of range"),
        ({"iou_threshold": 0.99}, "IoU threshold 0.99 is out of range"),
        ({"score_threshold": 1.5}, "score threshold 1.5 is out of range"),
        ({"category": "horse"}, "no class 'horse'"),
        ({"iou_type": "segm"}, "cannot be matched by masks"),
        ({"iou_type": "keypoints"}, "unknown IoU type"),
    ],
)
def test_bad_parameters_say_what_is_allowed(kwargs, message):
    with pytest.raises(VitrineError, match=message) as err:
        detection_errors(gt_dataset(), RESULTS, **kwargs)
    assert err.value.hint


def assert_agrees(gt, results, iou_type, **thresholds):
    report = evaluate_detection(gt, results, iou_type=iou_type, **thresholds)[iou_type]
    errors = detection_errors(gt, results, iou_type=iou_type, **thresholds)
    assert (errors["counts"]["tp"], errors["counts"]["fp"], errors["counts"]["fn"]) == (
        report["tp"],
        report["fp"],
        report["fn"],
    )
    expected = {row["category_id"]: (row["tp"], row["fp"], row["fn"]) for row in report["per_class"]}
    got = {row["category_id"]: (row["tp"], row["fp"], row["fn"]) for row in errors["per_class"]}
    assert got == expected
    return errors


def noisy_results(gt, seed: int) -> list[dict]:
    """Predictions made from the ground truth: jittered boxes, missed objects, wrong classes,
    duplicates and boxes on nothing, with random scores."""
    rng = random.Random(seed)
    cats = [c.id for c in gt.categories]
    sizes = {im.id: (im.width, im.height) for im in gt.images}
    out = []
    for a in gt.annotations:
        if rng.random() < 0.15:
            continue  # missed
        x, y, w, h = a.bbox
        j = [rng.uniform(-0.25, 0.25) * s for s in (w, h, w, h)]
        cat = a.category_id if rng.random() > 0.15 else rng.choice(cats)
        out.append({"image_id": a.image_id, "category_id": cat, "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]),
                    max(1.0, h + j[3])], "score": rng.random()})  # fmt: skip
        if rng.random() < 0.2:
            out.append({**out[-1], "score": rng.random()})  # a duplicate
    for image_id, (w, h) in sizes.items():
        if rng.random() < 0.5:
            out.append({"image_id": image_id, "category_id": rng.choice(cats), "score": rng.random(),
                        "bbox": [rng.uniform(0, w / 2), rng.uniform(0, h / 2), w / 4, h / 4]})  # fmt: skip
    return out


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs Debian's dataset-fashion-mnist"
)
def test_sums_over_images_equal_the_reports_counts_on_generated_scenes(tmp_path):
    from vitrine.data.detection.resolve import resolve_dataset
    from vitrine.data.detection.scenes import generate_scenes

    folder = tmp_path / "scenes"
    generate_scenes(folder, n_train=2, n_val=2, n_test=12, image_size=64, classes=["T-shirt/top", "Trouser", "Bag"])
    ds, _, _ = resolve_dataset(str(folder), "scenes")
    gt = ds.split("test")
    assert len(gt.annotations) >= 12
    results = noisy_results(gt, seed=3)
    for iou in (0.1, 0.3, 0.5, 0.75, 0.95):
        for score in (0.0, 0.3, 0.5, 0.9):
            errors = assert_agrees(gt, results, "bbox", iou_threshold=iou, score_threshold=score)
    assert errors["counts"]["images"] == len(gt.images)
    other = assert_agrees(gt, noisy_results(gt, 5), "bbox", iou_threshold=0.5, score_threshold=0.5)
    assert sum(other["counts"]["fp_kinds"].values()) == other["counts"]["fp"] > 0


def test_masks_are_matched_like_the_report_matches_them():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_detection_metrics import make_gt, predictions

    gt, preds = make_gt(), predictions()
    for iou in (0.5, 0.8):
        assert_agrees(gt, preds_as_results(gt, preds), "segm", iou_threshold=iou, score_threshold=0.5)
        assert_agrees(gt, preds_as_results(gt, preds), "bbox", iou_threshold=iou, score_threshold=0.25)


def test_masks_come_with_each_box_when_matched_by_masks():
    import sys

    import numpy as np
    from pycocotools import mask as mask_utils

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_detection_metrics import make_gt, predictions, rect_mask

    gt = make_gt()
    report = detection_errors(gt, preds_as_results(gt, predictions()), iou_type="segm", masks=True)
    boxes = [b for im in report["images"] for b in im["boxes"]]
    assert boxes and all(b["mask"]["size"] == [100, 100] and isinstance(b["mask"]["counts"], str) for b in boxes)
    tp = next(b for b in boxes if b["kind"] == "tp" and b["bbox"] == [10.0, 10.0, 40.0, 40.0])
    assert np.array_equal(
        mask_utils.decode({**tp["mask"], "counts": tp["mask"]["counts"].encode()}), rect_mask(10, 10, 50, 50)
    )
    with pytest.raises(VitrineError, match="masks come with the matching by masks"):
        detection_errors(gt, preds_as_results(gt, predictions()), iou_type="bbox", masks=True)


def preds_as_results(gt, preds):
    from vitrine.evaluate.detection import coco_results

    return coco_results(gt, preds)


def test_the_predictions_file_round_trips_and_is_refused_when_damaged(tmp_path):
    info = write_predictions(tmp_path, RESULTS, [1, 2, 3, 4], "test")
    path = tmp_path / PREDICTIONS_FILE
    assert info == {"file": PREDICTIONS_FILE, "bytes": path.stat().st_size, "results": len(RESULTS), "images": 4}
    doc = read_predictions(tmp_path)
    assert doc["results"] == RESULTS and doc["image_ids"] == [1, 2, 3, 4] and doc["split"] == "test"
    assert json.loads(gzip.decompress(path.read_bytes()))["format"] == "vitrine.coco-results"
    assert not list(tmp_path.glob("*.tmp*"))  # written through the atomic writer
    path.write_bytes(b"not gzip")
    with pytest.raises(VitrineError, match="is damaged") as err:
        read_predictions(tmp_path)
    assert "vitrine eval" in err.value.hint
