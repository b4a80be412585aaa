"""One leaderboard for every kind of run: a row per run (id, kind, dataset, model, state,
progress, times, its :func:`~vitrine.runs.summary.summarize` numbers and what makes it comparable,
:func:`~vitrine.runs.summary.comparable`), sorted.

The REST API's run lists (classification and detection alike) are these rows (:func:`leaderboard`).
:func:`board` is the leaderboard of one dataset: one ranked table per split fingerprint, because
two runs scored on different splits are never ranked against each other, with the Pareto front of
speed against the primary metric marked (:func:`pareto_front`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from vitrine.core.errors import VitrineError
from vitrine.runs.record import Run
from vitrine.runs.summary import PRIMARY, comparable, summarize

TASKS = tuple(PRIMARY)
# sort keys where less is better (every other one: more is better)
LOWER_IS_BETTER = frozenset(
    {
        "latency_ms",
        "parameters",
        "gflops",
        "weights_bytes",
        "train_seconds",
        "loss",
        "text_query_ms",
        "bytes_per_vector",
    }
)
# the flat numbers of a row beside its metrics
ROW_NUMBERS = ("primary", "latency_ms", "images_per_second", "parameters", "gflops", "weights_bytes", "train_seconds")


def run_row(run: Run) -> dict:
    """One leaderboard row: what the run is, where it stands, its headline numbers and what makes
    it comparable (task, split fingerprint, arch and size, primary metric, speed, cost), with the
    speed and cost figures a table shows flat (``latency_ms``, ``images_per_second``,
    ``parameters``, ``gflops``, ``weights_bytes``)."""
    r = run.record
    extra = comparable(run)
    speed, cost = extra["speed"], extra["cost"]
    headline = summarize(run)
    flat = {
        "latency_ms": speed.get("latency_ms"),
        "images_per_second": headline.get("images_per_second", speed.get("images_per_second")),
        "parameters": cost.get("parameters"),
        "gflops": cost.get("gflops"),
        "weights_bytes": cost.get("weights_bytes"),
    }
    return {
        **extra,
        **flat,
        "id": run.id,
        "kind": r.get("kind"),
        "dataset": r.get("dataset"),
        "model": r.get("model"),
        "state": r.get("state"),
        "progress": r.get("progress") or {},
        "created_at": r.get("created_at"),
        "finished_at": r.get("finished_at"),
        **headline,
    }


def _number(value) -> float | None:
    """A finite number, else None (a missing, NaN or non-numeric score ranks last)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def rank_key(sort: str):
    """The sort key that puts the highest ``sort`` value first and rows without one last."""

    def key(row: dict):
        value = _number(row.get(sort))
        return (value is None, -(value or 0.0))

    return key


def leaderboard(runs: Iterable[Run], sort: str | None = None) -> list[dict]:
    """The rows of ``runs``: in their order (``sort`` None or ``"created"``: newest first as
    :func:`~vitrine.runs.list_runs` gives them), else best first by the summary field ``sort``
    (highest first; runs without that number after every run that has one, in their order)."""
    rows = [run_row(run) for run in runs]
    if sort and sort != "created":
        rows.sort(key=rank_key(sort))
    return rows


# ------------------------------------------------------------------------------------------------
# one dataset's board


def value_of(row: dict, key: str) -> float | None:
    """The number ``key`` of a row: one of its flat numbers, else one of its metrics."""
    value = _number(row.get(key))
    if value is None and isinstance(row.get("metrics"), dict):
        value = _number(row["metrics"].get(key))
    return value


def pareto_front(rows: list[dict], x: str = "latency_ms", y: str = "primary") -> list[dict]:
    """Mark ``pareto: True`` on the rows no other row beats on both ``x`` (lower is better) and
    ``y`` (higher is better): a row is dominated when another is at least as good on both and
    better on one. Rows with equal ``x`` and ``y`` are all on the front; a row without a number for
    ``x`` or ``y`` is never on it. Returns the rows on the front, fastest first."""
    points = [(row, value_of(row, x), value_of(row, y)) for row in rows]
    known = [(row, px, py) for row, px, py in points if px is not None and py is not None]
    front = []
    for row, px, py in points:
        on = (
            px is not None
            and py is not None
            and not any(qx <= px and qy >= py and (qx < px or qy > py) for _, qx, qy in known)
        )
        row["pareto"] = on
        if on:
            front.append(row)
    return sorted(front, key=lambda row: (value_of(row, x), -value_of(row, y)))


def _ranked(rows: list[dict], sort: str) -> list[dict]:
    """``rows`` best first by ``sort`` (missing values last, in their order), ranked 1, 2, ...;
    equal values share a rank; a row without the value has rank None."""
    sign = 1.0 if sort in LOWER_IS_BETTER else -1.0
    rows = sorted(rows, key=lambda row: (value_of(row, sort) is None, sign * (value_of(row, sort) or 0.0)))
    previous, rank = None, 0
    for position, row in enumerate(rows, 1):
        value = value_of(row, sort)
        if value is None:
            row["rank"] = None
            continue
        if value != previous:
            rank, previous = position, value
        row["rank"] = rank
    return rows


def sort_keys(rows: list[dict]) -> list[str]:
    """What a board of ``rows`` can be sorted by: the flat numbers and every metric a row has."""
    metrics = sorted({k for row in rows for k in (row.get("metrics") or {})})
    return [*ROW_NUMBERS, *(m for m in metrics if m not in ROW_NUMBERS)]


def board(runs: Iterable[Run], dataset: str, task: str | None = None, sort: str | None = None) -> dict:
    """The leaderboard of ``dataset``: its runs (of ``task``, ``classify``, ``detect`` or
    ``embedding``, when given) in one ranked table per split fingerprint, best first by ``sort``
    (default: the primary metric, accuracy, box mAP@.5 or kNN@10 accuracy; a speed or cost figure
    ranks lowest first), the Pareto front of ms/image at batch 1 against the primary metric marked
    in each table.

    Groups with the most runs come first (then the one with the newest run). Runs without a split
    fingerprint (recorded before fingerprints existed, or not evaluated yet) are listed apart, in
    ``unranked``, never in a ranking. Unknown ``task`` or ``sort``: a VitrineError saying what is."""
    if task is not None and task not in TASKS:
        raise VitrineError(f"unknown task {task!r}", hint=f"one of {', '.join(TASKS)}")
    rows = [run_row(run) for run in runs if run.record.get("dataset") == dataset]
    rows = [row for row in rows if task is None or row["task"] == task]
    key = sort or "primary"
    if key != "primary" and rows and key not in sort_keys(rows):
        raise VitrineError(
            f"cannot sort the board of {dataset!r} by {key!r}: no run has that number",
            hint=f"sort by one of {', '.join(sort_keys(rows))}",
        )
    groups: dict[tuple, list[dict]] = {}
    unranked = []
    for row in rows:
        if row["fingerprint"] is None:
            row["rank"], row["pareto"] = None, False
            unranked.append(row)
        else:
            groups.setdefault((row["task"], row["fingerprint"]), []).append(row)
    tables = []
    for (group_task, fingerprint), members in groups.items():
        pareto_front(members, "latency_ms", "primary")
        tables.append(
            {
                "task": group_task,
                "fingerprint": fingerprint,
                "split": next((r["split"] for r in members if r["split"]), None),
                "primary_metric": PRIMARY[group_task],
                "runs": len(members),
                "newest": max((r.get("created_at") or 0) for r in members),
                "rows": _ranked(members, key),
            }
        )
    tables.sort(key=lambda t: (-t["runs"], -t["newest"]))
    tasks = sorted({t["task"] for t in tables} | {r["task"] for r in unranked})
    note = None
    if len(tables) > 1:
        note = (
            f"{len(tables)} groups kept apart: their runs were scored on different splits (another "
            "split, or the dataset changed), so they are ranked separately and never against each other"
        )
    return {
        "dataset": dataset,
        "task": task,
        "sort": key,
        "primary_metric": PRIMARY[task or tasks[0]] if (task or len(tasks) == 1) else None,
        "groups": tables,
        "unranked": unranked,
        "note": note,
    }


__all__ = ["LOWER_IS_BETTER", "TASKS", "board", "leaderboard", "pareto_front", "rank_key", "run_row", "value_of"]
