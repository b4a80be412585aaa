"""``vitrine runs`` and ``vitrine tensorboard``: the runs of a workspace, and their TensorBoard logs.

vitrine runs [--json]
vitrine tensorboard [RUN] [--port 6006] [--launch]
"""

from __future__ import annotations

import shlex
import subprocess
from typing import Annotated

import typer

from vitrine.cli._console import JsonOpt, emit_json, err, guard, out
from vitrine.cli._runs import WorkspaceOpt, evaluation_of, fmt, tensorboard_argv, workspace_of

# ------------------------------------------------------------------------------------------------
# vitrine runs


def run_rows(ws) -> list[dict]:
    from vitrine.runs import list_runs

    rows = []
    for run in list_runs(ws):
        r = run.record
        ev = evaluation_of(r)
        rows.append(
            {
                "id": run.id,
                "kind": r.get("kind"),
                "dataset": r.get("dataset"),
                "model": r.get("model"),
                "state": r.get("state"),
                "accuracy": ev.get("accuracy"),
                "macro_f1": ev.get("macro_f1"),
                "box_map50": ev.get("bbox_map50"),
                "mask_map50": ev.get("segm_map50"),
                "evaluated_on": ev.get("split"),
                "progress": r.get("progress") or {},
                "created_at": r.get("created_at"),
            }
        )
    return rows


def runs(workspace: WorkspaceOpt = None, as_json: JsonOpt = False):
    """List the training runs of the workspace (newest first) with their scores."""
    from rich.table import Table

    with guard():
        rows = run_rows(workspace_of(workspace))
    if as_json:
        emit_json(rows)
        return
    if not rows:
        out.print("no runs yet: train one with `vitrine train DATASET`")
        return
    table = Table(title="runs")
    detectors = any(r["kind"] in ("detection", "segmentation") for r in rows)
    classifiers = any(r["kind"] not in ("detection", "segmentation") for r in rows)
    scores = ("accuracy", "macro F1") * classifiers + ("box AP50", "mask AP50") * detectors
    # a run id is what one copies into the next command: never wrapped nor cut; the rest folds
    table.add_column("id", no_wrap=True, min_width=max(len(r["id"]) for r in rows))
    for col in ("kind", "dataset", "model", "state", *scores):
        table.add_column(col, justify="right" if col in scores else "left", overflow="fold")
    colours = {"done": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}
    for row in rows:
        state = row["state"] or "-"
        acc = fmt(row["accuracy"], 4) + (
            f" ({row['evaluated_on']})" if row["evaluated_on"] not in (None, "test") else ""
        )
        table.add_row(
            row["id"],
            row["kind"] or "-",
            row["dataset"] or "-",
            row["model"] or "-",
            f"[{colours.get(state, 'white')}]{state}[/]",
            *((acc, fmt(row["macro_f1"], 4)) * classifiers),
            *((fmt(row["box_map50"], 3), fmt(row["mask_map50"], 3)) * detectors),
        )
    out.print(table)


# ------------------------------------------------------------------------------------------------
# vitrine tensorboard


def tensorboard(
    run_id: Annotated[str | None, typer.Argument(help="one run (default: every run of the workspace)")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 6006,
    host: Annotated[str, typer.Option(help="interface TensorBoard listens on")] = "127.0.0.1",
    launch: Annotated[bool, typer.Option("--launch", help="start TensorBoard now (Ctrl-C stops it)")] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
):
    """Show how to open the training curves in TensorBoard, or (--launch) open them."""
    from vitrine.core.errors import NotFound
    from vitrine.runs import Run

    with guard():
        ws = workspace_of(workspace)
        if run_id:
            logdir = Run.load(ws, run_id).tensorboard_dir
        else:
            logdir = ws.runs_dir
        if not logdir.is_dir():
            raise NotFound(
                f"no TensorBoard logs at {logdir}", hint="they are written by `vitrine train --method finetune`"
            )
    command = shlex.join(tensorboard_argv(logdir, port, host, short=True))
    url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}/"
    if as_json and not launch:
        emit_json({"logdir": str(logdir), "command": command, "url": url})
        return
    out.print(command, highlight=False, soft_wrap=True)
    err.print(f"then open {url}", highlight=False)
    if launch:
        argv = tensorboard_argv(logdir, port, host)
        err.print(f"starting TensorBoard on {url} (Ctrl-C stops it)", highlight=False)
        try:
            code = subprocess.call(argv)
        except KeyboardInterrupt:
            code = 0
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``runs`` and ``tensorboard`` to the ``vitrine`` app."""
    app.command("runs")(runs)
    app.command("tensorboard")(tensorboard)
