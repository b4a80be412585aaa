"""A FAISS vector index over one embedding space, keyed by catalog content ids.

Vectors are float32 and L2-normalised, so inner product is cosine similarity. IDs are int64.

Small collections use an exact index (``IDMap2,Flat``: brute force, recall 1.0, no training);
large ones an inverted-file index (IVF) whose ``nprobe`` is part of the :class:`IndexPlan` and
is applied on every search, including after :meth:`VectorIndex.load`.

Id handling
-----------
* Flat indexes are wrapped in ``IndexIDMap2`` so ids are external and ``reconstruct`` works.
  ``IndexIDMap2`` translates search-time ID selectors to external ids (checked by the tests).
* IVF indexes (``IVF<nlist>,SQfp16`` by default, see :func:`ivf_plan`) store the external ids
  themselves (``add_with_ids``) with a hashtable direct map (for ``reconstruct`` and removal).
  They are deliberately *not* wrapped in ``IndexIDMap2``: with FAISS 1.15, removing ids from
  ``IDMap2(IVF)`` compacts the wrapper's id table but not the sequential ids stored in the
  inverted lists, after which searches return wrong ids or -1 (reproduced: after removing the
  first half of the ids, queries for surviving ids returned -1).

Persistence
-----------
:meth:`VectorIndex.save` writes the index to a temporary file in the same folder, fsyncs it and
``os.replace``-s it into place, then writes the ``<path>.json`` sidecar the same way. The sidecar
carries the index file's size and sha256, so :meth:`VectorIndex.load` refuses an index whose
sidecar belongs to another save (e.g. a crash between the two renames), and corrupt files are
reported as :class:`IndexFileError` before FAISS ever parses them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

from vitrine.core.atomic import atomic_open, atomic_write_bytes
from vitrine.core.errors import NotFound, VitrineError

log = logging.getLogger(__name__)

__all__ = [
    "COMPACT_MIN",
    "EXACT_MAX",
    "FORMAT_VERSION",
    "SUBSET_EXACT_MAX",
    "IndexFileError",
    "IndexPlan",
    "VectorIndex",
    "choose_index_kind",
    "ivf_plan",
]

# Collections of up to EXACT_MAX vectors use the exact flat index. Measured with
# benchmarks/search_latency.py (512-d, single queries, k=10, 1 FAISS thread on a shared 2-core
# machine): the flat index answers in 0.6 ms p50 at 10k vectors, 7.0 ms at 50k, 15 ms at 100k and
# 110 ms at 1M (~0.11-0.15 ms per 1k vectors). Up to 50k that is interactive (< 10 ms), exact,
# needs no training and updates for free; at 100k the chosen IVF answers in 0.7 ms (recall@10
# 0.981, 23x faster), and the gap widens with n (1M: 2.2 ms, recall@10 0.999, 50x faster).
# (With FAISS's default 2 OpenMP threads on a busy machine, flat single queries were 10-40x
# slower still: 24 ms at 10k, 48 ms at 100k; see VITRINE_FAISS_THREADS.)
EXACT_MAX: int = 50_000

# Filtered searches (allowed_ids) on an IVF index whose allowed subset holds at most this many
# vectors probe every list, which makes them exact over the subset: with nprobe lists a small
# subset could leave fewer than k hits. The ID selector is checked before any distance is
# computed, so this stays cheap (measured at 200k x 512-d, 1 thread: 2.2 ms for a 2k subset,
# 5.7 ms for 10k, vs 6 / 24 ms to reconstruct the subset's vectors and brute-force them).
SUBSET_EXACT_MAX: int = 20_000

# Above COMPACT_MIN vectors the IVF lists hold 4-bit codes (SQ4: 256 bytes for 512 dimensions,
# a quarter of SQfp16) and a search re-ranks RERANK x k candidates by their exact vectors, which
# the caller fetches (the catalog keeps them as float16, on disk): see ivf_plan() for the figures.
COMPACT_MIN: int = 250_000
RERANK: int = 10
RERANK_MAX: int = 4_000  # candidates fetched at most (a deep page: k = 1000 re-ranks 4,000, not 10,000)

# IVF parameters, chosen by measurement with benchmarks/search_latency.py (see ivf_plan()).
IVF_TRAIN_PER_LIST = 64  # k-means training sample: 64 vectors per list (>= FAISS's 39 minimum)
IVF_NITER = 10  # k-means iterations (FAISS's IVF default)

FORMAT_VERSION = 1
_FORMAT_NAME = "vitrine.faiss-index"
_KINDS = ("flat", "ivf")


class IndexFileError(VitrineError):
    """A saved vector index is corrupt, truncated, or does not match its metadata sidecar."""

    status = 409
    code = "bad_index"


# --------------------------------------------------------------------------------------------
# threads


def faiss_thread_count() -> int:
    """FAISS's OpenMP threads: 1 by default. Single queries were 40x faster with 1 thread than with
    OpenMP's default on a busy 2-core machine (0.6 vs 24 ms at 10k), and a server gets its
    parallelism from concurrent requests. VITRINE_FAISS_THREADS=N overrides (e.g. for bulk builds)."""
    raw = os.environ.get("VITRINE_FAISS_THREADS", "").strip() or "1"
    try:
        n = int(raw)
        if n < 1:
            raise ValueError
    except ValueError:
        log.warning("ignoring VITRINE_FAISS_THREADS=%r: expected a positive integer", raw)
        return max(1, os.cpu_count() or 1)
    return n


@contextlib.contextmanager
def faiss_threads():
    """Run FAISS calls with :func:`faiss_thread_count` threads, then restore the previous count.

    FAISS and PyTorch share one OpenMP runtime: a process-wide ``omp_set_num_threads`` at import
    would also change torch's thread count (it did, silently, before). The count is an OpenMP
    per-thread setting, so setting it around each call affects only the calling thread, for that call.
    """
    before = faiss.omp_get_max_threads()
    wanted = faiss_thread_count()
    if wanted == before:
        yield
        return
    faiss.omp_set_num_threads(wanted)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


# --------------------------------------------------------------------------------------------
# plans


@dataclass(frozen=True)
class IndexPlan:
    """How to build an index: ``kind`` "flat" (exact) or "ivf" (inverted file, approximate).

    ``factory`` is the FAISS index-factory string (metric: inner product). ``nlist`` and
    ``nprobe`` are 0 for flat indexes. ``rerank`` > 0: a search takes ``rerank`` x k candidates
    from the index and orders them by their exact vectors, fetched by the caller's ``refine``
    (see :meth:`VectorIndex.search`); 0: the index's own scores are final.
    """

    kind: str
    nlist: int
    nprobe: int
    factory: str
    rerank: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IndexPlan:
        try:
            plan = cls(
                kind=str(d["kind"]),
                nlist=int(d["nlist"]),
                nprobe=int(d["nprobe"]),
                factory=str(d["factory"]),
                rerank=int(d.get("rerank", 0)),  # indexes saved before re-ranking existed: none
            )
        except (KeyError, TypeError, ValueError) as e:
            raise IndexFileError(f"invalid index plan {d!r}: {e}") from None
        try:
            plan.validate()
        except VitrineError as e:
            raise IndexFileError(e.message, hint="rebuild the index") from None
        return plan

    def validate(self) -> None:
        if self.kind not in _KINDS:
            raise VitrineError(f"unknown index kind {self.kind!r}; expected one of {_KINDS}")
        if self.kind == "ivf" and not (self.nlist >= 1 and 1 <= self.nprobe <= self.nlist):
            raise VitrineError(
                f"invalid IVF plan: nlist={self.nlist}, nprobe={self.nprobe} (need 1 <= nprobe <= nlist)"
            )
        if not 0 <= self.rerank <= 100:
            raise VitrineError(f"invalid re-rank factor {self.rerank} (need 0 to 100)")

    @classmethod
    def flat(cls) -> IndexPlan:
        return cls(kind="flat", nlist=0, nprobe=0, factory="IDMap2,Flat")


def _pow2_near(x: float) -> int:
    return 1 << max(0, round(math.log2(max(x, 1.0))))


def ivf_plan(n: int, dim: int) -> IndexPlan:
    """The IVF plan suited to ``n`` vectors, regardless of EXACT_MAX (deterministic).

    nlist is the power of two nearest sqrt(n) (256 at 100k, 1024 at 1M). More lists (FAISS
    suggests up to 16*sqrt(n)) need proportionally more k-means training, which at 1M x 512-d on
    2 cores would take many minutes; with ~sqrt(n) lists and a 64-per-list sample, building 1M
    vectors takes ~40 s. nprobe = max(16, nlist/32) scans 3-6% of the vectors.

    Measured with benchmarks/search_latency.py (512-d clustered synthetic data, 1 thread, k=10):

    ========================  =========  ==========  ========  ==============
    1M vectors, nprobe 32     recall@10  p50 ms      MB / 1M   vs exact p50
    ========================  =========  ==========  ========  ==============
    exact Flat                1.000      154.8       2,056     1x
    IVF1024,Flat              1.000      6.9         2,074     22x
    IVF1024,SQfp16 (chosen)   0.999      3.4         1,050     45x
    IVF1024,SQ8               0.973      2.7         538       58x
    ========================  =========  ==========  ========  ==============

    At 100k (IVF256, nprobe 16): Flat 0.981 / 1.87 ms, SQfp16 0.981 / 0.58 ms, SQ8 0.959 /
    0.45 ms; nprobe 8 drops recall to 0.88, nprobe 32 gives 1.000.

    SQfp16 keeps IVF-Flat's recall at half the memory and ~2x the speed (less memory bandwidth);
    SQ8 is 4x smaller but its quantisation caps recall@10 at ~0.97 whatever nprobe, too little
    headroom above the 0.95 target for real embeddings.

    Above COMPACT_MIN (250k) the codes are SQ4 and a search re-ranks RERANK (10) x k candidates
    by their float16 vectors from the catalog (on disk, fetched by id; the caller passes
    ``refine``). Measured at 1M clustered vectors, busy 2 cores: 282 MB per 1M (a quarter of
    SQfp16's), recall@10 1.000 at 3.46 ms p50 (SQ4 codes alone: 0.709 at 2.18 ms); at 300k,
    0.987 at 3.45 ms. The re-rank is the catalog query (~100 rows by primary key, 1-2 ms warm).
    Isotropic data defeats IVF itself (recall@10 0.10 at 1M whatever the codes). HNSW was rejected: it cannot remove ids
    (we need incremental remove), built 100k vectors in 72 s vs 2 s for IVF, and reached only
    recall@10 0.82 at efSearch 64. Stored vectors come back from ``reconstruct`` rounded to fp16.
    """
    nlist = min(_pow2_near(math.sqrt(max(n, 1))), 65536)
    nlist = max(nlist, 1)
    nprobe = min(nlist, max(16, nlist // 32))
    if n > COMPACT_MIN:
        return IndexPlan(kind="ivf", nlist=nlist, nprobe=nprobe, factory=f"IVF{nlist},SQ4", rerank=RERANK)
    return IndexPlan(kind="ivf", nlist=nlist, nprobe=nprobe, factory=f"IVF{nlist},SQfp16")


def choose_index_kind(n: int, dim: int) -> IndexPlan:
    """Exact flat index up to EXACT_MAX vectors, IVF above (see :func:`ivf_plan`)."""
    if n <= EXACT_MAX:
        return IndexPlan.flat()
    return ivf_plan(n, dim)


# --------------------------------------------------------------------------------------------
# helpers


def _as_ids(ids, what: str = "ids") -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise VitrineError(f"{what} must be a 1-D array of integers, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise VitrineError(f"{what} must be integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _as_vectors(vectors, dim: int, what: str = "vectors") -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise VitrineError(f"{what} must have shape (n, {dim}), got {np.shape(vectors)}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    # cheap test first (no n x dim temporary); the exact one only when the sum is not finite
    if not np.isfinite(np.sum(arr, dtype=np.float64)) and not np.isfinite(arr).all():
        raise VitrineError(f"{what} contain NaN or infinite values")
    return arr


# Sorted-array set operations. (np.unique / union1d / setdiff1d took ~1 s per million ids with
# the installed numpy, which would make every incremental add() at 1M vectors cost a second.)


def _unique_sorted(ids: np.ndarray) -> np.ndarray:
    """Sorted unique copy of ``ids``."""
    s = np.sort(ids)
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _member(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Boolean mask: which of ``ids`` are in the sorted unique array ``sorted_ids``."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), dtype=bool)
    pos = np.searchsorted(sorted_ids, ids)
    pos[pos == len(sorted_ids)] = 0
    return sorted_ids[pos] == ids


def _dedupe_last(ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the last occurrence of each id within one batch (input order otherwise kept)."""
    if len(ids) < 2:
        return ids, vectors
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    last = np.empty(len(s), dtype=bool)
    last[-1] = True
    np.not_equal(s[:-1], s[1:], out=last[:-1])
    if last.all():
        return ids, vectors
    keep = np.sort(order[last])
    return ids[keep], vectors[keep]


def _rerank(q: np.ndarray, candidates: np.ndarray, k: int, refine) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each query's ``candidates`` by exact inner product with the vectors
    ``refine`` returns; (scores, ids), padded with (-inf, -1)."""
    m = len(q)
    scores = np.full((m, k), -np.inf, np.float32)
    ids = np.full((m, k), -1, np.int64)
    for row in range(m):
        cand = np.unique(candidates[row][candidates[row] >= 0])
        if not len(cand):
            continue
        got_ids, vectors = refine(cand)
        if not len(got_ids):
            continue
        exact = np.asarray(vectors, np.float32) @ q[row]
        top = np.argsort(-exact, kind="stable")[:k]
        scores[row, : len(top)] = exact[top]
        ids[row, : len(top)] = np.asarray(got_ids, np.int64)[top]
    return scores, ids


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _file_digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _read_sidecar(path: Path) -> dict:
    """The parsed sidecar of the index at ``path``; IndexFileError when absent or invalid."""
    side = _sidecar_path(path)
    try:
        raw = side.read_bytes()
    except FileNotFoundError:
        raise IndexFileError(
            f"vector index {path} has no metadata file {side.name}",
            hint="the index was not saved completely; rebuild the index",
        ) from None
    except OSError as e:
        raise IndexFileError(f"cannot read {side}: {e}") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise IndexFileError(f"metadata file {side} is not valid JSON ({e})", hint="rebuild the index") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT_NAME:
        raise IndexFileError(f"{side} is not a vitrine index metadata file", hint="rebuild the index")
    version = data.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise IndexFileError(
            f"{side} has index format version {version!r}; this vitrine reads up to {FORMAT_VERSION}",
            hint="upgrade vitrine, or rebuild the index with this version",
        )
    for key in ("dim", "ntotal", "index_bytes", "index_sha256", "plan"):
        if key not in data:
            raise IndexFileError(f"{side} lacks the field {key!r}", hint="rebuild the index")
    return data


# --------------------------------------------------------------------------------------------
# the index


class VectorIndex:
    """An inner-product FAISS index with external int64 ids. Thread-safe (one lock)."""

    def __init__(self, index: faiss.Index, dim: int, plan: IndexPlan, ids: np.ndarray):
        """Internal: use :meth:`build`, :meth:`empty` or :meth:`load`."""
        self._index = index
        self.dim = int(dim)
        self.plan = plan
        self._ids = ids  # sorted, unique int64: the ids currently in the index
        self._lock = threading.RLock()
        self._apply_nprobe()

    # ---- construction

    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        if int(dim) < 1:
            raise VitrineError(f"dimension must be positive, got {dim}")
        plan = IndexPlan.flat()
        return cls(cls._new_faiss_index(int(dim), plan), int(dim), plan, np.empty(0, np.int64))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, plan: IndexPlan | None = None, seed: int = 0) -> VectorIndex:
        """Build an index over ``vectors`` (n, dim). ``plan`` None: :func:`choose_index_kind`.

        IVF plans are trained on a seeded random sample of at most IVF_TRAIN_PER_LIST * nlist
        vectors, so the same input and seed give the same index.
        """
        vecs = np.asarray(vectors)
        if vecs.ndim != 2 or vecs.shape[1] < 1:
            raise VitrineError(f"vectors must have shape (n, dim), got {vecs.shape}")
        dim = int(vecs.shape[1])
        ids_arr = _as_ids(ids)
        vecs = _as_vectors(vecs, dim)
        if len(ids_arr) != len(vecs):
            raise VitrineError(f"{len(ids_arr)} ids for {len(vecs)} vectors")
        ids_arr, vecs = _dedupe_last(ids_arr, vecs)
        if plan is None:
            plan = choose_index_kind(len(ids_arr), dim)
        plan.validate()
        index = cls._new_faiss_index(dim, plan)
        if plan.kind == "ivf":
            ivf = faiss.extract_index_ivf(index)
            n = len(vecs)
            if n < plan.nlist:
                raise VitrineError(
                    f"an IVF index with {plan.nlist} lists needs at least {plan.nlist} vectors to train, got {n}",
                    hint="use a flat plan (or choose_index_kind) for small collections",
                )
            n_train = min(n, IVF_TRAIN_PER_LIST * plan.nlist)
            if n_train < n:
                rng = np.random.default_rng(seed)
                sample = np.sort(rng.choice(n, size=n_train, replace=False))
                train = vecs[sample]
            else:
                train = vecs
            ivf.cp.seed = int(seed) & 0x7FFFFFFF
            ivf.cp.niter = IVF_NITER
            ivf.cp.spherical = True  # centroids on the unit sphere suit cosine similarity
            with faiss_threads():
                index.train(train)
            del train
        out = cls(index, dim, plan, np.empty(0, np.int64))
        out._add_new(ids_arr, vecs)
        return out

    @staticmethod
    def _new_faiss_index(dim: int, plan: IndexPlan) -> faiss.Index:
        if plan.kind == "flat":
            base = faiss.IndexFlatIP(dim)
            return faiss.IndexIDMap2(base)
        try:
            index = faiss.index_factory(dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise VitrineError(f"invalid FAISS factory string {plan.factory!r}: {e}") from None
        if not isinstance(index, faiss.IndexIVF) or index.nlist != plan.nlist:
            raise VitrineError(
                f"IVF plan factory {plan.factory!r} must describe a plain IVF index with {plan.nlist} lists"
            )
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return index

    def _apply_nprobe(self) -> None:
        if self.plan.kind == "ivf":
            faiss.extract_index_ivf(self._index).nprobe = self.plan.nprobe

    # ---- contents

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    def ids(self) -> np.ndarray:
        """All ids currently in the index, sorted int64 (a copy)."""
        with self._lock:
            return self._ids.copy()

    def contains(self, ids) -> np.ndarray:
        """Boolean mask: which of ``ids`` are in the index."""
        arr = _as_ids(ids)
        with self._lock:
            return _member(self._ids, arr)

    def __contains__(self, id_) -> bool:
        with self._lock:
            pos = np.searchsorted(self._ids, id_)
            return bool(pos < len(self._ids) and self._ids[pos] == id_)

    def reconstruct(self, ids) -> np.ndarray:
        """Stored vectors for ``ids`` (all must be present); decoded values for quantized codes."""
        arr = _as_ids(ids)
        with self._lock:
            missing = arr[~_member(self._ids, arr)]
            if len(missing):
                raise NotFound(f"{len(missing)} id(s) not in the index, e.g. {int(missing[0])}")
            if len(arr) == 0:
                return np.empty((0, self.dim), np.float32)
            return self._index.reconstruct_batch(arr)

    # ---- updates

    def add(self, ids, vectors) -> None:
        """Add vectors; an id that is already present has its vector replaced."""
        ids_arr = _as_ids(ids)
        vecs = _as_vectors(vectors, self.dim)
        if len(ids_arr) != len(vecs):
            raise VitrineError(f"{len(ids_arr)} ids for {len(vecs)} vectors")
        if len(ids_arr) == 0:
            return
        ids_arr, vecs = _dedupe_last(ids_arr, vecs)
        with self._lock:
            present = ids_arr[_member(self._ids, ids_arr)]
            if len(present):
                self._remove_present(present)
            self._add_new(ids_arr, vecs)

    def _add_new(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids) == 0:
            return
        with faiss_threads():
            self._index.add_with_ids(vecs, ids)
        new = np.sort(ids)  # unique and absent from the index (deduped, replaced ids removed)
        self._ids = np.insert(self._ids, np.searchsorted(self._ids, new), new)

    def remove(self, ids) -> int:
        """Remove ``ids``; ids not present are ignored. Returns how many were removed."""
        arr = _unique_sorted(_as_ids(ids))
        with self._lock:
            present = arr[_member(self._ids, arr)]
            if len(present) == 0:
                return 0
            return self._remove_present(present)

    def _remove_present(self, present: np.ndarray) -> int:
        present = np.ascontiguousarray(_unique_sorted(present), dtype=np.int64)
        before = self.ntotal
        removed = int(self._index.remove_ids(present))
        if removed != len(present) or self.ntotal != before - removed:
            raise VitrineError(  # would be a FAISS/bookkeeping bug; never silently diverge
                f"index removal removed {removed} vectors for {len(present)} ids"
            )
        self._ids = np.delete(self._ids, np.searchsorted(self._ids, present))
        return removed

    # ---- search

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed_ids: np.ndarray | None = None,
        refine: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar vectors to each query, best first.

        ``queries`` is (m, dim), or (dim,) which is treated as m=1. Returns ``(scores, ids)``,
        both (m, k): scores float32 (inner product), ids int64; slots without a result have id -1
        and score -inf. ``allowed_ids`` restricts results to those ids (ids not in the index are
        ignored; an empty set gives no results).

        ``refine(ids) -> (ids, vectors)`` gives the exact vectors of candidates (ids it no longer
        has are left out). With a plan that re-ranks, ``plan.rerank`` x k candidates are taken and
        ordered by their exact scores; without ``refine`` such a plan answers with the codes'
        approximate scores and order.
        """
        q = _as_vectors(queries, self.dim, "queries")
        k = int(k)
        if k < 1:
            raise VitrineError(f"k must be at least 1, got {k}")
        m = len(q)
        scores = np.full((m, k), -np.inf, dtype=np.float32)
        out_ids = np.full((m, k), -1, dtype=np.int64)
        with self._lock:
            n = self.ntotal
            if n == 0 or m == 0:
                return scores, out_ids
            allowed = None
            if allowed_ids is not None:
                allowed = _unique_sorted(_as_ids(allowed_ids, "allowed_ids"))
                allowed = allowed[_member(self._ids, allowed)]
                if len(allowed) == 0:
                    return scores, out_ids
                if len(allowed) == n:
                    allowed = None  # everything is allowed: no selector needed
            limit = n if allowed is None else len(allowed)
            kk = min(k, limit)
            depth = kk
            if self.plan.rerank and refine is not None:
                depth = min(limit, max(kk, min(kk * self.plan.rerank, RERANK_MAX)))
            dist, labels = self._search_faiss(q, depth, allowed)
        labels = labels.astype(np.int64, copy=False)
        if depth != kk:
            dist, labels = _rerank(q, labels, kk, refine)
        scores[:, :kk] = np.where(labels < 0, -np.inf, dist)
        out_ids[:, :kk] = labels
        return scores, out_ids

    def _search_faiss(self, q: np.ndarray, k: int, allowed: np.ndarray | None):
        sel = faiss.IDSelectorBatch(allowed) if allowed is not None else None
        if self.plan.kind == "ivf":
            nprobe = self.plan.nprobe
            if allowed is not None:
                if len(allowed) <= SUBSET_EXACT_MAX:
                    nprobe = self.plan.nlist  # exhaustive over the (small) subset: exact
                else:
                    # a subset holding a fraction f of the vectors needs ~1/f more lists probed to
                    # see as many candidates; conservative (semantic subsets are usually clustered)
                    nprobe = math.ceil(nprobe * self.ntotal / len(allowed))
            nprobe = max(1, min(self.plan.nlist, nprobe))
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            if sel is not None:
                params.sel = sel
        else:
            params = faiss.SearchParameters(sel=sel) if sel is not None else None
        with faiss_threads():
            dist, labels = self._index.search(q, k, params=params)
        del sel  # kept alive until the search returned: params only hold a raw pointer
        return dist, labels

    # ---- maintenance

    def needs_rebuild(self) -> bool:
        """True when the collection's size no longer suits the current plan.

        A flat index above EXACT_MAX should become IVF. An IVF index should be rebuilt when its
        nlist is 4x or more away from the ideal for ntotal (16x growth or shrinkage: lists too long
        to be fast, or too short for the trained centroids), or when it has shrunk to half of
        EXACT_MAX or below, where the exact index is both fast and exact; and between full and
        compact codes when the collection is twice COMPACT_MIN or half of it (hysteresis: a
        collection near the line does not rebuild back and forth).
        """
        n = self.ntotal
        if self.plan.kind == "flat":
            return n > EXACT_MAX
        if n <= EXACT_MAX // 2:
            return True
        if (self.plan.rerank and n <= COMPACT_MIN // 2) or (not self.plan.rerank and n > 2 * COMPACT_MIN):
            return True  # compact codes for a collection that has shrunk well below, or full ones far above
        ideal = ivf_plan(n, self.dim).nlist
        ratio = self.plan.nlist / ideal
        return ratio >= 4 or ratio <= 0.25

    # ---- persistence

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        """Atomically write the index to ``path`` and its sidecar to ``<path>.json``.

        ``meta`` is stored in the sidecar (it must be JSON-serialisable) and returned by
        :meth:`read_meta`. A crash mid-save leaves the previous files in place; a crash between
        the index and the sidecar renames is detected by :meth:`load` (checksum mismatch).
        """
        path = Path(path)
        meta = {} if meta is None else meta
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as e:
            raise VitrineError(f"index metadata is not JSON-serialisable: {e}") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            h = hashlib.sha256()
            size = 0
            with atomic_open(path, "wb") as f:

                def sink(chunk: bytes) -> None:
                    nonlocal size
                    f.write(chunk)
                    h.update(chunk)
                    size += len(chunk)

                writer = faiss.PyCallbackIOWriter(sink)
                faiss.write_index(self._index, writer)
                del writer
            sidecar = {
                "format": _FORMAT_NAME,
                "version": FORMAT_VERSION,
                "dim": self.dim,
                "plan": self.plan.to_dict(),
                "ntotal": self.ntotal,
                "index_file": path.name,
                "index_bytes": size,
                "index_sha256": h.hexdigest(),
                "faiss_version": getattr(faiss, "__version__", "unknown"),
                "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "meta": meta,
            }
            atomic_write_bytes(_sidecar_path(path), json.dumps(sidecar, indent=2).encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> VectorIndex:
        """Load an index saved by :meth:`save`, verifying it against its sidecar first.

        Raises NotFound when there is no index at ``path`` and IndexFileError when the index or
        sidecar is corrupt, truncated or the two do not belong together.
        """
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"no vector index at {path}", hint="build the index first")
        side = _read_sidecar(path)
        try:
            size, digest = _file_digest(path)
        except OSError as e:
            raise IndexFileError(f"cannot read vector index {path}: {e}") from None
        if size != side["index_bytes"] or digest != side["index_sha256"]:
            raise IndexFileError(
                f"vector index {path} does not match its metadata file "
                f"({size} bytes on disk, {side['index_bytes']} expected, or a different checksum)",
                hint="the files were modified or a save was interrupted; rebuild the index",
            )
        plan = IndexPlan.from_dict(side["plan"])
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise IndexFileError(f"FAISS cannot read vector index {path}: {e}", hint="rebuild the index") from None
        dim = int(side["dim"])
        problem = None
        if index.d != dim:
            problem = f"dimension {index.d}, metadata says {dim}"
        elif index.ntotal != side["ntotal"]:
            problem = f"{index.ntotal} vectors, metadata says {side['ntotal']}"
        elif index.metric_type != faiss.METRIC_INNER_PRODUCT:
            problem = "a metric other than inner product"
        elif plan.kind == "flat" and not isinstance(index, faiss.IndexIDMap2):
            problem = "not an IDMap2 flat index, metadata says flat"
        elif plan.kind == "ivf":
            ivf = faiss.try_extract_index_ivf(index)
            if ivf is None or ivf.nlist != plan.nlist:
                problem = f"not an IVF index with {plan.nlist} lists"
            elif ivf.direct_map.type != faiss.DirectMap.Hashtable:
                problem = "an IVF index without a hashtable direct map"
        if problem:
            raise IndexFileError(f"vector index {path} has {problem}", hint="rebuild the index")
        return cls(index, dim, plan, cls._read_ids(index, plan))

    @staticmethod
    def _read_ids(index: faiss.Index, plan: IndexPlan) -> np.ndarray:
        if plan.kind == "flat":
            ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        else:
            ivf = faiss.extract_index_ivf(index)
            invlists = ivf.invlists
            parts = []
            for lst in range(ivf.nlist):
                ls = invlists.list_size(lst)
                if ls:
                    ptr = invlists.get_ids(lst)
                    parts.append(faiss.rev_swig_ptr(ptr, ls).copy())
                    invlists.release_ids(lst, ptr)
            ids = np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)
        uniq = _unique_sorted(ids)
        if len(uniq) != len(ids):
            raise IndexFileError("vector index holds duplicate ids", hint="rebuild the index")
        return uniq

    @staticmethod
    def read_meta(path: str | Path) -> dict | None:
        """The caller ``meta`` saved with the index at ``path``, without loading the index.

        None when the sidecar is absent or unreadable.
        """
        try:
            side = _read_sidecar(Path(path))
        except VitrineError:
            return None
        meta = side.get("meta")
        return meta if isinstance(meta, dict) else None

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self.dim}, ntotal={self.ntotal}, plan={self.plan})"
