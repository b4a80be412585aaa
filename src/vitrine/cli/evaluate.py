"""``vitrine eval``: score a trained run on its dataset, or any detector on annotated images.

vitrine eval RUN [--split test] [--json]
vitrine eval --model M --data D [--out DIR] [--format coco|yolo|cvat|voc]
vitrine eval --model CKPT.pt --data D [--arch NAME] [--classes FILE] --data-split test --record
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vitrine.cli._console import JsonOpt, emit_json, err, guard, out, show_progress
from vitrine.cli._inputs import load_for_task
from vitrine.cli._runs import TrainProgress, WorkspaceOpt, fmt, workspace_of
from vitrine.core.atomic import atomic_path

# ------------------------------------------------------------------------------------------------
# vitrine eval


def eval_run(
    run_id: Annotated[str | None, typer.Argument(help="the run to evaluate (see `vitrine runs`)")] = None,
    split: Annotated[str, typer.Option(help="test, val, train or all")] = "test",
    batch_size: Annotated[int, typer.Option(min=1, max=4096)] = 32,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="detection: a detector, a detection run, or a .onnx / .pt / .pth file to evaluate"
        ),
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
    data_split: Annotated[
        str | None, typer.Option("--data-split", help="detection: score on this split of --data only (e.g. test)")
    ] = None,
    record: Annotated[
        bool, typer.Option("--record", help="detection: keep the result as a run, on the dataset's leaderboard")
    ] = False,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="detection, with --record: the dataset's name on the leaderboard")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="detection, with --record: the run's id")] = None,
    arch: Annotated[
        str | None,
        typer.Option("--arch", help="a .pt/.pth state_dict: its torchvision builder (e.g. fasterrcnn_resnet50_fpn)"),
    ] = None,
    classes: Annotated[
        Path | None,
        typer.Option(
            "--classes",
            help="a .pt/.pth checkpoint: its class names, one a line (line 1 is label 1; default: the dataset's)",
        ),
    ] = None,
):
    """Evaluate a classification run on a split of its dataset (accuracy, macro-F1, per class), a
    detection run again on the split it was evaluated on (keeping its predictions for its errors
    view), or a detector on annotations with --model M --data D (COCO mAP@.5 and @.5:.95, per class, P/R/F1)."""
    from rich.table import Table

    from vitrine.core.errors import VitrineError
    from vitrine.evaluate.classification import evaluate_run
    from vitrine.runs import DETECTION_RUN_KINDS, Run

    if data is not None or model is not None:
        with guard():
            if (arch is not None or classes is not None) and model is None:
                raise VitrineError("--arch and --classes describe the checkpoint given by --model", hint="add --model")
            if data is None or model is None or run_id is not None:
                raise VitrineError(
                    "detection evaluation takes --model and --data (and no run id)",
                    hint="vitrine eval --model ssd-mobilenet-v2-coco --data annotations.json",
                )
        eval_detection(
            model, data, out_dir, data_format, score_threshold, iou_threshold, workspace, as_json, ignore_difficult,
            data_split=data_split, record=record, dataset=dataset, run_id=name, arch=arch, classes=classes,
        )  # fmt: skip
        return
    with guard():
        if run_id is None:
            raise VitrineError(
                "give the run to evaluate, or --model and --data for a detector",
                hint="vitrine eval RUN_ID, or vitrine eval --model M --data annotations.json",
            )
        if split not in ("test", "val", "train", "all"):
            raise VitrineError(f"unknown split {split!r}", hint="test, val, train or all")
        ws = workspace_of(workspace)
        run = Run.load(ws, run_id)
        if run.kind in DETECTION_RUN_KINDS:  # again on the split it was evaluated on, keeping its predictions
            from vitrine.evaluate.detection import report_summary
            from vitrine.evaluate.run_errors import reevaluate_detection_run

            report = reevaluate_detection_run(ws, run)
            summary = {"run": run.id, **report_summary(report), "images": report.get("images")}
            if as_json:
                emit_json(summary)
            else:
                out.print(f"run {run.id} evaluated again on {summary['images']} images: "
                          f"box mAP@.5 {fmt(summary.get('bbox_map50'))}; its predictions are kept for its errors view",
                          highlight=False, soft_wrap=True)  # fmt: skip
            return
        show_bar = show_progress()
        try:
            with TrainProgress(err, show_bar) as progress:
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
        table.add_row(key.replace("_", " "), fmt(report.get(key)))
    for k, v in (report.get("top_k") or {}).items():
        table.add_row(k.replace("_", "-") + " accuracy", fmt(v))
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
            row["class"], fmt(row["precision"], 3), fmt(row["recall"], 3), fmt(row["f1"], 3), str(row["support"])
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
    *,
    data_split: str | None = None,
    record: bool = False,
    dataset: str | None = None,
    run_id: str | None = None,
    arch: str | None = None,
    classes: Path | None = None,
) -> dict:
    """Evaluate detector ``model`` on the annotated dataset ``data`` (COCO json, YOLO data.yaml,
    CVAT xml or VOC folder): print the mAP table, write the report files into ``out_dir``.
    ``ignore_difficult`` (VOC's protocol: ``difficult`` objects neither found nor missed):
    by default on for a VOC source, off otherwise. ``data_split`` scores one split of ``data``;
    ``record`` keeps the result as a run of ``dataset`` (default: the folder or file name of
    ``data``), so the detector stands on that dataset's leaderboard. ``arch`` and ``classes``
    describe a .pt / .pth checkpoint (its torchvision builder, its class names; by default the
    names are the dataset's categories when their count matches its head)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from vitrine.core.errors import VitrineError
    from vitrine.core.workspace import Workspace
    from vitrine.data.detection.convert import dataset_name, detect_format, read_any
    from vitrine.evaluate.detection import evaluate_detection, pr_curve_figure, predict_dataset, write_detection_report

    with guard():
        fmt = (data_format or detect_format(data)).lower()
        gt = read_any(data, format=fmt)
        if data_split is not None:
            splits = sorted({im.split for im in gt.images if im.split})
            gt = gt.split(data_split)
            if not gt.images:
                raise VitrineError(
                    f"{data} has no image in split {data_split!r}",
                    hint="its splits: " + (", ".join(splits) if splits else "none (leave out --data-split)"),
                )
        if (dataset is not None or run_id is not None) and not record:
            raise VitrineError("--dataset and --name name the recorded run", hint="add --record")
        if ignore_difficult is None:
            ignore_difficult = fmt == "voc"
        options = {k: v for k, v in (("arch", arch), ("classes", classes)) if v is not None}
        from vitrine.predict.torchvision_checkpoint import is_checkpoint_name

        if is_checkpoint_name(model):
            options["categories"] = gt.categories
        detector = load_for_task(model, "detection", Workspace(workspace), **options)
        for note in getattr(detector, "notes", ()):
            err.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
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
        if record:
            from vitrine.evaluate.imported import record_detector

            run = record_detector(
                Workspace(workspace), detector, gt, report, split=data_split,
                dataset=dataset or dataset_name(data), source=model, run_id=run_id, predictions=preds,
                dataset_path=str(Path(data).resolve()),
            )  # fmt: skip
            report["run"] = run.id
            err.print(
                f"recorded as run [bold]{run.id}[/] on the leaderboard of {run.record['dataset']}: "
                f"vitrine leaderboard {run.record['dataset']}",
                highlight=False,
                soft_wrap=True,
            )
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


def register(app: typer.Typer) -> None:
    """Add ``eval`` to the ``vitrine`` app."""
    app.command("eval")(eval_run)
