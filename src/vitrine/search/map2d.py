"""A 2-D map of a collection: UMAP of its stored vectors, cached per model, space and catalog
generation, with what the map page colours points by.

Works, like :mod:`vitrine.search.neighbours`, on what it is given: the catalog (vectors, files,
tags) and the folder where maps are kept; the project (:meth:`vitrine.project.Project.map2d`)
resolves the model and its image space, and the ``map`` job runs it in the background.

* **UMAP** (``umap-learn``) with the cosine metric and a fixed ``random_state``, so a map is the
  same every time it is computed from the same vectors (umap-learn then runs single-threaded:
  repeatability costs parallelism; ``benchmarks/umap_map.py`` measures the time).
* **Above** :data:`MAX_POINTS` vectors a seeded random subsample is mapped and the map says so
  (``note``: how many points were drawn of how many): the page stays usable and the time bounded.
* **Cached** in one ``.npz`` per model and space (``coords`` float32 (n, 2), ``ids`` int64 content
  ids, ``meta``: JSON with the stamp and the summary), written atomically. The stamp is the
  catalog's *generation* of the model (a counter bumped by every change to its vectors: new,
  re-embedded or removed images) plus the UMAP options; a map whose stamp differs is stale and
  the job computes it again. Files added with a content that already has a vector, or moved to
  another folder, change no vector: the map stays, and each point's path and folder are read
  again whenever a cheap stamp of the files table changes (:func:`files_stamp`); tags on each
  request.
* **Colours** per point: folder, detector tag (the best-scoring one) or a KMeans cluster of the
  2-D points (cheap: 2-D points, not the vectors; measured in benchmarks/umap_map.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Float, cast, func, select

from vitrine.core.atomic import atomic_path
from vitrine.core.errors import Cancelled, NotFound, VitrineError
from vitrine.store.catalog import Catalog, files, tags

N_NEIGHBORS = 15
MIN_DIST = 0.1
SEED = 42
MAX_POINTS = 200_000  # above: a seeded random subsample of this many is mapped (and the map says so)
MAX_CLUSTERS = 50
COLOR_BY = ("folder", "tag", "cluster")
QUERY_TEMPERATURE = 0.05
DIGITS = 3  # decimals of the coordinates sent to the page (a map spans about 20 units)

Progress = Callable[[str, int, int], None]


class BadMapParameter(VitrineError):
    """A UMAP option out of its range."""

    status = 422
    code = "bad_parameter"


class MapNotReady(VitrineError):
    """No map of this model yet, or one made before the catalog last changed."""

    status = 409
    code = "map_not_ready"


@dataclass(frozen=True)
class MapParams:
    """UMAP's options: ``n_neighbors`` (local vs global structure), ``min_dist`` (how tightly points
    pack), ``n_epochs`` (None: umap-learn's default, 200 above 10k points, else 500), the size
    limit above which a subsample is mapped, and the seed of both."""

    n_neighbors: int = N_NEIGHBORS
    min_dist: float = MIN_DIST
    n_epochs: int | None = None
    max_points: int = MAX_POINTS
    seed: int = SEED

    def checked(self) -> MapParams:
        def whole(value, name: str, low: int, high: int, hint: str) -> int:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise BadMapParameter(f"{name} = {value!r} is out of range: a whole number from {low} to {high}", hint)
            return int(value)

        n_neighbors = whole(self.n_neighbors, "n_neighbors", 2, 200, f"the default is {N_NEIGHBORS}")
        try:
            min_dist = float(self.min_dist)
        except (TypeError, ValueError):
            min_dist = float("nan")
        if not 0.0 <= min_dist <= 1.0:
            raise BadMapParameter(
                f"min_dist = {self.min_dist!r} is out of range: a distance from 0 to 1", f"the default is {MIN_DIST}"
            )
        n_epochs = None
        if self.n_epochs is not None:
            n_epochs = whole(self.n_epochs, "n_epochs", 1, 5000, "leave it out for umap-learn's default")
        max_points = whole(self.max_points, "max_points", 10, 10_000_000, f"the default is {MAX_POINTS}")
        seed = whole(self.seed, "seed", 0, 2**31 - 1, f"the default is {SEED}")
        return MapParams(n_neighbors, min_dist, n_epochs, max_points, seed)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Map2D:
    """A computed map: the 2-D position of each content id, and how it was made."""

    model: str
    space: str
    generation: int
    params: MapParams
    ids: np.ndarray  # int64 content ids, one per point
    coords: np.ndarray  # float32 (n, 2)
    total: int  # vectors the model had in that space (points = total unless subsampled)
    seconds: float  # UMAP's time (the vectors' reading and the saving not included)
    created_at: float
    note: str | None = None
    key: str = ""  # what else the vectors came from (a dataset's state and view); "" for a catalog

    @property
    def stamp(self) -> dict:
        return {
            "model": self.model,
            "space": self.space,
            "generation": self.generation,
            "key": self.key,
            **self.params.to_dict(),
        }

    def summary(self) -> dict:
        return {
            "model": self.model,
            "space": self.space,
            "generation": self.generation,
            "params": self.params.to_dict(),
            "points": int(len(self.ids)),
            "total": self.total,
            "seconds": round(self.seconds, 3),
            "created_at": self.created_at,
            "note": self.note,
        }


# --------------------------------------------------------------------------------------------
# computing


def embed_2d(vectors: np.ndarray, params: MapParams) -> np.ndarray:
    """UMAP of ``vectors`` (n, dim) to float32 (n, 2), cosine metric, seeded. One or two points
    need no UMAP (and it cannot take them): they sit at the origin or one unit either side."""
    n = len(vectors)
    if n <= 2:
        return np.array([[0.0, 0.0]] if n == 1 else [[-1.0, 0.0], [1.0, 0.0]][:n], np.float32).reshape(n, 2)
    import umap

    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(params.n_neighbors, n - 1),
        min_dist=params.min_dist,
        metric="cosine",
        random_state=params.seed,
        n_epochs=params.n_epochs,
        # the spectral start needs a connected graph of some size; a handful of points start at random
        init="spectral" if n > 2 * params.n_neighbors else "random",
    )
    with warnings.catch_warnings():
        # "n_jobs value 1 overridden to 1 by setting random_state": repeatability is the point
        warnings.filterwarnings("ignore", message=".*random_state.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*disconnected.*", category=UserWarning)
        coords = reducer.fit_transform(np.asarray(vectors, np.float32))
    return np.ascontiguousarray(coords, dtype=np.float32)


def subsample(ids: np.ndarray, max_points: int, seed: int) -> tuple[np.ndarray, str | None]:
    """Rows of ``ids`` to map (all, or a seeded random draw of ``max_points`` in id order) and the
    note saying so."""
    n = len(ids)
    if n <= max_points:
        return np.arange(n), None
    rows = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    note = (
        f"{max_points:,} of {n:,} images drawn at random (seed {seed}) and mapped: above {max_points:,} "
        "UMAP's time and the page's memory grow too much; search finds the others"
    )
    return rows, note


def read_vectors(
    catalog: Catalog, model: str, space: str, progress: Progress | None = None
) -> tuple[int, np.ndarray, np.ndarray]:
    """(generation, ids, vectors) of every stored vector of ``model`` in ``space``. The generation
    is read first: vectors changing while they are read leave the map stale, never wrongly fresh."""
    generation = catalog.generation(model)
    total = catalog.models().get(model, 0)
    id_chunks, vec_chunks, done = [], [], 0
    for ids, vecs in catalog.iter_vectors(model, space):
        id_chunks.append(ids)
        vec_chunks.append(vecs)
        done += len(ids)
        if progress:
            progress("read", done, max(done, total))
    if not id_chunks:
        return generation, np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    return generation, np.concatenate(id_chunks), np.concatenate(vec_chunks)


def compute_map(
    catalog: Catalog,
    maps_dir: Path,
    model: str,
    space: str,
    params: MapParams | None = None,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> tuple[Map2D, bool]:
    """The map of ``model``'s ``space`` vectors: the cached one when its stamp matches the catalog's
    generation and ``params``, else computed and saved. Returns (map, whether it was computed).
    ``cancel`` is checked between the steps (UMAP itself cannot be interrupted)."""
    params = (params or MapParams()).checked()
    path = map_file(maps_dir, model, space)
    cached = load_map(path)
    if cached is not None and is_fresh(cached, catalog, params):
        return cached, False
    generation, ids, vectors = read_vectors(catalog, model, space, progress)
    if len(ids) == 0:
        raise NotFound(f"no {space!r} vectors of {model!r} to map", hint="index the project first")
    result = map_vectors(
        ids, vectors, params, model=model, space=space, generation=generation, progress=progress, cancel=cancel
    )
    save_map(path, result)
    return result, True


def map_vectors(
    ids: np.ndarray,
    vectors: np.ndarray,
    params: MapParams,
    *,
    model: str,
    space: str,
    generation: int = 0,
    key: str = "",
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Map2D:
    """The map of any (ids, vectors): a catalog's (:func:`compute_map`) or a dataset's
    (:mod:`vitrine.dataset_map`), stamped with ``generation`` and ``key`` (what the vectors came
    from) so that a cached one can be told fresh or stale. Subsampled above ``params.max_points``."""
    params = params.checked()
    _check(cancel)
    rows, note = subsample(ids, params.max_points, params.seed)
    if progress:
        progress("umap", 0, 1)
    start = time.perf_counter()
    coords = embed_2d(vectors[rows], params)
    seconds = time.perf_counter() - start
    _check(cancel)
    if progress:
        progress("umap", 1, 1)
    ids = np.asarray(ids, np.int64)
    return Map2D(model, space, generation, params, ids[rows], coords, len(ids), seconds, time.time(), note, key)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("the map was cancelled before it was saved", hint="start it again to compute it")


# --------------------------------------------------------------------------------------------
# the cache


def map_file(maps_dir: Path, model: str, space: str) -> Path:
    """One file per model and space: a readable name, and a short hash so that two names that
    differ only in characters a file name cannot hold never share one."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model}--{space}")[:100]
    digest = hashlib.sha256(f"{model}\0{space}".encode()).hexdigest()[:8]
    return Path(maps_dir) / f"{safe}-{digest}.npz"


def save_map(path: Path, m: Map2D) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = m.summary() | {"stamp": m.stamp, "key": m.key}
    buf = io.BytesIO()
    np.savez(buf, coords=m.coords.astype(np.float32), ids=m.ids.astype(np.int64), meta=np.array(json.dumps(meta)))
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def load_map(path: Path) -> Map2D | None:
    """The map saved in ``path``; None when there is none or it cannot be read (then it is computed again)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            coords, ids = data["coords"].astype(np.float32), data["ids"].astype(np.int64)
        params = MapParams(**meta["params"])
        if coords.shape != (len(ids), 2):
            return None
        return Map2D(
            meta["model"],
            meta["space"],
            int(meta["generation"]),
            params,
            ids,
            coords,
            int(meta["total"]),
            float(meta["seconds"]),
            float(meta["created_at"]),
            meta.get("note"),
            str(meta.get("key", "")),
        )
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None


def is_fresh(m: Map2D, catalog: Catalog, params: MapParams | None = None) -> bool:
    """Whether ``m`` reflects the catalog's vectors now (and was made with ``params``, if given)."""
    if m.generation != catalog.generation(m.model):
        return False
    return params is None or m.params == params.checked()


# --------------------------------------------------------------------------------------------
# what the page draws


@dataclass(frozen=True)
class MapFiles:
    """The map's points that still have a file, and each one's first file (by path): one point
    per content, as search results show one hit per content."""

    keep: np.ndarray  # bool, one per point of the map
    paths: list[str]  # of the kept points
    folders: list[str]  # their first path's top folder ("" directly in images/)


_FILES_CACHE: dict[tuple, MapFiles] = {}
_FILES_CACHE_SIZE = 4
_FILES_LOCK = threading.Lock()


def files_stamp(catalog: Catalog) -> tuple:
    """A cheap stamp of the files table (one aggregate query, about 0.1 s at 1M files): their
    number, the largest row id (a new or moved file gets a new row) and sums of their content ids
    and modification times (a file whose bytes changed in place)."""
    q = select(
        func.count(), func.max(files.c.id), func.sum(files.c.content_id), func.sum(cast(files.c.mtime_ns, Float))
    )
    with catalog.engine.connect() as conn:
        return tuple(conn.execute(q).one())


def map_files(m: Map2D, catalog: Catalog) -> MapFiles:
    """Which points of ``m`` still have a file, and their first paths; kept in memory for the
    last few maps while the files table is unchanged (the points and their colours ask together)."""
    key = (str(catalog.engine.url), m.model, m.space, m.generation, m.created_at, files_stamp(catalog))
    with _FILES_LOCK:
        found = _FILES_CACHE.get(key)
    if found is not None:
        return found
    q = select(files.c.content_id, func.min(files.c.relpath)).group_by(files.c.content_id)
    with catalog.engine.connect() as conn:
        rows = conn.execute(q).all()
    cids = np.fromiter((r[0] for r in rows), np.int64, count=len(rows))
    order = np.argsort(cids, kind="stable")
    cids = cids[order]
    at = np.searchsorted(cids, m.ids)
    at_clipped = np.minimum(at, max(len(cids) - 1, 0))
    keep = (at < len(cids)) & (cids[at_clipped] == m.ids) if len(cids) else np.zeros(len(m.ids), bool)
    paths = [rows[int(order[i])][1] for i in at_clipped[keep].tolist()]
    found = MapFiles(keep, paths, [p.split("/", 1)[0] if "/" in p else "" for p in paths])
    with _FILES_LOCK:
        while len(_FILES_CACHE) >= _FILES_CACHE_SIZE:
            _FILES_CACHE.pop(next(iter(_FILES_CACHE)))
        _FILES_CACHE[key] = found
    return found


def points_payload(m: Map2D, catalog: Catalog) -> dict:
    """The map as columns the page reads at once: ``x``, ``y`` (rounded to :data:`DIGITS`
    decimals), ``id`` and ``path``, and ``folder`` as codes into ``folders``. A content whose
    files were all removed since the map was made is left out."""
    mf = map_files(m, catalog)
    ids, coords = m.ids[mf.keep], m.coords[mf.keep]
    folders, codes = _codes(mf.folders)
    return m.summary() | {
        "shown": len(ids),
        "x": np.round(coords[:, 0].astype(np.float64), DIGITS).tolist(),
        "y": np.round(coords[:, 1].astype(np.float64), DIGITS).tolist(),
        "id": ids.tolist(),
        "path": mf.paths,
        "folders": folders,
        "folder": codes,
    }


def _codes(values: list[str]) -> tuple[list[str], list[int]]:
    """(categories, code of each value): categories sorted, so codes are stable."""
    categories = sorted(set(values))
    index = {c: i for i, c in enumerate(categories)}
    return categories, [index[v] for v in values]


def best_tags(catalog: Catalog, model: str | None = None) -> dict[int, str]:
    """content id -> its best-scoring detector tag (from ``model``, or any tagging model)."""
    q = select(tags.c.content_id, tags.c.label, tags.c.score)
    if model is not None:
        q = q.where(tags.c.model == model)
    best: dict[int, tuple[float, str]] = {}
    with catalog.engine.connect() as conn:
        for cid, label, score in conn.execute(q):
            if cid not in best or (score, label) > best[cid]:
                best[cid] = (score, label)
    return {cid: label for cid, (_, label) in best.items()}


def colors_payload(m: Map2D, catalog: Catalog, by: str, *, clusters: int = 8, tag_model: str | None = None) -> dict:
    """Each point's category for colouring, in the order of :func:`points_payload`'s points:
    ``{"by", "categories", "codes", "counts"}``. ``by``: ``folder``, ``tag`` (the best-scoring
    detector tag; "(no tag)" for the others) or ``cluster`` (KMeans on the 2-D points, ``clusters``
    of them, seeded)."""
    if by not in COLOR_BY:
        raise BadMapParameter(f"cannot colour by {by!r}", hint="colour by " + ", ".join(COLOR_BY))
    mf = map_files(m, catalog)
    ids, coords = m.ids[mf.keep], m.coords[mf.keep]
    extra: dict = {}
    if by == "folder":
        categories, codes = _codes(mf.folders)
    elif by == "tag":
        found = best_tags(catalog, tag_model)
        values = [found.get(int(i), "(no tag)") for i in ids.tolist()]
        categories, codes = _codes(values)
    else:
        if isinstance(clusters, bool) or not isinstance(clusters, int) or not 2 <= clusters <= MAX_CLUSTERS:
            raise BadMapParameter(
                f"clusters = {clusters!r} is out of range: a whole number from 2 to {MAX_CLUSTERS}",
                hint="the default is 8",
            )
        labels, extra = cluster_points(coords, clusters, seed=m.params.seed)
        categories = [f"cluster {i + 1}" for i in range(int(labels.max()) + 1 if len(labels) else 0)]
        codes = labels.tolist()
    counts = np.bincount(np.asarray(codes, np.int64), minlength=len(categories)).tolist() if codes else []
    return {"by": by, "categories": categories, "codes": codes, "counts": counts} | extra


def cluster_points(coords: np.ndarray, k: int, seed: int = SEED) -> tuple[np.ndarray, dict]:
    """KMeans labels of the 2-D points (fewer clusters than points: at most one per point)."""
    from sklearn.cluster import KMeans

    n = len(coords)
    if n == 0:
        return np.zeros(0, np.int64), {"clusters": 0}
    k = min(k, n)
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(np.asarray(coords, np.float64))
    return km.labels_.astype(np.int64), {"clusters": k}


def place_query(m: Map2D, hits: list[tuple[int, str, float]]) -> dict:
    """Where a query sits on the map: the mean position of its nearest mapped images (``hits``:
    content id, path, score, best first) weighted by a softmax of their similarities (temperature
    :data:`QUERY_TEMPERATURE`: an image 0.05 less similar than the best weighs e⁻¹ of it), with
    those images and their positions.
    The map is of images; a text vector is not placed by UMAP (its model is not kept, and a text
    vector lies apart from every image vector, so UMAP would put it at the edge): its neighbours
    say where it belongs."""
    rows = {int(cid): r for r, cid in enumerate(m.ids.tolist())}
    near = []
    for cid, path, score in hits:
        r = rows.get(int(cid))
        if r is None:  # not mapped (a subsample, or added since)
            continue
        x, y = m.coords[r].tolist()
        near.append({"path": path, "score": round(float(score), 6), "x": round(x, DIGITS), "y": round(y, DIGITS)})
    if not near:
        return {"x": None, "y": None, "neighbours": []}
    scores = np.array([n["score"] for n in near])
    w = np.exp((scores - scores.max()) / QUERY_TEMPERATURE)  # the closest weigh most
    x = float(np.average([n["x"] for n in near], weights=w))
    y = float(np.average([n["y"] for n in near], weights=w))
    return {"x": round(x, DIGITS), "y": round(y, DIGITS), "neighbours": near}
