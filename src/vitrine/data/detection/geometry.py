"""Masks, polygons and RLE in COCO's conventions, through OpenCV and pycocotools.

Coordinates are pixels with the origin at the top-left *corner* of the image: pixel ``(row r,
column c)`` covers ``[c, c+1) x [r, r+1)``. A polygon is a flat list ``[x1, y1, x2, y2, ...]``;
pycocotools fills polygons with the even-odd rule, so one polygon can carry holes and several
parts joined by zero-width bridges (that is how :func:`mask_to_polygons` writes holes and how
:func:`join_polygons` makes the single polygon per object YOLO needs).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "join_polygons",
    "mask_bbox",
    "mask_to_polygons",
    "mask_to_rle",
    "polygons_bbox",
    "polygons_to_rle",
    "rle_to_mask",
    "segmentation_area",
    "segmentation_bbox",
    "segmentation_to_mask",
    "segmentation_to_polygons",
    "rle_string_counts",
    "to_compressed_rle",
]


def mask_bbox(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """``(x, y, w, h)`` of the pixels set in ``mask`` (pixel corners), ``None`` when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])


def _bridge(parts: list[np.ndarray]) -> np.ndarray:
    """Join closed rings into one: A0..An A0 B0..Bm B0 A0 C0..Ck C0 A0 (zero-width bridges, even-odd safe)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    pieces = [first, first[:1]]
    for p in parts[1:]:  # out from the first ring's start, around, and back: each jump walked both ways
        pieces += [p, p[:1], first[:1]]
    return np.concatenate(pieces, axis=0)


_CORNER = np.array([0.0, 0.5, 1.0])


def _ring(contour: np.ndarray) -> np.ndarray:
    """A contour traced on the 3x upsampled mask, mapped back onto pixel corners: sub-pixel 3j is
    the left/top edge of pixel j, 3j+2 its right/bottom edge (j+1), 3j+1 the middle of a
    one-pixel-wide end. Repeated and collinear points are removed."""
    k = contour.reshape(-1, 2)
    ring = (k // 3) + _CORNER[k % 3]
    keep = np.ones(len(ring), bool)
    keep[1:] = np.any(ring[1:] != ring[:-1], axis=1)
    ring = ring[keep]
    if len(ring) > 1 and (ring[0] == ring[-1]).all():
        ring = ring[:-1]
    if len(ring) >= 3:
        prev, nxt = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
        cross = (ring[:, 0] - prev[:, 0]) * (nxt[:, 1] - prev[:, 1]) - (ring[:, 1] - prev[:, 1]) * (
            nxt[:, 0] - prev[:, 0]
        )
        ring = ring[np.abs(cross) > 1e-9]
    return ring


def mask_to_polygons(mask: np.ndarray, min_area: float = 1.0) -> list[list[float]]:
    """Polygons of a binary mask along its pixel edges: one per connected part, holes bridged in.

    Contours are traced with OpenCV on the mask upsampled 3x and mapped back onto pixel corners,
    so a polygon follows the pixel boundary: pycocotools fills it back into the same pixels
    (exactly for masks without one-pixel diagonal pinches) and its box is the mask's box. Parts
    whose polygon covers less than ``min_area`` square pixels are left out."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, not {m.shape}")
    box = mask_bbox(m)
    if box is None:
        return []
    x0, y0 = int(box[0]) - 1, int(box[1]) - 1  # trace the object's box only, with a 1-pixel empty border
    crop = np.pad(m[y0 + 1 : y0 + 1 + int(box[3]), x0 + 1 : x0 + 1 + int(box[2])], 1)
    h, w = crop.shape
    offset = np.array([x0, y0], dtype=np.float64)
    up = cv2.resize(crop, (w * 3, h * 3), interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]
    out = []
    for i, contour in enumerate(contours):
        if hierarchy[i][3] != -1:  # a hole: bridged into its parent below
            continue
        ring = _ring(contour) + offset
        if len(ring) < 3 or abs(cv2.contourArea(ring.astype(np.float32))) < min_area:
            continue
        parts = [ring]
        child = hierarchy[i][2]
        while child != -1:
            hole = _ring(contours[child]) + offset
            if len(hole) >= 3:
                parts.append(hole)
            child = hierarchy[child][0]
        out.append([float(v) for v in _bridge(parts).ravel()])
    return out


def join_polygons(polygons: list[list[float]]) -> list[float]:
    """One polygon for several (YOLO takes one per object), joined by zero-width bridges."""
    rings = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons if len(p) >= 6]
    if not rings:
        return []
    return [float(v) for v in _bridge(rings).ravel()]


def polygons_bbox(polygons: list[list[float]]) -> tuple[float, float, float, float] | None:
    xs = [v for p in polygons for v in p[0::2]]
    ys = [v for p in polygons for v in p[1::2]]
    if not xs:
        return None
    return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)


def rle_string_counts(counts: str) -> np.ndarray:
    """The run lengths (int64) encoded in a compressed RLE string: pycocotools' format, 6-bit
    groups offset by 48, a sign bit in each number's last group, and from the fourth run on each
    number the difference to the run two places before. Vectorised with numpy. Raises
    ``ValueError`` on what pycocotools would misread: characters out of range, a number cut
    short at the end, numbers too long, negative runs."""
    try:
        raw = counts.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("an RLE string holds ASCII characters only") from None
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return c
    bad = np.flatnonzero((c < 0) | (c >= 64))
    if bad.size:
        raise ValueError(f"character {counts[bad[0]]!r} is not part of an RLE string")
    last = (c & 0x20) == 0  # the last group of a number
    if not last[-1]:
        raise ValueError("the RLE string ends in the middle of a number")
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
    number = np.cumsum(np.concatenate(([0], last[:-1].astype(np.int64))))
    k = np.arange(c.size) - starts[number]  # position of each group within its number
    if k.max() > 10:
        raise ValueError("a number in the RLE string is too long")
    values = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    ends = np.flatnonzero(last)
    negative = (c[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (k[ends][negative] + 1))
    runs = values.copy()
    runs[3::2] = np.cumsum(values[1::2])[1:]  # runs 1, 3, 5...: differences from the run two before
    runs[4::2] = np.cumsum(values[2::2])[1:]  # runs 2, 4, 6... (run 0 stands alone)
    if (runs < 0).any():
        raise ValueError(f"negative run length at run {int(np.flatnonzero(runs < 0)[0]) + 1}")
    return runs


def _checked_runs(rle: dict) -> tuple[int, int, np.ndarray]:
    """``(h, w, runs)`` of an RLE dict, compressed or not, checked: ``ValueError`` when the size is
    not two positive ints, a run is negative, or the runs do not add up to ``h * w``."""
    size = rle["size"]
    if not isinstance(size, list | tuple) or len(size) != 2 or not all(isinstance(v, int) for v in size):
        raise ValueError(f"size {size!r} is not [height, width]")
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size {size!r} is not positive")
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ValueError("uncompressed counts must be non-negative integers")
        runs = np.asarray(counts, dtype=np.int64)
    elif isinstance(counts, str):
        runs = rle_string_counts(counts)
    else:
        raise ValueError(f"counts is a {type(counts).__name__}, not a string or a list")
    if int(runs.sum()) != h * w:
        raise ValueError(f"the runs cover {int(runs.sum())} pixels, not {h} x {w} = {h * w}")
    return h, w, runs


def to_compressed_rle(rle: dict) -> dict:
    """An RLE dict with compressed ``counts`` (a str), from either compressed or uncompressed form.

    The counts are checked first (see :func:`_checked_runs`): pycocotools' C code trusts its
    input, and a corrupt string can make it write past its buffers."""
    h, w, runs = _checked_runs(rle)
    counts = rle["counts"]
    if isinstance(counts, list):
        out = mask_utils.frPyObjects({"size": [h, w], "counts": [int(v) for v in runs]}, h, w)
        return {"size": [h, w], "counts": out["counts"].decode("ascii")}
    return {"size": [h, w], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def rle_to_mask(rle: dict) -> np.ndarray:
    """``(h, w)`` uint8 mask of an RLE dict (compressed or not), decoded from the checked runs
    (column-major, background first) with numpy."""
    h, w, runs = _checked_runs(rle)
    values = (np.arange(len(runs)) % 2).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(values, runs).reshape(w, h).T)


def mask_to_rle(mask: np.ndarray) -> dict:
    """Compressed RLE (``counts`` a str) of a binary mask."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def polygons_to_rle(polygons: list[list[float]], height: int, width: int) -> dict:
    """Compressed RLE of the union of polygons, filled as pycocotools fills them."""
    rles = mask_utils.frPyObjects([list(map(float, p)) for p in polygons if len(p) >= 6], height, width)
    rle = mask_utils.merge(rles) if rles else mask_utils.encode(np.zeros((height, width), np.uint8, order="F"))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def segmentation_to_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    if isinstance(segmentation, dict):
        return rle_to_mask(segmentation)
    return rle_to_mask(polygons_to_rle(segmentation, height, width))


def segmentation_area(segmentation: list | dict, height: int, width: int) -> float:
    """Area in pixels as pycocotools counts it (what COCO's ``area`` field holds)."""
    rle = segmentation if isinstance(segmentation, dict) else polygons_to_rle(segmentation, height, width)
    _, _, runs = _checked_runs(rle)
    return float(runs[1::2].sum())


def segmentation_bbox(segmentation: list | dict, height: int, width: int) -> tuple[float, float, float, float] | None:
    if isinstance(segmentation, dict):
        return mask_bbox(rle_to_mask(segmentation))
    return polygons_bbox(segmentation)


def segmentation_to_polygons(segmentation: list | dict | None) -> list[list[float]] | None:
    """Polygons of a segmentation (RLE traced with OpenCV), ``None`` for none."""
    if segmentation is None:
        return None
    if isinstance(segmentation, dict):
        return mask_to_polygons(rle_to_mask(segmentation))
    return [list(p) for p in segmentation]


def is_finite(*values: float) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)
