"""The 2-D map of a classification dataset: UMAP of the linear probe's cached embeddings, coloured
by label, split or cluster. The Python API beside :mod:`vitrine.curation`.

The computation is :mod:`vitrine.search.map2d`'s (the same as a project's map); the vectors are
the dataset's embeddings (:func:`vitrine.train.classification.embeddings.embed_dataset`, cached per
content under ``datasets/<name>/embeddings/``), so a dataset the probe or the curation lists have
seen is not embedded again.

* **Cached** in ``datasets/<name>/maps/<view>/``: one ``.npz`` per model and space and per *view*
  (the whole dataset, or the dataset without some hidden splits: a member of a dataset with a
  hidden split gets a map built without those images, never the owner's). Its stamp
  (:func:`dataset_stamp`) is cheap: the size and modification time of ``dataset.json`` and
  ``samples.csv`` (a relabel, an import, a split change rewrites them), the number, total size and
  summed modification times of the view's image files (a file replaced in place), and the view.
  A map whose stamp differs is stale: the points would not match the samples. The stamp costs
  one ``stat`` per image, about 5 µs each (96 ms at 20,000 images), on each state, points and
  colours request.
* A point's id is the row of its sample in the view's samples sorted by path (the stamp pins
  them); the points carry each one's path, label and split.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vitrine.core.errors import VitrineError
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.models import registry
from vitrine.search import map2d
from vitrine.search.map2d import DIGITS, BadMapParameter, Map2D, MapNotReady, MapParams, Progress
from vitrine.train.classification.embeddings import dataset_cache_dir, embed_dataset

DEFAULT_MODEL = "offline-concepts"  # as the linear probe and the curation lists
COLOR_BY = ("label", "split", "cluster")
NO_SPLIT = "(no split)"


def _workspace(workspace: Workspace | str | Path) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def _model(model: str | None) -> tuple[str, str]:
    name = model or DEFAULT_MODEL
    registry.embedding_spec(name)
    return name, registry.load(name).spaces.image_space


def view_name(hidden: Sequence[str]) -> str:
    """The folder of a view's maps: ``all``, or ``without-<hash of the hidden splits>``."""
    if not hidden:
        return "all"
    return "without-" + hashlib.sha256("\0".join(sorted(hidden)).encode()).hexdigest()[:12]


def maps_dir(workspace: Workspace, dataset: ClassificationDataset, hidden: Sequence[str] = ()) -> Path:
    return workspace.dataset_dir(dataset.name) / "maps" / view_name(hidden)


def sorted_samples(dataset: ClassificationDataset) -> list[Sample]:
    return sorted(dataset.samples, key=lambda s: s.path)


def dataset_stamp(
    workspace: Workspace, dataset: ClassificationDataset, hidden: Sequence[str] = (), model: str = ""
) -> str:
    """A short hash of what the map depends on (see the module's docstring): one ``stat`` per
    image, no reading."""
    directory = workspace.dataset_dir(dataset.name)
    parts: list = [model, sorted(hidden)]
    for f in ("dataset.json", "samples.csv"):
        try:
            st = (directory / f).stat()
            parts.append([st.st_size, st.st_mtime_ns])
        except OSError:
            parts.append(None)
    count = size = mtime = 0
    for s in dataset.samples:
        try:
            st = dataset.path_of(s).stat()
        except OSError:
            continue
        count, size, mtime = count + 1, size + st.st_size, mtime + st.st_mtime_ns
    parts.append([len(dataset.samples), count, size, mtime])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def dataset_map(
    workspace: Workspace | str | Path,
    dataset: ClassificationDataset,
    model: str | None = None,
    params: MapParams | None = None,
    *,
    hidden: Sequence[str] = (),
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """Compute the map of ``dataset`` (the caller's view: ``hidden`` names the splits taken out of
    it), or keep the cached one when the dataset has not changed and ``params`` are the same.
    Returns its summary with ``computed`` and ``skipped`` (images that could not be read).
    Stages for ``progress``: ``hash``, ``embed`` (images not in the embeddings cache), ``umap``."""
    ws = _workspace(workspace)
    params = (params or MapParams()).checked()
    name, space = _model(model)
    path = map2d.map_file(maps_dir(ws, dataset, hidden), name, space)
    key = dataset_stamp(ws, dataset, hidden, name)
    cached = map2d.load_map(path)
    if cached is not None and cached.key == key and cached.params == params:
        return cached.summary() | {"computed": False, "skipped": []}
    if not dataset.samples:
        raise VitrineError(f"dataset {dataset.name!r} has no images", hint="import images with `vitrine data import`")
    ordered = sorted_samples(dataset)
    row = {s.path: i for i, s in enumerate(ordered)}
    cache = dataset_cache_dir(ws, dataset)
    emb = embed_dataset(dataset, name, space, cache_dir=cache, samples=ordered, progress=progress, cancel=cancel)
    if not len(emb.samples):
        raise VitrineError(
            f"none of the {len(ordered)} images of dataset {dataset.name!r} could be read",
            hint="check the files: `vitrine data check`",
        )
    ids = np.array([row[s.path] for s in emb.samples], np.int64)
    m = map2d.map_vectors(ids, emb.vectors, params, model=name, space=space, key=key, progress=progress, cancel=cancel)
    map2d.save_map(path, m)
    skipped = [{"path": p, "reason": r} for p, r in emb.failed]
    return m.summary() | {"computed": True, "skipped": skipped}


def dataset_map_state(
    workspace: Workspace | str | Path,
    dataset: ClassificationDataset,
    model: str | None = None,
    *,
    hidden: Sequence[str] = (),
) -> dict:
    """The map as it stands: ``ready`` (made from the dataset as it is now), ``stale`` (made
    before a change) or neither, with its summary."""
    ws = _workspace(workspace)
    name, space = _model(model)
    m = map2d.load_map(map2d.map_file(maps_dir(ws, dataset, hidden), name, space))
    fresh = m is not None and m.key == dataset_stamp(ws, dataset, hidden, name)
    return {
        "dataset": dataset.name,
        "model": name,
        "space": space,
        "ready": fresh,
        "stale": m is not None and not fresh,
        "map": m.summary() if m is not None else None,
    }


def _ready(ws: Workspace, dataset: ClassificationDataset, model: str | None, hidden: Sequence[str]) -> Map2D:
    name, space = _model(model)
    m = map2d.load_map(map2d.map_file(maps_dir(ws, dataset, hidden), name, space))
    if m is None:
        raise MapNotReady(f"dataset {dataset.name!r} has no map of {name!r} yet", hint="compute it first (the map job)")
    if m.key != dataset_stamp(ws, dataset, hidden, name):
        raise MapNotReady(
            f"the map of {name!r} was made before dataset {dataset.name!r} last changed (labels, splits or files)",
            hint="compute it again (the map job): the points would not match the samples",
        )
    return m


def _points(m: Map2D, dataset: ClassificationDataset) -> tuple[np.ndarray, np.ndarray, list[Sample]]:
    ordered = sorted_samples(dataset)
    return m.ids, m.coords, [ordered[i] for i in m.ids.tolist()]


def dataset_map_points(
    workspace: Workspace | str | Path,
    dataset: ClassificationDataset,
    model: str | None = None,
    *,
    hidden: Sequence[str] = (),
) -> dict:
    """The up-to-date map's points as columns: ``x``, ``y`` (rounded), ``id`` (row of the sample in
    the view's samples by path), ``path``, and ``label`` / ``split`` as codes into ``labels`` /
    ``splits``. A 409 (:class:`MapNotReady`) when there is no map or the dataset changed since."""
    ws = _workspace(workspace)
    m = _ready(ws, dataset, model, hidden)
    ids, coords, samples = _points(m, dataset)
    labels, label_codes = _codes([s.label for s in samples])
    splits, split_codes = _codes([s.split or NO_SPLIT for s in samples])
    return m.summary() | {
        "dataset": dataset.name,
        "shown": len(ids),
        "x": np.round(coords[:, 0].astype(np.float64), DIGITS).tolist(),
        "y": np.round(coords[:, 1].astype(np.float64), DIGITS).tolist(),
        "id": ids.tolist(),
        "path": [s.path for s in samples],
        "labels": labels,
        "label": label_codes,
        "splits": splits,
        "split": split_codes,
    }


def dataset_map_colors(
    workspace: Workspace | str | Path,
    dataset: ClassificationDataset,
    by: str,
    model: str | None = None,
    clusters: int = 8,
    *,
    hidden: Sequence[str] = (),
) -> dict:
    """Each point's category, in the order of :func:`dataset_map_points`: ``label``, ``split``
    ("(no split)" for unassigned images) or ``cluster`` (KMeans of the 2-D points, seeded)."""
    if by not in COLOR_BY:
        raise BadMapParameter(f"cannot colour by {by!r}", hint="colour by " + ", ".join(COLOR_BY))
    ws = _workspace(workspace)
    m = _ready(ws, dataset, model, hidden)
    _, coords, samples = _points(m, dataset)
    extra: dict = {}
    if by == "label":
        categories, codes = _codes([s.label for s in samples])
    elif by == "split":
        categories, codes = _codes([s.split or NO_SPLIT for s in samples])
    else:
        if isinstance(clusters, bool) or not isinstance(clusters, int) or not 2 <= clusters <= map2d.MAX_CLUSTERS:
            raise BadMapParameter(
                f"clusters = {clusters!r} is out of range: a whole number from 2 to {map2d.MAX_CLUSTERS}",
                hint="the default is 8",
            )
        labels, extra = map2d.cluster_points(coords, clusters, seed=m.params.seed)
        categories = [f"cluster {i + 1}" for i in range(int(labels.max()) + 1 if len(labels) else 0)]
        codes = labels.tolist()
    counts = np.bincount(np.asarray(codes, np.int64), minlength=len(categories)).tolist() if codes else []
    return {"by": by, "categories": categories, "codes": codes, "counts": counts} | extra


def _codes(values: list[str]) -> tuple[list[str], list[int]]:
    categories = sorted(set(values))
    index = {c: i for i, c in enumerate(categories)}
    return categories, [index[v] for v in values]
