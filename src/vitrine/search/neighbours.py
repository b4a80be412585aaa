"""Near-duplicate groups, outlier scores and label errors from stored vectors, by nearest neighbours.

These work on vectors a model already produced (a project's catalog vectors, a classification
dataset's cached embeddings), never on a model: that is why they sit in ``search/``, beside the
engine that answers queries from the same vectors, below ``models/`` and above ``index/`` (the
FAISS index they search) and ``store/`` (the catalog facts the keep rule reads). The callers
(:mod:`vitrine.project` for a project, :mod:`vitrine.curation` for a dataset) fetch the vectors.

Vectors are L2-normalised float32, so inner product is cosine similarity; all three use an exact
inner-product FAISS index (``IndexFlatIP``) built here over the vectors given, so the answers are
exact whatever index type the project's search uses.

* :func:`near_duplicate_groups`: FAISS range search at a cosine threshold, pairs joined into
  groups by union-find; each group names the image to keep by :func:`keep_key` (largest
  resolution, then largest file, then oldest file, then first path) and which rule decided.
  With a :class:`PixelCheck`, a pair the vectors link is kept only when the two pictures' pixel
  signatures (:func:`vitrine.collection.imageio.pixel_signature`: 16 x 16 grey thumbnails,
  normalised cross-correlation) agree too. An embedding says what a picture shows, so two
  different photos of one plain wall, one coin tray or one sky sit as close as a re-encoded copy
  (cosine 0.98 measured); their layouts differ, a copy's does not. benchmarks/near_duplicates.py
  measures both stages.
* :func:`outlier_scores`: each vector's mean cosine distance (1 - cosine) to its k nearest
  other vectors; the largest are the most isolated.
* :func:`label_errors`: leave-one-out kNN vote (cosine) over the labels; an item whose label
  loses the vote is listed with the suggested label and the share of neighbours agreeing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import faiss
import numpy as np

from vitrine.core.errors import VitrineError
from vitrine.index.faiss_index import faiss_threads

DEFAULT_THRESHOLD = 0.75  # cosine, offline-concepts visual space: benchmarks/near_duplicates.py (README table)
DEFAULT_PIXEL_THRESHOLD = 0.6  # signature correlation: copies >= 0.68, other pictures <= 0.48 in the benchmark
DEFAULT_K = 10
MAX_PAIRS = 5_000_000  # similar pairs kept at most (~100 MB): a threshold that links more is too low
RANGE_CHUNK = 4096  # query vectors per range search


class BadParameter(VitrineError):
    """A threshold or k outside its range."""

    status = 422
    code = "bad_parameter"


def check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not (0.0 < t <= 1.0) or np.isnan(t):
        raise BadParameter(
            f"threshold {threshold} is out of range: a cosine similarity in (0, 1]",
            hint=f"the default is {DEFAULT_THRESHOLD}",
        )
    return t


def check_pixel_threshold(threshold: float) -> float:
    t = float(threshold)
    if not (-1.0 <= t <= 1.0) or np.isnan(t):
        raise BadParameter(
            f"pixel threshold {threshold} is out of range: a correlation in [-1, 1]",
            hint=f"the default is {DEFAULT_PIXEL_THRESHOLD}",
        )
    return t


def check_k(k: int) -> int:
    if isinstance(k, bool) or int(k) != k or int(k) < 1 or int(k) > 1000:
        raise BadParameter(f"k = {k} is out of range: a number of neighbours from 1 to 1000", hint="the default is 10")
    return int(k)


def _matrix(vectors) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if arr.ndim != 2:
        raise VitrineError(f"vectors must be a 2-D array (n, dim), got shape {arr.shape}")
    if arr.size and not np.isfinite(arr).all():
        raise VitrineError("vectors contain NaN or infinite values")
    return arr


def _flat(vectors: np.ndarray) -> faiss.IndexFlatIP:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def _knn(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, rows) of each vector's ``k`` nearest *other* vectors, best first (-1: none)."""
    n = len(vectors)
    kk = min(k + 1, n)
    with faiss_threads():
        sims, rows = _flat(vectors).search(vectors, kk)
    out_s = np.full((n, k), -np.inf, np.float32)
    out_r = np.full((n, k), -1, np.int64)
    for i in range(n):
        keep = rows[i] != i  # leave the item itself out (ties may put another row first)
        r, s = rows[i][keep][:k], sims[i][keep][:k]
        r, s = r[r >= 0], s[r >= 0]
        out_r[i, : len(r)], out_s[i, : len(s)] = r, s
    return out_s, out_r


# --------------------------------------------------------------------------------------------
# near duplicates


@dataclass(frozen=True)
class Item:
    """What the keep rule reads of one image: its key (a content id, a dataset path), the path to
    show, pixels, bytes, modification time and the other paths holding the same bytes."""

    key: int | str
    path: str
    width: int | None = None
    height: int | None = None
    size: int | None = None
    mtime_ns: int | None = None
    same_bytes: tuple[str, ...] = ()  # exact duplicates: other files with the same SHA-256


@dataclass
class Member:
    key: int | str
    path: str
    similarity: float  # cosine similarity to the image kept
    pixel_similarity: float | None = None  # signature correlation with the image kept (pixel check only)
    width: int | None = None
    height: int | None = None
    size: int | None = None
    exact_duplicates: list[str] = field(default_factory=list)


@dataclass
class DuplicateGroup:
    keep: Member  # its similarity is 1.0
    keep_rule: str  # "resolution" | "file size" | "oldest" | "path": the first rule that decided
    others: list[Member]  # most similar first

    def to_dict(self) -> dict:
        return asdict(self)


def keep_key(item: Item) -> tuple:
    """Sort key, smallest first: largest resolution, then largest file, then oldest, then path."""
    pixels = (item.width or 0) * (item.height or 0)
    mtime = item.mtime_ns if item.mtime_ns is not None else np.iinfo(np.int64).max
    return (-pixels, -(item.size or 0), mtime, item.path)


_RULES = ("resolution", "file size", "oldest", "path")


def choose_keep(items: Sequence[Item]) -> tuple[Item, str]:
    """The item to keep and the rule that set it apart from the runner-up."""
    ranked = sorted(items, key=keep_key)
    if len(ranked) == 1:
        return ranked[0], "only image"
    a, b = keep_key(ranked[0]), keep_key(ranked[1])
    rule = next(name for name, x, y in zip(_RULES, a, b, strict=True) if x != y) if a != b else "path"
    return ranked[0], rule


def _union_find_groups(n: int, pairs_i: np.ndarray, pairs_j: np.ndarray) -> list[list[int]]:
    parent = np.arange(n)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for i, j in zip(pairs_i.tolist(), pairs_j.tolist(), strict=True):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def similar_pairs(vectors, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) with cosine similarity >= ``threshold``: (i, j, similarity), by range search."""
    threshold = check_threshold(threshold)
    vecs = _matrix(vectors)
    if len(vecs) < 2:
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, np.float32)
    # FAISS's inner-product range search keeps results with similarity > radius: step just below
    radius = float(np.nextafter(np.float32(threshold), np.float32(-1)))
    index = _flat(vecs)
    out_i, out_j, out_s, found = [], [], [], 0
    for start in range(0, len(vecs), RANGE_CHUNK):  # in chunks: a low threshold fails early, not out of memory
        with faiss_threads():
            lims, sims, rows = index.range_search(vecs[start : start + RANGE_CHUNK], radius)
        qi = start + np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype(np.int64)))
        keep = qi < rows
        out_i.append(qi[keep].astype(np.int64))
        out_j.append(rows[keep].astype(np.int64))
        out_s.append(sims[keep])
        found += int(keep.sum())
        if found > MAX_PAIRS:
            raise BadParameter(
                f"threshold {threshold} links more than {MAX_PAIRS:,} pairs of images (after "
                f"{min(start + RANGE_CHUNK, len(vecs))} of {len(vecs)}): too low to find near duplicates",
                hint=f"raise the threshold (the default is {DEFAULT_THRESHOLD})",
            )
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)


@dataclass
class PixelCheck:
    """The second stage of :func:`near_duplicate_groups`: ``signatures(rows)`` returns the pixel
    signatures of those rows, one unit vector each (a zero row: unreadable or flat, which
    confirms nothing); a pair stays linked when their inner product is >= ``threshold``. After the
    call, ``candidates`` counts the pairs the vectors linked, ``rejected`` those the pixels did not
    confirm, and ``decoded`` the images whose signature was needed."""

    signatures: Callable[[list[int]], np.ndarray]
    threshold: float = DEFAULT_PIXEL_THRESHOLD
    candidates: int = 0
    rejected: int = 0
    decoded: int = 0

    def to_dict(self) -> dict:
        return {
            "pixel_threshold": self.threshold,
            "candidate_pairs": self.candidates,
            "rejected_pairs": self.rejected,
            "images_checked": self.decoded,
        }

    def confirm(self, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        """The pairs the pixels confirm, and the signatures read (by row)."""
        self.candidates = len(i)
        if not len(i):
            return i, j, {}
        rows = np.unique(np.concatenate([i, j]))
        sig = np.asarray(self.signatures(rows.tolist()), dtype=np.float32)
        if sig.shape[0] != len(rows):
            raise VitrineError(f"{sig.shape[0]} pixel signatures for {len(rows)} images")
        self.decoded = len(rows)
        pos = np.searchsorted(rows, i), np.searchsorted(rows, j)
        ok = np.einsum("ij,ij->i", sig[pos[0]], sig[pos[1]]) >= self.threshold
        self.rejected = int((~ok).sum())
        return i[ok], j[ok], dict(zip(rows.tolist(), sig, strict=True))


def near_duplicate_groups(
    vectors, items: Sequence[Item], threshold: float = DEFAULT_THRESHOLD, pixels: PixelCheck | None = None
) -> list[DuplicateGroup]:
    """Groups of items whose vectors are linked by cosine similarity >= ``threshold`` (transitively:
    a chain a~b~c is one group), largest group first. ``items[i]`` describes ``vectors[i]``. With
    ``pixels``, only the pairs whose pixel signatures agree link (see :class:`PixelCheck`)."""
    vecs = _matrix(vectors)
    if len(items) != len(vecs):
        raise VitrineError(f"{len(items)} items for {len(vecs)} vectors")
    i, j, _ = similar_pairs(vecs, threshold)
    signature: dict[int, np.ndarray] = {}
    if pixels is not None:
        i, j, signature = pixels.confirm(i, j)
    out = []
    for rows in _union_find_groups(len(vecs), i, j):
        keep, rule = choose_keep([items[r] for r in rows])
        keep_row = next(r for r in rows if items[r] is keep)
        sims = vecs[rows] @ vecs[keep_row]
        members = [
            Member(
                key=items[r].key,
                path=items[r].path,
                similarity=round(min(1.0, float(s)), 6),
                pixel_similarity=(round(min(1.0, float(signature[r] @ signature[keep_row])), 6) if signature else None),
                width=items[r].width,
                height=items[r].height,
                size=items[r].size,
                exact_duplicates=list(items[r].same_bytes),
            )
            for r, s in zip(rows, sims, strict=True)
        ]
        kept = next(m for m, r in zip(members, rows, strict=True) if r == keep_row)
        kept.similarity = 1.0
        if signature:
            kept.pixel_similarity = 1.0
        others = sorted((m for m, r in zip(members, rows, strict=True) if r != keep_row), key=lambda m: -m.similarity)
        out.append(DuplicateGroup(keep=kept, keep_rule=rule, others=others))
    out.sort(key=lambda g: (-len(g.others), g.keep.path))
    return out


# --------------------------------------------------------------------------------------------
# outliers


@dataclass
class Outlier:
    key: int | str
    path: str
    score: float  # mean cosine distance (1 - similarity) to the k nearest other images
    nearest: str | None  # path of the nearest other image
    nearest_similarity: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def outlier_scores(vectors, keys: Sequence, paths: Sequence[str], k: int = DEFAULT_K) -> list[Outlier]:
    """Every item with its uniqueness score, most isolated first (ties by path). With fewer than
    k + 1 items, the mean is over all the others."""
    k = check_k(k)
    vecs = _matrix(vectors)
    if not (len(keys) == len(paths) == len(vecs)):
        raise VitrineError(f"{len(keys)} keys and {len(paths)} paths for {len(vecs)} vectors")
    if len(vecs) < 2:
        return [Outlier(keys[i], paths[i], 0.0, None, None) for i in range(len(vecs))]
    sims, rows = _knn(vecs, k)
    out = []
    for i in range(len(vecs)):
        valid = rows[i] >= 0
        dist = 1.0 - sims[i][valid].astype(np.float64)
        first = int(rows[i][0]) if valid[0] else None
        out.append(
            Outlier(
                key=keys[i],
                path=paths[i],
                score=round(float(dist.mean()), 6),
                nearest=paths[first] if first is not None else None,
                nearest_similarity=round(float(sims[i][0]), 6) if first is not None else None,
            )
        )
    out.sort(key=lambda o: (-o.score, o.path))
    return out


# --------------------------------------------------------------------------------------------
# label errors


@dataclass
class LabelError:
    path: str
    label: str  # the label it has
    suggested: str  # the label most of its neighbours have
    agreement: float  # share of the k neighbours with the suggested label
    label_agreement: float  # share of the k neighbours with its own label
    split: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def label_errors(
    vectors,
    labels: Sequence[str],
    paths: Sequence[str],
    k: int = DEFAULT_K,
    splits: Sequence[str | None] | None = None,
) -> list[LabelError]:
    """Items whose label is not the majority label of their k nearest other items (leave-one-out,
    cosine), most confident first: highest agreement with the suggestion, then lowest with their
    own label, then path. A tie for the majority that includes the item's own label is no error;
    a tie between other labels suggests the one whose neighbours are closest in total."""
    k = check_k(k)
    vecs = _matrix(vectors)
    if not (len(labels) == len(paths) == len(vecs)):
        raise VitrineError(f"{len(labels)} labels and {len(paths)} paths for {len(vecs)} vectors")
    if splits is not None and len(splits) != len(vecs):
        raise VitrineError(f"{len(splits)} splits for {len(vecs)} vectors")
    if len(vecs) < 2:
        return []
    sims, rows = _knn(vecs, k)
    out = []
    for i in range(len(vecs)):
        valid = rows[i] >= 0
        neigh = [labels[r] for r in rows[i][valid]]
        if not neigh:
            continue
        votes = Counter(neigh)
        top = max(votes.values())
        if votes.get(labels[i], 0) == top:
            continue
        leaders = [lab for lab, v in votes.items() if v == top]
        closeness = {
            lab: sum(float(s) for s, r in zip(sims[i][valid], rows[i][valid], strict=True) if labels[r] == lab)
            for lab in leaders
        }
        suggested = max(leaders, key=lambda lab: (closeness[lab], lab))
        out.append(
            LabelError(
                path=paths[i],
                label=labels[i],
                suggested=suggested,
                agreement=round(top / len(neigh), 6),
                label_agreement=round(votes.get(labels[i], 0) / len(neigh), 6),
                split=splits[i] if splits is not None else None,
            )
        )
    out.sort(key=lambda e: (-e.agreement, e.label_agreement, e.path))
    return out
