"""What the training, evaluation and run-listing commands share: the --workspace option, number
and duration formatting, a run's headline evaluation, the TensorBoard command line, and the progress
bar of training and evaluation."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated

import typer

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="workspace holding datasets/ and runs/ (default: $VITRINE_HOME or .)"),
]


def workspace_of(path: Path | None):
    from vitrine.core.workspace import Workspace

    return Workspace(path)


def duration(seconds) -> str:
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "-"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def fmt(value, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "-"
    return str(value)


def evaluation_of(record: dict) -> dict:
    """The evaluation a run reports: on its test split, else all samples, else val (accuracy for
    classifiers, box/mask mAP for detectors)."""
    metrics = record.get("metrics") or {}
    for split in ("test", "all", "val"):
        found = metrics.get(split)
        if isinstance(found, dict) and any(found.get(k) is not None for k in ("accuracy", "bbox_map50")):
            return {"split": found.get("split", split), **found}
    return {}


# ------------------------------------------------------------------------------------------------
# progress


def tensorboard_argv(logdir: Path, port: int, host: str, short: bool = False) -> list[str]:
    head = ["tensorboard"] if short else [sys.executable, "-m", "tensorboard.main"]
    return [*head, "--logdir", str(logdir), "--port", str(port), "--host", host]


class TrainProgress:
    """The Rich progress bar (stderr) and per-epoch lines for a training run."""

    def __init__(self, console, show_bar: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = (
            Progress(
                TextColumn("[bold]{task.description:<14}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}"),
                console=console,
                transient=False,
            )
            if show_bar
            else None
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False

    def _task(self, key: str, description: str, total) -> int:
        if key not in self.tasks:
            self.tasks[key] = self.bar.add_task(description, total=total or None, stats="", eta="-")
        return self.tasks[key]

    def __call__(self, stage: str, done: int = 0, total: int = 0, info: dict | None = None, **extra) -> None:
        info = {**(info or {}), **extra}
        if stage == "epoch":
            self._epoch_line(info)
        if self.bar is None:
            return
        if stage == "train":
            task = self._task("train", "train", total)
            stats = f"loss {fmt(info.get('loss'))} acc {fmt(info.get('epoch_accuracy'), 3)}"
            if info.get("images_per_second"):
                stats += f" {info['images_per_second']:.0f} img/s"
            desc = f"epoch {info.get('epoch', '?')}/{info.get('epochs', '?')}"
            self.bar.update(
                task,
                completed=done,
                total=total or None,
                description=desc,
                stats=stats,
                eta=duration(info.get("eta_seconds")),
            )
        elif stage in ("load", "validate", "evaluate", "embed", "fit"):
            task = self._task(stage, stage, total)
            self.bar.update(task, completed=done, total=total or None)
            if stage == "validate" and total and done >= total:  # the next epoch starts afresh
                self.bar.remove_task(task)
                del self.tasks[stage]

    def _epoch_line(self, info: dict) -> None:
        parts = [f"epoch {info.get('epoch')}/{info.get('epochs')}" + (" (partial)" if info.get("partial") else "")]
        if info.get("train_loss") is not None:
            parts.append(f"train loss {fmt(info['train_loss'])} acc {fmt(info.get('train_accuracy'), 3)}")
        parts.append(f"val loss {fmt(info.get('val_loss'))} acc {fmt(info.get('val_accuracy'), 3)}")
        if info.get("improved"):
            parts.append("[green]best[/]")
        if info.get("eta_seconds") is not None:
            parts.append(f"about {duration(info['eta_seconds'])} left")
        self.console.print(" · ".join(parts), highlight=False, soft_wrap=True)
