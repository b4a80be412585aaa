"""Keep a FAISS index file in step with the vectors stored in the catalog.

The catalog is the source of truth; an index file is a derived cache saved atomically with the
catalog *generation* it reflects. When they differ (new vectors, removed images, or a run killed
between committing vectors and saving the index), the index is updated incrementally, or rebuilt
when it is missing, unreadable, or its type no longer suits the collection size.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from vitrine.core.errors import VitrineError
from vitrine.index.faiss_index import VectorIndex
from vitrine.store.catalog import Catalog

# path -> (catalog generation, index, signature of the file it was saved to). The signature makes
# a cached index invalid once its file is gone or replaced, e.g. when the data dir was deleted and
# the project indexed again: the new catalog counts generations from the start again.
_CACHE: dict[str, tuple[int, VectorIndex, tuple | None]] = {}
_LOCK = threading.Lock()


def _signature(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def index_path(indexes_dir: Path, model: str, space: str) -> Path:
    return Path(indexes_dir) / model / f"{space}.faiss"


def _build(catalog: Catalog, model: str, space: str, dim: int) -> VectorIndex:
    chunks = list(catalog.iter_vectors(model, space))
    if not chunks:
        return VectorIndex.empty(dim)
    ids = np.concatenate([c[0] for c in chunks])
    vectors = np.concatenate([c[1] for c in chunks])
    return VectorIndex.build(ids, vectors)


def refresh_index(catalog: Catalog, indexes_dir: Path, model: str, space: str, dim: int) -> VectorIndex:
    """Return an index that reflects the catalog's vectors for (model, space), saving it if changed."""
    path = index_path(indexes_dir, model, space)
    with _LOCK:
        generation = catalog.generation(model)
        cached = _CACHE.get(str(path))
        if cached and cached[0] == generation and cached[2] is not None and cached[2] == _signature(path):
            return cached[1]
        meta = VectorIndex.read_meta(path) or {}
        index = None
        if path.exists() and meta.get("model") == model and meta.get("space") == space:
            try:
                index = VectorIndex.load(path)
            except VitrineError:
                index = None  # unreadable: rebuilt from the catalog below
        if index is not None and meta.get("generation") == generation and index.dim == dim:
            _CACHE[str(path)] = (generation, index, _signature(path))
            return index
        if index is None or index.dim != dim:
            index = _build(catalog, model, space, dim)
        else:
            have = index.ids()
            want = catalog.vector_ids(model, space)
            stale = np.setdiff1d(have, want, assume_unique=True)
            fresh = np.setdiff1d(want, have, assume_unique=True)
            if len(stale):
                index.remove(stale)
            if len(fresh):
                for i in range(0, len(fresh), 50_000):
                    ids, vectors = catalog.vectors_for(model, space, fresh[i : i + 50_000].tolist())
                    index.add(ids, vectors)
            if index.needs_rebuild():
                index = _build(catalog, model, space, dim)
        path.parent.mkdir(parents=True, exist_ok=True)
        index.save(path, meta={"model": model, "space": space, "generation": generation})
        _CACHE[str(path)] = (generation, index, _signature(path))
        return index


def forget_cached(indexes_dir: Path) -> None:
    """Drop cached indexes under a folder (after a project is deleted or re-created)."""
    with _LOCK:
        for key in [k for k in _CACHE if k.startswith(str(indexes_dir))]:
            _CACHE.pop(key, None)
