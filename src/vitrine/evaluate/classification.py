"""How well a classifier does, the same way for every run kind (fine-tuned, linear probe, zero-shot).

:func:`classification_report` turns true labels and predicted probabilities into accuracy, macro
and weighted precision/recall/F1, a per-class table, the confusion matrix and top-k accuracies
(scikit-learn does the counting). :func:`write_report` writes, next to the run::

    metrics.json      the whole report
    per_class.csv     class, precision, recall, f1, support, predicted
    per_class.json    the same rows as a JSON list
    confusion.csv     rows: true class, columns: predicted class (class names as headers)
    confusion.svg     the confusion matrix as a chart (rows normalised, counts written in)

:func:`measure_speed` times ``predict_proba`` on this machine (preprocessing included) and
:func:`evaluate_run` does all of it for a saved run on one split of its dataset, and keeps each
image's prediction (``predictions.csv``, :mod:`vitrine.evaluate.predictions`) for error browsing.

Macro and weighted averages are taken over the classes that occur in the labels or in the
predictions (scikit-learn's default), so a class absent from a small test split does not count as
a zero; the per-class table lists every class.
"""

from __future__ import annotations

import csv
import html
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vitrine.core.atomic import atomic_write_text
from vitrine.core.errors import ImageError, VitrineError
from vitrine.evaluate import speed

REPORT_FILES = ("metrics.json", "per_class.csv", "per_class.json", "confusion.csv", "confusion.svg")
PER_CLASS_FIELDS = ("class", "precision", "recall", "f1", "support", "predicted")


def classification_report(y_true, probs, classes: list[str], ks=(1, 3, 5)) -> dict:
    """Metrics of ``probs`` (n x C, rows = samples) against ``y_true`` (n class indexes)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

    classes = [str(c) for c in classes]
    n_classes = len(classes)
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    n = len(y_true)
    if probs.ndim != 2 or probs.shape != (n, n_classes):
        raise ValueError(f"probs must have shape ({n}, {n_classes}), got {probs.shape}")
    if n and (y_true.min() < 0 or y_true.max() >= n_classes):
        raise ValueError(f"labels must be class indexes in 0..{n_classes - 1}")
    labels = list(range(n_classes))
    report: dict = {"n": int(n), "classes": classes}
    if n == 0:
        empty = dict.fromkeys(PER_CLASS_FIELDS[1:4])
        report.update(
            accuracy=None,
            macro_precision=None,
            macro_recall=None,
            macro_f1=None,
            weighted_precision=None,
            weighted_recall=None,
            weighted_f1=None,
            top_k={},
            per_class=[{"class": c, **empty, "support": 0, "predicted": 0} for c in classes],
            confusion_matrix=[[0] * n_classes for _ in classes],
        )
        return report

    pred = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)
    present = sorted(set(y_true.tolist()) | set(pred.tolist()))
    averages = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, pred, labels=present, average=average, zero_division=0)
        averages.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)})
    matrix = confusion_matrix(y_true, pred, labels=labels)
    accuracy = float((pred == y_true).mean())

    top_k = {}
    for k in sorted({int(k) for k in ks}):
        if k < 1 or k >= n_classes:
            continue  # k >= C: every sample is a hit, the number says nothing
        if n_classes > 2:
            top_k[f"top_{k}"] = float(top_k_accuracy_score(y_true, probs, k=k, labels=labels))
        else:
            top_k[f"top_{k}"] = accuracy

    report.update(
        accuracy=accuracy,
        **averages,
        top_k=top_k,
        per_class=[
            {
                "class": c,
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "predicted": int(matrix[:, i].sum()),
            }
            for i, c in enumerate(classes)
        ],
        confusion_matrix=matrix.astype(int).tolist(),
    )
    return report


def summary(report: dict) -> dict:
    """The report without its per-class table and confusion matrix (what run.json keeps)."""
    return {k: v for k, v in report.items() if k not in ("per_class", "confusion_matrix", "classes")}


# --------------------------------------------------------------------------------------------
# files


def _per_class_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(PER_CLASS_FIELDS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def _confusion_csv(classes: list[str], matrix: list[list[int]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, matrix, strict=True):
        writer.writerow([name, *row])
    return buf.getvalue()


def confusion_svg(classes: list[str], matrix: list[list[int]], title: str = "") -> str:
    """The confusion matrix as an SVG heat map: rows are true classes, colour is the row share."""
    n = len(classes)
    cell = 36 if n <= 20 else max(8, 720 // max(n, 1))
    label_w = min(220, 12 + 7 * max((len(c) for c in classes), default=4))
    top = label_w + 30
    left = label_w + 10
    width, height = left + n * cell + 20, top + n * cell + 20
    font = max(6, min(12, cell // 3))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="{font}">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">'
        f"{html.escape(title or 'confusion matrix')} (rows: true, columns: predicted)</text>",
    ]
    for i, name in enumerate(classes):
        label = html.escape(name if len(name) <= 30 else name[:29] + "…")
        y = top + i * cell + cell / 2
        parts.append(f'<text x="{left - 6}" y="{y:.1f}" text-anchor="end" dominant-baseline="middle">{label}</text>')
        x = left + i * cell + cell / 2
        parts.append(
            f'<text x="{x:.1f}" y="{top - 6}" text-anchor="start" transform="rotate(-60 {x:.1f} {top - 6})">'
            f"{label}</text>"
        )
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, count in enumerate(row):
            share = count / total
            shade = int(255 - 200 * share)
            colour = f"rgb({shade},{shade},255)" if i != j else f"rgb({shade},255,{shade})"
            x, y = left + j * cell, top + i * cell
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{colour}" stroke="#ddd">'
                f"<title>{html.escape(classes[i])} → {html.escape(classes[j])}: {count}</title></rect>"
            )
            if count and cell >= 20:
                fill = "white" if share > 0.6 else "black"
                parts.append(
                    f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2:.1f}" text-anchor="middle" '
                    f'dominant-baseline="middle" fill="{fill}">{count}</text>'
                )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_report(run_dir, report: dict) -> list[Path]:
    """Write metrics.json, per_class.csv/.json, confusion.csv/.svg into ``run_dir`` (atomically)."""
    from vitrine.core.atomic import atomic_write_json

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    classes = list(report.get("classes") or [r["class"] for r in report.get("per_class", [])])
    rows = report.get("per_class") or []
    matrix = report.get("confusion_matrix") or [[0] * len(classes) for _ in classes]
    atomic_write_json(run_dir / "metrics.json", report)
    atomic_write_json(run_dir / "per_class.json", rows)  # type: ignore[arg-type]  (a list is fine)
    atomic_write_text(run_dir / "per_class.csv", _per_class_csv(rows))
    atomic_write_text(run_dir / "confusion.csv", _confusion_csv(classes, matrix))
    title = f"confusion matrix, {report['split']} split" if report.get("split") else ""
    atomic_write_text(run_dir / "confusion.svg", confusion_svg(classes, matrix, title))
    return [run_dir / name for name in REPORT_FILES]


# --------------------------------------------------------------------------------------------
# speed


def measure_speed(
    classifier,
    images: list,
    batch_size: int = 32,
    warmup: int = 1,
    min_seconds: float = 0.5,
    max_repeats: int = 3,
    latency_images: int = 0,
) -> dict:
    """Time ``classifier.predict_proba`` over ``images`` (decoded PIL images) with the one speed
    harness (:func:`vitrine.evaluate.speed.measure`): throughput in batches of ``batch_size`` (the
    median of up to ``max_repeats`` passes, until ``min_seconds`` have passed, after ``warmup``
    untimed rounds), and, when ``latency_images`` > 0, milliseconds per image at batch 1.
    Preprocessing is included: this is what a user waits for per image on this machine.
    """
    if not images:
        raise ValueError("measure_speed needs at least one image")
    report = speed.measure(
        classifier.predict_proba,
        images,
        batch_size=max(1, int(batch_size)),
        latency_images=latency_images,
        warmup=warmup,
        min_seconds=min_seconds,
        max_repeats=max_repeats,
        device=str(getattr(classifier, "device", "cpu")),
    )
    out = {"ms_per_image": 1000.0 / report.images_per_second, **report.to_dict()}
    return {k: v for k, v in out.items() if not k.startswith("latency") or latency_images > 0}


# --------------------------------------------------------------------------------------------
# a saved run


def _decode(path: Path):
    from vitrine.collection.imageio import open_image

    try:
        return open_image(path), None
    except ImageError as e:
        return None, e.reason if getattr(e, "reason", None) else e.message
    except VitrineError as e:
        return None, e.message


def evaluate_run(
    workspace,
    run,
    dataset=None,
    split: str = "test",
    *,
    batch_size: int = 32,
    ks=(1, 3, 5),
    speed_images: int = 64,
    progress=None,
) -> dict:
    """Evaluate a saved run on ``split`` of its dataset; write the report files; update run.json.

    ``run`` is a Run or a run id; ``dataset`` a ClassificationDataset, a dataset name, or None for
    the run's own dataset. Returns the report, with ``split``, ``speed`` and ``skipped`` added.
    """
    from vitrine.core.workspace import Workspace
    from vitrine.data.dataset import ClassificationDataset
    from vitrine.evaluate.comparable import classifier_cost, run_file, split_record
    from vitrine.evaluate.predictions import write_predictions
    from vitrine.predict.classifier import load_classifier
    from vitrine.runs import Run

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if not isinstance(run, Run):
        run = Run.load(ws, str(run))
    if dataset is None:
        dataset = run.record.get("dataset")
    if not isinstance(dataset, ClassificationDataset):
        dataset = ClassificationDataset.load(ws.dataset_dir(str(dataset)))
    samples = dataset.split(split) if split != "all" else list(dataset.samples)
    if not samples:
        raise VitrineError(
            f"dataset {dataset.name!r} has no {split!r} samples",
            hint="evaluate on another split (--split val), or assign splits to the dataset",
        )
    classifier = load_classifier(run)
    index = {c: i for i, c in enumerate(classifier.classes)}
    skipped: list[dict] = []
    known = []
    for s in samples:
        if s.label in index:
            known.append(s)
        else:
            skipped.append({"path": s.path, "reason": f"class {s.label!r} is not one the run was trained on"})

    y_true: list[int] = []
    scored: list[str] = []  # the paths of the images scored, in the order of ``probs``
    chunks: list[np.ndarray] = []
    speed_pool: list = []
    done = 0
    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitrine-eval-decode") as pool:
        for start in range(0, len(known), batch_size):
            batch = known[start : start + batch_size]
            images, labels = [], []
            for s, (im, why) in zip(batch, pool.map(lambda s: _decode(dataset.path_of(s)), batch), strict=True):
                if im is None:
                    skipped.append({"path": s.path, "reason": why})
                    continue
                images.append(im)
                labels.append(index[s.label])
                scored.append(s.path)
            if images:
                chunks.append(np.asarray(classifier.predict_proba(images), dtype=np.float64))
                y_true.extend(labels)
                if len(speed_pool) < speed_images:
                    speed_pool.extend(images[: speed_images - len(speed_pool)])
            done += len(batch)
            if progress:
                progress("evaluate", done, len(known))
    probs = np.concatenate(chunks) if chunks else np.zeros((0, len(classifier.classes)))
    report = {"split": split, **classification_report(y_true, probs, list(classifier.classes), ks)}
    report.update(split_record(dataset, split))
    report["skipped"] = skipped
    if speed_pool:
        report["speed"] = measure_speed(classifier, speed_pool, batch_size=batch_size, latency_images=10)
        own_files = run_file(run.dir, "classifier.joblib", "classifier.npz")
        report["cost"] = classifier_cost(classifier, getattr(classifier, "checkpoint", None) or own_files)
    write_report(run.dir, report)
    write_predictions(run.dir, scored, y_true, probs, list(classifier.classes))
    metrics = dict(run.record.get("metrics") or {})
    metrics[split] = summary(report)
    for key in ("speed", "cost"):
        if key in report:
            metrics[key] = report[key]
    run.update(metrics=metrics)
    return report
