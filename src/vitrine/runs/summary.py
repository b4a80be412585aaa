"""The headline numbers of a run, whatever its kind: what leaderboards, job results and model
cards show.

:func:`summarize` reads them from ``run.json`` (and the run's metric files when the record lacks
them): for a classifier (fine-tuning, linear probe, zero-shot) accuracy, macro-F1, the split they
were measured on and images per second; for a detector (detection, segmentation) box and mask
mAP@.5 and @.5:.95, P/R/F1 and mean IoU per type, the split, its number of images and ms/image.

:func:`comparable` is what makes runs of any kind comparable on a leaderboard: the task
(``classify`` / ``detect``), the dataset and the fingerprint of the exact split the run was scored on
(runs on different fingerprints are never ranked together), architecture and size, config, the
primary metric (accuracy; box mAP@.5 for detectors) and every metric of the evaluation, whether
per-class metrics exist (and in which files), speed by the one harness (ms/image at batch 1,
images/s at a batch, device, threads, load), cost (parameters, GFLOPs at the input size, weights on
disk), training seconds and state. Runs recorded before these fields existed still summarise: what
they lack is None.

An ``embedding`` run (an embedding model scored by ``vitrine compare-embeddings``) is task
``embedding``: its primary metric is leave-one-out kNN accuracy at k = 10, beside kNN@1, the
linear probe's and zero-shot accuracies, retrieval mAP@k, images/s, ms per text query, the vector
dimension and bytes per vector; ``random_weights`` marks a randomly initialised model (speed only).
"""

from __future__ import annotations

from vitrine.core.jsonio import read_json
from vitrine.runs.record import DETECTION_RUN_KINDS, EMBEDDING_KIND, Run

DETECTION_KEYS = ("map50", "map", "map75", "precision", "recall", "f1", "mean_iou")


def summarize(run: Run) -> dict:
    """The headline numbers of ``run``: a detection summary for detection and segmentation runs,
    a classification summary for the others."""
    if run.record.get("kind") in DETECTION_RUN_KINDS:
        return detection_summary(run)
    if run.record.get("kind") == EMBEDDING_KIND:
        return embedding_summary(run)
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


# ------------------------------------------------------------------------------------------------
# embedding models

EMBEDDING_KEYS = (
    "knn1_accuracy",
    "knn10_accuracy",
    "probe_accuracy",
    "zero_shot_accuracy",
    "map_at_k",
    "keyword_map_at_k",
    "images_per_second",
    "text_query_ms",
    "dim",
    "bytes_per_vector",
)


def embedding_summary(run: Run) -> dict:
    """kNN@1 and @10, probe and zero-shot accuracies, mAP@k, keyword agreement, speed and size of
    an embedding run, whether its weights are random (speed only), and the split scored."""
    metrics = run.record.get("metrics") or {}
    scores = metrics.get("all") if isinstance(metrics.get("all"), dict) else {}
    out = {key: scores.get(key) for key in EMBEDDING_KEYS}
    out["evaluated_on"] = scores.get("split")
    out["random_weights"] = bool((run.record.get("config") or {}).get("random_weights"))
    return out


# ------------------------------------------------------------------------------------------------
# comparable: every kind of run, one shape

PRIMARY = {"classify": "accuracy", "detect": "bbox_map50", "embedding": "knn10_accuracy"}
SPEED_KEYS = ("latency_ms", "images_per_second", "batch_size", "device", "threads", "cpus", "load_average")
COST_KEYS = ("parameters", "gflops", "input_size", "weights_bytes")
PER_CLASS_FILES = {
    "classify": ("per_class.csv", "per_class.json"),
    "detect": ("per_class_bbox.csv", "per_class_segm.csv", "detection_metrics.json"),
    "embedding": (),
}


def task_of(run: Run) -> str:
    """``detect`` for detection and segmentation runs, ``embedding`` for embedding runs, ``classify``
    for the others."""
    kind = run.record.get("kind")
    if kind == EMBEDDING_KIND:
        return "embedding"
    return "detect" if kind in DETECTION_RUN_KINDS else "classify"


def _evaluation(run: Run, task: str) -> dict:
    metrics = run.record.get("metrics") or {}
    if not isinstance(metrics, dict):
        return {}
    if task == "detect":
        ev = _detection_evaluation(run)
        return ev if ev.get("split") is not None else {}
    if task == "embedding":
        return metrics.get("all") if isinstance(metrics.get("all"), dict) else {}
    found = _classification_evaluation(metrics)
    if not found:
        found = _classification_evaluation(read_json(run.dir / "metrics.json") or {})
    return found


def _numbers(evaluation: dict) -> dict:
    """Every numeric metric of an evaluation (flat), without counts that are not scores."""
    skip = {"n_images", "n", "support", "loss"}
    return {
        k: float(v)
        for k, v in evaluation.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in skip
    }


def _pick(source, keys) -> dict:
    source = source if isinstance(source, dict) else {}
    return {k: source.get(k) for k in keys}


def arch_and_size(run: Run) -> tuple[str | None, str | None]:
    """Architecture and size of a run: a detector's ``arch`` and backbone; a fine-tuned
    classifier's backbone and input size; an embedding classifier's model (linear probe, zero-shot)."""
    r = run.record
    config = r.get("config") if isinstance(r.get("config"), dict) else {}
    if task_of(run) == "detect":
        return config.get("arch") or r.get("model"), config.get("backbone")
    if r.get("kind") == EMBEDDING_KIND:  # the model and the space it was scored in
        return r.get("model"), config.get("space")
    if r.get("kind") == "finetune":
        size = config.get("image_size")
        return config.get("backbone") or r.get("model"), (f"{size}px" if size else None)
    return r.get("model"), None


def comparable(run: Run) -> dict:
    """The fields that make ``run`` comparable with any other (see the module's docstring)."""
    r = run.record
    task = task_of(run)
    evaluation = _evaluation(run, task)
    metrics = r.get("metrics") if isinstance(r.get("metrics"), dict) else {}
    speed = metrics.get("speed") or evaluation.get("speed") or {}
    arch, size = arch_and_size(run)
    primary = PRIMARY[task]
    files = [name for name in PER_CLASS_FILES[task] if (run.dir / name).is_file()]
    numbers = _numbers(evaluation)
    train_seconds = metrics.get("train_seconds")
    return {
        "task": task,
        "dataset": r.get("dataset"),
        "split": evaluation.get("split"),
        "fingerprint": evaluation.get("fingerprint"),
        "arch": arch,
        "size": size,
        "config": r.get("config") or {},
        "primary_metric": primary,
        "primary": numbers.get(primary),
        "metrics": numbers,
        "per_class": {"available": bool(files), "files": files},
        "speed": _pick(speed, SPEED_KEYS),
        "cost": _pick(metrics.get("cost") or evaluation.get("cost"), COST_KEYS),
        "train_seconds": float(train_seconds) if isinstance(train_seconds, int | float) else None,
        "state": r.get("state"),
    }


__all__ = [
    "COST_KEYS",
    "PRIMARY",
    "SPEED_KEYS",
    "arch_and_size",
    "classification_summary",
    "comparable",
    "detection_summary",
    "embedding_summary",
    "summarize",
    "task_of",
]
