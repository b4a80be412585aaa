"""The parity gate: a faster variant is used only when its outputs match fp32's on real images.

* embeddings (:func:`embedding_parity`): the mean cosine between each image's two vectors, and the
  overlap of each image's 10 nearest neighbours among the same images (recall@10): what a search
  returns is what matters, and int8 can keep cosines high while reordering neighbours;
* class scores (:func:`classification_parity`): top-1 agreement, and the largest change of a probability;
* detections (:func:`detection_parity`): each reference box above a score finds a candidate box of the
  same class at IoU >= 0.9 (boxes kept), the mean IoU of the best matches, and class agreement.

A :class:`Parity` holds the figures, the thresholds and the verdict, and says why it failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

EMBEDDING_GATE = {"recall_at_10": 0.95, "mean_cosine": 0.99}
CLASSIFICATION_GATE = {"top1_agreement": 0.95}
DETECTION_GATE = {"boxes_kept": 0.90, "class_agreement": 0.95}
DETECTION_MATCH_IOU = 0.9


@dataclass
class Parity:
    figures: dict[str, float]
    gate: dict[str, float]
    samples: int
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(self.figures.get(k, float("-inf")) >= v for k, v in self.gate.items())

    @property
    def reason(self) -> str:
        """Why the gate refused (empty when it passed)."""
        bad = [
            f"{k} {self.figures.get(k, float('nan')):.3f} < {v}"
            for k, v in self.gate.items()
            if not self.figures.get(k, float("-inf")) >= v
        ]
        return "; ".join(bad)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "figures": {k: round(float(v), 4) for k, v in self.figures.items()},
            "gate": dict(self.gate),
            "samples": self.samples,
            "reason": self.reason,
            "notes": list(self.notes),
        }


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def neighbour_overlap(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's ``k`` nearest other rows (cosine) that both sets of vectors agree on."""
    n = len(reference)
    k = min(k, n - 1)
    if k < 1:
        return 1.0
    ref, cand = _unit(reference), _unit(candidate)

    def knn(x):
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        return np.argpartition(-sims, k - 1, axis=1)[:, :k]

    a, b = knn(ref), knn(cand)
    return float(np.mean([len(set(a[i]) & set(b[i])) / k for i in range(n)]))


def embedding_parity(
    reference: np.ndarray | Mapping[str, np.ndarray],
    candidate: np.ndarray | Mapping[str, np.ndarray],
    k: int = 10,
    gate: Mapping[str, float] | None = None,
) -> Parity:
    """Parity of two embeddings of the same images (rows in the same order). Several spaces (a dict
    per space) are held to the gate together: the worst space's figures count."""
    if isinstance(reference, Mapping):
        parts = [embedding_parity(reference[s], candidate[s], k, gate) for s in reference]
        worst = {m: min(p.figures[m] for p in parts) for m in parts[0].figures}
        notes = [
            f"{s}: recall@{k} {p.figures['recall_at_10']:.3f}, cosine {p.figures['mean_cosine']:.4f}"
            for s, p in zip(reference, parts, strict=True)
        ]
        return Parity(worst, dict(gate or EMBEDDING_GATE), parts[0].samples, notes)
    ref, cand = _unit(reference), _unit(candidate)
    if ref.shape != cand.shape:
        raise ValueError(f"parity needs the same shapes, got {ref.shape} and {cand.shape}")
    cos = np.sum(ref * cand, axis=1)
    figures = {
        "recall_at_10": neighbour_overlap(ref, cand, k),
        "mean_cosine": float(cos.mean()),
        "min_cosine": float(cos.min()),
    }
    notes = [] if len(ref) > k else [f"only {len(ref)} images: neighbours among {len(ref) - 1}"]
    return Parity(figures, dict(gate or EMBEDDING_GATE), len(ref), notes)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def classification_parity(
    reference_logits: np.ndarray, candidate_logits: np.ndarray, gate: Mapping[str, float] | None = None
) -> Parity:
    """Parity of two classifiers' logits on the same images."""
    ref, cand = _softmax(reference_logits), _softmax(candidate_logits)
    agree = ref.argmax(axis=1) == cand.argmax(axis=1)
    confident = ref.max(axis=1) >= 0.5
    figures = {
        "top1_agreement": float(agree.mean()),
        "top1_agreement_confident": float(agree[confident].mean()) if confident.any() else 1.0,
        "max_probability_change": float(np.abs(ref - cand).max()),
    }
    return Parity(figures, dict(gate or CLASSIFICATION_GATE), len(ref))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes (n, 4) x (m, 4)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def detection_parity(
    reference: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    candidate: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    score_threshold: float = 0.3,
    gate: Mapping[str, float] | None = None,
) -> Parity:
    """Parity of two detectors on the same images: per image ``(boxes xyxy, labels, scores)``. Each
    reference detection scoring at least ``score_threshold`` is matched to the candidate box (any
    score) with the highest IoU; it is kept when that IoU reaches 0.9 and the class is the same."""
    kept = agree = total = 0
    ious: list[float] = []
    for (rb, rl, rs), (cb, cl, _cs) in zip(reference, candidate, strict=True):
        keep = np.asarray(rs) >= score_threshold
        rb, rl = np.asarray(rb)[keep], np.asarray(rl)[keep]
        total += len(rb)
        if not len(rb):
            continue
        if not len(cb):
            ious.extend([0.0] * len(rb))
            continue
        iou = box_iou(rb, cb)
        # ties go to a box of the same class: detectors output one box for several classes
        same_class = rl[:, None].astype(np.int64) == np.asarray(cl, dtype=np.int64)[None, :]
        best = (iou + 1e-6 * same_class).argmax(axis=1)
        for i, j in enumerate(best):
            ious.append(float(iou[i, j]))
            same = int(rl[i]) == int(np.asarray(cl)[j])
            agree += same
            kept += same and iou[i, j] >= DETECTION_MATCH_IOU
    figures = {
        "boxes_kept": kept / total if total else 1.0,
        "class_agreement": agree / total if total else 1.0,
        "mean_iou": float(np.mean(ious)) if ious else 1.0,
    }
    notes = [] if total else [f"no reference detection scored {score_threshold} or more: nothing to compare"]
    return Parity(figures, dict(gate or DETECTION_GATE), len(reference), notes)
