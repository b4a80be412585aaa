"""``vitrine sweep`` and ``vitrine sweeps``: configuration sweeps on Ray Tune, from the command line.

vitrine sweep DATASET --task classify|detect --grid KEY=V1,V2 [--grid ...] [--random KEY=DIST]
              [--samples N] [--seed N] [--set KEY=VALUE] [--trial-minutes M] [--early-stopping]
              [--grace-epochs N] [--cpus-per-trial N] [--gpus-per-trial N] [--ray-address ADDR]
              [--name ID] [--json]
vitrine sweep --file sweep.yaml [options that override the file's]
vitrine sweep --resume ID
vitrine sweeps [ID] [--json]

Progress (one row per trial: state, epoch, metric) goes to stderr; Ctrl-C cancels the sweep
cleanly (running trials stop at their next step and keep a checkpoint) and says how to resume.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from vitrine.cli._console import JsonOpt, emit_json, err, guard, out, show_progress
from vitrine.cli._runs import WorkspaceOpt, fmt, workspace_of
from vitrine.core.errors import Cancelled, VitrineError

STATE_COLOURS = {
    "done": "green",
    "failed": "red",
    "cancelled": "yellow",
    "stopped": "yellow",
    "running": "cyan",
    "pending": "white",
    "created": "white",
}


def _params(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "-"


def trials_table(record: dict, title: str | None = None):
    """The trials of a sweep as a Rich table: index, run, the varied options, state, epoch, metric."""
    from rich.table import Table

    primary = record.get("primary") or "metric"
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("run", no_wrap=True)
    table.add_column("config", overflow="fold")
    table.add_column("state")
    table.add_column("epoch", justify="right")
    table.add_column(primary, justify="right")
    table.add_column("node", overflow="fold")
    for t in record["trials"]:
        colour = STATE_COLOURS.get(t["state"], "white")
        epoch = f"{t['epoch']}" + (f"/{t['epochs']}" if t.get("epochs") else "") if t.get("epoch") else "-"
        table.add_row(
            str(t["index"]),
            t["run_id"],
            _params(t.get("params") or {}),
            f"[{colour}]{t['state']}[/]",
            epoch,
            fmt(t.get("metric"), 4),
            (t.get("node") or "-")[:12],
        )
    return table


def _progress_title(record: dict) -> str:
    counts: dict[str, int] = {}
    for t in record["trials"]:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    said = ", ".join(f"{n} {state}" for state, n in counts.items())
    return f"sweep {record['id']} ({record['task']} on {Path(record['dataset']).name}): {said}"


def sweep(
    dataset: Annotated[
        str | None, typer.Argument(help="a workspace dataset (classify) or an annotation file or folder (detect)")
    ] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="classify or detect")] = None,
    grid: Annotated[
        list[str] | None, typer.Option("--grid", help="OPTION=V1,V2,...: every value is tried (repeatable)")
    ] = None,
    random: Annotated[
        list[str] | None,
        typer.Option("--random", help="OPTION=DIST: drawn per sample, e.g. lr=loguniform:1e-4:1e-2 (repeatable)"),
    ] = None,
    samples: Annotated[int | None, typer.Option(min=1, help="random draws (each crossed with the grid)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the random draws")] = None,
    base: Annotated[
        list[str] | None, typer.Option("--set", help="OPTION=VALUE for every trial, e.g. epochs=10 (repeatable)")
    ] = None,
    trial_minutes: Annotated[float | None, typer.Option(help="each trial's training budget in minutes")] = None,
    early_stopping: Annotated[
        bool | None, typer.Option("--early-stopping/--no-early-stopping", help="stop bad trials early (ASHA)")
    ] = None,
    grace_epochs: Annotated[int | None, typer.Option(min=1, help="epochs before ASHA may stop a trial")] = None,
    cpus_per_trial: Annotated[
        int | None, typer.Option(min=1, help="CPUs per trial (default: all of them, one trial at a time)")
    ] = None,
    gpus_per_trial: Annotated[float | None, typer.Option(min=0, help="GPUs per trial")] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="a Ray cluster (host:port); default $RAY_ADDRESS, else a local Ray")
    ] = None,
    name: Annotated[str | None, typer.Option(help="the sweep's id (default: made up)")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="a sweep YAML file (command-line options override it)")
    ] = None,
    resume: Annotated[str | None, typer.Option(help="go on with sweep ID (finished trials are kept)")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
):
    """Sweep trainer options (grid and random search) on Ray Tune: every trial an ordinary run."""
    from vitrine.experiments.sweep import Sweep, SweepSpec

    options = {
        "trial_minutes": trial_minutes,
        "early_stopping": early_stopping,
        "grace_epochs": grace_epochs,
        "cpus_per_trial": cpus_per_trial,
        "gpus_per_trial": gpus_per_trial,
        "name": name,
    }
    with guard():
        ws = workspace_of(workspace)
        if resume:
            given = [flag for flag, v in (("DATASET", dataset), ("--file", file), ("--grid", grid),
                     ("--random", random), ("--set", base), ("--task", task)) if v]  # fmt: skip
            if given:
                raise VitrineError(
                    f"--resume goes on with the sweep as it was made: {', '.join(given)} cannot change it",
                    hint=f"run `vitrine sweep --resume {resume}` alone, or start a new sweep",
                )
            record = Sweep.load(ws, resume)
        else:
            search = {"grid": grid or None, "random": random or None, "base": base or None}
            counts = {"samples": samples, "seed": seed}
            if file is not None:
                spec = SweepSpec.from_yaml(file, task=task, dataset=dataset, **search, **counts, **options)
            else:
                if not dataset or not task:
                    raise VitrineError(
                        "a sweep needs a DATASET and --task (or --file sweep.yaml, or --resume ID)",
                        hint="e.g. vitrine sweep flowers --task classify --grid image_size=160,224 --set epochs=5",
                    )
                given = {k: v for k, v in {**counts, **options}.items() if v is not None}
                spec = SweepSpec.build(task, dataset, **search, **given)
            record = Sweep.create(ws, spec)
    _drive(ws, record, ray_address, as_json)


def _drive(ws, sweep, ray_address: str | None, as_json: bool) -> None:
    """Run the sweep (its Ray driver in a child process, out of the terminal's reach) with a live
    table of its trials on stderr; Ctrl-C cancels it cleanly and exits 130."""
    from vitrine.experiments.sweep import describe
    from vitrine.tasks.sweep import drive

    live = None
    if show_progress():
        from rich.live import Live

        live = Live(trials_table(sweep.record, _progress_title(sweep.record)), console=err, auto_refresh=False)
    latest = {"sweep": sweep}

    def progress(s) -> None:
        latest["sweep"] = s
        if live is not None:
            live.update(trials_table(s.record, _progress_title(s.record)), refresh=True)

    def on_interrupt() -> None:
        err.print("[yellow]cancelling[/]: the running trials stop at their next step…", highlight=False)

    workspace_flag = f" --workspace {ws.root}" if Path(ws.root).resolve() != Path.cwd().resolve() else ""
    resume_hint = f"vitrine sweep --resume {sweep.id}{workspace_flag}"
    if live is not None:
        live.start()
    try:
        done = drive(ws, sweep, ray_address=ray_address, progress=progress, on_interrupt=on_interrupt)
    except (Cancelled, KeyboardInterrupt):
        if live is not None:
            live.stop()
        record = latest["sweep"].record
        left = sum(t["state"] not in ("done", "stopped", "failed") for t in record["trials"])
        err.print(
            f"[yellow]interrupted[/]: sweep {sweep.id} cancelled, {left} trial(s) not finished; "
            f"resume it with `{resume_hint}`",
            soft_wrap=True,
            highlight=False,
        )
        if as_json:
            emit_json(describe(latest["sweep"]))
        raise typer.Exit(130) from None
    except VitrineError as exc:
        if live is not None:
            live.stop()
        with guard():
            raise exc from None
    if live is not None:
        live.stop()
    summary = describe(done)
    if as_json:
        emit_json(summary)
        return
    if live is None:
        out.print(trials_table(done.record, _progress_title(done.record)))
    best = summary["best"]
    if best is not None:
        out.print(
            f"best: trial {best['index']} (run {best['run_id']}) {done.record['primary']} {best['metric']:.4f} "
            f"with {_params(best['params'])}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        out.print("no trial finished with a score", highlight=False)


def sweep_rows(ws) -> list[dict]:
    from vitrine.experiments.sweep import describe, list_sweeps

    rows = []
    for s in list_sweeps(ws):
        d = describe(s)
        best = d["best"]
        rows.append(
            {
                "id": s.id,
                "task": d["task"],
                "dataset": d["dataset"],
                "state": d["state"],
                "trials": len(d["trials"]),
                "counts": d["counts"],
                "primary": d.get("primary"),
                "best": {
                    "index": best["index"],
                    "run_id": best["run_id"],
                    "metric": best["metric"],
                    "params": best["params"],
                }
                if best
                else None,  # fmt: skip
                "owner": d.get("owner"),
                "created_at": d.get("created_at"),
            }
        )
    return rows


def sweeps(
    sweep_id: Annotated[str | None, typer.Argument(help="one sweep: show its trials")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
):
    """List the sweeps of the workspace (newest first), or the trials of one."""
    from rich.table import Table

    from vitrine.experiments.sweep import Sweep, describe

    with guard():
        ws = workspace_of(workspace)
        if sweep_id:
            record = describe(Sweep.load(ws, sweep_id))
        else:
            rows = sweep_rows(ws)
    if sweep_id:
        if as_json:
            emit_json(record)
        else:
            out.print(trials_table(record, _progress_title(record)))
        return
    if as_json:
        emit_json(rows)
        return
    if not rows:
        out.print("no sweeps yet: start one with `vitrine sweep DATASET --task classify --grid OPTION=A,B`")
        return
    table = Table(title="sweeps")
    table.add_column("id", no_wrap=True, min_width=max(len(r["id"]) for r in rows))
    for col in ("task", "dataset", "state", "trials", "done", "best", "created"):
        table.add_column(col, justify="right" if col in ("trials", "done", "best") else "left", overflow="fold")
    for r in rows:
        best = r["best"]
        table.add_row(
            r["id"],
            r["task"],
            Path(r["dataset"]).name,
            f"[{STATE_COLOURS.get(r['state'], 'white')}]{r['state']}[/]",
            str(r["trials"]),
            str(r["counts"].get("done", 0)),
            f"{r['primary']} {best['metric']:.4f} (#{best['index']})" if best else "-",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_at"])) if r["created_at"] else "-",
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``sweep`` and ``sweeps`` to the ``vitrine`` app."""
    app.command("sweep")(sweep)
    app.command("sweeps")(sweeps)
