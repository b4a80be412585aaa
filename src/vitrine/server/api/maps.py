"""REST API of a project's 2-D map (UMAP of its stored vectors). Thin: each route calls the
project (:meth:`vitrine.project.Project.map2d` and the ``map_*`` methods) and the ``map`` job.

* ``POST /projects/{name}/map`` starts the job (202, the job; it finds the cached map at once when
  the catalog has not changed); follow it at ``/jobs/{id}``.
* ``GET /projects/{name}/map`` says whether the map is ready, stale or missing, with the map job.
* ``GET /projects/{name}/map/points`` the points as columns (``x``, ``y``, ``id``, ``path``,
  ``folder`` codes into ``folders``): coordinates rounded to 3 decimals, 4.7 MB of JSON at 100k
  images, sent gzip-compressed (1 MB) to clients that accept it (``benchmarks/umap_map.py``).
* ``GET /projects/{name}/map/colors`` each point's folder, tag or cluster.
* ``GET /projects/{name}/map/query`` where a text query falls on the map.

Computing a map is *using* a project (like searching it): whoever may read the project may start
its map job, which is theirs.
"""

from __future__ import annotations

import gzip
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from vitrine.models import registry
from vitrine.search.map2d import MAX_CLUSTERS, MAX_POINTS, MIN_DIST, N_NEIGHBORS, MapParams
from vitrine.server.api.responses import errors
from vitrine.server.deps import ProjectDep, StateDep
from vitrine.server.security import hide_paths, visible
from vitrine.tasks.map2d import MAP_JOB, map_target

router = APIRouter(prefix="/api/v1", tags=["2-D map"])

Model = Annotated[str | None, Query(description="embedding model (default: the project's)")]


def _known(model: str | None) -> None:
    if model is not None:
        registry.get(model)  # an unknown name is a 400 before any work


class MapBody(BaseModel):
    """UMAP's options for the map job (every field optional)."""

    model: str | None = Field(None, description="embedding model (default: the project's)")
    n_neighbors: int = Field(N_NEIGHBORS, ge=2, le=200, description="neighbours UMAP keeps: local (low) vs global")
    min_dist: float = Field(MIN_DIST, ge=0.0, le=1.0, description="how tightly points may pack")
    n_epochs: int | None = Field(None, ge=1, le=5000, description="UMAP's epochs (default: umap-learn's)")
    max_points: int = Field(MAX_POINTS, ge=10, le=10_000_000, description="above this, a random subsample is mapped")


def _latest_job(st, name: str, model: str):
    jobs = st.jobs.list(target=map_target(name, model), kind=MAP_JOB, limit=20)
    mine = set(visible("job", [j.id for j in jobs]))  # another user's private job stays theirs
    job = next((j for j in jobs if j.id in mine), None)
    return hide_paths(job.to_dict()) if job else None


def _json(request: Request, data: dict) -> Response:
    """JSON, gzip-compressed for clients that accept it: the points of a big map are columns of
    short numbers that compress about 5 times (4.7 MB to 1 MB at 100k points) in tens of ms."""
    body = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    if len(body) >= 4096 and "gzip" in request.headers.get("accept-encoding", "").lower():
        headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        return Response(gzip.compress(body, compresslevel=1, mtime=0), media_type="application/json", headers=headers)
    return Response(body, media_type="application/json", headers={"Vary": "Accept-Encoding"})


@router.post(
    "/projects/{name}/map",
    status_code=202,
    responses=errors(404, 409, 503),
    openapi_extra={"x-vitrine-action": "use"},  # reading a project is enough to map it
)
def start_map(p: ProjectDep, st: StateDep, body: MapBody | None = None):
    """Start the map job: UMAP of the project's image vectors (cosine, seeded), cached per model
    and catalog generation. Answers the job (202); it finishes at once when the cached map is
    up to date with the same options."""
    body = body or MapBody()
    _known(body.model)
    params = MapParams(body.n_neighbors, body.min_dist, body.n_epochs, body.max_points).checked()
    state = p.map_state(body.model)  # 404 now for a project not indexed, not a failed job
    umap = {k: v for k, v in params.to_dict().items() if k != "seed"}
    job = st.jobs.submit(
        MAP_JOB, map_target(p.name, state["model"]), {"project": p.name, "model": state["model"], "umap": umap}
    )
    return hide_paths(job.to_dict())


@router.get("/projects/{name}/map", responses=errors(404, 503))
def map_status(p: ProjectDep, st: StateDep, model: Model = None):
    """Whether the map is ``ready`` (up to date with the catalog), ``stale`` (made before the last
    change) or missing, its summary (points, total, seconds, note on a subsample), and the latest
    map job the caller may see."""
    _known(model)
    state = p.map_state(model)
    return state | {"job": _latest_job(st, p.name, state["model"])}


@router.get("/projects/{name}/map/points", responses=errors(404, 409, 503))
def map_points(p: ProjectDep, request: Request, model: Model = None):
    """The up-to-date map's points as columns: ``x``, ``y`` (3 decimals), ``id`` (content id),
    ``path`` (relative to images/), ``folder`` (codes into ``folders``); 409 when there is no map
    yet or the catalog changed since it was made (start the map job)."""
    _known(model)
    return _json(request, p.map_points(model))


@router.get("/projects/{name}/map/colors", responses=errors(404, 409, 422, 503))
def map_colors(
    p: ProjectDep,
    request: Request,
    by: Annotated[Literal["folder", "tag", "cluster"], Query(description="what colours the points")] = "folder",
    clusters: Annotated[int, Query(ge=2, le=MAX_CLUSTERS, description="KMeans clusters of the 2-D points")] = 8,
    tag_model: Annotated[str | None, Query(description="only this tagging model's tags")] = None,
    model: Model = None,
):
    """Each point's category, in the order of ``/map/points``: ``categories``, ``codes``, ``counts``."""
    _known(model)
    return _json(request, p.map_colors(by, model=model, clusters=clusters, tag_model=tag_model))


@router.get("/projects/{name}/map/query", responses=errors(404, 409, 503))
def map_query(
    p: ProjectDep,
    q: Annotated[str, Query(min_length=1, max_length=1000, description="free text")],
    k: Annotated[int, Query(ge=1, le=100, description="nearest images that place it")] = 5,
    model: Model = None,
):
    """Where a text query falls: the mean position of its ``k`` best images (a text search),
    weighted by a softmax of their similarities, and those images with their positions."""
    _known(model)
    return p.map_query(q, model=model, k=k)
