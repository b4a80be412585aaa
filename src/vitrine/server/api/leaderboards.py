"""The leaderboard of a dataset: ``GET /api/v1/leaderboards/{dataset}``.

The runs of the dataset the caller may read (their own, and those shared with them or public),
ranked in one table per split fingerprint (runs scored on different splits are never ranked
together), with the Pareto front of ms/image against the primary metric marked, as
:func:`vitrine.runs.leaderboard.board` builds it, and each run's owner.

A board is a workspace dataset, which the caller must be allowed to read (404 as if it did not
exist, otherwise), or only the name runs were scored on (an imported detector evaluated on a COCO
file, a detection folder), which exists for the caller through the runs they may read
(:func:`vitrine.server.deps.board_runs`). A dataset without runs has an empty board.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request

from vitrine.core.jsonio import jsonable
from vitrine.runs.leaderboard import board as rank_board
from vitrine.server.api.responses import errors
from vitrine.server.deps import WorkspaceDep, board_runs
from vitrine.server.security import hide_paths

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


@router.get("/leaderboards/{board}", responses=errors(404))
def leaderboard(
    request: Request,
    ws: WorkspaceDep,
    board: Annotated[str, Path(description="the dataset whose runs are ranked")],
    task: Annotated[
        Literal["classify", "detect", "embedding"] | None, Query(description="one task (default: all)")
    ] = None,
    sort: Annotated[
        str | None,
        Query(
            description="rank by this number: primary (default), latency_ms, images_per_second, parameters, "
            "gflops, weights_bytes, train_seconds or any metric of the runs (ms, sizes: lowest first)"
        ),
    ] = None,
):
    """The runs of the dataset the caller may read, ranked per split fingerprint: ``groups`` (each
    with its ``fingerprint``, ``split``, ``primary_metric`` and ranked ``rows``, ``pareto`` marked),
    ``unranked`` (runs without a fingerprint: recorded before fingerprints, or not evaluated yet),
    ``primary_metric``, ``sort`` and a ``note`` when groups were kept apart."""
    runs = board_runs(ws, board)
    result = rank_board(runs, board, task=task, sort=sort)
    owners = _owners(request, sorted(r.id for r in runs))
    for row in [row for group in result["groups"] for row in group["rows"]] + result["unranked"]:
        row["owner"] = owners.get(row["id"])
    return hide_paths(jsonable(result))
