"""REST API of a classification dataset's 2-D map (UMAP of its embeddings), mirroring a project's
(:mod:`vitrine.server.api.maps`). Thin: each route calls :mod:`vitrine.dataset_map` and the
``map`` job with the caller's view of the dataset (:func:`~vitrine.server.api.classification.loaded_dataset`):
a member of a dataset with hidden splits gets a map built without those images, cached apart.

* ``POST /datasets/{name}/map`` starts the job (202, the job; it finds the cached map at once when
  the dataset has not changed); follow it at ``/jobs/{id}``.
* ``GET /datasets/{name}/map`` says whether the map is ready, stale or missing, with the map job.
* ``GET /datasets/{name}/map/points`` the points as columns (``x``, ``y``, ``id``, ``path``,
  ``label`` and ``split`` codes into ``labels`` and ``splits``).
* ``GET /datasets/{name}/map/colors`` each point's label, split or cluster.

No text query: a dataset's vectors are not searchable by text (no index), and embedding the query
and ranking every image per request is what a project's search is for.
Computing a map is *using* a dataset (as training on it): whoever may read it may start its map job.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from vitrine.dataset_map import dataset_map_colors, dataset_map_points, dataset_map_state
from vitrine.search.map2d import MAX_CLUSTERS, MapParams
from vitrine.server.api.classification import DatasetDep
from vitrine.server.api.maps import MapBody, _json, _known
from vitrine.server.api.responses import errors
from vitrine.server.deps import StateDep, WorkspaceDep
from vitrine.server.security import hide_paths, visible
from vitrine.tasks.map2d import MAP_JOB, dataset_map_target

router = APIRouter(prefix="/api/v1", tags=["2-D map"])

Model = Annotated[str | None, Query(description="embedding model (default: offline-concepts, as the linear probe)")]


def _latest_job(st, name: str, model: str, hidden: tuple[str, ...]):
    jobs = st.jobs.list(target=dataset_map_target(name, model, hidden), kind=MAP_JOB, limit=20)
    mine = set(visible("job", [j.id for j in jobs]))  # another user's job stays theirs (and their view)
    job = next((j for j in jobs if j.id in mine), None)
    return hide_paths(job.to_dict()) if job else None


@router.post(
    "/datasets/{name}/map",
    status_code=202,
    responses=errors(404, 409, 503),
    openapi_extra={"x-vitrine-action": "use"},  # reading a dataset is enough to map it
)
def start_dataset_map(d: DatasetDep, ws: WorkspaceDep, st: StateDep, body: MapBody | None = None):
    """Start the map job: UMAP of the dataset's image embeddings (cosine, seeded; the images not in
    the embeddings cache are embedded first), cached per model and dataset state. Answers the job
    (202); it finishes at once when the cached map is up to date with the same options."""
    body = body or MapBody()
    _known(body.model)
    params = MapParams(body.n_neighbors, body.min_dist, body.n_epochs, body.max_points).checked()
    state = dataset_map_state(ws, d.dataset, body.model, hidden=d.hidden)  # an embedding model, or a 4xx now
    umap = {k: v for k, v in params.to_dict().items() if k != "seed"}
    params_ = {"dataset": d.name, "hidden": list(d.hidden), "model": state["model"], "umap": umap}
    job = st.jobs.submit(MAP_JOB, dataset_map_target(d.name, state["model"], d.hidden), params_)
    return hide_paths(job.to_dict())


@router.get("/datasets/{name}/map", responses=errors(404, 503))
def dataset_map_status(d: DatasetDep, ws: WorkspaceDep, st: StateDep, model: Model = None):
    """Whether the map is ``ready`` (made from the dataset as it is), ``stale`` (made before a
    relabel, an import or a file change) or missing, its summary, and the latest map job the caller may see."""
    _known(model)
    state = dataset_map_state(ws, d.dataset, model, hidden=d.hidden)
    return state | {"job": _latest_job(st, d.name, state["model"], d.hidden)}


@router.get("/datasets/{name}/map/points", responses=errors(404, 409, 503))
def dataset_map_points_route(d: DatasetDep, ws: WorkspaceDep, request: Request, model: Model = None):
    """The up-to-date map's points as columns: ``x``, ``y`` (3 decimals), ``id``, ``path``
    (relative to the dataset's images), ``label`` and ``split`` (codes into ``labels``, ``splits``);
    409 when there is no map yet or the dataset changed since (start the map job)."""
    _known(model)
    return _json(request, dataset_map_points(ws, d.dataset, model, hidden=d.hidden))


@router.get("/datasets/{name}/map/colors", responses=errors(404, 409, 422, 503))
def dataset_map_colors_route(
    d: DatasetDep,
    ws: WorkspaceDep,
    request: Request,
    by: Annotated[Literal["label", "split", "cluster"], Query(description="what colours the points")] = "label",
    clusters: Annotated[int, Query(ge=2, le=MAX_CLUSTERS, description="KMeans clusters of the 2-D points")] = 8,
    model: Model = None,
):
    """Each point's category, in the order of ``/map/points``: ``categories``, ``codes``, ``counts``."""
    _known(model)
    return _json(request, dataset_map_colors(ws, d.dataset, by, model, clusters, hidden=d.hidden))
