"""Detection and instance-segmentation metrics: COCO mAP (pycocotools), P/R/F1, mean IoU, PR curves.

:func:`evaluate_detection` compares predictions with a :class:`~vitrine.data.detection.model.DetectionDataset`
and returns, for each IoU type (``"bbox"`` for boxes, ``"segm"`` for masks):

* ``map50`` (AP at IoU 0.5), ``map`` (AP averaged over IoU 0.50:0.05:0.95) and ``map75``: COCO's
  numbers from ``pycocotools.cocoeval.COCOeval`` (101-point interpolation, up to 100 detections per
  image, all object sizes). Classes without ground truth are left out of the means, as in COCO;
* ``per_class``: AP@.5 and AP@.5:.95 per class (None when the class has no ground truth), with the
  counts and P/R/F1 below;
* ``precision``, ``recall``, ``f1``, ``mean_iou``, ``tp``, ``fp``, ``fn`` at a chosen score threshold
  and IoU threshold: in each image and class, the predictions scoring at least ``score_threshold``
  are taken from the highest score down, and each is matched to the unmatched ground-truth object
  of its class with the highest IoU, if that IoU is at least ``iou_threshold`` (one match per
  ground-truth object). Matched: true positive; unmatched: false positive, unless it overlaps a
  crowd region (``iscrowd``) by the threshold, in which case it is ignored; ground truth left
  unmatched: false negative. ``mean_iou`` is the mean IoU of the matched pairs. With
  ``ignore_difficult`` (the VOC protocol), ``difficult`` objects are handled like crowd regions
  (matched by plain IoU) in these counts and in mAP;
* ``pr_curves``: per class, COCO's interpolated precision at 101 recall points at IoU 0.5
  (``COCOeval.eval["precision"][0, :, k, 0, -1]``), as plain lists.

**Category ids are mapped by name.** Predictions given as ``{image_id: Detections}`` carry the
model's class ids and names (COCO ids for COCO models); each detection's class *name* is looked up
among the dataset's category names (case-insensitive; ``_``, ``-`` and runs of spaces count as
one space) and given that category's id. Detections whose class is not a dataset category are
left out and counted in ``report["unmapped"]``. Predictions given as a list of COCO result dicts
must already use the dataset's category ids (results with unknown ids or image ids are dropped
and counted the same way).

Images without ground truth are part of the evaluation (their detections are false positives);
images without predictions count their ground truth as missed. Annotations without a mask are
evaluated as their box rectangle in ``"segm"``.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitrine.core.errors import VitrineError
from vitrine.data.detection.model import DetectionDataset
from vitrine.evaluate import speed
from vitrine.models.detectors.base import Detections, Detector

IOU_TYPES = ("bbox", "segm")
# Detections.extra key: the masks as COCO RLEs, when predict_dataset dropped the full-size arrays
MASK_RLE_KEY = "mask_rle"
# ground-truth key of the objects to ignore as VOC does with ``difficult`` ones (neither found nor missed)
DIFFICULT_KEY = "vitrine_ignore"
PER_CLASS_FIELDS = (
    "class",
    "category_id",
    "gt",
    "predictions",
    "ap50",
    "ap",
    "precision",
    "recall",
    "f1",
    "mean_iou",
    "tp",
    "fp",
    "fn",
)


def normalize_name(name: str) -> str:
    """How class names are compared between a model and a dataset."""
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().casefold()


def category_map_by_name(model_classes: Mapping[int, str] | Iterable[str], gt: DetectionDataset) -> dict[str, int]:
    """``{model class name: dataset category id}`` for the model classes whose names the dataset has."""
    names = model_classes.values() if isinstance(model_classes, Mapping) else model_classes
    by_name = {normalize_name(c.name): c.id for c in gt.categories}
    return {n: by_name[normalize_name(n)] for n in names if normalize_name(n) in by_name}


# --------------------------------------------------------------------------------------------
# building the COCO objects


@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress to stdout; keep it out of the CLI and the server logs."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _box_polygon(bbox) -> list[list[float]]:
    x, y, w, h = (float(v) for v in bbox)
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def is_difficult(ann) -> bool:
    """A VOC ``difficult`` object (the attribute VOC and CVAT readers keep)."""
    return str(ann.attributes.get("difficult", "0")).strip().lower() in ("1", "true", "yes")


def _gt_coco(gt: DetectionDataset, ignore_difficult: bool = False):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    sizes = {im.id: (im.height, im.width) for im in gt.images}
    anns = []
    for n, a in enumerate(gt.annotations, start=1):
        if a.image_id not in sizes:
            continue
        seg = a.segmentation
        if isinstance(seg, list):  # polygons: pycocotools needs at least 3 points each
            seg = [list(map(float, p)) for p in seg if isinstance(p, list | tuple) and len(p) >= 6] or None
        if seg is None:
            seg = _box_polygon(a.bbox)
        if isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed RLE
            h, w = (int(v) for v in seg["size"])
            seg = mask_utils.frPyObjects(seg, h, w)
        area = a.area
        if area is None:
            area = float(a.bbox[2]) * float(a.bbox[3])
        anns.append(
            {
                "id": n,  # COCOeval needs unique ids; the dataset's own may repeat across splits
                "image_id": int(a.image_id),
                "category_id": int(a.category_id),
                "bbox": [float(v) for v in a.bbox],
                "area": float(area),
                "iscrowd": int(a.iscrowd or 0),
                "segmentation": seg,
                DIFFICULT_KEY: int(ignore_difficult and is_difficult(a)),
            }
        )
    coco = COCO()
    coco.dataset = {
        "images": [
            {"id": im.id, "width": im.width, "height": im.height, "file_name": im.file_name} for im in gt.images
        ],
        "categories": [{"id": c.id, "name": c.name} for c in gt.categories],
        "annotations": anns,
    }
    with _quiet():
        coco.createIndex()
    return coco


def _results_from_detections(
    gt: DetectionDataset, predictions: Mapping[int, Detections], unmapped: Counter
) -> tuple[list[dict], bool]:
    from vitrine.predict.export import mask_to_rle

    by_name = {normalize_name(c.name): c.id for c in gt.categories}
    sizes = {im.id: (im.width, im.height) for im in gt.images}
    results: list[dict] = []
    all_masks = True
    for image_id, det in predictions.items():
        if int(image_id) not in sizes:
            unmapped[f"image {image_id} (not in the dataset)"] += len(det)
            continue
        if len(det) and (det.width, det.height) != sizes[int(image_id)]:
            w, h = sizes[int(image_id)]
            raise VitrineError(
                f"predictions for image {image_id} were made on a {det.width}x{det.height} image, "
                f"but the dataset says it is {w}x{h}",
                hint="run the detector on the dataset's images at their own size (see predict_dataset)",
            )
        rles = det.extra.get(MASK_RLE_KEY) if det.masks is None else None
        if det.masks is None and (rles is None or len(rles) != len(det)):
            all_masks = False
            rles = None
        for i in range(len(det)):
            cat = by_name.get(normalize_name(det.labels[i]))
            if cat is None:
                unmapped[det.labels[i]] += 1
                continue
            x1, y1, x2, y2 = (float(v) for v in det.boxes[i])
            r = {
                "image_id": int(image_id),
                "category_id": int(cat),
                "bbox": [x1, y1, max(0.0, x2 - x1), max(0.0, y2 - y1)],
                "score": float(det.scores[i]),
            }
            if det.masks is not None:
                r["segmentation"] = mask_to_rle(det.masks[i])
            elif rles is not None:
                r["segmentation"] = rles[i]
            results.append(r)
    return results, all_masks


def _results_from_list(gt: DetectionDataset, predictions: list[dict], unmapped: Counter) -> tuple[list[dict], bool]:
    cat_ids = {c.id for c in gt.categories}
    image_ids = {im.id for im in gt.images}
    results = []
    all_masks = True
    for n, r in enumerate(predictions):
        if not isinstance(r, Mapping) or "image_id" not in r or "category_id" not in r or "score" not in r:
            raise VitrineError(
                f"prediction [{n}] is not a COCO result: it needs image_id, category_id, score and bbox",
                hint='each result looks like {"image_id": 1, "category_id": 3, "bbox": [x, y, w, h], "score": 0.9}',
            )
        if "bbox" not in r:
            raise VitrineError(f"prediction [{n}] has no bbox", hint="give bbox as [x, y, width, height] in pixels")
        if int(r["image_id"]) not in image_ids:
            unmapped[f"image {r['image_id']} (not in the dataset)"] += 1
            continue
        if int(r["category_id"]) not in cat_ids:
            unmapped[f"category_id {r['category_id']}"] += 1
            continue
        if "segmentation" not in r:
            all_masks = False
        results.append(dict(r))
    return results, all_masks


def _dt_coco(gt_coco, results: list[dict]):
    from pycocotools.coco import COCO

    if results:
        with _quiet():
            return gt_coco.loadRes(copy.deepcopy(results))
    dt = COCO()
    dt.dataset = {"images": list(gt_coco.dataset["images"]), "categories": list(gt_coco.dataset["categories"])}
    dt.dataset["annotations"] = []
    with _quiet():
        dt.createIndex()
    return dt


def coco_results(gt: DetectionDataset, predictions: Mapping[int, Detections] | list[dict]) -> list[dict]:
    """``predictions`` as the COCO results :func:`evaluate_detection` scores: in the dataset's category
    ids (classes mapped by name), masks as RLEs; what is not the dataset's is left out, as there."""
    unmapped: Counter = Counter()
    if isinstance(predictions, Mapping):
        return _results_from_detections(gt, predictions, unmapped)[0]
    return _results_from_list(gt, list(predictions), unmapped)[0]


def coco_pair(gt: DetectionDataset, results: list[dict], ignore_difficult: bool = False):
    """pycocotools' ground truth and results objects for ``gt`` and COCO ``results`` (dataset ids),
    as :func:`evaluate_detection` builds them (for :func:`iter_matches`)."""
    gt_coco = _gt_coco(gt, ignore_difficult=ignore_difficult)
    return gt_coco, _dt_coco(gt_coco, results)


# --------------------------------------------------------------------------------------------
# metrics


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) or x < 0 else float(x)


def _mean_valid(a: np.ndarray) -> float | None:
    v = a[a > -1]
    return float(v.mean()) if v.size else None


def geometry(coco, ann: dict, iou_type: str):
    """What IoU is computed on: the box (``bbox``) or the mask as an RLE (``segm``)."""
    return ann["bbox"] if iou_type == "bbox" else coco.annToRLE(ann)


@dataclass
class ClassMatch:
    """The greedy matching of one class in one image (what P/R/F1 count, and what the error browser shows).

    ``dts``: the predictions scoring at least the score threshold, highest score first; ``gts``: the
    ground truth that counts (neither crowd nor ignored as difficult); ``matched[i]``: the index in
    ``gts`` of prediction ``i``'s match, :data:`UNMATCHED` (a false positive) or :data:`IGNORED`
    (on a crowd region or a difficult object: neither right nor wrong); ``ious``: IoU of every
    prediction with every ground-truth object (``len(dts) x len(gts)``)."""

    image_id: int
    category_id: int
    dts: list[dict]
    gts: list[dict]
    matched: list[int]
    ious: np.ndarray

    @property
    def missed(self) -> list[int]:
        """Indices in ``gts`` of the objects no prediction matched (false negatives)."""
        taken = {j for j in self.matched if j >= 0}
        return [j for j in range(len(self.gts)) if j not in taken]


UNMATCHED, IGNORED = -1, -2


def iou_matrix(dgeo: list, ggeo: list, crowd: bool) -> np.ndarray:
    """IoU of every prediction with every ground-truth object (pycocotools; ``crowd``: COCO's crowd rule)."""
    from pycocotools import mask as mask_utils

    if not dgeo or not ggeo:
        return np.zeros((len(dgeo), len(ggeo)))
    return np.asarray(mask_utils.iou(dgeo, ggeo, [int(crowd)] * len(ggeo))).reshape(len(dgeo), len(ggeo))


def iter_matches(gt_coco, dt_coco, iou_type: str, score_threshold: float, iou_threshold: float):
    """:class:`ClassMatch` for every (image, class) with ground truth or predictions: in each image
    and class, the predictions scoring at least ``score_threshold`` are taken from the highest score
    down, each matched to the unmatched ground-truth object of its class with the highest IoU if
    that IoU is at least ``iou_threshold``; unmatched, it is ignored when it overlaps a crowd region
    or a difficult object by the threshold, else a false positive."""
    for img_id in gt_coco.getImgIds():
        gts = gt_coco.imgToAnns.get(img_id, [])
        dts = [d for d in dt_coco.imgToAnns.get(img_id, []) if d["score"] >= score_threshold]
        for cat in sorted({a["category_id"] for a in gts} | {d["category_id"] for d in dts}):
            g = [a for a in gts if a["category_id"] == cat and not a.get("iscrowd") and not a.get(DIFFICULT_KEY)]
            crowd = [a for a in gts if a["category_id"] == cat and a.get("iscrowd")]
            hard = [a for a in gts if a["category_id"] == cat and not a.get("iscrowd") and a.get(DIFFICULT_KEY)]
            d = sorted((x for x in dts if x["category_id"] == cat), key=lambda x: -x["score"])
            dgeo = [geometry(dt_coco, x, iou_type) for x in d]
            ious = iou_matrix(dgeo, [geometry(gt_coco, a, iou_type) for a in g], False)
            crowd_iou = iou_matrix(dgeo, [geometry(gt_coco, a, iou_type) for a in crowd], True)
            hard_iou = iou_matrix(dgeo, [geometry(gt_coco, a, iou_type) for a in hard], False)
            taken = np.zeros(len(g), dtype=bool)
            matched: list[int] = []
            for i in range(len(d)):
                row = np.where(taken, -1.0, ious[i]) if len(g) else ious[i]
                j = int(np.argmax(row)) if len(g) else -1
                if j >= 0 and row[j] >= iou_threshold:
                    taken[j] = True
                    matched.append(j)
                elif crowd_iou.shape[1] and crowd_iou[i].max() >= iou_threshold:
                    matched.append(IGNORED)  # on a crowd region: neither right nor wrong (COCO's rule)
                elif hard_iou.shape[1] and hard_iou[i].max() >= iou_threshold:
                    matched.append(IGNORED)  # on a difficult object: neither right nor wrong (VOC's rule)
                else:
                    matched.append(UNMATCHED)
            yield ClassMatch(int(img_id), int(cat), d, g, matched, ious)


def _match(gt_coco, dt_coco, iou_type: str, score_threshold: float, iou_threshold: float) -> dict[int, dict]:
    """Greedy matching by score, per image and class (:func:`iter_matches`). Returns per category counts and IoUs."""

    def empty() -> dict:
        return {"tp": 0, "fp": 0, "fn": 0, "ious": [], "predictions": 0}

    stats: dict[int, dict] = {c: empty() for c in gt_coco.getCatIds()}
    for m in iter_matches(gt_coco, dt_coco, iou_type, score_threshold, iou_threshold):
        s = stats.setdefault(m.category_id, empty())
        s["predictions"] += len(m.dts)
        for i, j in enumerate(m.matched):
            if j >= 0:
                s["tp"] += 1
                s["ious"].append(float(m.ious[i, j]))
            elif j == UNMATCHED:
                s["fp"] += 1
        s["fn"] += len(m.missed)
    return stats


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _cocoeval(gt_coco, dt_coco, iou_type: str):
    """pycocotools' COCOeval, with the ground truth flagged ``DIFFICULT_KEY`` ignored like crowd
    regions are (a detection on it is neither a true nor a false positive) but matched by plain IoU."""
    from pycocotools.cocoeval import COCOeval

    class _Eval(COCOeval):
        def _prepare(self):
            super()._prepare()  # sets gt["ignore"] from iscrowd
            for anns in self._gts.values():
                for g in anns:
                    if g.get(DIFFICULT_KEY):
                        g["ignore"] = 1

    return _Eval(gt_coco, dt_coco, iou_type)


def _evaluate_type(gt_coco, dt_coco, iou_type: str, score_threshold: float, iou_threshold: float, names) -> dict:
    cat_ids = sorted(gt_coco.getCatIds())
    ev = _cocoeval(gt_coco, dt_coco, iou_type)
    ev.params.imgIds = sorted(gt_coco.getImgIds())
    ev.params.catIds = cat_ids
    with _quiet():
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [T iou thresholds, R recall points, K classes, A areas, M max dets]
    stats = _match(gt_coco, dt_coco, iou_type, score_threshold, iou_threshold)
    n_gt = Counter(
        a["category_id"] for a in gt_coco.dataset["annotations"] if not a.get("iscrowd") and not a.get(DIFFICULT_KEY)
    )
    recall_points = [round(float(r), 2) for r in ev.params.recThrs]

    per_class, curves = [], []
    for k, cat in enumerate(cat_ids):
        s = stats.get(cat, {"tp": 0, "fp": 0, "fn": 0, "ious": [], "predictions": 0})
        p, r, f = _prf(s["tp"], s["fp"], s["fn"])
        pr50 = precision[0, :, k, 0, -1]
        per_class.append(
            {
                "class": names[cat],
                "category_id": cat,
                "gt": int(n_gt.get(cat, 0)),
                "predictions": int(s["predictions"]),
                "ap50": _mean_valid(pr50),
                "ap": _mean_valid(precision[:, :, k, 0, -1]),
                "precision": p,
                "recall": r,
                "f1": f,
                "mean_iou": float(np.mean(s["ious"])) if s["ious"] else None,
                "tp": s["tp"],
                "fp": s["fp"],
                "fn": s["fn"],
            }
        )
        if (pr50 > -1).any():
            curves.append(
                {
                    "class": names[cat],
                    "category_id": cat,
                    "recall": recall_points,
                    "precision": [float(max(v, 0.0)) for v in pr50],
                }
            )
    tp = sum(s["tp"] for s in stats.values())
    fp = sum(s["fp"] for s in stats.values())
    fn = sum(s["fn"] for s in stats.values())
    ious = [v for s in stats.values() for v in s["ious"]]
    p, r, f = _prf(tp, fp, fn)
    return {
        "map": _nan_to_none(ev.stats[0]),
        "map50": _nan_to_none(ev.stats[1]),
        "map75": _nan_to_none(ev.stats[2]),
        "precision": p,
        "recall": r,
        "f1": f,
        "mean_iou": float(np.mean(ious)) if ious else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "per_class": per_class,
        "pr_curves": curves,
    }


def evaluate_detection(
    gt: DetectionDataset,
    predictions: Mapping[int, Detections] | list[dict],
    iou_type: str | Iterable[str] | None = None,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    ignore_difficult: bool = False,
) -> dict:
    """Compare ``predictions`` with the ground truth ``gt``; see the module docstring for the numbers.

    ``ignore_difficult``: the Pascal VOC protocol: objects marked ``difficult`` are neither found
    nor missed (a detection on one counts for nothing; they are not in the ground-truth counts),
    in mAP and P/R/F1 alike. The report says ``ignore_difficult`` and how many were ignored.

    ``predictions``: ``{image_id: Detections}`` (classes mapped to the dataset by name) or a list of
    COCO result dicts (already in the dataset's category ids). ``iou_type``: ``"bbox"``, ``"segm"``,
    both, or None for every type available (``"segm"`` when the dataset has masks and every
    prediction has one). Pass a low-threshold set of predictions (e.g. 0.05) for meaningful mAP;
    ``score_threshold`` only applies to P/R/F1 and mean IoU.
    """
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise VitrineError(f"iou_threshold must be between 0 and 1, got {iou_threshold}")
    unmapped: Counter = Counter()
    if isinstance(predictions, Mapping):
        results, all_masks = _results_from_detections(gt, predictions, unmapped)
        seconds = [d.seconds for d in predictions.values() if d.seconds > 0]
    elif isinstance(predictions, list):
        results, all_masks = _results_from_list(gt, predictions, unmapped)
        seconds = []
    else:
        raise VitrineError(
            "predictions must be a dict {image_id: Detections} or a list of COCO results, "
            f"not {type(predictions).__name__}"
        )
    segm_ok = gt.has_masks and all_masks
    if iou_type is None:
        types = ["bbox", "segm"] if segm_ok else ["bbox"]
    else:
        types = [iou_type] if isinstance(iou_type, str) else list(iou_type)
        for t in types:
            if t not in IOU_TYPES:
                raise VitrineError(f"unknown IoU type {t!r}", hint="use 'bbox' (boxes) and/or 'segm' (masks)")
        if "segm" in types and not segm_ok:
            why = "the dataset has no masks" if not gt.has_masks else "some predictions have no masks"
            raise VitrineError(f"cannot evaluate masks (segm): {why}", hint="evaluate boxes only (iou_type='bbox')")

    gt_coco = _gt_coco(gt, ignore_difficult=ignore_difficult)
    dt_coco = _dt_coco(gt_coco, results)
    difficult = sum(1 for a in gt.annotations if not a.iscrowd and is_difficult(a)) if ignore_difficult else 0
    names = {c.id: c.name for c in gt.categories}
    report: dict = {
        "iou_types": types,
        "score_threshold": float(score_threshold),
        "iou_threshold": float(iou_threshold),
        "images": len(gt.images),
        "gt_objects": sum(1 for a in gt.annotations if not a.iscrowd) - difficult,
        "ignore_difficult": bool(ignore_difficult),
        "difficult_ignored": difficult,
        "predictions": len(results),
        "unmapped": dict(unmapped),
        "ms_per_image": float(np.mean(seconds) * 1000.0) if seconds else None,
        "categories": [{"id": c.id, "name": c.name} for c in gt.categories],
    }
    for t in types:
        report[t] = _evaluate_type(gt_coco, dt_coco, t, float(score_threshold), float(iou_threshold), names)
    return report


# --------------------------------------------------------------------------------------------
# running a detector over a dataset


def report_summary(report: dict) -> dict:
    """The headline numbers of an :func:`evaluate_detection` report, flat: ``bbox_map50``,
    ``bbox_map`` (@.5:.95), ``segm_map50``, ``segm_map``, and precision / recall / F1 / mean IoU
    per IoU type (what run records and leaderboards keep)."""
    out = {}
    for iou_type in IOU_TYPES:
        section = report.get(iou_type)
        if not isinstance(section, dict):
            continue
        for key in ("map50", "map", "map75", "precision", "recall", "f1", "mean_iou"):
            v = section.get(key)
            if isinstance(v, int | float):
                out[f"{iou_type}_{key}"] = float(v)
    return out


def predict_dataset(
    detector: Detector,
    gt: DetectionDataset,
    threshold: float = 0.05,
    batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
    keep_masks: bool = False,
) -> dict[int, Detections]:
    """``{image_id: Detections}`` for every image of ``gt`` (read from ``gt.root``), keeping
    detections down to ``threshold`` (low, so that mAP sees the whole precision/recall curve).

    Unless ``keep_masks``, masks are stored compactly as COCO RLEs in ``det.extra["mask_rle"]``
    (``det.masks`` is then None): a hundred full-size boolean masks per image would otherwise
    hold hundreds of MB over a dataset. :func:`evaluate_detection` reads either form."""
    from vitrine.collection.imageio import open_image
    from vitrine.core.errors import NotFound
    from vitrine.predict.export import mask_to_rle

    if gt.root is None:
        raise VitrineError("the dataset has no images folder (root)", hint="load it with its images folder")
    out: dict[int, Detections] = {}
    images = list(gt.images)
    for start in range(0, len(images), max(1, batch_size)):
        chunk = images[start : start + max(1, batch_size)]
        pil = []
        for im in chunk:
            path = Path(gt.root) / im.file_name
            if not path.is_file():
                raise NotFound(f"image {im.file_name} (id {im.id}) not found in {gt.root}", hint="check the dataset")
            pil.append(open_image(path))
        for im, det in zip(chunk, detector.predict_batch(pil, threshold=threshold), strict=True):
            if det.masks is not None and not keep_masks:
                det.extra[MASK_RLE_KEY] = [mask_to_rle(m) for m in det.masks]
                det.masks = None
            out[im.id] = det
        if progress is not None:
            progress(min(start + len(chunk), len(images)), len(images))
    return out


def measure_detector_speed(
    detector: Detector, images: list, warmup: int = 2, repeats: int = 10, threshold: float = 0.5
) -> dict:
    """Inference time of ``detector`` on ``images`` (PIL images), one image at a time, after
    ``warmup`` untimed calls, with the one speed harness (:func:`vitrine.evaluate.speed.measure`):
    ``{"ms_per_image" (median), "ms_min", "ms_max", "images", "model"}`` and what the figures depend
    on (device, threads, CPUs, load). Preprocessing is included; decoding the files is not."""
    if not images:
        raise VitrineError("no images to time the detector on")
    report = speed.measure(
        lambda batch: [detector.predict(im, threshold=threshold) for im in batch],
        images,
        batch_size=0,
        latency_images=max(1, repeats),
        warmup=warmup,
        device=str(getattr(detector, "device", "cpu")),
    )
    return {
        "model": getattr(detector, "name", ""),
        "ms_per_image": report.latency_ms,
        "ms_min": report.latency_ms_min,
        "ms_max": report.latency_ms_max,
        "images": report.latency_images,
        "device": report.device,
        "threads": report.threads,
        "cpus": report.cpus,
        "load_average": report.load_average,
    }


# --------------------------------------------------------------------------------------------
# report files and charts


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(PER_CLASS_FIELDS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in PER_CLASS_FIELDS})
    return buf.getvalue()


def write_detection_report(report: dict, out_dir: str | Path) -> list[Path]:
    """Write ``detection_metrics.json`` and ``per_class_<bbox|segm>.csv`` into ``out_dir`` atomically."""
    from vitrine.core.atomic import atomic_write_json, atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "detection_metrics.json"]
    atomic_write_json(paths[0], report)
    for t in report.get("iou_types", []):
        path = out / f"per_class_{t}.csv"
        atomic_write_text(path, _csv_text(report[t]["per_class"]))
        paths.append(path)
    return paths


def pr_curve_figure(report: dict, iou_type: str | None = None):
    """A Plotly figure: precision against recall at IoU 0.5, one line per class, one panel per IoU type."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from vitrine.predict.overlay import class_color

    types = [iou_type] if iou_type else list(report.get("iou_types", []))
    titles = []
    for t in types:
        m = report[t].get("map50")
        label = "boxes" if t == "bbox" else "masks"
        titles.append(f"{label}: mAP@.5 = {m:.3f}" if m is not None else f"{label}: no ground truth")
    fig = make_subplots(rows=1, cols=max(1, len(types)), subplot_titles=titles, shared_yaxes=True)
    for col, t in enumerate(types, start=1):
        for curve in report[t]["pr_curves"]:
            r, g, b = class_color(curve["class"])
            fig.add_trace(
                go.Scatter(
                    x=curve["recall"],
                    y=curve["precision"],
                    mode="lines",
                    name=curve["class"],
                    legendgroup=curve["class"],
                    showlegend=col == 1,
                    line={"color": f"rgb({r},{g},{b})", "shape": "hv"},
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="recall", range=[0, 1.01], row=1, col=col)
    fig.update_yaxes(title_text="precision (IoU 0.5)", range=[0, 1.05], row=1, col=1)
    fig.update_layout(title="Precision-recall per class", template="plotly_white", legend_title_text="class")
    return fig
