"""``vitrine leaderboard``: the runs of one dataset ranked, one table per split fingerprint.

vitrine leaderboard DATASET [--task classify|detect|embedding] [--sort METRIC] [--json] [--csv FILE|-]

Runs scored on different splits (another split, or the dataset changed) are never ranked together:
each fingerprint gets its own table. A table shows the rank, the run, its architecture and size,
the primary metric (accuracy; box mAP@.5 for detectors), ms/image at batch 1 and images/s at a
batch (the one speed harness), parameters, GFLOPs, and ``*`` on the Pareto front of speed against
the primary metric. Run ids are never cut: where they do not fit the terminal beside the numbers,
they are listed under the table by rank.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from vitrine.cli._console import JsonOpt, emit_json, err, guard, out
from vitrine.cli._runs import WorkspaceOpt, duration, fmt, workspace_of

CSV_FIELDS = (
    "fingerprint",
    "task",
    "split",
    "rank",
    "pareto",
    "id",
    "kind",
    "arch",
    "size",
    "state",
    "primary_metric",
    "primary",
    "latency_ms",
    "images_per_second",
    "parameters",
    "gflops",
    "weights_bytes",
    "train_seconds",
    "device",
    "threads",
    "load_average",
    "metrics",
    "config",
)


def _count(value) -> str:
    """1234567 → 1.2M, 12345 → 12.3k."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return str(int(value))


def _number(value, digits: int) -> str:
    return fmt(float(value), digits) if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def csv_rows(board: dict) -> list[dict]:
    """One CSV row per run of the board (ranked groups first, then the unranked runs)."""
    rows = []
    for row in [r for g in board["groups"] for r in g["rows"]] + board["unranked"]:
        speed = row.get("speed") or {}
        flat = {k: row.get(k) for k in CSV_FIELDS}
        flat.update(
            device=speed.get("device"),
            threads=speed.get("threads"),
            load_average=speed.get("load_average"),
            metrics=json.dumps(row.get("metrics") or {}, sort_keys=True),
            config=json.dumps(row.get("config") or {}, sort_keys=True, default=str),
        )
        rows.append(flat)
    return rows


def write_csv(board: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
    writer.writeheader()
    for row in csv_rows(board):
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def _table(group: dict, with_ids: bool, arch_width: int):
    from rich import box
    from rich.table import Table

    primary = group["primary_metric"]
    title = f"{group['task']} · {group['split'] or '?'} split {group['fingerprint']} · {group['runs']} run(s)"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    if with_ids:
        table.add_column("run", no_wrap=True)
    table.add_column("arch size", overflow="fold", min_width=arch_width)
    for col in (primary, "ms b1", "img/s", "params", "GFLOPs"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("P", justify="center", no_wrap=True)
    for row in group["rows"]:
        arch = " ".join(str(p) for p in (row.get("arch"), row.get("size")) if p) or "-"
        table.add_row(
            str(row["rank"]) if row["rank"] is not None else "-",
            *((row["id"],) if with_ids else ()),
            arch,
            _number(row.get("primary"), 4),
            _number(row.get("latency_ms"), 1),
            _number(row.get("images_per_second"), 1),
            _count(row.get("parameters")),
            _number(row.get("gflops"), 2),
            "*" if row.get("pareto") else "",
        )
    return table


def _fits(table, ids: list[str]) -> bool:
    """Whether ``table`` renders inside the terminal, no column cut, every run id whole on a line."""
    from rich.console import Console

    probe = Console(width=out.width, file=io.StringIO(), color_system=None, legacy_windows=False)
    with probe.capture() as captured:
        probe.print(table)
    lines = captured.get().splitlines()
    header = next((line for line in lines if "GFLOPs" in line), "")
    if not header.rstrip().endswith(" P") or any("…" in line for line in lines):
        return False  # a column cut at the terminal's edge, or a number shortened
    return all(any(i in line for line in lines) for i in ids)


def _layout(group: dict):
    """The first table that fits: with the run ids and the architecture names whole, then without
    the ids (listed under the table), then with the names folded."""
    ids = [row["id"] for row in group["rows"]]
    longest = min(20, max(4, *(len(str(row.get("arch") or "")) for row in group["rows"])))
    for with_ids, width in ((True, longest), (False, longest), (False, 4)):
        table = _table(group, with_ids, width)
        if _fits(table, ids if with_ids else []):
            return table, with_ids
    return table, False


def print_board(board: dict) -> None:
    if not board["groups"] and not board["unranked"]:
        what = f"{board['task']} runs" if board["task"] else "runs"
        out.print(f"no {what} of dataset {board['dataset']!r} yet: train one with `vitrine train`", highlight=False)
        return
    for group in board["groups"]:
        table, with_ids = _layout(group)
        out.print(table)
        if with_ids:
            continue
        for row in group["rows"]:  # the ids, whole, under the table
            rank = str(row["rank"]) if row["rank"] is not None else "-"
            out.print(f"{rank:>3}  {row['id']}", highlight=False, soft_wrap=True)
        out.print()
    if board["note"]:
        err.print(f"[yellow]note:[/] {board['note']}", highlight=False, soft_wrap=True)
    if board["unranked"]:
        err.print(
            f"{len(board['unranked'])} run(s) not ranked (no split fingerprint: recorded before fingerprints "
            "existed, or not evaluated yet):",
            highlight=False,
            soft_wrap=True,
        )
        for row in board["unranked"]:
            out.print(f"  {row['id']}  {row.get('state') or '-'}", highlight=False, soft_wrap=True)
    seconds = [r.get("train_seconds") for g in board["groups"] for r in g["rows"] if r.get("train_seconds")]
    if seconds:
        err.print(f"training time of the ranked runs: {duration(sum(seconds))}", highlight=False)


TaskOpt = Annotated[
    str | None, typer.Option("--task", help="classify, detect or embedding (default: all, in separate tables)")
]


def leaderboard(
    dataset: Annotated[str, typer.Argument(help="the dataset whose runs are ranked")],
    task: TaskOpt = None,
    sort: Annotated[
        str | None,
        typer.Option("--sort", help="rank by this number (default: the primary metric; ms, params: lowest first)"),
    ] = None,
    csv_to: Annotated[str | None, typer.Option("--csv", help="write every row as CSV to FILE ('-': stdout)")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
):
    """Rank the runs of DATASET: one table per split fingerprint, the Pareto front of speed against
    the primary metric marked *."""
    from vitrine.core.atomic import atomic_write_text
    from vitrine.core.errors import VitrineError
    from vitrine.core.jsonio import jsonable
    from vitrine.runs import list_runs
    from vitrine.runs.leaderboard import board as make_board

    with guard():
        ws = workspace_of(workspace)
        result = make_board(list_runs(ws), dataset, task=task, sort=sort)
        if csv_to == "-":
            sys.stdout.write(write_csv(result))
            return
        if csv_to:
            try:
                atomic_write_text(Path(csv_to), write_csv(result))
            except OSError as exc:
                raise VitrineError(
                    f"cannot write the CSV to {csv_to}: {exc.strerror or exc}",
                    hint="give a file in a folder that exists and you may write to, or --csv - for stdout",
                ) from None
            err.print(f"wrote {len(csv_rows(result))} row(s) to {csv_to}", highlight=False)
    if as_json:
        emit_json(jsonable(result))
        return
    print_board(result)


def register(app: typer.Typer) -> None:
    """Add ``leaderboard`` to the ``vitrine`` app."""
    app.command("leaderboard")(leaderboard)
