"""``vitrine train``, ``vitrine train-detector``, ``vitrine eval``, ``vitrine runs`` and ``vitrine tensorboard``.

    vitrine train DATASET [--method finetune|linear-probe|zero-shot] [--backbone efficientnet-lite0]
                  [--epochs N --batch-size N --lr X --image-size N ...] [--name RUN_ID]
                  [--resume RUN_ID] [--workspace DIR] [--json]
    vitrine train-detector DATASET [--arch maskrcnn|fasterrcnn] [--backbone efficientnet-lite0] [--resume RUN_ID]
    vitrine eval RUN [--split test] [--json]
    vitrine eval --model M --data D [--out DIR] [--format coco|yolo|cvat|voc]
    vitrine runs [--json]
    vitrine tensorboard [RUN] [--port 6006] [--launch]

Training shows a progress bar on stderr (epoch, step, loss, accuracy, time left). The first
Ctrl-C stops a fine-tuning run at the next step: its last checkpoint is saved and the command
exits with status 130, saying how to resume it (``--resume RUN_ID``); a second Ctrl-C aborts.
"""

from __future__ import annotations

import math
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from vitrine.cli._console import JsonOpt, emit_json, err, fail, guard, out, show_progress
from vitrine.cli._inputs import load_for_task
from vitrine.core.atomic import atomic_path
from vitrine.runs import CLASSIFICATION_RUN_KINDS

METHODS = CLASSIFICATION_RUN_KINDS

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="workspace holding datasets/ and runs/ (default: $VITRINE_HOME or .)"),
]


def _workspace(path: Path | None):
    from vitrine.core.workspace import Workspace

    return Workspace(path)


def _duration(seconds) -> str:
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


def _fmt(value, digits: int = 4) -> str:
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


class _TrainProgress:
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
            stats = f"loss {_fmt(info.get('loss'))} acc {_fmt(info.get('epoch_accuracy'), 3)}"
            if info.get("images_per_second"):
                stats += f" {info['images_per_second']:.0f} img/s"
            desc = f"epoch {info.get('epoch', '?')}/{info.get('epochs', '?')}"
            self.bar.update(
                task,
                completed=done,
                total=total or None,
                description=desc,
                stats=stats,
                eta=_duration(info.get("eta_seconds")),
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
            parts.append(f"train loss {_fmt(info['train_loss'])} acc {_fmt(info.get('train_accuracy'), 3)}")
        parts.append(f"val loss {_fmt(info.get('val_loss'))} acc {_fmt(info.get('val_accuracy'), 3)}")
        if info.get("improved"):
            parts.append("[green]best[/]")
        if info.get("eta_seconds") is not None:
            parts.append(f"about {_duration(info['eta_seconds'])} left")
        self.console.print(" · ".join(parts), highlight=False, soft_wrap=True)


class _CancelOnSigint:
    """First Ctrl-C: set ``cancel`` (stop cleanly at the next step); the second one aborts."""

    def __init__(self, cancel: threading.Event, console):
        self.cancel, self.console = cancel, console
        self.previous = None

    def _handler(self, signum, frame):
        if self.cancel.is_set():
            raise KeyboardInterrupt
        self.cancel.set()
        self.console.print(
            "[yellow]stopping after this step[/] (saving the checkpoint; Ctrl-C again to abort)", soft_wrap=True
        )

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self.previous = signal.signal(signal.SIGINT, self._handler)
            except (ValueError, OSError):  # not allowed here (embedded interpreters)
                self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


# ------------------------------------------------------------------------------------------------
# vitrine train


def train(
    dataset: Annotated[str, typer.Argument(help="a dataset of the workspace (see `vitrine data list`)")],
    method: Annotated[str, typer.Option("--method", "-m", help="finetune, linear-probe or zero-shot")] = "finetune",
    backbone: Annotated[
        str | None, typer.Option(help="finetune: network to fine-tune (efficientnet-lite0 works offline)")
    ] = None,
    embedding_model: Annotated[
        str | None, typer.Option(help="linear-probe / zero-shot: embedding model (default offline-concepts)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, max=10000, help="finetune: epochs (10)")] = None,
    batch_size: Annotated[int | None, typer.Option(min=2, max=4096, help="images per step (32)")] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="finetune: peak learning rate (1e-3)")] = None,
    image_size: Annotated[int | None, typer.Option(min=16, max=2048, help="finetune: input size in px (224)")] = None,
    schedule: Annotated[str | None, typer.Option(help="finetune: cosine, onecycle, step or constant")] = None,
    warmup_epochs: Annotated[float | None, typer.Option(min=0.0, help="finetune: linear warm-up epochs")] = None,
    freeze_backbone: Annotated[
        bool | None, typer.Option("--freeze-backbone/--full", help="finetune: train the head only, or everything")
    ] = None,
    freeze_stages: Annotated[
        int | None, typer.Option(min=0, help="finetune: freeze the stem and the first N stages (faster steps)")
    ] = None,
    augment: Annotated[str | None, typer.Option(help="finetune: none, light or strong")] = None,
    class_weights: Annotated[
        bool | None, typer.Option("--class-weights/--no-class-weights", help="finetune: balanced loss weights")
    ] = None,
    label_smoothing: Annotated[float | None, typer.Option(min=0.0, max=0.99, help="finetune")] = None,
    patience: Annotated[
        int | None, typer.Option(min=0, help="finetune: early-stopping patience in epochs (3; 0: off)")
    ] = None,
    max_minutes: Annotated[float | None, typer.Option(min=0.01, help="finetune: training time budget")] = None,
    max_train_samples: Annotated[
        int | None, typer.Option(min=2, help="finetune: train on a stratified subset of this size")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="random seed (0)")] = None,
    pretrained: Annotated[
        bool | None, typer.Option("--pretrained/--random-init", help="finetune: start from ImageNet weights")
    ] = None,
    weights: Annotated[str | None, typer.Option(help="finetune: local weights file for a hub backbone")] = None,
    amp: Annotated[str | None, typer.Option(help="finetune: mixed precision auto (GPU only), on or off")] = None,
    num_workers: Annotated[int | None, typer.Option(min=0, max=64, help="finetune: data loader workers (0)")] = None,
    channels_last: Annotated[bool | None, typer.Option("--channels-last/--no-channels-last", help="finetune")] = None,
    device: Annotated[str | None, typer.Option(help="finetune: cpu, cuda or cuda:N (default: auto)")] = None,
    prompts: Annotated[str | None, typer.Option(help="zero-shot: names or ontology")] = None,
    ontology_file: Annotated[Path | None, typer.Option(help="zero-shot: ontology file for --prompts ontology")] = None,
    name: Annotated[str | None, typer.Option("--name", help="id of the new run (default: made up)")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="finetune: continue this run from last.pt")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
):
    """Train a classifier on a dataset: fine-tune a network, fit a linear probe, or go zero-shot."""
    from vitrine.core.errors import Cancelled, VitrineError
    from vitrine.data.dataset import ClassificationDataset
    from vitrine.runs import new_run_id

    finetune_opts = {
        "backbone": backbone,
        "epochs": epochs,
        "lr": lr,
        "image_size": image_size,
        "schedule": schedule,
        "warmup_epochs": warmup_epochs,
        "freeze_backbone": freeze_backbone,
        "freeze_stages": freeze_stages,
        "augment": augment,
        "class_weights": class_weights,
        "label_smoothing": label_smoothing,
        "early_stopping_patience": patience,
        "max_minutes": max_minutes,
        "max_train_samples": max_train_samples,
        "pretrained": pretrained,
        "weights": weights,
        "amp": amp,
        "num_workers": num_workers,
        "channels_last": channels_last,
        "device": device,
    }
    flags = {"early_stopping_patience": "--patience", "pretrained": "--pretrained/--random-init"}
    cancel = threading.Event()
    run_id = resume or name
    with guard():
        if method not in METHODS:
            raise VitrineError(f"unknown method {method!r}", hint=f"one of {', '.join(METHODS)}")
        ws = _workspace(workspace)
        given = {k: v for k, v in finetune_opts.items() if v is not None}
        if method != "finetune":
            probe_ok = ("class_weights",) if method == "linear-probe" else ()
            wrong = [k for k in given if k not in probe_ok] + (["seed"] if seed is not None else [])
            if wrong or resume:
                opts = ", ".join(flags.get(k, "--" + k.replace("_", "-")) for k in wrong) or "--resume"
                raise VitrineError(f"{opts}: only for --method finetune")
        else:
            if embedding_model or prompts or ontology_file:
                raise VitrineError("--embedding-model, --prompts and --ontology-file are not for --method finetune")
            if resume and name and name != resume:
                raise VitrineError("give --name or --resume, not both")
        if method != "zero-shot" and (prompts or ontology_file):
            raise VitrineError("--prompts and --ontology-file are for --method zero-shot")
        ds = ClassificationDataset.load(ws.dataset_dir(dataset))
        if run_id is None:
            run_id = new_run_id(method, ds.name)

        show_bar = show_progress()
        try:
            with _CancelOnSigint(cancel, err), _TrainProgress(err, show_bar) as progress:
                common = {"progress": progress, "cancel": cancel, "run_id": run_id}
                if method == "finetune":
                    from vitrine.train.classification.finetune import FinetuneConfig, train_finetune

                    if resume:
                        overrides = dict(given)
                        if batch_size is not None or seed is not None:
                            raise VitrineError("cannot change --batch-size or --seed when resuming")
                        err.print(f"resuming run [bold]{run_id}[/] from its last checkpoint", highlight=False)
                        run = train_finetune(ws, ds, overrides, resume=True, **common)
                    else:
                        extra = {"batch_size": batch_size, "seed": seed}
                        config = FinetuneConfig(**given, **{k: v for k, v in extra.items() if v is not None})
                        err.print(
                            f"fine-tuning [bold]{config.backbone}[/] on {ds.name} as run [bold]{run_id}[/]",
                            highlight=False,
                            soft_wrap=True,
                        )
                        run = train_finetune(ws, ds, config, **common)
                elif method == "linear-probe":
                    from vitrine.train.classification.linear_probe import train_linear_probe

                    config = {"batch_size": batch_size} if batch_size is not None else {}
                    if class_weights is not None:
                        config["class_weight"] = "balanced" if class_weights else None
                    kw = {"embedding_model": embedding_model} if embedding_model else {}
                    run = train_linear_probe(ws, ds, config=config, **kw, **common)
                else:
                    from vitrine.train.classification.zero_shot import make_zero_shot

                    if batch_size is not None:
                        raise VitrineError("--batch-size is not for --method zero-shot")
                    kw = {"embedding_model": embedding_model} if embedding_model else {}
                    if ontology_file is not None:
                        kw["ontology_file"] = ontology_file
                    run = make_zero_shot(ws, ds, prompts=prompts or "names", **kw, **common)
        except (KeyboardInterrupt, Cancelled):
            if method == "finetune":
                message = (
                    f"run {run_id} keeps its last checkpoint; resume with `vitrine train {dataset} --resume {run_id}`"
                )
            else:
                message = f"run {run_id} stopped; run the command again to start over"
            err.print(f"[yellow]cancelled[/]: {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        if run.record.get("state") == "cancelled":
            err.print(f"[yellow]cancelled[/]: run {run.id}", highlight=False)
            raise typer.Exit(130)
    if as_json:
        emit_json(run.record)
        return
    _print_run(run, ws)
    if run.record.get("state") == "failed":
        fail(VitrineError(f"run {run.id} failed: {run.record.get('error')}"))


def _print_run(run, ws) -> None:
    from rich.table import Table

    r = run.record
    metrics = r.get("metrics") or {}
    ev = evaluation_of(r)
    table = Table(title=f"run {run.id}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("kind / model", f"{r.get('kind')} / {r.get('model')}")
    table.add_row("state", f"{r.get('state')}" + (f" ({r['stopped']})" if r.get("stopped") else ""))
    if metrics.get("epochs_completed") is not None:
        table.add_row("epochs", f"{metrics['epochs_completed']} (best: {metrics.get('best_epoch')})")
        table.add_row("best val loss", _fmt(metrics.get("best_val_loss")))
        table.add_row(
            "training",
            f"{_duration(metrics.get('train_seconds'))}, {_fmt(metrics.get('train_images_per_second'), 1)} img/s",
        )
    if ev:
        table.add_row(f"accuracy ({ev.get('split')})", _fmt(ev.get("accuracy")))
        table.add_row("macro F1", _fmt(ev.get("macro_f1")))
        for k, v in (ev.get("top_k") or {}).items():
            table.add_row(k.replace("_", "-"), _fmt(v))
    speed = metrics.get("speed") or {}
    if speed:
        table.add_row(
            "inference",
            f"{speed['ms_per_image']:.2f} ms/image, {speed['images_per_second']:.1f} images/s ({speed.get('device')})",
        )
    skipped = metrics.get("skipped") or []
    if skipped:
        table.add_row("skipped", f"{len(skipped)} unreadable image(s) (see run.json)")
    table.add_row("folder", str(run.dir))
    out.print(table)
    if (run.dir / "tb").is_dir():
        command = shlex.join(_tensorboard_argv(run.dir / "tb", 6006, "127.0.0.1", short=True))
        out.print(f"TensorBoard: {command}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------------
# vitrine eval


def eval_run(
    run_id: Annotated[str | None, typer.Argument(help="the run to evaluate (see `vitrine runs`)")] = None,
    split: Annotated[str, typer.Option(help="test, val, train or all")] = "test",
    batch_size: Annotated[int, typer.Option(min=1, max=4096)] = 32,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="detection: a detector or detection run to evaluate")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="detection: annotations to evaluate on (COCO json, YOLO data.yaml, CVAT xml, VOC folder)"),
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="detection: folder for the report files")] = None,
    data_format: Annotated[
        str | None, typer.Option("--format", help="detection: coco, yolo, cvat or voc (default: guessed)")
    ] = None,
    score_threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="detection: for P/R/F1")] = 0.5,
    iou_threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="detection: for P/R/F1")] = 0.5,
    ignore_difficult: Annotated[
        bool | None,
        typer.Option(
            "--ignore-difficult/--count-difficult",
            help="detection: VOC's protocol, 'difficult' objects neither found nor missed (default: on for VOC data)",
        ),
    ] = None,
):
    """Evaluate a classification run on a split of its dataset (accuracy, macro-F1, per class), or
    a detector on annotations with --model M --data D (COCO mAP@.5 and @.5:.95, per class, P/R/F1)."""
    from rich.table import Table

    from vitrine.core.errors import VitrineError
    from vitrine.evaluate.classification import evaluate_run
    from vitrine.runs import Run

    if data is not None or model is not None:
        with guard():
            if data is None or model is None or run_id is not None:
                raise VitrineError(
                    "detection evaluation takes --model and --data (and no run id)",
                    hint="vitrine eval --model ssd-mobilenet-v2-coco --data annotations.json",
                )
        eval_detection(
            model, data, out_dir, data_format, score_threshold, iou_threshold, workspace, as_json, ignore_difficult
        )
        return
    with guard():
        if run_id is None:
            raise VitrineError(
                "give the run to evaluate, or --model and --data for a detector",
                hint="vitrine eval RUN_ID, or vitrine eval --model M --data annotations.json",
            )
        if split not in ("test", "val", "train", "all"):
            raise VitrineError(f"unknown split {split!r}", hint="test, val, train or all")
        ws = _workspace(workspace)
        run = Run.load(ws, run_id)
        show_bar = show_progress()
        try:
            with _TrainProgress(err, show_bar) as progress:
                report = evaluate_run(ws, run, None, split, batch_size=batch_size, progress=progress)
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]", highlight=False)
            raise typer.Exit(130) from None
    if as_json:
        emit_json({"run": run.id, **report})
        return
    table = Table(title=f"run {run.id} on {split} ({report['n']} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1"):
        table.add_row(key.replace("_", " "), _fmt(report.get(key)))
    for k, v in (report.get("top_k") or {}).items():
        table.add_row(k.replace("_", "-") + " accuracy", _fmt(v))
    speed = report.get("speed")
    if speed:
        table.add_row("ms / image", f"{speed['ms_per_image']:.2f}")
        table.add_row("images / s", f"{speed['images_per_second']:.1f} ({speed.get('device')})")
    out.print(table)
    per_class = Table(title="per class")
    for col in ("class", "precision", "recall", "f1", "support"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for row in report.get("per_class") or []:
        per_class.add_row(
            row["class"], _fmt(row["precision"], 3), _fmt(row["recall"], 3), _fmt(row["f1"], 3), str(row["support"])
        )
    out.print(per_class)
    if report.get("skipped"):
        err.print(f"[yellow]{len(report['skipped'])} image(s) skipped[/] (unreadable or unknown class)")
    err.print(
        f"wrote metrics.json, per_class.csv/.json, confusion.csv/.svg in {run.dir}", highlight=False, soft_wrap=True
    )


# ------------------------------------------------------------------------------------------------
# vitrine eval --model M --data D (a detector on annotations)


def _fmt_metric(x: Any, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def eval_detection(
    model: str,
    data: Path,
    out_dir: Path | None = None,
    data_format: str | None = None,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    workspace: Path | None = None,
    as_json: bool = False,
    ignore_difficult: bool | None = None,
) -> dict:
    """Evaluate detector ``model`` on the annotated dataset ``data`` (COCO json, YOLO data.yaml,
    CVAT xml or VOC folder): print the mAP table, write the report files into ``out_dir``.
    ``ignore_difficult`` (VOC's protocol: ``difficult`` objects neither found nor missed):
    by default on for a VOC source, off otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from vitrine.core.workspace import Workspace
    from vitrine.data.detection.convert import detect_format, read_any
    from vitrine.evaluate.detection import evaluate_detection, pr_curve_figure, predict_dataset, write_detection_report

    with guard():
        fmt = (data_format or detect_format(data)).lower()
        gt = read_any(data, format=fmt)
        if ignore_difficult is None:
            ignore_difficult = fmt == "voc"
        detector = load_for_task(model, "detection", Workspace(workspace))
        progress = Progress(
            TextColumn("[bold]predicting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not show_progress(),
        )
        try:
            with progress:
                bar = progress.add_task("predict", total=len(gt.images))
                preds = predict_dataset(
                    detector, gt, threshold=0.05, progress=lambda done, total: progress.update(bar, completed=done)
                )
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]", highlight=False)
            raise typer.Exit(130) from None
        report = evaluate_detection(
            gt, preds, score_threshold=score_threshold, iou_threshold=iou_threshold, ignore_difficult=ignore_difficult
        )
        report["model"] = getattr(detector, "name", model)
        report["data"] = str(data)
        written: list[Path] = []
        if out_dir is not None:
            written = write_detection_report(report, out_dir)
            html = Path(out_dir) / "pr_curves.html"
            with atomic_path(html) as tmp:
                pr_curve_figure(report).write_html(str(tmp), include_plotlyjs=True, full_html=True)
            written.append(html)
    if as_json:
        emit_json({**report, "files": [str(p) for p in written]})
        return report
    ms = report.get("ms_per_image")
    title = f"{report['model']} on {data} ({report['images']} image(s), {report['gt_objects']} object(s))"
    if report["ignore_difficult"]:
        title += f"; {report['difficult_ignored']} difficult object(s) ignored (VOC protocol)"
    table = Table(title=title)
    table.add_column("metric")
    for t in report["iou_types"]:
        table.add_column("boxes" if t == "bbox" else "masks", justify="right")
    rows = [
        ("mAP@.5", "map50"),
        ("mAP@.5:.95", "map"),
        ("mAP@.75", "map75"),
        (f"precision (score ≥ {score_threshold:g}, IoU ≥ {iou_threshold:g})", "precision"),
        ("recall", "recall"),
        ("F1", "f1"),
        ("mean IoU", "mean_iou"),
    ]
    for label, key in rows:
        table.add_row(label, *[_fmt_metric(report[t].get(key)) for t in report["iou_types"]])
    if ms is not None:
        table.add_row("ms / image", *[f"{ms:.1f}"] * len(report["iou_types"]))
    out.print(table)
    first = report["iou_types"][0]
    per_class = Table(title=f"per class ({'boxes' if first == 'bbox' else 'masks'})")
    for col in ("class", "gt", "AP@.5", "AP@.5:.95", "precision", "recall", "F1"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for row in report[first].get("per_class") or []:
        per_class.add_row(
            str(row["class"]),
            str(row.get("gt", "")),
            _fmt_metric(row.get("ap50")),
            _fmt_metric(row.get("ap")),
            _fmt_metric(row.get("precision")),
            _fmt_metric(row.get("recall")),
            _fmt_metric(row.get("f1")),
        )
    out.print(per_class)
    if report.get("unmapped"):
        unmapped = ", ".join(f"{k} ×{v}" for k, v in report["unmapped"].items())
        err.print(f"[yellow]left out[/] (classes not in the dataset): {unmapped}", highlight=False, soft_wrap=True)
    if written:
        err.print("wrote " + ", ".join(str(p) for p in written), highlight=False, soft_wrap=True)
    return report


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
        rows = run_rows(_workspace(workspace))
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
        acc = _fmt(row["accuracy"], 4) + (
            f" ({row['evaluated_on']})" if row["evaluated_on"] not in (None, "test") else ""
        )
        table.add_row(
            row["id"],
            row["kind"] or "-",
            row["dataset"] or "-",
            row["model"] or "-",
            f"[{colours.get(state, 'white')}]{state}[/]",
            *((acc, _fmt(row["macro_f1"], 4)) * classifiers),
            *((_fmt(row["box_map50"], 3), _fmt(row["mask_map50"], 3)) * detectors),
        )
    out.print(table)


# ------------------------------------------------------------------------------------------------
# vitrine tensorboard


def _tensorboard_argv(logdir: Path, port: int, host: str, short: bool = False) -> list[str]:
    head = ["tensorboard"] if short else [sys.executable, "-m", "tensorboard.main"]
    return [*head, "--logdir", str(logdir), "--port", str(port), "--host", host]


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
        ws = _workspace(workspace)
        if run_id:
            logdir = Run.load(ws, run_id).tensorboard_dir
        else:
            logdir = ws.runs_dir
        if not logdir.is_dir():
            raise NotFound(
                f"no TensorBoard logs at {logdir}", hint="they are written by `vitrine train --method finetune`"
            )
    command = shlex.join(_tensorboard_argv(logdir, port, host, short=True))
    url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}/"
    if as_json and not launch:
        emit_json({"logdir": str(logdir), "command": command, "url": url})
        return
    out.print(command, highlight=False, soft_wrap=True)
    err.print(f"then open {url}", highlight=False)
    if launch:
        argv = _tensorboard_argv(logdir, port, host)
        err.print(f"starting TensorBoard on {url} (Ctrl-C stops it)", highlight=False)
        try:
            code = subprocess.call(argv)
        except KeyboardInterrupt:
            code = 0
        raise typer.Exit(code)


# ------------------------------------------------------------------------------------------------
# vitrine train-detector


class _DetectionProgress(_TrainProgress):
    """The progress bar and per-epoch lines of a detection run (losses, mAP)."""

    def __call__(self, stage: str, done: int = 0, total: int = 0, info: dict | None = None, **extra) -> None:
        info = {**(info or {}), **extra}
        if stage == "epoch":
            self._epoch_line(info)
            return
        if stage == "train" and self.bar is not None:
            task = self._task("train", "train", total)
            stats = f"loss {_fmt(info.get('loss'), 3)}"
            if info.get("images_per_second"):
                stats += f" {info['images_per_second']:.1f} img/s"
            self.bar.update(
                task,
                completed=done,
                total=total or None,
                description=f"epoch {info.get('epoch', '?')}/{info.get('epochs', '?')}",
                stats=stats,
                eta=_duration(info.get("eta_seconds")),
            )
            return
        super().__call__(stage, done, total, info)

    def _epoch_line(self, info: dict) -> None:
        parts = [f"epoch {info.get('epoch')}/{info.get('epochs')}" + (" (partial)" if info.get("partial") else "")]
        if info.get("train_loss") is not None:
            parts.append(f"train loss {_fmt(info['train_loss'], 3)}")
        for key, label in (("val_bbox_map50", "box mAP@.5"), ("val_segm_map50", "mask mAP@.5")):
            if info.get(key) is not None:
                parts.append(f"{label} {_fmt(info[key], 3)}")
        if info.get("improved"):
            parts.append("[green]best[/]")
        if info.get("eta_seconds") is not None:
            parts.append(f"about {_duration(info['eta_seconds'])} left")
        self.console.print(" · ".join(parts), highlight=False, soft_wrap=True)


def train_detector_cmd(
    dataset: Annotated[
        str | None,
        typer.Argument(
            help="COCO .json file, a folder of them (e.g. `vitrine data scenes` output), YOLO data.yaml, CVAT "
            ".xml or VOC folder; optional with --resume"
        ),
    ] = None,
    arch: Annotated[str | None, typer.Option(help="maskrcnn (boxes + masks) or fasterrcnn (boxes)")] = None,
    backbone: Annotated[
        str | None,
        typer.Option(help="efficientnet-lite0 (ImageNet weights in a package: offline), resnet50-fpn, resnet50-fpn-v2"),
    ] = None,
    pretrained: Annotated[
        bool | None,
        typer.Option("--pretrained/--random-init", help="start from ImageNet (lite0) or COCO (resnet50) weights"),
    ] = None,
    weights: Annotated[str | None, typer.Option(help="local weights file (COCO checkpoint for resnet50-fpn*)")] = None,
    image_size: Annotated[
        int | None, typer.Option(min=32, max=2048, help="internal image size, shorter side (128)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, max=10000, help="epochs (10)")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=1024, help="images per step (4)")] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="peak learning rate (0.02)")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd or adamw")] = None,
    schedule: Annotated[str | None, typer.Option(help="cosine, step or constant")] = None,
    warmup_steps: Annotated[int | None, typer.Option(min=0, help="linear warm-up steps (100)")] = None,
    freeze_stages: Annotated[int | None, typer.Option(min=0, help="freeze the stem and the first N stages")] = None,
    augment: Annotated[str | None, typer.Option(help="none, flip or light (flip + scale jitter)")] = None,
    fpn_channels: Annotated[int | None, typer.Option(min=8, max=512, help="FPN width (efficientnet-lite0)")] = None,
    proposals: Annotated[
        int | None, typer.Option(min=1, help="region proposals kept per image in training (300; test: a third)")
    ] = None,
    max_minutes: Annotated[float | None, typer.Option(min=0.01, help="training time budget in minutes")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="random seed (0)")] = None,
    threads: Annotated[int | None, typer.Option(min=1, max=256, help="torch CPU threads")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N (default: auto)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="id of the new run (default: made up)")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="continue this run from its last.pt")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
):
    """Fine-tune Mask R-CNN or Faster R-CNN on a detection dataset (runs are listed by `vitrine runs`)."""
    from vitrine.core.errors import Cancelled, VitrineError

    opts = {
        "arch": arch,
        "backbone": backbone,
        "pretrained": pretrained,
        "weights": weights,
        "image_size": image_size,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "schedule": schedule,
        "warmup_steps": warmup_steps,
        "freeze_stages": freeze_stages,
        "augment": augment,
        "fpn_channels": fpn_channels,
        "max_minutes": max_minutes,
        "seed": seed,
        "threads": threads,
        "device": device,
    }
    given = {k: v for k, v in opts.items() if v is not None}
    if proposals is not None:
        given.update(
            rpn_post_nms_top_n_train=proposals,
            rpn_pre_nms_top_n_train=2 * proposals,
            rpn_post_nms_top_n_test=max(1, proposals // 3),
            rpn_pre_nms_top_n_test=proposals,
        )
    cancel = threading.Event()
    with guard():
        from vitrine.train.detection.config import DetectionConfig
        from vitrine.train.detection.trainer import train_detector

        ws = _workspace(workspace)
        if resume and name and name != resume:
            raise VitrineError("give --name or --resume, not both")
        if dataset is None and not resume:
            raise VitrineError("give the dataset to train on", hint="a COCO .json file or a folder of them")
        run_id = resume or name
        show_bar = show_progress()
        try:
            with _CancelOnSigint(cancel, err), _DetectionProgress(err, show_bar) as progress:
                common = {"progress": progress, "cancel": cancel, "run_id": run_id}
                if resume:
                    err.print(f"resuming run [bold]{run_id}[/] from its last checkpoint", highlight=False)
                    run = train_detector(ws, dataset, given, resume=True, **common)
                else:
                    config = DetectionConfig(**given)
                    err.print(
                        f"training [bold]{config.arch}[/] with {config.backbone} on {dataset}",
                        highlight=False,
                        soft_wrap=True,
                    )
                    run = train_detector(ws, dataset, config, **common)
        except (KeyboardInterrupt, Cancelled):
            rid = run_id or "(see `vitrine runs`)"
            err.print(
                f"[yellow]cancelled[/]: run {rid} keeps its last checkpoint; resume with "
                f"`vitrine train-detector --resume {rid}`",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
    if as_json:
        emit_json(run.record)
        return
    _print_detection_run(run)
    if run.record.get("state") == "failed":
        fail(VitrineError(f"run {run.id} failed: {run.record.get('error')}"))


def _print_detection_run(run) -> None:
    from rich.table import Table

    r = run.record
    metrics = r.get("metrics") or {}
    table = Table(title=f"run {run.id}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("kind / model", f"{r.get('kind')} / {r.get('model')}")
    table.add_row("state", f"{r.get('state')}" + (f" ({metrics['stopped']})" if metrics.get("stopped") else ""))
    if metrics.get("epochs_completed") is not None:
        table.add_row("epochs", f"{metrics['epochs_completed']} (best: {metrics.get('best_epoch')})")
        table.add_row(
            "training",
            f"{_duration(metrics.get('train_seconds'))}, {_fmt(metrics.get('train_images_per_second'), 1)} img/s",
        )
    for split in ("test", "val"):
        ev = metrics.get(split) or {}
        if ev.get("bbox_map50") is not None and "n_images" in ev:
            for key, label in (("bbox", "box"), ("segm", "mask")):
                if ev.get(f"{key}_map50") is not None:
                    table.add_row(
                        f"{label} mAP ({split})",
                        f"@.5 {_fmt(ev[f'{key}_map50'], 3)} · @.5:.95 {_fmt(ev.get(f'{key}_map'), 3)}",
                    )
            break
    speed = metrics.get("speed") or {}
    if speed:
        table.add_row("inference", f"{speed['ms_per_image']:.1f} ms/image ({speed.get('device')})")
    table.add_row("folder", str(run.dir))
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main `vitrine` app."""
    app.command("train")(train)
    app.command("train-detector")(train_detector_cmd)
    app.command("eval")(eval_run)
    app.command("runs")(runs)
    app.command("tensorboard")(tensorboard)
