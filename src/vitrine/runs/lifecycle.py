"""A run's life: running, then done, cancelled or failed, written the same way by every trainer.

:func:`run_lifecycle` wraps the work of a run::

    with run_lifecycle(run, on_cancel=...) as life:
        life.start(classes=[...])          # state running, started_at
        ...                                # training, evaluation
        life.done(metrics=..., progress=...)   # state done, finished_at

A :class:`~vitrine.core.errors.Cancelled` or a ``KeyboardInterrupt`` leaves the run ``cancelled`` (with
what ``on_cancel`` adds: a trainer's progress and metrics, else the reason as ``error``); any other
exception leaves it ``failed`` with the error's text. Both get ``finished_at``, and the exception
goes on up: the lifecycle records, it never swallows. Writing the record never hides the error
that ended the run (a failing write is ignored there).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vitrine.core.errors import Cancelled, VitrineError
from vitrine.runs.record import Run

log = logging.getLogger("vitrine.runs")


def error_text(exc: BaseException) -> str:
    """What a failed run records as its ``error``: a VitrineError's message, else type and text."""
    if isinstance(exc, VitrineError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def cancel_reason(exc: BaseException) -> str:
    """Why a run was cancelled: the Cancelled message, or ``interrupted`` (Ctrl-C)."""
    if isinstance(exc, Cancelled):
        return exc.message
    return "interrupted"


@dataclass
class Lifecycle:
    """The handle :func:`run_lifecycle` yields: the state changes a run's work makes itself."""

    run: Run

    def start(self, **fields) -> None:
        """State ``running`` from now (``fields``: more of the record, e.g. the classes)."""
        self.run.update(state="running", started_at=time.time(), **fields)

    def done(self, **fields) -> None:
        """State ``done`` (``fields``: the final metrics, progress, ...), with ``finished_at``."""
        self.run.update(state="done", **fields, finished_at=time.time())


@contextlib.contextmanager
def run_lifecycle(run: Run, *, on_cancel: Callable[[BaseException], dict] | None = None) -> Iterator[Lifecycle]:
    """Record how the work inside ends: ``cancelled`` on Cancelled / KeyboardInterrupt (the fields
    ``on_cancel(exc)`` returns, by default ``error``: the reason), ``failed`` on any other exception
    (``error``: its text); then re-raise."""
    try:
        yield Lifecycle(run)
    except (Cancelled, KeyboardInterrupt) as exc:
        fields: dict = {}
        try:
            fields = on_cancel(exc) if on_cancel is not None else {"error": cancel_reason(exc)}
        except Exception as inner:  # noqa: BLE001 (the run is cancelled all the same)
            log.warning("run %s: could not gather its state on cancel: %s", run.id, inner)
        with contextlib.suppress(Exception):
            run.update(state="cancelled", **fields, finished_at=time.time())
        raise
    except BaseException as exc:
        with contextlib.suppress(Exception):
            run.update(state="failed", error=error_text(exc), finished_at=time.time())
        raise


__all__ = ["Lifecycle", "cancel_reason", "error_text", "run_lifecycle"]
