"""What every command of the ``vitrine`` command line shares: the consoles (``out`` for results on
stdout, ``err`` for messages and progress on stderr), ``--json`` output, the clean failure of a
:class:`~vitrine.core.errors.VitrineError` (a message, a hint, exit status 2, no traceback) and the
progress bars. Command modules import from here, never from :mod:`vitrine.cli` nor from each other.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from vitrine.core.errors import VitrineError

out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON on stdout")]


def fail(exc: VitrineError, code: int = 2):
    """Print ``exc`` (message and hint) on stderr and exit with ``code``."""
    # soft_wrap: never break messages at the console width (80 columns when piped)
    err.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
    if exc.hint:
        err.print(f"[yellow]hint:[/] {exc.hint}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


@contextmanager
def guard():
    """Turn VitrineError into a clean message and exit code 2 (no traceback)."""
    try:
        yield
    except VitrineError as exc:
        fail(exc)


def show_progress() -> bool:
    """Draw progress bars: on a terminal, or with VITRINE_PROGRESS set, unless VITRINE_NO_PROGRESS is."""
    return bool(err.is_terminal or os.environ.get("VITRINE_PROGRESS")) and not os.environ.get("VITRINE_NO_PROGRESS")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<6}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("•"),
        TimeElapsedColumn(),
        TextColumn("• ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def with_progress(work, interrupted):
    """Run ``work(progress, cancel)`` with a Rich progress bar per stage (on a terminal, or with
    VITRINE_PROGRESS set); Ctrl-C exits 130 saying ``interrupted`` (a string, or a function that
    says what is true at that moment) and how to resume."""
    cancel = threading.Event()
    bar = progress_bar()
    tasks: dict[str, int] = {}

    def progress(stage: str, done: int, total: int):
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total or None)
        bar.update(tasks[stage], completed=done, total=total or None)

    try:
        with bar if (err.is_terminal or os.environ.get("VITRINE_PROGRESS")) else _nullcontext():
            return work(progress, cancel)
    except KeyboardInterrupt:
        said = interrupted() if callable(interrupted) else interrupted
        err.print(f"[yellow]interrupted[/]: {said}; run the same command to resume", soft_wrap=True, highlight=False)
        raise typer.Exit(130) from None


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
