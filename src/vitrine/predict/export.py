"""Detections as JSON: masks as COCO RLE or polygons, the API/CLI JSON, and COCO results.

* :func:`mask_to_rle` / :func:`rle_to_mask`: pycocotools' compressed RLE, ``counts`` a str (JSON-safe);
* :func:`mask_to_polygons` / :func:`polygons_to_mask`: COCO polygons ``[[x1, y1, x2, y2, ...], ...]``
  from OpenCV contours (outer boundaries of each connected part; holes are not kept). Masks
  whose parts are a pixel or two wide still get a valid polygon (the outline of their pixels);
* :func:`detections_to_json`: what ``POST /api/v1/detect|segment`` and ``vitrine detect`` return;
* :func:`to_coco_results`: the COCO results list (``bbox`` xywh, ``score``, ``category_id``,
  ``segmentation`` RLE) that pycocotools' ``COCO.loadRes`` and the COCO evaluation server take.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from vitrine.core.errors import VitrineError
from vitrine.models.detectors.base import Detections

MASK_FORMATS = ("rle", "polygon", "none")


# --------------------------------------------------------------------------------------------
# masks


def mask_to_rle(mask: np.ndarray) -> dict:
    """``{"size": [h, w], "counts": str}`` (COCO compressed RLE) of a 2-D boolean mask."""
    from pycocotools import mask as mask_utils

    m = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D (height, width), got shape {m.shape}")
    rle = mask_utils.encode(m)
    counts = rle["counts"]
    return {
        "size": [int(v) for v in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def rle_to_mask(rle: Mapping) -> np.ndarray:
    """The boolean (h, w) mask of a COCO RLE (compressed, ``counts`` str or bytes, or uncompressed list)."""
    from pycocotools import mask as mask_utils

    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        obj = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        obj = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(obj).astype(bool)


def mask_to_polygons(mask: np.ndarray, min_points: int = 3) -> list[list[float]]:
    """COCO polygons (pixel-corner coordinates) of the outer boundary of each connected part.

    OpenCV traces pixel centres; a contour of fewer than ``min_points`` points (a part one pixel
    wide or a single pixel) is replaced by the rectangle around its pixels, so tiny masks never
    vanish or yield degenerate polygons pycocotools cannot rasterise.
    """
    import cv2

    m = np.asarray(mask, dtype=np.uint8)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D (height, width), got shape {m.shape}")
    if not m.any():
        return []
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons: list[list[float]] = []
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64)
        if len(pts) < max(3, min_points) or cv2.contourArea(c) < 1.0:
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0) + 1.0
            poly = [x0, y0, x1, y0, x1, y1, x0, y1]
        else:
            # OpenCV gives pixel indices; COCO coordinates put the centre of pixel i at i + 0.5
            poly = (pts + 0.5).reshape(-1).tolist()
        polygons.append([round(float(v), 2) for v in poly])
    return polygons


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """The boolean (height, width) mask covered by COCO polygons."""
    from pycocotools import mask as mask_utils

    polys = [list(map(float, p)) for p in polygons if len(p) >= 6]
    if not polys:
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(polys, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def _mask_json(mask: np.ndarray, mask_format: str):
    if mask_format == "rle":
        return mask_to_rle(mask)
    return mask_to_polygons(mask)


# --------------------------------------------------------------------------------------------
# the API / CLI JSON


def detections_to_json(det: Detections, mask_format: str = "rle") -> dict:
    """Detections as plain JSON.

    ``{"model", "width", "height", "count", "ms", "mask_format", "detections": [{"box": [x1, y1,
    x2, y2] (pixels), "score", "class", "class_id", "mask"?}]}``; ``mask`` is a COCO RLE dict
    (``mask_format="rle"``) or a list of polygons (``"polygon"``), absent for ``"none"`` or when
    the model gives no masks.
    """
    if mask_format not in MASK_FORMATS:
        raise VitrineError(f"unknown mask format {mask_format!r}", hint=f"one of {', '.join(MASK_FORMATS)}")
    with_masks = det.masks is not None and mask_format != "none"
    items = []
    for i in range(len(det)):
        item = {
            "box": [round(float(v), 2) for v in det.boxes[i]],
            "score": round(float(det.scores[i]), 4),
            "class": det.labels[i],
            "class_id": int(det.class_ids[i]),
        }
        if with_masks:
            item["mask"] = _mask_json(det.masks[i], mask_format)
        items.append(item)
    return {
        "model": det.model,
        "width": int(det.width),
        "height": int(det.height),
        "count": len(items),
        "ms": round(det.seconds * 1000.0, 2),
        "mask_format": mask_format if with_masks else "none",
        "detections": items,
    }


# --------------------------------------------------------------------------------------------
# COCO results


def _category_id(det: Detections, i: int, category_map: Mapping | None) -> int | None:
    if category_map is None:
        return int(det.class_ids[i])
    cid = int(det.class_ids[i])
    if cid in category_map:
        return int(category_map[cid])
    label = det.labels[i]
    if label in category_map:
        return int(category_map[label])
    return None


def to_coco_results(
    dets_by_image_id: Mapping[int, Detections], category_map: Mapping[int | str, int] | None = None
) -> list[dict]:
    """The COCO results list: one ``{"image_id", "category_id", "bbox": [x, y, w, h], "score",
    "segmentation"?}`` per detection (``segmentation`` a compressed RLE when there are masks).

    ``category_map`` maps the model's class ids, or its class names, to the dataset's category ids
    (``vitrine.evaluate.detection.category_map_by_name`` builds one by name); a detection whose
    class is not in it is left out. None keeps the model's class ids.
    """
    results: list[dict] = []
    for image_id, det in dets_by_image_id.items():
        for i in range(len(det)):
            cat = _category_id(det, i, category_map)
            if cat is None:
                continue
            x1, y1, x2, y2 = (float(v) for v in det.boxes[i])
            r = {
                "image_id": int(image_id),
                "category_id": cat,
                "bbox": [round(x1, 2), round(y1, 2), round(max(0.0, x2 - x1), 2), round(max(0.0, y2 - y1), 2)],
                "score": round(float(det.scores[i]), 5),
            }
            if det.masks is not None:
                r["segmentation"] = mask_to_rle(det.masks[i])
            results.append(r)
    return results
