"""Label errors, near duplicates and outliers of a classification dataset: the Python API.

A dataset's vectors are the linear probe's (:func:`vitrine.train.classification.embeddings.embed_dataset`:
the model's image space, cached per content under ``datasets/<name>/embeddings/``), so a dataset
the probe has seen is not embedded again. The computations are :mod:`vitrine.search.neighbours`'
(the same as a project's, :meth:`vitrine.project.Project.duplicates`). This module sits beside
``project.py`` in the layers: it strings dataset embeddings (``train/``) to those computations,
as ``project.py`` strings a catalog to them.

A caller that must not see some splits (a member of a dataset with a hidden split) passes the
view of the dataset without them: their images are then neither listed nor used as neighbours,
so no suggestion can carry a hidden label.
"""

from __future__ import annotations

import threading
from pathlib import Path

from vitrine.collection.signature import signatures_of
from vitrine.core.errors import VitrineError
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset
from vitrine.models import registry
from vitrine.search.neighbours import (
    DEFAULT_K,
    DEFAULT_PIXEL_THRESHOLD,
    DEFAULT_THRESHOLD,
    Item,
    PixelCheck,
    check_k,
    check_pixel_threshold,
    check_threshold,
    label_errors,
    near_duplicate_groups,
    outlier_scores,
)
from vitrine.train.classification.embeddings import EmbeddedDataset, dataset_cache_dir, embed_dataset

DEFAULT_MODEL = "offline-concepts"  # as the linear probe: packaged weights, works offline


def _embedded(
    workspace: Workspace, dataset: ClassificationDataset, model: str | None, progress=None, cancel=None
) -> tuple[str, str, EmbeddedDataset]:
    name = model or DEFAULT_MODEL
    registry.embedding_spec(name)  # an unknown name fails here, before any work, with the known ones
    if not dataset.samples:
        raise VitrineError(f"dataset {dataset.name!r} has no images", hint="import images with `vitrine data import`")
    space = registry.load(name).spaces.image_space
    emb = embed_dataset(
        dataset, name, space, cache_dir=dataset_cache_dir(workspace, dataset), progress=progress, cancel=cancel
    )
    return name, space, emb


def dataset_label_errors(
    workspace: Workspace | str | Path,
    dataset: ClassificationDataset,
    model: str | None = None,
    k: int = DEFAULT_K,
    progress=None,
    cancel: threading.Event | None = None,
) -> dict:
    """The images whose label disagrees with most of their ``k`` nearest neighbours' (leave-one-out,
    cosine, over every split of ``dataset``), most confident first, with the suggested label."""
    k = check_k(k)
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    name, space, emb = _embedded(ws, dataset, model, progress, cancel)
    errors = label_errors(
        emb.vectors, [s.label for s in emb.samples], emb.paths, k, splits=[s.split or None for s in emb.samples]
    )
    return {
        "dataset": dataset.name,
        "model": name,
        "space": space,
        "k": k,
        "images": len(emb.samples),
        "skipped": [{"path": p, "reason": r} for p, r in emb.failed],
        "errors": [e.to_dict() for e in errors],
    }


def dataset_duplicates(
    workspace: Workspace | str | Path,
    dataset: ClassificationDataset,
    model: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    progress=None,
    cancel: threading.Event | None = None,
    pixels: bool = True,
    pixel_threshold: float = DEFAULT_PIXEL_THRESHOLD,
) -> dict:
    """Near-duplicate groups of a dataset's images (as :meth:`Project.duplicates`, pixel check
    included); the keep rule reads each file's pixels, bytes and modification time. A group whose
    images have different labels is marked ``labels_differ``."""
    from PIL import Image

    threshold = check_threshold(threshold)
    pixel_threshold = check_pixel_threshold(pixel_threshold)
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    name, space, emb = _embedded(ws, dataset, model, progress, cancel)
    items = []
    for s in emb.samples:
        path = dataset.path_of(s)
        st = path.stat()
        try:
            with Image.open(path) as im:  # the header only: no decode
                width, height = im.size
        except OSError:
            width = height = None
        items.append(
            Item(key=s.path, path=s.path, width=width, height=height, size=st.st_size, mtime_ns=st.st_mtime_ns)
        )
    label_of = {s.path: s.label for s in emb.samples}
    unreadable: list[dict] = []

    def signatures(rows: list[int]):
        sigs, failed = signatures_of([dataset.path_of(emb.samples[r]) for r in rows])
        unreadable.extend({"path": emb.samples[rows[n]].path, "reason": why} for n, why in failed.items())
        return sigs

    check = PixelCheck(signatures, pixel_threshold) if pixels else None
    groups = []
    for g in near_duplicate_groups(emb.vectors, items, threshold, check):
        d = g.to_dict()
        labels = {label_of[g.keep.path], *(label_of[m.path] for m in g.others)}
        d["labels"] = sorted(labels)
        d["labels_differ"] = len(labels) > 1
        groups.append(d)
    return {
        "dataset": dataset.name,
        "model": name,
        "space": space,
        "threshold": threshold,
        "pixel_check": check.to_dict() if check else None,
        "images": len(emb.samples),
        "groups": groups,
        "unreadable": unreadable,
    }


def dataset_outliers(
    workspace: Workspace | str | Path,
    dataset: ClassificationDataset,
    model: str | None = None,
    k: int = DEFAULT_K,
    top: int | None = None,
) -> dict:
    """Each image's mean cosine distance to its ``k`` nearest neighbours, most isolated first."""
    k = check_k(k)
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    name, space, emb = _embedded(ws, dataset, model)
    scores = outlier_scores(emb.vectors, emb.paths, emb.paths, k)
    return {
        "dataset": dataset.name,
        "model": name,
        "space": space,
        "k": k,
        "images": len(emb.samples),
        "outliers": [o.to_dict() for o in (scores[:top] if top else scores)],
    }
