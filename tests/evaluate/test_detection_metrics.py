"""Detection metrics against a tiny hand-made case whose AP, P/R/F1 and IoUs are computed by hand."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from vitrine.core.errors import VitrineError
from vitrine.data.detection.model import Annotation, Category, DetectionDataset, ImageRecord
from vitrine.evaluate.detection import (
    category_map_by_name,
    evaluate_detection,
    pr_curve_figure,
    predict_dataset,
    write_detection_report,
)
from vitrine.models.detectors.base import Detections
from vitrine.predict.export import mask_to_rle, to_coco_results

SIZE = 100


def rect_mask(x1, y1, x2, y2, size=SIZE):
    m = np.zeros((size, size), dtype=bool)
    m[y1:y2, x1:x2] = True
    return m


def make_gt(with_masks: bool = True) -> DetectionDataset:
    """Image 1: cat A (10..50, 10..50) and dog B (60..90, 60..90); image 2: cat C (20..60, 20..60);
    image 3: nothing."""
    boxes = {1: (1, 1, (10, 10, 50, 50)), 2: (1, 2, (60, 60, 90, 90)), 3: (2, 1, (20, 20, 60, 60))}
    anns = []
    for ann_id, (image_id, cat, (x1, y1, x2, y2)) in boxes.items():
        seg = mask_to_rle(rect_mask(x1, y1, x2, y2)) if with_masks else None
        anns.append(
            Annotation(
                id=ann_id,
                image_id=image_id,
                category_id=cat,
                bbox=(x1, y1, x2 - x1, y2 - y1),
                segmentation=seg,
                area=float((x2 - x1) * (y2 - y1)),
            )
        )
    return DetectionDataset(
        images=[ImageRecord(id=i, file_name=f"{i}.png", width=SIZE, height=SIZE) for i in (1, 2, 3)],
        categories=[Category(1, "cat"), Category(2, "dog")],
        annotations=anns,
    )


def dets(rows, with_masks=True) -> Detections:
    """rows: (label, model class id, score, (x1, y1, x2, y2)); masks are the filled boxes."""
    rows = sorted(rows, key=lambda r: -r[2])
    boxes = np.array([r[3] for r in rows], dtype=np.float32).reshape(-1, 4)
    return Detections(
        boxes=boxes,
        scores=np.array([r[2] for r in rows], dtype=np.float32),
        class_ids=np.array([r[1] for r in rows], dtype=np.int64),
        labels=[r[0] for r in rows],
        width=SIZE,
        height=SIZE,
        masks=np.stack([rect_mask(*map(int, r[3])) for r in rows]) if with_masks and rows else None,
        model="hand-made",
        seconds=0.01,
    )


def predictions(with_masks=True) -> dict[int, Detections]:
    """The model uses COCO ids (cat 17, dog 18): mapped to the dataset's ids (1, 2) by name."""
    return {
        1: dets(
            [
                ("cat", 17, 0.9, (10, 10, 50, 50)),  # p1: exactly A, IoU 1
                ("cat", 17, 0.8, (12, 12, 52, 52)),  # p2: A again (IoU 38*38/(1600+1600-1444) = 0.822): duplicate
                ("Dog", 18, 0.6, (60, 60, 90, 90)),  # p3: exactly B ("Dog" matches "dog")
            ],
            with_masks,
        ),
        2: dets(
            [
                ("cat", 17, 0.7, (20, 20, 60, 51)),  # p4: C, IoU 40*31/1600 = 0.775
                ("dog", 18, 0.3, (0, 60, 30, 90)),  # p7: no dog here; below the 0.5 score threshold
            ],
            with_masks,
        ),
        3: dets(
            [
                ("cat", 17, 0.95, (0, 0, 30, 30)),  # p5: no gt in image 3
                ("person", 1, 0.9, (50, 50, 70, 70)),  # p6: not a dataset class: left out, counted
            ],
            with_masks,
        ),
    }


# AP@.5 by hand (COCO: 101 recall points, precision made monotone from the right).
#   cat, 2 gt; by score: p5 0.95 FP, p1 0.90 TP, p2 0.80 FP, p4 0.70 TP
#     precision 0, 1/2, 1/3, 2/4; recall 0, 1/2, 1/2, 1 -> interpolated precision 0.5 at every
#     recall point up to 1 -> AP = 0.5
#   dog, 1 gt: p3 0.6 TP, p7 0.3 FP -> precision 1 at recall 1 -> AP = 1.0
#   mAP@.5 = (0.5 + 1.0) / 2 = 0.75
# AP@.5:.95 (thresholds .50 .55 ... .95): p4 (IoU 0.775) is a TP up to .75 (6 thresholds), an FP from .80
#   (4 thresholds): then precision 0, 1/2, 1/3, 1/4 at recall 0, 1/2, 1/2, 1/2 -> 0.5 at the 51 recall
#   points 0..0.5, 0 beyond -> AP = 25.5/101. cat: (6 * 0.5 + 4 * 25.5/101) / 10; dog: 1.0 everywhere.
AP50_CAT, AP50_DOG = 0.5, 1.0
AP_CAT = (6 * 0.5 + 4 * 25.5 / 101) / 10
AP_DOG = 1.0
# At score >= 0.5 and IoU >= 0.5: p5 FP, p1 TP (IoU 1), p2 FP, p3 TP (IoU 1), p4 TP (IoU 0.775); p7 is below
#   the score threshold. TP 3, FP 2, FN 0 -> P 3/5, R 3/3, F1 2*0.6*1/1.6 = 0.75; mean IoU (1+1+0.775)/3.


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_hand_made_case(iou_type):
    report = evaluate_detection(make_gt(), predictions(), score_threshold=0.5, iou_threshold=0.5)
    assert report["iou_types"] == ["bbox", "segm"]  # masks on both sides: both evaluated
    assert report["unmapped"] == {"person": 1}
    assert report["predictions"] == 6
    assert report["ms_per_image"] == pytest.approx(10.0, rel=1e-3)
    r = report[iou_type]  # masks are the filled boxes: the same numbers for both types
    assert r["map50"] == pytest.approx((AP50_CAT + AP50_DOG) / 2, abs=1e-6)
    assert r["map"] == pytest.approx((AP_CAT + AP_DOG) / 2, abs=1e-6)
    per = {row["class"]: row for row in r["per_class"]}
    assert per["cat"]["ap50"] == pytest.approx(AP50_CAT, abs=1e-6)
    assert per["dog"]["ap50"] == pytest.approx(AP50_DOG, abs=1e-6)
    assert per["cat"]["ap"] == pytest.approx(AP_CAT, abs=1e-6)
    assert (r["tp"], r["fp"], r["fn"]) == (3, 2, 0)
    assert r["precision"] == pytest.approx(0.6)
    assert r["recall"] == pytest.approx(1.0)
    assert r["f1"] == pytest.approx(0.75)
    assert r["mean_iou"] == pytest.approx((1 + 1 + 0.775) / 3, abs=1e-6)
    assert (per["cat"]["tp"], per["cat"]["fp"], per["cat"]["fn"]) == (2, 2, 0)
    assert per["cat"]["f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert per["cat"]["mean_iou"] == pytest.approx((1 + 0.775) / 2, abs=1e-6)
    assert per["cat"]["gt"] == 2 and per["dog"]["gt"] == 1
    assert per["cat"]["predictions"] == 4  # p1, p2, p4, p5 (p7 is a dog below 0.5)
    # PR curve at IoU .5: 101 recall points; cat's precision is 0.5 all along, dog's 1.0
    curves = {c["class"]: c for c in r["pr_curves"]}
    assert len(curves["cat"]["recall"]) == len(curves["cat"]["precision"]) == 101
    assert curves["cat"]["recall"][0] == 0.0 and curves["cat"]["recall"][-1] == 1.0
    assert np.allclose(curves["cat"]["precision"], 0.5) and np.allclose(curves["dog"]["precision"], 1.0)
    json.dumps(report)  # plain JSON, no numpy types


def test_iou_and_score_thresholds_change_the_matching():
    # IoU >= 0.8: p4 (0.775) becomes an FP and C a miss: TP 2, FP 3, FN 1
    r = evaluate_detection(make_gt(), predictions(), iou_type="bbox", iou_threshold=0.8)["bbox"]
    assert (r["tp"], r["fp"], r["fn"]) == (2, 3, 1)
    assert r["precision"] == pytest.approx(0.4) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 * 0.4 * (2 / 3) / (0.4 + 2 / 3))
    # score >= 0.92: only p5 (an FP) is left
    r = evaluate_detection(make_gt(), predictions(), iou_type="bbox", score_threshold=0.92)["bbox"]
    assert (r["tp"], r["fp"], r["fn"]) == (0, 1, 3)
    assert r["mean_iou"] is None
    # mAP does not depend on the thresholds
    assert r["map50"] == pytest.approx(0.75, abs=1e-6)


def test_masks_are_evaluated_on_their_own():
    """A perfect box with a mask covering 40% of the object: right for bbox, wrong for segm."""
    gt = make_gt()
    gt.annotations = [a for a in gt.annotations if a.image_id == 2]  # C only
    det = dets([("cat", 17, 0.9, (20, 20, 60, 60))])
    det.masks = np.stack([rect_mask(20, 20, 36, 60)])  # 16 of 40 columns: IoU 0.4
    report = evaluate_detection(gt, {2: det})
    assert report["bbox"]["map50"] == pytest.approx(1.0)
    assert report["segm"]["map50"] == pytest.approx(0.0)
    assert report["bbox"]["mean_iou"] == pytest.approx(1.0)
    assert (report["segm"]["tp"], report["segm"]["fp"], report["segm"]["fn"]) == (0, 1, 1)
    r = evaluate_detection(gt, {2: det}, iou_threshold=0.35)["segm"]
    assert r["mean_iou"] == pytest.approx(0.4)


def test_coco_results_list_gives_the_same_numbers():
    gt = make_gt()
    preds = predictions()
    cmap = category_map_by_name({17: "cat", 18: "Dog", 1: "person"}, gt)
    assert cmap == {"cat": 1, "Dog": 2}
    results = to_coco_results(preds, category_map={17: 1, 18: 2})
    assert len(results) == 6  # the person is not in the map
    a = evaluate_detection(gt, preds)
    b = evaluate_detection(gt, results)
    for t in ("bbox", "segm"):
        for key in ("map50", "map", "precision", "recall", "f1", "mean_iou"):
            assert a[t][key] == pytest.approx(b[t][key], abs=1e-6), (t, key)


def test_no_predictions_and_no_ground_truth():
    gt = make_gt()
    empty = evaluate_detection(gt, {}, iou_type="bbox")["bbox"]
    assert empty["map50"] == 0.0 and empty["map"] == 0.0
    assert (empty["tp"], empty["fp"], empty["fn"]) == (0, 0, 3)
    assert empty["recall"] == 0.0 and empty["precision"] == 0.0
    assert all(row["ap50"] == 0.0 for row in empty["per_class"])

    nothing = make_gt()
    nothing.annotations = []
    r = evaluate_detection(nothing, predictions(), iou_type="bbox")["bbox"]
    assert r["map50"] is None and r["map"] is None  # undefined without ground truth, not 0
    assert all(row["ap50"] is None for row in r["per_class"])
    assert (r["tp"], r["fp"], r["fn"]) == (0, 5, 0)  # p1 p2 p3 p4 p5 score >= 0.5; p6 unmapped, p7 below
    assert r["pr_curves"] == []


def test_bad_requests():
    gt = make_gt(with_masks=False)
    with pytest.raises(VitrineError, match="no masks"):
        evaluate_detection(gt, predictions(), iou_type="segm")
    with pytest.raises(VitrineError, match="unknown IoU type"):
        evaluate_detection(gt, predictions(), iou_type="keypoints")
    with pytest.raises(VitrineError, match="not a COCO result"):
        evaluate_detection(gt, [{"bbox": [0, 0, 1, 1]}])
    # boxes only on the dataset side: segm is simply not evaluated
    assert evaluate_detection(gt, predictions())["iou_types"] == ["bbox"]
    # predictions for an image the dataset does not have are left out and reported
    r = evaluate_detection(gt, {99: dets([("cat", 17, 0.9, (1, 1, 5, 5))])}, iou_type="bbox")
    assert r["predictions"] == 0 and r["unmapped"] == {"image 99 (not in the dataset)": 1}


def test_odd_ground_truth_and_mismatched_sizes():
    gt = make_gt()
    gt.annotations[0].segmentation = [[10, 10, 50]]  # a degenerate polygon: evaluated as its box
    gt.annotations[1].segmentation = []
    report = evaluate_detection(gt, predictions())
    assert report["segm"]["map50"] == pytest.approx(0.75)  # the masks are the boxes here
    resized = predictions()
    resized[2].width = 50
    with pytest.raises(VitrineError, match="made on a 50x100 image"):
        evaluate_detection(gt, resized)


def test_report_files_and_figure(tmp_path):
    report = evaluate_detection(make_gt(), predictions())
    paths = write_detection_report(report, tmp_path / "eval")
    assert [p.name for p in paths] == ["detection_metrics.json", "per_class_bbox.csv", "per_class_segm.csv"]
    assert json.loads(paths[0].read_text())["bbox"]["map50"] == pytest.approx(0.75)
    rows = list(csv.DictReader(paths[1].open()))
    assert [r["class"] for r in rows] == ["cat", "dog"]
    assert float(rows[0]["ap50"]) == pytest.approx(0.5) and rows[0]["tp"] == "2"
    assert not list((tmp_path / "eval").glob(".*tmp"))  # no temp files left behind
    fig = pr_curve_figure(report)
    names = [t.name for t in fig.data]
    assert names == ["cat", "dog", "cat", "dog"]  # one panel per IoU type
    assert list(fig.data[0].y) == pytest.approx([0.5] * 101)
    assert "mAP@.5 = 0.750" in fig.layout.annotations[0].text


class SquareSegmenter:
    """Finds the bright square of each test image exactly (class "cat"), plus a weak false alarm."""

    name = "square-segmenter"
    task = "segmentation"
    classes = {17: "cat", 18: "dog"}

    def predict_batch(self, images, threshold=0.5):
        out = []
        for im in images:
            a = np.asarray(im.convert("L")) > 128
            ys, xs = np.nonzero(a)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            d = dets([("cat", 17, 0.9, box), ("dog", 18, 0.2, (0, 0, 10, 10))])
            out.append(d.above(threshold))
        return out

    def predict(self, image, threshold=0.5):
        return self.predict_batch([image], threshold)[0]


def test_predict_dataset_keeps_masks_compact(tmp_path):
    from PIL import Image

    gt = make_gt()
    gt.root = tmp_path
    for im in gt.images:
        a = np.zeros((SIZE, SIZE), dtype=np.uint8)
        x1, y1, x2, y2 = {1: (10, 10, 50, 50), 2: (20, 20, 60, 60), 3: (70, 5, 90, 25)}[im.id]
        a[y1:y2, x1:x2] = 255
        Image.fromarray(a).save(tmp_path / im.file_name)
    compact = predict_dataset(SquareSegmenter(), gt, threshold=0.05, batch_size=2)
    assert set(compact) == {1, 2, 3}
    assert all(d.masks is None and len(d.extra["mask_rle"]) == len(d) for d in compact.values())
    full = predict_dataset(SquareSegmenter(), gt, threshold=0.05, keep_masks=True)
    assert full[1].masks.shape == (2, SIZE, SIZE)
    a, b = evaluate_detection(gt, compact), evaluate_detection(gt, full)
    assert a["iou_types"] == b["iou_types"] == ["bbox", "segm"]
    # image 1: cat A found, dog B missed; image 2: cat C found; image 3: a cat where there is none
    assert a["segm"]["tp"] == b["segm"]["tp"] == 2 and a["segm"]["fn"] == 1 and a["segm"]["fp"] == 1
    assert a["segm"]["map50"] == pytest.approx(b["segm"]["map50"])
    with pytest.raises(VitrineError, match="not found"):
        gt.images[0].file_name = "missing.png"
        predict_dataset(SquareSegmenter(), gt)


def test_difficult_objects_are_ignored_on_request():
    """VOC's protocol: a difficult object is neither found nor missed, in mAP and in P/R/F1."""
    gt = make_gt(with_masks=False)
    gt.annotations[2].attributes["difficult"] = 1  # cat C in image 2 (VOC and CVAT readers keep it so)
    preds = {k: v for k, v in predictions(with_masks=False).items() if k != 2}  # C never found
    counted = evaluate_detection(gt, preds, iou_type="bbox")
    ignored = evaluate_detection(gt, preds, iou_type="bbox", ignore_difficult=True)
    assert counted["ignore_difficult"] is False and counted["difficult_ignored"] == 0
    assert ignored["ignore_difficult"] is True and ignored["difficult_ignored"] == 1
    assert (counted["gt_objects"], ignored["gt_objects"]) == (3, 2)
    cat = {r["class"]: r for r in ignored["bbox"]["per_class"]}["cat"]
    assert (cat["gt"], cat["tp"], cat["fn"]) == (1, 1, 0)
    # cat, by score: p5 FP, p1 TP, p2 FP. Counted: recall 1/2 at most -> AP 0.5 * 51/101;
    # ignored: 1 gt -> precision 1/2 at recall 1 -> AP 0.5
    assert {r["class"]: r for r in counted["bbox"]["per_class"]}["cat"]["ap50"] == pytest.approx(0.5 * 51 / 101)
    assert cat["ap50"] == pytest.approx(0.5)
    assert counted["bbox"]["fn"] == 1 and ignored["bbox"]["fn"] == 0

    # a detection on a difficult object is no false positive, found or not
    found = predictions(with_masks=False)
    on_c = evaluate_detection(gt, found, iou_type="bbox", ignore_difficult=True)
    assert on_c["bbox"]["tp"] == ignored["bbox"]["tp"] and on_c["bbox"]["fp"] == ignored["bbox"]["fp"]
    assert {r["class"]: r for r in on_c["bbox"]["per_class"]}["cat"]["ap50"] == pytest.approx(0.5)
