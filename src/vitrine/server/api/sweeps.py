"""REST API for sweeps: start one (a background ``sweep`` job owned by its user), list them, read
one (its trials, counts and best trial), cancel one; and the options a sweep may range over, per
task (what the leaderboard page's sweep form offers). Thin: the engine is
:mod:`vitrine.experiments.sweep`, the job :mod:`vitrine.tasks.sweep`.

A sweep is an object of its own for the ownership policy (kind ``sweep``): it belongs to the user
who started it, as do its job and the runs its trials train. The dataset it sweeps on is named in
the request (``dataset``), so the policy checks that the user may use it. The Ray cluster is the
server's (``RAY_ADDRESS`` where the server runs): a request never chooses where code runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from vitrine.core.errors import NotFound, VitrineError
from vitrine.experiments.sweep import FINISHED_TRIALS, Sweep, SweepSpec, describe, list_sweeps
from vitrine.experiments.trainers import TASKS
from vitrine.server.api.responses import errors
from vitrine.server.deps import StateDep, WorkspaceDep
from vitrine.server.security import claim, current, hide_paths, visible
from vitrine.tasks.sweep import SWEEP_JOB
from vitrine.tasks.train_detector import detection_source

router = APIRouter(prefix="/api/v1")


class SweepEnded(VitrineError):
    status = 409
    code = "sweep_ended"


# options that name a file on the server: the command line's to give, never a request's
API_REFUSED_OPTIONS = ("weights",)


# an option's value; integers bounded like every integer the API takes (JSON's safe range)
Value = str | Annotated[int, Field(ge=-(2**53), le=2**53)] | float | bool | None


class SweepRequest(BaseModel):
    """A sweep: a task, a dataset of the workspace and a search space over the trainer's options
    (grid: every value tried; random: drawn ``samples`` times, e.g. ``"loguniform:1e-4:1e-2"``;
    base: the same for every trial)."""

    model_config = ConfigDict(extra="forbid")

    task: Literal["classify", "detect"]
    dataset: str = Field(min_length=1, max_length=200, description="a dataset of the workspace (its name)")
    annotations: str | None = Field(
        None, min_length=1, max_length=500, description="detect: an annotation file or folder inside the dataset folder"
    )
    grid: dict[str, list[Value] | Value] = Field(default_factory=dict)
    random: dict[str, str] = Field(default_factory=dict)
    base: dict[str, Value] = Field(default_factory=dict)
    samples: int = Field(1, ge=1, le=1000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    trial_minutes: float | None = Field(None, gt=0, le=7 * 24 * 60)
    early_stopping: bool = False
    grace_epochs: int = Field(1, ge=1, le=1000)
    cpus_per_trial: int | None = Field(None, ge=1, le=1024)
    gpus_per_trial: float = Field(0.0, ge=0, le=64)
    name: str | None = Field(None, min_length=1, max_length=90, description="the sweep's id (default: made up)")


def _board(d: dict) -> str:
    """The leaderboard the sweep's trials land on: their runs' dataset name (a detection sweep's is
    the name its annotation path goes by, whatever the request called the folder)."""
    if d["task"] == "detect":
        from vitrine.data.detection.convert import dataset_name

        return dataset_name(d["dataset"])
    return d["dataset"]


def _summary(sweep: Sweep) -> dict[str, Any]:
    d = describe(sweep)
    best = d["best"]
    return {
        "id": sweep.id,
        "task": d["task"],
        "dataset": d.get("dataset_name") or d["dataset"],
        "board": _board(d),
        "state": d["state"],
        "trials": len(d["trials"]),
        "counts": d["counts"],
        "primary": d.get("primary"),
        "best": {k: best[k] for k in ("index", "run_id", "metric", "params")} if best else None,
        "owner": d.get("owner"),
        "created_at": d.get("created_at"),
        "updated_at": d.get("updated_at"),
    }


@router.post("/sweeps", status_code=202, responses=errors(409))
def start_sweep(body: SweepRequest, st: StateDep, ws: WorkspaceDep):
    """Start a sweep in a background job; follow it with GET /api/v1/sweeps/{sweep_id} (or the job),
    cancel it with POST /api/v1/sweeps/{sweep_id}/cancel. A bad option, value or dataset is refused
    (400/404) before anything is made."""
    refused = sorted({k for part in (body.grid, body.random, body.base) for k in part} & set(API_REFUSED_OPTIONS))
    if refused:
        raise VitrineError(
            f"option(s) {', '.join(refused)} cannot be set through the API",
            hint="a local weights file is given on the command line (vitrine sweep --set weights=PATH)",
        )
    if body.task == "detect":
        source = str(detection_source(ws, body.dataset, body.annotations))
    else:
        if body.annotations is not None:
            raise NotFound("annotations are for detection sweeps", hint="leave 'annotations' out with task classify")
        if not (ws.dataset_dir(body.dataset) / "dataset.json").is_file():
            raise NotFound(f"no dataset {body.dataset!r}", hint="see GET /api/v1/datasets")
        source = body.dataset
    spec = SweepSpec.build(
        body.task,
        source,
        grid={k: v if isinstance(v, list) else [v] for k, v in body.grid.items()},
        random=body.random,
        base=body.base,
        samples=body.samples,
        seed=body.seed,
        trial_minutes=body.trial_minutes,
        early_stopping=body.early_stopping,
        grace_epochs=body.grace_epochs,
        cpus_per_trial=body.cpus_per_trial,
        gpus_per_trial=body.gpus_per_trial,
        name=body.name,
    )
    auth = current()
    owner = auth.principal.name if auth is not None and auth.principal.id is not None else None
    if owner is not None and auth.runtime.store is not None:  # its trials write runs: the storage quota first
        from vitrine.auth import quota

        quota.service_for(auth.runtime.store.engine, auth.runtime.root).enforce(owner, "a new sweep")
    sweep = Sweep.create(ws, spec)
    sweep.update(owner=owner, dataset_name=body.dataset)  # before the job starts: then its driver alone writes
    claim("sweep", sweep.id)
    for trial in sweep.trials:  # the runs the trials will train are the user's too
        claim("run", trial["run_id"])
    job = st.jobs.submit(SWEEP_JOB, _target(sweep.id), {"sweep_id": sweep.id})
    return hide_paths({"sweep_id": sweep.id, "trials": len(sweep.trials), "job": job.to_dict()})


@router.get("/sweep-options")
def sweep_options():
    """The options a sweep's grid may range over, per task (``classify``, ``detect``): each option
    of the trainer's config with its type, whether it may be none, its default and, where the
    config accepts a fixed list, its ``choices``. Options a request may not set are left out."""
    return {name: task.options(leave_out=API_REFUSED_OPTIONS) for name, task in TASKS.items()}


@router.get("/sweeps")
def sweeps(ws: WorkspaceDep):
    """The sweeps the caller may read, newest first."""
    found = list_sweeps(ws)
    readable = set(visible("sweep", [s.id for s in found]))
    return hide_paths([_summary(s) for s in found if s.id in readable])


@router.get("/sweeps/{sweep_id}")
def sweep_detail(sweep_id: str, ws: WorkspaceDep, st: StateDep):
    """One sweep: its spec, every trial (configuration, run, state, epoch, metric, node), the counts
    per state, the best trial, and its job's state."""
    sweep = Sweep.load(ws, sweep_id)
    out = describe(sweep)
    job = _job(st, sweep)
    out["job"] = {"id": job.id, "state": job.state, "message": job.message} if job is not None else None
    return hide_paths(out)


@router.post("/sweeps/{sweep_id}/cancel", responses=errors(409))
def cancel_sweep(sweep_id: str, ws: WorkspaceDep, st: StateDep):
    """Cancel a sweep: its running trials stop at their next step (keeping a checkpoint), the others
    do not start. 409 when it has already ended."""
    sweep = Sweep.load(ws, sweep_id)
    job = _job(st, sweep)
    active = job is not None and job.state in ("queued", "running")
    if not active and sweep.record.get("state") not in ("created", "running"):
        raise SweepEnded(
            f"sweep {sweep.id} is {sweep.record.get('state')}: nothing to cancel",
            hint="a finished sweep stays as it is; start a new one to try more configurations",
        )
    sweep.request_cancel()
    if active:
        st.jobs.cancel(job.id)
    left = sum(t["state"] not in FINISHED_TRIALS for t in sweep.trials)
    return {"sweep_id": sweep.id, "cancel_requested": True, "unfinished_trials": left}


def _target(sweep_id: str) -> str:
    return f"sweep:{sweep_id}"


def _job(st, sweep: Sweep):
    """The sweep's latest job (None for a sweep started from the command line)."""
    found = st.jobs.list(target=_target(sweep.id), kind=SWEEP_JOB)
    return max(found, key=lambda j: j.created_at) if found else None
