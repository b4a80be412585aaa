"""Masks <-> polygons <-> RLE: polygons follow pixel edges, so pycocotools fills them back exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vitrine.data.detection.geometry import (
    join_polygons,
    mask_bbox,
    mask_to_polygons,
    mask_to_rle,
    polygons_bbox,
    polygons_to_rle,
    rle_string_counts,
    rle_to_mask,
    segmentation_area,
    to_compressed_rle,
)


def _shape() -> np.ndarray:
    m = np.zeros((60, 80), np.uint8)
    cv2.circle(m, (25, 30), 14, 1, -1)
    m[20:28, 30:70] = 1
    return m


def test_polygon_follows_pixel_edges():
    m = _shape()
    polys = mask_to_polygons(m)
    assert len(polys) == 1
    back = rle_to_mask(polygons_to_rle(polys, 60, 80))
    assert np.array_equal(back, m)
    assert polygons_bbox(polys) == mask_bbox(m)
    assert segmentation_area(polys, 60, 80) == m.sum()


def test_square_corners_and_holes_and_parts():
    m = np.zeros((20, 20), np.uint8)
    m[2:6, 3:9] = 1
    assert mask_to_polygons(m) == [[3.0, 2.0, 3.0, 6.0, 9.0, 6.0, 9.0, 2.0]]
    assert mask_to_polygons(np.ones((4, 7), np.uint8)) == [[0.0, 0.0, 0.0, 4.0, 7.0, 4.0, 7.0, 0.0]]  # image border
    ring = np.zeros((30, 30), np.uint8)
    ring[5:25, 5:25] = 1
    ring[10:15, 12:18] = 0  # holes: bridged into the outer polygon
    ring[18:22, 7:10] = 0
    ring[18:20, 20:23] = 0
    ring[27:29, 1:4] = 1  # more parts
    ring[26:29, 20:29] = 1
    polys = mask_to_polygons(ring)
    assert len(polys) == 3
    assert np.array_equal(rle_to_mask(polygons_to_rle(polys, 30, 30)), ring)
    joined = join_polygons(polys)  # YOLO: one polygon per object
    assert np.array_equal(rle_to_mask(polygons_to_rle([joined], 30, 30)), ring)


def test_rle_forms():
    m = _shape()
    rle = mask_to_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [60, 80]
    assert np.array_equal(rle_to_mask(rle), m)
    # uncompressed counts (column-major run lengths, starting with zeros), as COCO crowd regions carry them
    flat = m.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    uncompressed = {"size": [60, 80], "counts": counts}
    assert to_compressed_rle(uncompressed) == rle
    assert (
        segmentation_area(uncompressed, 60, 80) == m.sum() == mask_utils.area(mask_utils.encode(np.asfortranarray(m)))
    )


def test_empty_mask():
    assert mask_to_polygons(np.zeros((5, 5), np.uint8)) == []
    assert mask_bbox(np.zeros((5, 5), bool)) is None


def test_rle_strings_are_checked_before_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = (rng.random((23, 31)) < rng.uniform(0.05, 0.95)).astype(np.uint8)
        rle = mask_to_rle(m)
        runs = rle_string_counts(rle["counts"])
        assert sum(runs) == 23 * 31
        flat = m.flatten(order="F")
        assert np.array_equal(np.repeat(np.arange(len(runs)) % 2, runs), flat)  # runs alternate 0s and 1s
    good = mask_to_rle(_shape())
    for counts, message in (
        (good["counts"] + "o", "ends in the middle"),
        (good["counts"] + "\x7f", "not part of an RLE string"),
        (good["counts"][:-3], "cover"),
        ("0" + good["counts"], "cover|negative"),
    ):
        with pytest.raises(ValueError, match=message):
            to_compressed_rle({"size": [60, 80], "counts": counts})
    with pytest.raises(ValueError, match="non-negative"):
        to_compressed_rle({"size": [2, 2], "counts": [1, -1, 4]})
    with pytest.raises(ValueError, match="not \\[height, width\\]"):
        to_compressed_rle({"size": [60], "counts": good["counts"]})


def test_random_rle_strings_never_reach_pycocotools_unchecked():
    rng = np.random.default_rng(1)
    decoded = 0
    for _ in range(3000):
        h, w = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        counts = "".join(chr(48 + int(c)) for c in rng.integers(0, 64, int(rng.integers(1, 8))))
        try:
            rle = to_compressed_rle({"size": [h, w], "counts": counts})
        except ValueError:
            continue
        ours = rle_to_mask(rle)  # numpy decoding agrees with pycocotools' on every valid string
        assert np.array_equal(ours, mask_utils.decode({"size": [h, w], "counts": rle["counts"].encode()}))
        decoded += 1
    assert decoded > 0
