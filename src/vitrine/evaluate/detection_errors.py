"""A detection run's errors image by image: the "qualitative analysis" of a detector.

:func:`detection_errors` matches a run's predictions (COCO results, in the dataset's category ids:
what :mod:`vitrine.evaluate.predictions_file` keeps) with the ground truth at an IoU threshold and a
score threshold, by the very matching that counts the report's true and false positives
(:func:`vitrine.evaluate.detection.iter_matches`: per image and class, highest score first, each
prediction takes the unmatched object of its class it overlaps most, if by the threshold), so the
counts summed over the images are the report's ``tp``, ``fp`` and ``fn`` at the same thresholds.

Per image it lists every box with its kind:

* ``tp``: a prediction and the object it matched, with their IoU;
* ``fp``: a prediction that matched nothing, with why (``fp_kind``), looked up in this order:
  ``duplicate`` (it overlaps an object of its class by the threshold, but a higher-scoring
  prediction took that object), ``class`` (a class confusion: it overlaps an object of another
  class by the threshold), ``localisation`` (it overlaps an object of its class by at least
  :data:`BACKGROUND_IOU`, but less than the threshold), ``class`` again when it overlaps an object
  of another class by at least :data:`BACKGROUND_IOU`, else ``background`` (it overlaps nothing);
  the object it overlaps most is given (``gt``) with the IoU;
* ``fn``: an object no prediction matched.

Predictions on crowd regions (or difficult objects under the VOC protocol) are neither right nor
wrong: they are counted as ``ignored`` and not listed. Images come sorted by errors (FP + FN), most
first. With ``category`` only that class's boxes are listed and counted (a class confusion is
listed under the predicted class, the object it missed under its own).
"""

from __future__ import annotations

from vitrine.core.errors import VitrineError
from vitrine.evaluate.detection import (
    DIFFICULT_KEY,
    IGNORED,
    IOU_TYPES,
    UNMATCHED,
    coco_pair,
    geometry,
    iou_matrix,
    iter_matches,
    normalize_name,
)

BACKGROUND_IOU = 0.1  # below this IoU with every object, a false positive is on the background
IOU_RANGE = (0.1, 0.95)
FP_KINDS = ("duplicate", "class", "localisation", "background")
BOX_KINDS = ("tp", "fp", "fn")


def check_thresholds(iou_threshold: float, score_threshold: float, iou_type: str) -> tuple[float, float]:
    """The thresholds as floats; a VitrineError saying what is allowed otherwise."""
    lo, hi = IOU_RANGE
    try:
        iou, score = float(iou_threshold), float(score_threshold)
    except (TypeError, ValueError):
        raise VitrineError(
            "the IoU and score thresholds must be numbers", hint=f"iou in {lo}..{hi}, score in 0..1"
        ) from None
    if not lo <= iou <= hi:
        raise VitrineError(f"IoU threshold {iou_threshold} is out of range", hint=f"give an IoU between {lo} and {hi}")
    if not 0.0 <= score <= 1.0:
        raise VitrineError(f"score threshold {score_threshold} is out of range", hint="give a score between 0 and 1")
    if iou_type not in IOU_TYPES:
        raise VitrineError(f"unknown IoU type {iou_type!r}", hint="bbox (boxes) or segm (masks)")
    return iou, score


def resolve_category(gt, category: str | int | None) -> int | None:
    """The dataset category id named by ``category`` (its id, or its name as evaluate_detection
    compares names); None for every class."""
    if category is None or (isinstance(category, str) and not category.strip()):
        return None
    ids = {c.id: c for c in gt.categories}
    text = str(category).strip()
    if text.lstrip("-").isdigit() and int(text) in ids:
        return int(text)
    by_name = {normalize_name(c.name): c.id for c in gt.categories}
    found = by_name.get(normalize_name(text))
    if found is None:
        names = ", ".join(c.name for c in gt.categories) or "none"
        raise VitrineError(f"no class {category!r} in the run's dataset", hint=f"its classes: {names}")
    return found


def _box(ann: dict) -> list[float]:
    return [round(float(v), 2) for v in ann["bbox"]]


def _pred(d: dict, names: dict) -> dict:
    return {"category_id": int(d["category_id"]), "class": names.get(d["category_id"], ""), "bbox": _box(d),
            "score": round(float(d["score"]), 4)}  # fmt: skip


def _object(a: dict, names: dict) -> dict:
    return {"category_id": int(a["category_id"]), "class": names.get(a["category_id"], ""), "bbox": _box(a)}


def _rle(coco, ann: dict) -> dict:
    """An annotation's mask as a COCO compressed RLE with its counts as text (JSON)."""
    rle = coco.annToRLE(ann)
    counts = rle["counts"]
    return {
        "size": [int(v) for v in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


class _ImageOverlaps:
    """IoU of each prediction of one image (at the score threshold) with each of its counted objects,
    whatever their classes, computed when a false positive first needs it."""

    def __init__(self, gt_coco, dt_coco, image_id: int, iou_type: str, score_threshold: float):
        self.gts = [a for a in gt_coco.imgToAnns.get(image_id, []) if not a.get("iscrowd") and not a.get(DIFFICULT_KEY)]
        self.dts = [d for d in dt_coco.imgToAnns.get(image_id, []) if d["score"] >= score_threshold]
        self.row = {d["id"]: i for i, d in enumerate(self.dts)}
        self.ious = iou_matrix(
            [geometry(dt_coco, d, iou_type) for d in self.dts],
            [geometry(gt_coco, a, iou_type) for a in self.gts],
            False,
        )

    def best(self, d: dict, same_class: bool) -> tuple[dict | None, float]:
        row = self.ious[self.row[d["id"]]] if self.gts else []
        best, best_iou = None, 0.0
        for a, iou in zip(self.gts, row, strict=True):
            if (a["category_id"] == d["category_id"]) == same_class and iou > best_iou:
                best, best_iou = a, float(iou)
        return best, best_iou


def fp_kind(d: dict, overlaps: _ImageOverlaps, iou_threshold: float) -> tuple[str, dict | None, float]:
    """Why prediction ``d`` matched nothing (see the module docstring): its kind, the object it
    overlaps most for that kind, and the IoU."""
    same, same_iou = overlaps.best(d, same_class=True)
    other, other_iou = overlaps.best(d, same_class=False)
    if same is not None and same_iou >= iou_threshold:
        return "duplicate", same, same_iou  # its object was taken by a higher-scoring prediction
    if other is not None and other_iou >= iou_threshold:
        return "class", other, other_iou
    if same is not None and same_iou >= BACKGROUND_IOU:
        return "localisation", same, same_iou
    if other is not None and other_iou >= BACKGROUND_IOU:
        return "class", other, other_iou
    return "background", None, max(same_iou, other_iou)


def detection_errors(
    gt,
    results: list[dict],
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.5,
    category: str | int | None = None,
    iou_type: str = "bbox",
    ignore_difficult: bool = False,
    masks: bool = False,
) -> dict:
    """Every image of ``gt`` with its true positives, false positives (and their kind) and false
    negatives at the thresholds, most errors first; see the module docstring.

    ``results``: COCO results in ``gt``'s category ids. Returns ``{"iou_threshold",
    "score_threshold", "iou_type", "category" (id or None), "counts": {tp, fp, fn, ignored, errors,
    images, images_with_errors, fp_kinds}, "per_class": [{category_id, class, tp, fp, fn}],
    "categories", "images": [{image_id, file_name, width, height, split, tp, fp, fn, errors,
    boxes: [{kind, category_id, class, bbox (x, y, w, h), score, iou, fp_kind, gt}]}]}``. With
    ``masks`` (``iou_type="segm"`` only), each box also has its ``mask`` as a COCO compressed RLE
    (``{"size": [h, w], "counts": str}``)."""
    iou, score = check_thresholds(iou_threshold, score_threshold, iou_type)
    if iou_type == "segm" and not (gt.has_masks and all("segmentation" in r for r in results)):
        raise VitrineError("this run's errors cannot be matched by masks", hint="match boxes (iou_type=bbox)")
    if masks and iou_type != "segm":
        raise VitrineError("masks come with the matching by masks", hint="ask for iou_type=segm with masks")
    cat = resolve_category(gt, category)
    names = {c.id: c.name for c in gt.categories}
    gt_coco, dt_coco = coco_pair(gt, results, ignore_difficult=ignore_difficult)

    def mask_of(coco, ann: dict) -> dict:
        return {"mask": _rle(coco, ann)} if masks else {}

    images = {
        im.id: {"image_id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height,
                "split": im.split, "tp": 0, "fp": 0, "fn": 0, "ignored": 0, "boxes": []}
        for im in gt.images
    }  # fmt: skip
    per_class = {c.id: {"category_id": c.id, "class": c.name, "tp": 0, "fp": 0, "fn": 0} for c in gt.categories}
    fp_kinds = dict.fromkeys(FP_KINDS, 0)
    overlaps: dict[int, _ImageOverlaps] = {}
    for m in iter_matches(gt_coco, dt_coco, iou_type, score, iou):
        if cat is not None and m.category_id != cat:
            continue
        row, counts = (
            images[m.image_id],
            per_class.setdefault(
                m.category_id,
                {"category_id": m.category_id, "class": names.get(m.category_id, ""), "tp": 0, "fp": 0, "fn": 0},
            ),
        )
        for i, j in enumerate(m.matched):
            d = m.dts[i]
            if j >= 0:
                row["boxes"].append({"kind": "tp", **_pred(d, names), "iou": round(float(m.ious[i, j]), 3),
                                     "gt": _object(m.gts[j], names), **mask_of(dt_coco, d)})  # fmt: skip
                row["tp"] += 1
                counts["tp"] += 1
            elif j == IGNORED:
                row["ignored"] += 1
            elif j == UNMATCHED:
                if m.image_id not in overlaps:
                    overlaps[m.image_id] = _ImageOverlaps(gt_coco, dt_coco, m.image_id, iou_type, score)
                kind, near, near_iou = fp_kind(d, overlaps[m.image_id], iou)
                box = {
                    "kind": "fp",
                    **_pred(d, names),
                    "fp_kind": kind,
                    "iou": round(near_iou, 3),
                    **mask_of(dt_coco, d),
                }
                if near is not None:
                    box["gt"] = _object(near, names)
                row["boxes"].append(box)
                row["fp"] += 1
                counts["fp"] += 1
                fp_kinds[kind] += 1
        for j in m.missed:
            row["boxes"].append({"kind": "fn", **_object(m.gts[j], names), **mask_of(gt_coco, m.gts[j])})
            row["fn"] += 1
            counts["fn"] += 1
    listed = []
    for row in images.values():
        row["errors"] = row["fp"] + row["fn"]
        if cat is None or row["boxes"]:
            listed.append(row)
    listed.sort(key=lambda r: (-r["errors"], -r["fp"], r["image_id"]))
    tp, fp, fn = (sum(r[k] for r in listed) for k in ("tp", "fp", "fn"))
    return {
        "iou_threshold": iou,
        "score_threshold": score,
        "iou_type": iou_type,
        "category": cat,
        "counts": {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "errors": fp + fn,
            "ignored": sum(r["ignored"] for r in listed),
            "images": len(listed),
            "images_with_errors": sum(1 for r in listed if r["errors"]),
            "fp_kinds": fp_kinds,
        },
        "per_class": [per_class[k] for k in sorted(per_class) if cat is None or k == cat],
        "categories": [{"id": c.id, "name": c.name} for c in gt.categories],
        "images": listed,
    }


__all__ = ["BACKGROUND_IOU", "BOX_KINDS", "FP_KINDS", "IOU_RANGE", "check_thresholds", "detection_errors",
           "resolve_category"]  # fmt: skip
