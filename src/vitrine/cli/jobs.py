"""``vitrine jobs list|show|cancel``: the background jobs of a server's database, from the command
line (cancel reaches a job running in the server, which checks the flag within a second), and
``vitrine export-run RUN URL``: copy a run's files (metrics, checkpoints, TensorBoard logs) to a
folder or an object store (``s3://bucket/prefix``) through :mod:`vitrine.store.artifacts`.

Attach them with ``register(app)``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from vitrine.cli._console import JsonOpt, err, fail, out
from vitrine.core.errors import VitrineError

RootOpt = Annotated[
    Path | None,
    typer.Option("--root", "-w", help="the folder the server serves (default: VITRINE_HOME or the current folder)"),
]

jobs_app = typer.Typer(help="Background jobs (indexing, training, evaluation) of the server database.")


def _manager(root: Path | None):
    from vitrine.jobs.manager import JobManager
    from vitrine.store.db import database_url, open_database

    return JobManager(open_database(database_url(root)), pool=False)


def _ago(t: float | None) -> str:
    if not t:
        return ""
    s = max(0, int(time.time() - t))
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago"


@jobs_app.command("list")
def list_jobs(
    root: RootOpt = None,
    state: Annotated[str | None, typer.Option(help="only jobs in this state (queued, running, done, …)")] = None,
    kind: Annotated[str | None, typer.Option(help="only jobs of this kind (index, train, …)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    owner: Annotated[str | None, typer.Option(help="only jobs of this user (multi-user servers)")] = None,
    as_json: JsonOpt = False,
):
    """The jobs, newest first, with their owners (empty: the local user or the admins)."""
    try:
        jobs = _manager(root).list(kind=kind, states=(state,) if state else None, limit=limit, owner=owner)
    except VitrineError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps([j.to_dict() for j in jobs], indent=2, default=str) + "\n")
        return
    owners = any(j.owner for j in jobs)  # a multi-user server's jobs: who started each
    table = Table(
        Column("id", no_wrap=True),
        "kind",
        "target",
        *(["owner"] if owners else []),
        "state",
        "progress",
        "created",
        "message",
    )
    for j in jobs:
        progress = f"{j.stage} {j.done}/{j.total}" if j.total else j.stage
        cells = [j.id, j.kind, j.target, *([j.owner or ""] if owners else []), j.state, progress]
        table.add_row(*cells, _ago(j.created_at), (j.message or "")[:60])
    out.print(table)


@jobs_app.command("show")
def show_job(job_id: str, root: RootOpt = None):
    """Everything about one job (JSON)."""
    try:
        job = _manager(root).get(job_id)
    except VitrineError as exc:
        fail(exc)
    sys.stdout.write(json.dumps(job.to_dict(), indent=2, default=str) + "\n")


@jobs_app.command("cancel")
def cancel_job(job_id: str, root: RootOpt = None):
    """Cancel a job: a queued one at once, a running one at its next check."""
    try:
        job = _manager(root).cancel(job_id)
    except VitrineError as exc:
        fail(exc)
    err.print(f"job {job.id} ({job.kind} {job.target}): {job.state}" + (f" · {job.message}" if job.message else ""))


def export_run(
    run_id: Annotated[str, typer.Argument(help="the run to export (see `vitrine runs`)")],
    url: Annotated[str, typer.Argument(help="where to: a folder, or s3://bucket/prefix")],
    root: RootOpt = None,
    checkpoints: Annotated[bool, typer.Option("--checkpoints/--no-checkpoints", help="copy checkpoints/")] = True,
    tensorboard: Annotated[bool, typer.Option("--tensorboard/--no-tensorboard", help="copy tb/")] = True,
):
    """Copy a run's files (run.json, metrics, checkpoints, TensorBoard logs) to URL/RUN/."""
    from vitrine.core.workspace import Workspace
    from vitrine.store.artifacts import ArtifactStore, export_tree

    try:
        ws = Workspace(root)
        run_dir = ws.run_dir(run_id)
        if not (run_dir / "run.json").is_file():
            names = ws.run_ids()
            raise VitrineError(f"no run {run_id!r} in {ws.root}", hint="runs here: " + (", ".join(names) or "none"))
        skip = ([] if checkpoints else ["checkpoints"]) + ([] if tensorboard else ["tb"])
        store = ArtifactStore(url)
        keys = export_tree(run_dir, store, run_id, skip=skip)
    except VitrineError as exc:
        fail(exc)
    except OSError as exc:
        fail(VitrineError(f"cannot write to {url}: {exc}", hint="check the destination and its credentials"))
    err.print(f"exported {len(keys)} files of run {run_id} to {store.url_for(run_id)}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    app.command("export-run")(export_run)
