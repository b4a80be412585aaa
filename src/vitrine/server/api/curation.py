"""REST API for near duplicates, outliers and label errors, of a project and of a classification
dataset. Thin like v1: each route calls the core (:meth:`vitrine.project.Project.duplicates`,
:meth:`~vitrine.project.Project.outliers`, :mod:`vitrine.curation`) and returns the dictionary the
CLI prints with --json, its list sorted (``sort``) and paged (``offset``, ``limit``; ``total`` is
the list's length), as the curation page shows it.

The lists are computed whole (every image against every other, in FAISS), then kept per app for
the pages that follow (:func:`list_cache`): the key holds what they depend on (the project's vector
generation and last indexing, the dataset's files and the caller's view of it, the parameters),
so a change anywhere computes them again. 10k vectors take about 1 s (512 dimensions) to 2.3 s
(1280) on one FAISS thread; the demo project's 20 images a few milliseconds.

A dataset is the caller's view of it (``DatasetDep``): a member of a dataset with a hidden split
gets lists computed without that split's images, so neither they nor their labels appear, not
even as a neighbour's suggested label.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from vitrine.models import registry
from vitrine.search.neighbours import DEFAULT_K, DEFAULT_PIXEL_THRESHOLD, DEFAULT_THRESHOLD
from vitrine.server.api.classification import DatasetDep, _Loaded
from vitrine.server.api.responses import MAX_INT, errors
from vitrine.server.deps import ProjectDep, WorkspaceDep
from vitrine.server.state import Recent, per_app

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
Offset = Annotated[int, Query(ge=0, le=MAX_INT, description="first item of the page")]
Limit = Annotated[int | None, Query(ge=1, le=10_000, description="items per page (default: all)")]
GroupSort = Annotated[
    Literal["size", "similarity", "name"],
    Query(description="size: largest group first; similarity: closest group first; name: by the kept image's path"),
]
ScoreSort = Annotated[Literal["score", "name"], Query(description="score: most isolated first; name: by path")]
ErrorSort = Annotated[
    Literal["score", "name", "label"],
    Query(description="score: most neighbours agreeing first; name: by path; label: by given label, then score"),
]

LISTS_KEPT = 8  # computed lists kept per app (least recently used dropped first)


def list_cache(request: Request) -> Recent:
    """This app's computed lists, the most recent :data:`LISTS_KEPT`."""
    return per_app(request.app.state, "curation_lists", lambda: Recent(LISTS_KEPT))


CacheDep = Annotated[Recent, Depends(list_cache)]


def _project_key(p, model: str | None) -> tuple:
    """What a project's lists depend on: its folder, the model, the model's vector generation and
    the last indexing (a scan that renamed files changes paths, not vectors)."""
    name = model or p.model_name or ""
    last = p.catalog.get_meta("last_index") or {}
    return (str(p.paths.project_dir), name, p.catalog.generation(name) if name else 0, last.get("finished_at"))


def _dataset_key(d: _Loaded, model: str | None) -> tuple:
    stamps = []
    for f in ("dataset.json", "samples.csv"):
        try:
            st = (d.dir / f).stat()
            stamps.append((st.st_size, st.st_mtime_ns))
        except OSError:
            stamps.append(None)
    return (str(d.dir), d.hidden, *stamps, model or "")


def _page(out: dict, field: str, rows: list, sort: str, offset: int, limit: int | None) -> dict:
    return {
        **out,
        field: rows[offset : offset + limit] if limit else rows[offset:],
        "sort": sort,
        "total": len(rows),
        "offset": offset,
        "limit": limit,
    }


def sorted_groups(groups: list[dict], sort: str) -> list[dict]:
    if sort == "similarity":  # the group whose least similar image is closest first
        return sorted(groups, key=lambda g: (-min(m["similarity"] for m in g["others"]), g["keep"]["path"]))
    if sort == "name":
        return sorted(groups, key=lambda g: g["keep"]["path"])
    return sorted(groups, key=lambda g: (-len(g["others"]), g["keep"]["path"]))


def sorted_scores(rows: list[dict], sort: str) -> list[dict]:
    if sort == "name":
        return sorted(rows, key=lambda o: o["path"])
    return sorted(rows, key=lambda o: (-o["score"], o["path"]))


def sorted_errors(rows: list[dict], sort: str) -> list[dict]:
    if sort == "name":
        return sorted(rows, key=lambda e: e["path"])
    if sort == "label":
        return sorted(rows, key=lambda e: (e["label"], -e["agreement"], e["label_agreement"], e["path"]))
    return sorted(rows, key=lambda e: (-e["agreement"], e["label_agreement"], e["path"]))


def _known(model: str | None) -> None:
    if model is not None:
        registry.get(model)  # an unknown name is a 400 before any work


@router.get("/projects/{name}/duplicates", responses=errors(404, 409, 422, 503))
def project_duplicates(
    p: ProjectDep,
    c: CacheDep,
    threshold: Threshold = DEFAULT_THRESHOLD,
    model: Model = None,
    pixels: Pixels = True,
    pixel_threshold: PixelThreshold = DEFAULT_PIXEL_THRESHOLD,
    sort: GroupSort = "size",
    offset: Offset = 0,
    limit: Limit = None,
):
    """Near-duplicate groups (largest first by default): each with the image to keep (largest
    resolution, then largest file, then oldest; ``keep_rule`` says which decided) and the others'
    similarity to it (and, with the pixel check, their signature correlation). ``exact`` lists the
    images that have byte-for-byte copies (same SHA-256)."""
    _known(model)
    out = c.get(
        ("p-dup", *_project_key(p, model), threshold, pixels, pixel_threshold),
        lambda: p.duplicates(threshold=threshold, model=model, pixels=pixels, pixel_threshold=pixel_threshold),
    )
    return _page(out, "groups", sorted_groups(out["groups"], sort), sort, offset, limit)


@router.get("/projects/{name}/outliers", responses=errors(404, 409, 422, 503))
def project_outliers(
    p: ProjectDep,
    c: CacheDep,
    k: K = DEFAULT_K,
    top: Top = None,
    model: Model = None,
    sort: ScoreSort = "score",
    offset: Offset = 0,
    limit: Limit = None,
):
    """Every image's mean cosine distance to its k nearest neighbours, most isolated first (``top``:
    only the N most isolated)."""
    _known(model)
    out = c.get(("p-out", *_project_key(p, model), k), lambda: p.outliers(k=k, model=model))
    rows = out["outliers"][:top] if top else out["outliers"]
    return _page(out, "outliers", sorted_scores(rows, sort), sort, offset, limit)


@router.get("/datasets/{name}/label-errors", responses=errors(404, 422, 503))
def dataset_label_errors(
    d: DatasetDep,
    ws: WorkspaceDep,
    c: CacheDep,
    k: K = DEFAULT_K,
    model: Model = None,
    sort: ErrorSort = "score",
    offset: Offset = 0,
    limit: Limit = None,
):
    """Images whose label disagrees with most of their k nearest neighbours' (leave-one-out,
    cosine), with the suggested label and the share of neighbours agreeing, most confident first.
    The dataset's images are embedded on first use (cached, as for the linear probe)."""
    from vitrine.curation import dataset_label_errors as compute

    _known(model)
    out = c.get(("d-err", *_dataset_key(d, model), k), lambda: compute(ws, d.dataset, model=model, k=k))
    return _page(out, "errors", sorted_errors(out["errors"], sort), sort, offset, limit)


@router.get("/datasets/{name}/duplicates", responses=errors(404, 422, 503))
def dataset_duplicates(
    d: DatasetDep,
    ws: WorkspaceDep,
    c: CacheDep,
    threshold: Threshold = DEFAULT_THRESHOLD,
    model: Model = None,
    pixels: Pixels = True,
    pixel_threshold: PixelThreshold = DEFAULT_PIXEL_THRESHOLD,
    sort: GroupSort = "size",
    offset: Offset = 0,
    limit: Limit = None,
):
    """Near-duplicate groups of the dataset's images; ``labels_differ`` marks a group whose images
    have different labels."""
    from vitrine.curation import dataset_duplicates as compute

    _known(model)
    options = {"threshold": threshold, "pixels": pixels, "pixel_threshold": pixel_threshold}
    key = ("d-dup", *_dataset_key(d, model), *options.values())
    out = c.get(key, lambda: compute(ws, d.dataset, model=model, **options))
    return _page(out, "groups", sorted_groups(out["groups"], sort), sort, offset, limit)


@router.get("/datasets/{name}/outliers", responses=errors(404, 422, 503))
def dataset_outliers(
    d: DatasetDep,
    ws: WorkspaceDep,
    c: CacheDep,
    k: K = DEFAULT_K,
    top: Top = None,
    model: Model = None,
    sort: ScoreSort = "score",
    offset: Offset = 0,
    limit: Limit = None,
):
    """Every image's mean cosine distance to its k nearest neighbours, most isolated first."""
    from vitrine.curation import dataset_outliers as compute

    _known(model)
    out = c.get(("d-out", *_dataset_key(d, model), k), lambda: compute(ws, d.dataset, model=model, k=k))
    rows = out["outliers"][:top] if top else out["outliers"]
    return _page(out, "outliers", sorted_scores(rows, sort), sort, offset, limit)
