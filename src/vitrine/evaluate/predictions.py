"""Per-image predictions of an evaluated classification run: what error browsing reads.

Every evaluation of a classifier (:func:`vitrine.evaluate.classification.evaluate_run`, the final
evaluation of fine-tuning, the linear probe and zero-shot) writes, beside ``metrics.json``::

    predictions.csv   path, true, predicted, p_true, top1, p1, top2, p2, top3, p3

one row per image scored (images that could not be read are in the report's ``skipped``): the
sample path as the dataset names it, the true and predicted class, the probability the model gave
the true class and its three most likely classes with their probabilities (4 decimals). About
100 bytes a row: 1 MB for 10k images. The split is the report's (``metrics.json``: ``split``).

:func:`read_predictions` reads it back and :func:`cell` picks one cell of the confusion matrix
(true class A, predicted B), sorted and paged, as the ``/runs/{id}/predictions`` route answers.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitrine.core.atomic import atomic_write_text
from vitrine.core.errors import NotFound, VitrineError

PREDICTIONS_FILE = "predictions.csv"
TOP = 3
FIELDS = ("path", "true", "predicted", "p_true", *(f for k in range(1, TOP + 1) for f in (f"top{k}", f"p{k}")))
SORTS = ("confidence", "p_true", "name")  # most confident first; least probable true class first; by path


@dataclass(frozen=True)
class Prediction:
    path: str
    true: str
    predicted: str
    p_true: float
    top: tuple[tuple[str, float], ...]  # the most likely classes, best first

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "true": self.true,
            "predicted": self.predicted,
            "p_true": self.p_true,
            "p_predicted": self.top[0][1] if self.top else None,
            "top": [{"label": label, "probability": p} for label, p in self.top],
        }


def predictions_csv(paths, y_true, probs, classes) -> str:
    """The CSV text of ``probs`` (n x C) for ``paths`` with true class indexes ``y_true``."""
    classes = [str(c) for c in classes]
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if probs.ndim != 2 or probs.shape != (len(paths), len(classes)) or len(y_true) != len(paths):
        raise ValueError(f"{len(paths)} paths, {len(y_true)} labels and probabilities of shape {probs.shape}")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FIELDS)
    k = min(TOP, len(classes))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k] if len(paths) else np.zeros((0, k), np.int64)
    for path, t, row, best in zip(paths, y_true.tolist(), probs, order, strict=True):
        top = [x for i in best for x in (classes[i], f"{row[i]:.4f}")]
        top += [""] * (2 * TOP - len(top))
        writer.writerow([path, classes[t], classes[best[0]], f"{row[t]:.4f}", *top])
    return buf.getvalue()


def write_predictions(run_dir, paths, y_true, probs, classes) -> Path:
    """Write ``predictions.csv`` into ``run_dir`` (atomically)."""
    target = Path(run_dir) / PREDICTIONS_FILE
    atomic_write_text(target, predictions_csv(list(paths), y_true, probs, classes))
    return target


def read_predictions(run_dir) -> list[Prediction]:
    """The rows of ``run_dir/predictions.csv``; NotFound when the run has none."""
    path = Path(run_dir) / PREDICTIONS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"no {PREDICTIONS_FILE} in {Path(run_dir).name}") from None
    out = []
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            top = tuple(
                (row[f"top{k}"], float(row[f"p{k}"])) for k in range(1, TOP + 1) if row.get(f"top{k}") not in (None, "")
            )
            out.append(Prediction(row["path"], row["true"], row["predicted"], float(row["p_true"]), top))
        except (KeyError, TypeError, ValueError) as exc:
            raise VitrineError(
                f"{PREDICTIONS_FILE} of run {Path(run_dir).name!r} is damaged at line {line}: {exc}",
                hint="evaluate the run again to rewrite it",
            ) from None
    return out


def cell(
    rows: list[Prediction],
    true: str | None = None,
    predicted: str | None = None,
    sort: str = "confidence",
    offset: int = 0,
    limit: int = 50,
) -> tuple[int, list[Prediction]]:
    """(how many rows, one page of them) with true class ``true`` and predicted class ``predicted``
    (None: any), sorted by ``sort`` (:data:`SORTS`)."""
    if sort not in SORTS:
        raise VitrineError(f"unknown sort {sort!r}", hint=f"one of {', '.join(SORTS)}")
    picked = [r for r in rows if (true is None or r.true == true) and (predicted is None or r.predicted == predicted)]
    if sort == "confidence":
        picked.sort(key=lambda r: (-(r.top[0][1] if r.top else 0.0), r.path))
    elif sort == "p_true":
        picked.sort(key=lambda r: (r.p_true, r.path))
    else:
        picked.sort(key=lambda r: r.path)
    return len(picked), picked[offset : offset + limit]


__all__ = [
    "FIELDS",
    "PREDICTIONS_FILE",
    "SORTS",
    "Prediction",
    "cell",
    "predictions_csv",
    "read_predictions",
    "write_predictions",
]
