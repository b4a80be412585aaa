"""Masks as COCO RLE and polygons, the API/CLI JSON, and the COCO results list."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from vitrine.core.errors import VitrineError
from vitrine.models.detectors.base import Detections
from vitrine.predict.export import (
    detections_to_json,
    mask_to_polygons,
    mask_to_rle,
    polygons_to_mask,
    rle_to_mask,
    to_coco_results,
)


def blob_mask(h=60, w=80):
    yy, xx = np.mgrid[:h, :w]
    m = (yy - 30) ** 2 / 20**2 + (xx - 30) ** 2 / 25**2 <= 1.0  # an ellipse
    m[5:15, 60:75] = True  # and a separate rectangle
    return m


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_rle_round_trip_is_exact_and_json_safe():
    m = blob_mask()
    rle = mask_to_rle(m)
    assert rle["size"] == [60, 80] and isinstance(rle["counts"], str)
    json.dumps(rle)
    assert np.array_equal(rle_to_mask(rle), m)
    assert int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()})) == int(m.sum())
    empty = np.zeros((7, 9), dtype=bool)
    assert np.array_equal(rle_to_mask(mask_to_rle(empty)), empty)
    # uncompressed RLE (a list of counts) decodes too
    unc = {"size": [2, 3], "counts": [1, 2, 3]}  # column-major: 1 off, 2 on, 3 off
    assert rle_to_mask(unc).sum() == 2


def test_polygons_follow_the_mask():
    m = blob_mask()
    polys = mask_to_polygons(m)
    assert len(polys) == 2  # two connected parts
    assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polys)
    back = polygons_to_mask(polys, 60, 80)
    assert iou(back, m) > 0.9
    assert mask_to_polygons(np.zeros((5, 5), dtype=bool)) == []


@pytest.mark.parametrize(
    "pixels",
    [
        [(3, 4)],  # a single pixel
        [(3, 4), (3, 5), (3, 6)],  # a horizontal line, one pixel thick
        [(1, 1), (2, 2)],  # a diagonal pair
    ],
)
def test_tiny_masks_still_give_valid_polygons(pixels):
    m = np.zeros((10, 10), dtype=bool)
    for y, x in pixels:
        m[y, x] = True
    polys = mask_to_polygons(m)
    assert polys and all(len(p) >= 6 for p in polys)
    back = polygons_to_mask(polys, 10, 10)
    for y, x in pixels:
        assert back[y, x], (y, x)  # every pixel of the mask is inside a polygon
    assert back.sum() <= 3 * m.sum() + 3


def detections(with_masks=True):
    m = np.zeros((2, 40, 50), dtype=bool)
    m[0, 5:20, 5:25] = True
    m[1, 22:38, 30:48] = True
    return Detections(
        boxes=np.array([[5, 5, 25, 20], [30, 22, 48, 38]], dtype=np.float32),
        scores=np.array([0.91, 0.62], dtype=np.float32),
        class_ids=np.array([17, 18], dtype=np.int64),
        labels=["cat", "dog"],
        width=50,
        height=40,
        masks=m if with_masks else None,
        model="test-model",
        seconds=0.0123,
    )


def test_detections_to_json_formats():
    det = detections()
    out = detections_to_json(det, "rle")
    assert out["count"] == 2 and out["width"] == 50 and out["height"] == 40 and out["ms"] == pytest.approx(12.3)
    first = out["detections"][0]
    assert first["box"] == [5, 5, 25, 20] and first["class"] == "cat" and first["class_id"] == 17
    assert first["score"] == pytest.approx(0.91, abs=1e-4)
    assert np.array_equal(rle_to_mask(first["mask"]), det.masks[0])
    json.dumps(out)

    poly = detections_to_json(det, "polygon")
    assert poly["mask_format"] == "polygon"
    assert iou(polygons_to_mask(poly["detections"][1]["mask"], 40, 50), det.masks[1]) > 0.85

    none = detections_to_json(det, "none")
    assert none["mask_format"] == "none" and "mask" not in none["detections"][0]
    boxes_only = detections_to_json(detections(with_masks=False), "rle")
    assert boxes_only["mask_format"] == "none" and "mask" not in boxes_only["detections"][0]
    with pytest.raises(VitrineError, match="unknown mask format"):
        detections_to_json(det, "png")


def test_coco_results_load_in_pycocotools():
    det = detections()
    results = to_coco_results({7: det}, category_map={"cat": 1, 18: 2})  # by name or by model id
    assert [r["category_id"] for r in results] == [1, 2]
    assert results[0]["bbox"] == [5, 5, 20, 15]  # xywh
    assert results[0]["image_id"] == 7 and results[0]["score"] == pytest.approx(0.91, abs=1e-5)
    assert to_coco_results({7: det}, category_map={"cat": 1})[0]["category_id"] == 1
    assert len(to_coco_results({7: det}, category_map={"cat": 1})) == 1  # dogs are not in the map
    assert [r["category_id"] for r in to_coco_results({7: det})] == [17, 18]  # no map: model ids

    gt = COCO()
    gt.dataset = {
        "images": [{"id": 7, "width": 50, "height": 40}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [],
    }
    gt.createIndex()
    res = gt.loadRes(json.loads(json.dumps(results)))  # survives a JSON round trip
    ann = res.loadAnns(res.getAnnIds())[0]
    assert np.array_equal(res.annToMask(ann).astype(bool), det.masks[0])
