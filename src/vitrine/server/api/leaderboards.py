"""The leaderboard of a dataset: ``GET /api/v1/leaderboards/{dataset}``.

The runs of the dataset the caller may read (their own, and those shared with them or public),
ranked in one table per split fingerprint (runs scored on different splits are never ranked
together), with the Pareto front of ms/image against the primary metric marked, as
:func:`vitrine.runs.leaderboard.board` builds it, and each run's owner.

The dataset itself is checked by the one authorization layer (the path parameter ``dataset``): a
member who may not read it gets 404, as if it did not exist. A dataset that exists but has no runs
(or none the caller may read) has an empty board; a name that is neither a dataset of the
workspace nor the dataset of any run is a 404.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request

from vitrine.core.errors import NotFound
from vitrine.core.jsonio import jsonable
from vitrine.runs import list_runs
from vitrine.runs.leaderboard import board
from vitrine.server.deps import WorkspaceDep
from vitrine.server.security import hide_paths, visible

router = APIRouter(prefix="/api/v1", tags=["leaderboards"])


def _owners(request: Request, run_ids: list[str]) -> dict[str, str | None]:
    """The owner of each run (None: single-user mode, or a run without a record: the admins')."""
    store = getattr(getattr(request.app.state, "auth", None), "store", None)
    if store is None:
        return {}
    out = {}
    for run_id in run_ids:
        access = store.access("run", run_id)
        out[run_id] = access.owner if access is not None else None
    return out


@router.get("/leaderboards/{dataset}")
def leaderboard(
    request: Request,
    ws: WorkspaceDep,
    dataset: Annotated[str, Path(description="the dataset whose runs are ranked")],
    task: Annotated[Literal["classify", "detect"] | None, Query(description="one task (default: both)")] = None,
    sort: Annotated[
        str | None,
        Query(
            description="rank by this number: primary (default), latency_ms, images_per_second, parameters, "
            "gflops, weights_bytes, train_seconds or any metric of the runs (ms, sizes: lowest first)"
        ),
    ] = None,
):
    """The runs of ``dataset`` the caller may read, ranked per split fingerprint: ``groups`` (each
    with its ``fingerprint``, ``split``, ``primary_metric`` and ranked ``rows``, ``pareto`` marked),
    ``unranked`` (runs without a fingerprint: recorded before fingerprints, or not evaluated yet),
    ``primary_metric``, ``sort`` and a ``note`` when groups were kept apart."""
    found = [r for r in list_runs(ws) if r.record.get("dataset") == dataset]
    if not found and not ws.dataset_dir(dataset).is_dir():
        raise NotFound(
            f"no dataset {dataset!r}",
            hint="see GET /api/v1/datasets; a board lists the runs of a dataset of the workspace",
        )
    mine = set(visible("run", [r.id for r in found]))
    result = board([r for r in found if r.id in mine], dataset, task=task, sort=sort)
    owners = _owners(request, sorted(mine))
    for row in [row for group in result["groups"] for row in group["rows"]] + result["unranked"]:
        row["owner"] = owners.get(row["id"])
    return hide_paths(jsonable(result))
