"""REST API for browsing a classification run's errors: the images of one confusion-matrix cell
(true class A, predicted B) with their predicted probabilities, read from the run's
``predictions.csv`` (:mod:`vitrine.evaluate.predictions`, written when the run is evaluated).

Who sees what: the run is checked by the ownership policy like every ``/runs/{run_id}`` route; its
dataset, which the request does not name, is checked here (reading it), and a dataset's hidden
split (:mod:`vitrine.data.board`) stays hidden: only the dataset's owner and admins get the
predictions of a run scored on it, whoever owns the run (a member's own run or submission scored
on the hidden split would otherwise show its images' paths and true labels), and a run scored on
every split (``all``) shows members only the images of their view of the dataset. A group board
(:func:`vitrine.server.deps.board_runs`) shows its readers every run's scores, not its images: a
run's predictions follow the run's own policy (the caller's runs, the ones shared with them, public).

A run evaluated before predictions were kept is evaluated again by ``POST /runs/{id}/evaluate``
(the ``evaluate-run`` job, :mod:`vitrine.tasks.evaluate_run`): the run's owner's
to start, as it rewrites the run's report.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from vitrine.auth.policy import Forbidden
from vitrine.core.errors import NotFound, VitrineError
from vitrine.core.jsonio import read_json
from vitrine.evaluate.predictions import PREDICTIONS_FILE, cell, read_predictions
from vitrine.runs import CLASSIFICATION_RUN_KINDS, DETECTION_RUN_KINDS, SUBMISSION_KIND
from vitrine.server.api.classification import CacheDep, loaded_dataset
from vitrine.server.api.responses import MAX_INT, errors
from vitrine.server.deps import RunDep, StateDep, WorkspaceDep
from vitrine.server.security import hide_paths, may, require

router = APIRouter(prefix="/api/v1", tags=["error browsing"])


class NoPredictions(NotFound):
    """A run with no predictions.csv: evaluated before they were kept, or a submission."""

    code = "no_predictions"


Class = Annotated[str | None, Query(min_length=1, max_length=300)]


@lru_cache(maxsize=4)
def _rows(run_dir: str, _size: int, _mtime_ns: int) -> tuple:
    """A run's predictions, read once per version of the file (10k rows: about 90 ms to read)."""
    return tuple(read_predictions(Path(run_dir)))


def _split_of(run) -> str | None:
    metrics = read_json(run.dir / "metrics.json") or {}
    split = metrics.get("split") if isinstance(metrics, dict) else None
    return split if isinstance(split, str) else None


def _visible_paths(ws, run, split: str | None, c) -> set[str] | None:
    """The sample paths of the run's dataset the caller may see (None: all of them). The dataset
    must be readable by the caller; a run scored on a hidden split is refused to members, and one
    scored on every split (``all``) shows them only the images of the others."""
    name = run.record.get("dataset")
    if not isinstance(name, str) or name not in ws.dataset_names():
        return None  # a dataset removed since: nothing of it can be shown (thumbnails 404 too)
    require("dataset", name)
    from vitrine.data.board import read_board

    board = read_board(ws, name)
    if not board.hidden or may("dataset", name, "manage"):
        return None
    if board.is_hidden(split):
        raise Forbidden(
            f"the {split} split of dataset {name!r} is hidden: its images and labels are for the dataset's owner",
            hint="the run's scores are on its leaderboard; its per-image predictions are not shown to members",
        )
    return set(loaded_dataset(name, ws, c).by_path)  # the member's view: without the hidden splits


@router.get("/runs/{run_id}/predictions", responses=errors(400, 403, 404, 422))
def run_predictions(
    run: RunDep,
    ws: WorkspaceDep,
    c: CacheDep,
    true: Class = None,
    predicted: Class = None,
    sort: Annotated[
        Literal["confidence", "p_true", "name"],
        Query(description="confidence: most probable prediction first; p_true: least probable true class first"),
    ] = "confidence",
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
):
    """The images a classification run was evaluated on, with their true and predicted class, the
    probability of the true class and the three most likely classes: those of one confusion-matrix
    cell with ``true`` and ``predicted`` (either may be left out), sorted and paged. ``total`` is
    the cell's size. A run evaluated before per-image predictions were kept answers 404
    ``no_predictions``: evaluate it again (``vitrine eval RUN_ID --split SPLIT``)."""
    kind = run.record.get("kind")
    if kind in DETECTION_RUN_KINDS:
        raise VitrineError(
            f"run {run.id!r} is a {kind} run: it has no confusion matrix of classes",
            hint=f"its errors are on its page, /detection/runs/{run.id}",
        )
    split = _split_of(run)
    visible = _visible_paths(ws, run, split, c)
    try:
        st = (run.dir / PREDICTIONS_FILE).stat()
    except OSError:
        st = None
    if st is None:
        raise NoPredictions(
            f"run {run.id!r} has no per-image predictions"
            + (
                ": a submission is scored from its file, which keeps no probabilities"
                if kind == SUBMISSION_KIND
                else " (it was evaluated before they were kept, or not evaluated yet)"
            ),
            hint=None
            if kind == SUBMISSION_KIND
            else f"evaluate it again: `vitrine eval {run.id} --split {split or 'test'}` "
            f"(or POST /api/v1/runs/{run.id}/evaluate)",
        )
    rows = list(_rows(str(run.dir), st.st_size, st.st_mtime_ns))
    if visible is not None:
        rows = [r for r in rows if r.path in visible]
    classes = list(run.record.get("classes") or sorted({r.true for r in rows} | {r.predicted for r in rows}))
    for name, value in (("true", true), ("predicted", predicted)):
        if value is not None and value not in classes:
            raise VitrineError(
                f"{name}={value!r} is not a class of run {run.id!r}",
                hint="its classes: " + ", ".join(classes[:50]) + (" …" if len(classes) > 50 else ""),
            )
    total, page = cell(rows, true, predicted, sort, offset, limit)
    return hide_paths(
        {
            "run": run.id,
            "dataset": run.record.get("dataset"),
            "split": split,
            "classes": classes,
            "true": true,
            "predicted": predicted,
            "sort": sort,
            "total": total,
            "offset": offset,
            "limit": limit,
            "images": [p.to_dict() for p in page],
        }
    )


class EvaluateBody(BaseModel):
    """Which split of the run's dataset to evaluate on."""

    split: Literal["test", "val", "train", "all"] | None = Field(
        None, description="default: the split the run was last evaluated on, else test"
    )


@router.post("/runs/{run_id}/evaluate", status_code=202, responses=errors(400, 403, 404, 422))
def evaluate_again(run: RunDep, ws: WorkspaceDep, st: StateDep, c: CacheDep, body: EvaluateBody | None = None):
    """Evaluate a classification run again on a split of its dataset, in a background job
    (``evaluate-run``; follow it with GET /api/v1/jobs/{job_id}): its report is rewritten
    and each image's prediction kept, for browsing its errors. For the run's owner (it changes the
    run); a member may not evaluate on a split of the dataset that is hidden from them."""
    from vitrine.tasks.evaluate_run import EVALUATE_RUN_JOB

    kind = run.record.get("kind")
    if kind not in CLASSIFICATION_RUN_KINDS:
        raise VitrineError(
            f"run {run.id!r} is a {kind} run: only a trained classifier is evaluated again",
            hint="a submission is scored once from its file; a detector with `vitrine eval --model`",
        )
    if run.record.get("state") != "done":
        raise VitrineError(
            f"run {run.id!r} is {run.record.get('state')}: only a finished run is evaluated",
            hint="wait for it to finish",
        )
    split = (body.split if body else None) or _split_of(run) or "test"
    name = run.record.get("dataset")
    if not isinstance(name, str) or name not in ws.dataset_names():
        raise NotFound(f"run {run.id!r}: its dataset {name!r} is not in the workspace", hint="import it again")
    if split != "all":
        _visible_paths(ws, run, split, c)  # the dataset readable, the split not hidden from the caller
    else:
        require("dataset", name)
        from vitrine.data.board import read_board

        if read_board(ws, name).hidden and not may("dataset", name, "manage"):
            raise Forbidden(
                f"dataset {name!r} has a hidden split: evaluating on every split would score on it",
                hint="evaluate on train or val",
            )
    dataset = loaded_dataset(name, ws, c).dataset
    if split != "all" and not dataset.split(split):
        raise VitrineError(
            f"dataset {name!r} has no {split!r} samples", hint="evaluate on another split, e.g. {'split': 'test'}"
        )
    job = st.jobs.submit(EVALUATE_RUN_JOB, f"run:{run.id}", {"run": run.id, "split": split})
    return job.to_dict()
