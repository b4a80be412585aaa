"""The headline numbers of a run, whatever its kind: what leaderboards, job results and model
cards show.

:func:`summarize` reads them from ``run.json`` (and the run's metric files when the record lacks
them): for a classifier (fine-tuning, linear probe, zero-shot) accuracy, macro-F1, the split they
were measured on and images per second; for a detector (detection, segmentation) box and mask
mAP@.5 and @.5:.95, P/R/F1 and mean IoU per type, the split, its number of images and ms/image.
"""

from __future__ import annotations

from vitrine.core.jsonio import read_json
from vitrine.runs.record import DETECTION_RUN_KINDS, Run

DETECTION_KEYS = ("map50", "map", "map75", "precision", "recall", "f1", "mean_iou")


def summarize(run: Run) -> dict:
    """The headline numbers of ``run``: a detection summary for detection and segmentation runs,
    a classification summary for the others."""
    if run.record.get("kind") in DETECTION_RUN_KINDS:
        return detection_summary(run)
    return classification_summary(run)


# ------------------------------------------------------------------------------------------------
# classifiers


def _classification_evaluation(metrics: dict) -> dict:
    """The evaluation a run reports: on its test split, else on all samples, else on val."""
    for split in ("test", "all", "val"):
        found = metrics.get(split)
        if isinstance(found, dict) and found.get("accuracy") is not None:
            return found
    return metrics if metrics.get("accuracy") is not None else {}


def _speed(*sources: dict) -> float | None:
    for src in sources:
        for holder in (src, src.get("speed") if isinstance(src.get("speed"), dict) else None):
            if holder and isinstance(holder.get("images_per_second"), (int, float)):
                return float(holder["images_per_second"])
    return None


def classification_summary(run: Run) -> dict:
    """Accuracy, macro-F1 and speed of a classifier run, from run.json or metrics.json."""
    record_metrics = run.record.get("metrics") or {}
    evaluation = _classification_evaluation(record_metrics) if isinstance(record_metrics, dict) else {}
    file_metrics = None
    if not evaluation or _speed(evaluation, record_metrics) is None:
        file_metrics = read_json(run.dir / "metrics.json") or {}
        if not evaluation:
            evaluation = _classification_evaluation(file_metrics)
    sources = [s for s in (evaluation, record_metrics, file_metrics) if isinstance(s, dict)]
    return {
        "accuracy": evaluation.get("accuracy"),
        "macro_f1": evaluation.get("macro_f1"),
        "evaluated_on": evaluation.get("split"),
        "images_per_second": _speed(*sources),
    }


# ------------------------------------------------------------------------------------------------
# detectors


def _detection_evaluation(run: Run) -> dict:
    metrics = run.record.get("metrics") or {}
    for key in ("test", "all", "val", "train"):
        found = metrics.get(key)
        if isinstance(found, dict) and any("map" in k for k in found):
            return {"split": key, **found}
    return {"split": None}


def detection_summary(run: Run) -> dict:
    """Box and mask mAP@.5 and @.5:.95, P/R/F1 and mean IoU per type, inference ms/image of a
    detection run."""
    ev = _detection_evaluation(run)
    metrics = run.record.get("metrics") or {}
    speed = ev.get("speed") or metrics.get("speed") or {}
    out = {f"{t}_{k}": ev.get(f"{t}_{k}") for t in ("bbox", "segm") for k in DETECTION_KEYS}
    out["evaluated_on"] = ev.get("split")
    out["n_images"] = ev.get("n_images")
    out["ms_per_image"] = speed.get("ms_per_image") if isinstance(speed, dict) else None
    return out


__all__ = [
    "classification_summary",
    "detection_summary",
    "summarize",
]
