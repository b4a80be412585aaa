"""One leaderboard for every kind of run: a row per run (id, kind, dataset, model, state,
progress, times and its :func:`~vitrine.runs.summary.summarize` numbers), sorted.

The REST API's run lists (classification and detection alike) are these rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from vitrine.runs.record import Run
from vitrine.runs.summary import summarize


def run_row(run: Run) -> dict:
    """One leaderboard row: what the run is, where it stands, and its headline numbers."""
    r = run.record
    return {
        "id": run.id,
        "kind": r.get("kind"),
        "dataset": r.get("dataset"),
        "model": r.get("model"),
        "state": r.get("state"),
        "progress": r.get("progress") or {},
        "created_at": r.get("created_at"),
        "finished_at": r.get("finished_at"),
        **summarize(run),
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


__all__ = ["leaderboard", "rank_key", "run_row"]
