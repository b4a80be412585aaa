"""Checks shared by every reader: what is repaired (clipped), what is skipped, and where it was.

A reader turns each annotation of a file into an :class:`Annotation` and passes it through
:func:`clean_annotation` with the image it belongs to and where it came from (``"line 12"``,
``"annotations[5]"``, ``"<image name=a.png> / <box> 2"``). Everything repaired or skipped is
appended to the dataset's ``problems``; a reader raises only when the whole file is unusable.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from vitrine.data.detection.geometry import (
    is_finite,
    polygons_bbox,
    segmentation_area,
    to_compressed_rle,
)
from vitrine.data.detection.model import Annotation, ImageRecord, Problem

__all__ = ["box_from_segmentation", "clean_annotation", "fmt"]

EPS = 1e-6


def fmt(v: float) -> str:
    """A coordinate written with enough digits (1e-4 px) and no useless ones: 12, 12.5, 12.3457."""
    v = float(v)
    if v == int(v):
        return str(int(v))
    return f"{v:.4f}".rstrip("0").rstrip(".")


def _box_text(box) -> str:
    return "(" + ", ".join(fmt(v) for v in box) + ")"


def box_from_segmentation(segmentation, height: int, width: int) -> tuple[float, float, float, float] | None:
    """The box of polygons or of an RLE mask (``None`` when empty)."""
    if segmentation is None:
        return None
    if isinstance(segmentation, dict):
        from vitrine.data.detection.geometry import mask_bbox, rle_to_mask

        return mask_bbox(rle_to_mask(segmentation))
    return polygons_bbox(segmentation)


def _clean_polygons(polygons: list, image: ImageRecord, say) -> list[list[float]] | None:
    """The usable polygons (``polygons`` itself when nothing had to change), or ``None``."""
    W, H = image.width, image.height
    kept, clipped, dropped = [], False, False
    for k, poly in enumerate(polygons):
        if not isinstance(poly, list | tuple) or not all(is_finite(v) for v in poly):
            say(f"polygon {k + 1} is not a list of numbers: dropped")
            dropped = True
            continue
        if len(poly) % 2:
            say(f"polygon {k + 1} has an odd number of coordinates ({len(poly)}): dropped")
            dropped = True
            continue
        if len(poly) < 6:
            say(f"polygon {k + 1} has {len(poly) // 2} point(s), at least 3 are needed: dropped")
            dropped = True
            continue
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        inside = np.clip(pts, 0.0, [W, H])
        if np.abs(inside - pts).max() > EPS:
            clipped = True
        kept.append([float(v) for v in inside.ravel()])
    if clipped:
        say(f"polygon points outside the {W}x{H} image: clipped to its border")
    if not clipped and not dropped:
        return polygons
    return kept or None


def clean_annotation(
    ann: Annotation,
    image: ImageRecord,
    problems: list[Problem],
    file: str,
    where: str,
) -> Annotation | None:
    """``ann`` with its box and mask clipped to the image, or ``None`` when it must be skipped.

    Box outside the image: clipped, reported. Box with no width or height after clipping:
    skipped, reported. Polygons with fewer than 3 points, odd coordinate counts or non-numbers:
    dropped (the box is kept). RLE whose size is not the image's: mask dropped, box kept.
    ``area`` is computed when missing (mask area, else box area)."""

    def say(message: str) -> None:
        problems.append(Problem(file, where, message))

    W, H = image.width, image.height
    seg = ann.segmentation
    if seg is not None:
        if isinstance(seg, dict):
            size = seg.get("size")
            if isinstance(size, list | tuple) and len(size) == 2 and list(size) != [H, W] and is_finite(*size):
                say(f"RLE mask size {size[0]}x{size[1]} (h x w) is not the image's {H}x{W}: mask dropped, box kept")
                seg = None
            else:
                try:
                    compressed = to_compressed_rle(seg)  # checks the counts before pycocotools reads them
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    say(f"RLE mask is malformed ({exc}): mask dropped, box kept")
                    seg = None
                else:
                    if compressed["counts"] != seg["counts"]:
                        seg = compressed
        elif isinstance(seg, list):
            seg = _clean_polygons(seg, image, say)
            if seg is None:
                say("no usable polygon left: mask dropped, box kept")
        else:
            say(f"segmentation of type {type(seg).__name__} is neither polygons nor RLE: mask dropped, box kept")
            seg = None

    box = ann.bbox
    if box is None or len(box) != 4 or not is_finite(*box):
        derived = box_from_segmentation(seg, H, W) if seg is not None else None
        if derived is None:
            say(f"box {box!r} is not 4 numbers and there is no mask to derive it from: skipped")
            return None
        box = derived
    x, y, w, h = (float(v) for v in box)
    x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(W), x + w), min(float(H), y + h)
    if w <= 0 or h <= 0 or x1 - x0 <= 0 or y1 - y0 <= 0:
        outside = "lies outside the image" if w > 0 and h > 0 else "has no width or height"
        say(f"box {_box_text((x, y, w, h))} {outside} ({W}x{H}): skipped")
        return None
    clipped = (x0, y0, x1 - x0, y1 - y0)
    if max(abs(a - b) for a, b in zip(clipped, (x, y, w, h), strict=True)) > EPS:
        say(f"box {_box_text((x, y, w, h))} extends outside the {W}x{H} image: clipped to {_box_text(clipped)}")

    area = ann.area
    if seg is not None and (area is None or not area > 0 or seg is not ann.segmentation):
        try:
            area = segmentation_area(seg, H, W)
        except Exception as exc:  # pycocotools raises bare Exceptions on bad RLE strings
            say(f"mask cannot be decoded ({exc}): mask dropped, box kept")
            seg, area = None, None
        else:
            if area <= 0:
                say("mask covers no pixel: mask dropped, box kept")
                seg, area = None, None
    if area is None or not is_finite(area):
        area = clipped[2] * clipped[3]
    return replace(ann, bbox=clipped, segmentation=seg, area=float(area))
