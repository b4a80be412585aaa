"""How good an embedding is for a labelled collection: small pure functions on vectors and labels.

Vectors are L2-normalised rows (inner product = cosine similarity); ``labels`` are integer class
ids, one per row. Every score is leave-one-out: an image is never its own neighbour or result.

- :func:`knn_accuracy`: each image's label predicted by a majority vote of its ``k`` nearest other
  images (cosine). **Ties** between classes with as many votes break to the class whose voters are
  more similar in total (the sum of their cosines), then to the lower class id; among neighbours at
  the same similarity the lower row comes first.
- :func:`retrieval_map_at_k`: each image queries the others; its relevant set is the other images
  of its class. **AP@k** = ``(1 / min(k, R)) * sum_{i<=k} P@i * rel_i`` (R: size of the relevant
  set; P@i: precision of the first i results), so a query whose first ``min(k, R)`` results are all
  relevant scores 1 even when R > k (the normalisation of TREC's and FAISS's mAP@k). Queries with
  R = 0 (the only image of their class) are left out of the mean; none left: None.
- :func:`zero_shot_accuracy`: the class whose text vector is most similar, against the label.
- :func:`text_retrieval_map_at_k`: text queries (a keyword, a class prompt) against the images:
  AP@k of each query, relevant = the images of its class (the "keyword → image agreement").
- :func:`bytes_per_vector`: what one vector costs in the index vitrine would build for ``n``
  vectors of ``dim`` (:func:`vitrine.index.faiss_index.choose_index_kind`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLOCK = 1024  # query rows per similarity block: 1024 x n float32 at a time


def _as_vectors(vectors) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"vectors must be a 2-D array, not of shape {v.shape}")
    return v


def neighbours(vectors, k: int, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, similarities)``, each ``(n, min(k, n - 1))``: every row's nearest other rows by
    cosine, most similar first (equal similarities: lower row first). Exact, in blocks of rows."""
    v = _as_vectors(vectors)
    n = len(v)
    k = min(int(k), n - 1)
    if k < 1:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    ids = np.empty((n, k), np.int64)
    sims = np.empty((n, k), np.float32)
    for start in range(0, n, block):
        s = v[start : start + block] @ v.T
        rows = np.arange(s.shape[0])
        s[rows, rows + start] = -np.inf  # leave-one-out
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]  # stable: equal similarities keep row order
        ids[start : start + len(rows)] = order
        sims[start : start + len(rows)] = np.take_along_axis(s, order, axis=1)
    return ids, sims


def vote(neighbour_labels: Sequence[int], neighbour_sims: Sequence[float]) -> int:
    """The majority label of some neighbours; ties: the larger summed similarity, then the lower label."""
    votes: dict[int, list[float]] = {}
    for label, sim in zip(neighbour_labels, neighbour_sims, strict=True):
        entry = votes.setdefault(int(label), [0, 0.0])
        entry[0] += 1
        entry[1] += float(sim)
    return min(votes, key=lambda c: (-votes[c][0], -votes[c][1], c))


def knn_predictions(ids: np.ndarray, sims: np.ndarray, labels, k: int) -> np.ndarray:
    """Each row's kNN vote over its first ``k`` neighbours (``ids``/``sims`` from :func:`neighbours`)."""
    labels = np.asarray(labels, dtype=np.int64)
    k = min(int(k), ids.shape[1])
    if k < 1:
        raise ValueError("kNN needs at least 2 images")
    return np.array([vote(labels[ids[i, :k]], sims[i, :k]) for i in range(len(ids))], dtype=np.int64)


def knn_accuracy(vectors, labels, k: int, *, precomputed: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Leave-one-out kNN accuracy (cosine, majority vote, ties as the module says). ``precomputed``:
    :func:`neighbours` with at least ``k`` columns, to score several k without searching again."""
    labels = np.asarray(labels, dtype=np.int64)
    ids, sims = precomputed if precomputed is not None else neighbours(vectors, k)
    return float((knn_predictions(ids, sims, labels, k) == labels).mean())


def average_precision_at_k(relevant: Sequence[bool], n_relevant: int, k: int) -> float | None:
    """AP@k of one ranked list (``relevant[i]``: whether result i is relevant), normalised by
    ``min(k, n_relevant)``; None when nothing is relevant."""
    if n_relevant <= 0:
        return None
    rel = np.asarray(relevant[:k], dtype=bool)
    if not rel.any():
        return 0.0
    hits = np.cumsum(rel)
    precision = hits / np.arange(1, len(rel) + 1)
    return float((precision * rel).sum() / min(k, n_relevant))


def retrieval_map_at_k(
    vectors, labels, k: int = 10, *, precomputed: tuple[np.ndarray, np.ndarray] | None = None
) -> float | None:
    """Mean AP@k of every image as a query against the others (relevant: the other images of its
    class); images alone in their class are not queries. None when no image has a relevant one."""
    labels = np.asarray(labels, dtype=np.int64)
    ids, _ = precomputed if precomputed is not None else neighbours(vectors, k)
    counts = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    scores = []
    for i in range(len(labels)):
        ap = average_precision_at_k(labels[ids[i, :k]] == labels[i], int(counts[labels[i]]) - 1, k)
        if ap is not None:
            scores.append(ap)
    return float(np.mean(scores)) if scores else None


def zero_shot_accuracy(image_vectors, text_vectors, labels) -> float:
    """Share of images whose most similar text vector (one per class, in class-id order) is their class."""
    img, txt = _as_vectors(image_vectors), _as_vectors(text_vectors)
    labels = np.asarray(labels, dtype=np.int64)
    if not len(img):
        raise ValueError("zero-shot accuracy needs at least one image")
    return float(((img @ txt.T).argmax(axis=1) == labels).mean())


def text_retrieval_map_at_k(query_vectors, query_labels, image_vectors, image_labels, k: int = 10) -> float | None:
    """Mean AP@k of text queries against the images (relevant: the images labelled as the query)."""
    q, img = _as_vectors(query_vectors), _as_vectors(image_vectors)
    image_labels = np.asarray(image_labels, dtype=np.int64)
    scores = []
    for vector, label in zip(q, np.asarray(query_labels, dtype=np.int64), strict=True):
        s = img @ vector
        top = np.lexsort((np.arange(len(s)), -s))[:k]
        ap = average_precision_at_k(image_labels[top] == label, int((image_labels == label).sum()), k)
        if ap is not None:
            scores.append(ap)
    return float(np.mean(scores)) if scores else None


def bytes_per_vector(n: int, dim: int) -> dict:
    """The index vitrine would build for ``n`` vectors of ``dim`` and the bytes one vector costs in
    it: an exact ``IDMap2,Flat`` stores ``4 * dim`` (float32) and an 8-byte id; the IVF index
    (``SQfp16``) ``2 * dim`` and an 8-byte id. The id map's hash table and the IVF centroids (shared
    by all vectors) are not counted."""
    from vitrine.index.faiss_index import choose_index_kind

    plan = choose_index_kind(max(1, int(n)), int(dim))
    per = (4 if plan.kind == "flat" else 2) * int(dim) + 8
    return {"index": plan.factory, "bytes_per_vector": per}


__all__ = [
    "average_precision_at_k",
    "bytes_per_vector",
    "knn_accuracy",
    "knn_predictions",
    "neighbours",
    "retrieval_map_at_k",
    "text_retrieval_map_at_k",
    "vote",
    "zero_shot_accuracy",
]
