"""REST API for near duplicates, outliers and label errors, of a project and of a classification
dataset. Thin like v1: each route calls the core (:meth:`vitrine.project.Project.duplicates`,
:meth:`~vitrine.project.Project.outliers`, :mod:`vitrine.curation`) and returns the dictionary the
CLI prints with --json.

A dataset is the caller's view of it (``DatasetDep``): a member of a dataset with a hidden split
gets lists computed without that split's images, so neither they nor their labels appear, not
even as a neighbour's suggested label.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from vitrine.models import registry
from vitrine.search.neighbours import DEFAULT_K, DEFAULT_PIXEL_THRESHOLD, DEFAULT_THRESHOLD
from vitrine.server.api.classification import DatasetDep
from vitrine.server.api.responses import errors
from vitrine.server.deps import ProjectDep, WorkspaceDep

router = APIRouter(prefix="/api/v1", tags=["duplicates, outliers, label errors"])

Threshold = Annotated[
    float,
    Query(gt=0, le=1, description="cosine similarity from which two images are near duplicates"),
]
Pixels = Annotated[
    bool,
    Query(description="confirm each pair by the pictures' pixel signatures: a copy, not another photo of one thing"),
]
PixelThreshold = Annotated[
    float, Query(ge=-1, le=1, description="signature correlation a pair must reach too (with pixels)")
]
K = Annotated[int, Query(ge=1, le=1000, description="neighbours per image")]
Top = Annotated[int | None, Query(ge=1, le=1_000_000, description="only the N most isolated images")]
Model = Annotated[str | None, Query(description="embedding model (default: the project's; offline-concepts)")]


def _known(model: str | None) -> None:
    if model is not None:
        registry.get(model)  # an unknown name is a 400 before any work


@router.get("/projects/{name}/duplicates", responses=errors(404, 409, 422, 503))
def project_duplicates(
    p: ProjectDep,
    threshold: Threshold = DEFAULT_THRESHOLD,
    model: Model = None,
    pixels: Pixels = True,
    pixel_threshold: PixelThreshold = DEFAULT_PIXEL_THRESHOLD,
):
    """Near-duplicate groups, largest first: each with the image to keep (largest resolution, then
    largest file, then oldest; ``keep_rule`` says which decided) and the others' similarity to it
    (and, with the pixel check, their signature correlation). ``exact`` lists the images that have
    byte-for-byte copies (same SHA-256)."""
    _known(model)
    return p.duplicates(threshold=threshold, model=model, pixels=pixels, pixel_threshold=pixel_threshold)


@router.get("/projects/{name}/outliers", responses=errors(404, 409, 422, 503))
def project_outliers(p: ProjectDep, k: K = DEFAULT_K, top: Top = None, model: Model = None):
    """Every image's mean cosine distance to its k nearest neighbours, most isolated first."""
    _known(model)
    return p.outliers(k=k, top=top, model=model)


@router.get("/datasets/{name}/label-errors", responses=errors(404, 422, 503))
def dataset_label_errors(d: DatasetDep, ws: WorkspaceDep, k: K = DEFAULT_K, model: Model = None):
    """Images whose label disagrees with most of their k nearest neighbours' (leave-one-out,
    cosine), with the suggested label and the share of neighbours agreeing, most confident first.
    The dataset's images are embedded on first use (cached, as for the linear probe)."""
    from vitrine.curation import dataset_label_errors as compute

    _known(model)
    return compute(ws, d.dataset, model=model, k=k)


@router.get("/datasets/{name}/duplicates", responses=errors(404, 422, 503))
def dataset_duplicates(
    d: DatasetDep,
    ws: WorkspaceDep,
    threshold: Threshold = DEFAULT_THRESHOLD,
    model: Model = None,
    pixels: Pixels = True,
    pixel_threshold: PixelThreshold = DEFAULT_PIXEL_THRESHOLD,
):
    """Near-duplicate groups of the dataset's images; ``labels_differ`` marks a group whose images
    have different labels."""
    from vitrine.curation import dataset_duplicates as compute

    _known(model)
    return compute(ws, d.dataset, model=model, threshold=threshold, pixels=pixels, pixel_threshold=pixel_threshold)


@router.get("/datasets/{name}/outliers", responses=errors(404, 422, 503))
def dataset_outliers(d: DatasetDep, ws: WorkspaceDep, k: K = DEFAULT_K, top: Top = None, model: Model = None):
    """Every image's mean cosine distance to its k nearest neighbours, most isolated first."""
    from vitrine.curation import dataset_outliers as compute

    _known(model)
    return compute(ws, d.dataset, model=model, k=k, top=top)
