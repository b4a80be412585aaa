"""``vitrine train`` and ``vitrine train-detector``.

    vitrine train DATASET [--method finetune|linear-probe|zero-shot] [--backbone efficientnet-lite0]
                  [--epochs N --batch-size N --lr X --image-size N ...] [--name RUN_ID]
                  [--resume RUN_ID] [--workspace DIR] [--json]
    vitrine train-detector DATASET [--arch maskrcnn|fasterrcnn|retinanet|fcos|ssdlite]
                  [--backbone efficientnet-lite0|efficientnet-lite1|efficientnet-lite2] [--resume RUN_ID]

Training shows a progress bar on stderr (epoch, step, loss, accuracy, time left). The first
Ctrl-C stops a fine-tuning run at the next step: its last checkpoint is saved and the command
exits with status 130, saying how to resume it (``--resume RUN_ID``); a second Ctrl-C aborts.
"""

from __future__ import annotations

import shlex
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from vitrine.cli._console import JsonOpt, emit_json, err, fail, guard, out, show_progress
from vitrine.cli._runs import TrainProgress, WorkspaceOpt, duration, evaluation_of, fmt, tensorboard_argv, workspace_of
from vitrine.runs import CLASSIFICATION_RUN_KINDS

METHODS = CLASSIFICATION_RUN_KINDS


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
        ws = workspace_of(workspace)
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
            with _CancelOnSigint(cancel, err), TrainProgress(err, show_bar) as progress:
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
        table.add_row("best val loss", fmt(metrics.get("best_val_loss")))
        table.add_row(
            "training",
            f"{duration(metrics.get('train_seconds'))}, {fmt(metrics.get('train_images_per_second'), 1)} img/s",
        )
    if ev:
        table.add_row(f"accuracy ({ev.get('split')})", fmt(ev.get("accuracy")))
        table.add_row("macro F1", fmt(ev.get("macro_f1")))
        for k, v in (ev.get("top_k") or {}).items():
            table.add_row(k.replace("_", "-"), fmt(v))
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
        command = shlex.join(tensorboard_argv(run.dir / "tb", 6006, "127.0.0.1", short=True))
        out.print(f"TensorBoard: {command}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------------
# vitrine train-detector


class _DetectionProgress(TrainProgress):
    """The progress bar and per-epoch lines of a detection run (losses, mAP)."""

    def __call__(self, stage: str, done: int = 0, total: int = 0, info: dict | None = None, **extra) -> None:
        info = {**(info or {}), **extra}
        if stage == "epoch":
            self._epoch_line(info)
            return
        if stage == "train" and self.bar is not None:
            task = self._task("train", "train", total)
            stats = f"loss {fmt(info.get('loss'), 3)}"
            if info.get("images_per_second"):
                stats += f" {info['images_per_second']:.1f} img/s"
            self.bar.update(
                task,
                completed=done,
                total=total or None,
                description=f"epoch {info.get('epoch', '?')}/{info.get('epochs', '?')}",
                stats=stats,
                eta=duration(info.get("eta_seconds")),
            )
            return
        super().__call__(stage, done, total, info)

    def _epoch_line(self, info: dict) -> None:
        parts = [f"epoch {info.get('epoch')}/{info.get('epochs')}" + (" (partial)" if info.get("partial") else "")]
        if info.get("train_loss") is not None:
            parts.append(f"train loss {fmt(info['train_loss'], 3)}")
        for key, label in (("val_bbox_map50", "box mAP@.5"), ("val_segm_map50", "mask mAP@.5")):
            if info.get(key) is not None:
                parts.append(f"{label} {fmt(info[key], 3)}")
        if info.get("improved"):
            parts.append("[green]best[/]")
        if info.get("eta_seconds") is not None:
            parts.append(f"about {duration(info['eta_seconds'])} left")
        self.console.print(" · ".join(parts), highlight=False, soft_wrap=True)


def train_detector_cmd(
    dataset: Annotated[
        str | None,
        typer.Argument(
            help="COCO .json file, a folder of them (e.g. `vitrine data scenes` output), YOLO data.yaml, CVAT "
            ".xml or VOC folder; optional with --resume"
        ),
    ] = None,
    arch: Annotated[
        str | None, typer.Option(help="maskrcnn (boxes + masks), fasterrcnn, retinanet, fcos or ssdlite (boxes)")
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            help="efficientnet-lite0, -lite1, -lite2 (ImageNet weights in packages: offline); resnet50-fpn, "
            "resnet50-fpn-v2 (R-CNNs)"
        ),
    ] = None,
    pretrained: Annotated[
        bool | None,
        typer.Option("--pretrained/--random-init", help="start from ImageNet (lite*) or COCO (resnet50) weights"),
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

        ws = workspace_of(workspace)
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
            f"{duration(metrics.get('train_seconds'))}, {fmt(metrics.get('train_images_per_second'), 1)} img/s",
        )
    for split in ("test", "val"):
        ev = metrics.get(split) or {}
        if ev.get("bbox_map50") is not None and "n_images" in ev:
            for key, label in (("bbox", "box"), ("segm", "mask")):
                if ev.get(f"{key}_map50") is not None:
                    table.add_row(
                        f"{label} mAP ({split})",
                        f"@.5 {fmt(ev[f'{key}_map50'], 3)} · @.5:.95 {fmt(ev.get(f'{key}_map'), 3)}",
                    )
            break
    speed = metrics.get("speed") or {}
    if speed:
        table.add_row("inference", f"{speed['ms_per_image']:.1f} ms/image ({speed.get('device')})")
    table.add_row("folder", str(run.dir))
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``train-detector`` to the ``vitrine`` app."""
    app.command("train")(train)
    app.command("train-detector")(train_detector_cmd)
