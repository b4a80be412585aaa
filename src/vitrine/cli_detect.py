"""``vitrine detect`` / ``vitrine segment``: find objects in image files and folders; and the
detection side of ``vitrine eval`` (mAP of a detector on an annotated dataset).

    vitrine detect  --model M IMAGES_OR_FOLDERS... --out DIR [--threshold 0.5] [--json]
    vitrine segment --model M IMAGES_OR_FOLDERS... --out DIR [--threshold 0.5] [--json]
    vitrine eval --model M --data D [--out DIR] [--format coco|yolo|cvat|voc]

``detect`` and ``segment`` write one ``<name>.png`` overlay per image (masks, boxes, "label 0.93"
tags) and one ``detections.json`` in DIR: a COCO file whose ``images`` list maps ids to the input
files and whose ``annotations`` are the detections in COCO results form (``bbox`` [x, y, w, h],
``score``, ``category_id``; ``segmentation`` as compressed RLE for ``segment``), so it loads with
``pycocotools.coco.COCO`` as it is. A file that cannot be read is reported and skipped; the exit
status is 1 when any was, 0 when every image was processed, 2 for a usage error (unknown model, no
image found, DIR not writable).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

DETECTIONS_FILE = "detections.json"
Images = Annotated[list[Path], typer.Argument(help="image files and/or folders (searched recursively)")]
ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="a detector (see GET /api/v1/detectors) or a fine-tuned run id")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="folder for the overlays and detections.json")]
ThresholdOpt = Annotated[float, typer.Option(min=0.0, max=1.0, help="keep detections scoring at least this")]
WorkspaceOpt = Annotated[
    Path | None, typer.Option(help="workspace holding runs/ (default: $VITRINE_HOME or the current folder)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON on stdout")]


@dataclasses.dataclass
class ImageResult:
    path: str
    image_id: int | None = None
    overlay: str | None = None
    width: int | None = None
    height: int | None = None
    objects: int = 0
    classes: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: float | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _show_progress() -> bool:
    from vitrine.cli import err

    return bool(err.is_terminal or os.environ.get("VITRINE_PROGRESS")) and not os.environ.get("VITRINE_NO_PROGRESS")


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _overlay_name(shown: str, taken: set[str]) -> str:
    """``<stem>.png``, or ``<stem>-2.png``... when two inputs share a name."""
    stem = Path(shown).stem or "image"
    name, n = f"{stem}.png", 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name.lower())
    return name


def _segmentation_models(workspace) -> list[str]:
    from vitrine.detect import list_detectors

    return [r["name"] for r in list_detectors(workspace=workspace) if r.get("task") == "segmentation"]


def load_for_task(model: str, task: str, workspace) -> Any:
    """The detector ``model``; for ``segment``, refuse a boxes-only model with the ones to use."""
    from vitrine.detect import load_detector
    from vitrine.errors import VitrineError

    detector = load_detector(model, workspace=workspace)
    if task == "segmentation" and getattr(detector, "task", "detection") != "segmentation":
        seg = _segmentation_models(workspace)
        raise VitrineError(
            f"model {model!r} only detects boxes: it cannot segment",
            hint=("segmentation models: " + ", ".join(seg) if seg else "fine-tune a Mask R-CNN first")
            + f"; or run `vitrine detect --model {model}` for boxes",
        )
    return detector


def coco_document(detector: Any, task: str, threshold: float, results: list[ImageResult], dets: dict) -> dict:
    """The detections.json document: info, images (id -> file), categories, annotations."""
    from vitrine.detect.export import to_coco_results

    annotations = to_coco_results(dets)
    for i, ann in enumerate(annotations, start=1):
        ann["id"] = i
        ann["iscrowd"] = 0
        if "area" not in ann:
            if ann.get("segmentation") is not None:
                from pycocotools import mask as mask_utils

                seg = dict(ann["segmentation"])
                if isinstance(seg.get("counts"), str):
                    seg["counts"] = seg["counts"].encode("ascii")
                ann["area"] = float(mask_utils.area(seg))
            else:
                ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
    classes = getattr(detector, "classes", {}) or {}
    used = {int(a["category_id"]) for a in annotations}
    categories = [{"id": int(k), "name": str(v)} for k, v in sorted(classes.items())]
    known = {c["id"] for c in categories}
    for det in dets.values():  # classes a model reports without listing them
        for cid, label in zip(det.class_ids, det.labels, strict=True):
            if int(cid) in used and int(cid) not in known:
                categories.append({"id": int(cid), "name": label})
                known.add(int(cid))
    return {
        "info": {
            "description": f"vitrine {task} results",
            "model": getattr(detector, "name", ""),
            "task": task,
            "threshold": threshold,
            "date_created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "skipped": [{"path": r.path, "error": r.error} for r in results if r.error],
        },
        "images": [
            {"id": r.image_id, "file_name": r.path, "width": r.width, "height": r.height, "overlay": r.overlay}
            for r in results
            if r.image_id is not None
        ],
        "categories": categories,
        "annotations": annotations,
    }


def detect_files(
    detector: Any,
    task: str,
    inputs: list[tuple[str, Path | None, str | None]],
    out_dir: Path,
    threshold: float,
    alpha: float = 0.45,
    on_done=None,
) -> tuple[list[ImageResult], dict]:
    """Run ``detector`` over ``inputs`` and write an overlay PNG per image into ``out_dir``.
    Returns the per-image results (failures carry their error) and ``{image_id: Detections}``."""
    import io

    from vitrine.collection.imageio import open_image
    from vitrine.detect.overlay import draw_overlay
    from vitrine.errors import VitrineError

    results: list[ImageResult] = []
    dets: dict = {}
    taken: set[str] = {DETECTIONS_FILE}
    next_id = 1
    for shown, path, error in inputs:
        res = ImageResult(shown, error=error)
        if path is not None and error is None:
            try:
                image = open_image(path)
                det = detector.predict(image, threshold=threshold)
                if task == "detection" and det.masks is not None:
                    det = dataclasses.replace(det, masks=None)
                drawn = draw_overlay(image, det, alpha=alpha)
                buf = io.BytesIO()
                drawn.convert("RGB").save(buf, format="PNG")
                name = _overlay_name(shown, taken)
                _atomic_bytes(out_dir / name, buf.getvalue())
            except VitrineError as exc:
                res.error = exc.message
            except OSError as exc:
                res.error = f"cannot write the overlay: {exc.strerror or exc}"
            else:
                res.image_id, res.overlay = next_id, name
                res.width, res.height = int(det.width), int(det.height)
                res.objects, res.seconds = len(det), round(float(det.seconds), 4)
                res.classes = dict(Counter(det.labels).most_common())
                dets[next_id] = det
                next_id += 1
        results.append(res)
        if on_done is not None:
            on_done(res)
    return results, dets


def _run(
    task: str,
    images: list[Path],
    model: str,
    out_dir: Path,
    threshold: float,
    workspace: Path | None,
    as_json: bool,
) -> None:
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from rich.text import Text

    from vitrine.cli import _emit_json, _Guard, err, out
    from vitrine.cli_predict import collect_inputs
    from vitrine.errors import VitrineError
    from vitrine.train.runs import atomic_write_json
    from vitrine.workspace import Workspace

    with _Guard():
        inputs = collect_inputs(images)
        if not inputs:
            raise VitrineError("no images found", hint="give image files, or folders that hold some")
        ws = Workspace(workspace)
        detector = load_for_task(model, task, ws)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VitrineError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from None
        verb = "segmenting" if task == "segmentation" else "detecting"
        progress = Progress(
            TextColumn(f"[bold]{verb}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("• {task.fields[file]}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not _show_progress(),
        )
        try:
            with progress:
                bar = progress.add_task(verb, total=len(inputs), file="")

                def advance(res: ImageResult) -> None:
                    progress.update(bar, advance=1, file=escape(Path(res.path).name))

                results, dets = detect_files(detector, task, inputs, out_dir, threshold, on_done=advance)
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: detections.json not written", highlight=False)
            raise typer.Exit(130) from None
        document = coco_document(detector, task, threshold, results, dets)
        json_path = out_dir / DETECTIONS_FILE
        try:
            atomic_write_json(json_path, document)
        except OSError as exc:
            raise VitrineError(f"cannot write {json_path}: {exc.strerror or exc}") from None

    failed = [r for r in results if r.error]
    for r in failed:
        err.print(f"[yellow]skipped[/] {escape(r.path)}: {escape(r.error or '')}", highlight=False, soft_wrap=True)
    if as_json:
        _emit_json(
            {
                "model": getattr(detector, "name", model),
                "task": task,
                "threshold": threshold,
                "out": str(out_dir),
                "detections_json": str(json_path),
                "images": [r.to_dict() for r in results],
                "processed": len(results) - len(failed),
                "failed": len(failed),
            }
        )
    else:
        table = Table(title=f"{getattr(detector, 'name', model)} ({task}, score ≥ {threshold:g})")
        table.add_column("file", overflow="fold")
        table.add_column("objects", justify="right")
        table.add_column("classes", overflow="fold")
        table.add_column("ms", justify="right")
        table.add_column("overlay", overflow="fold")
        for r in results:
            if r.error:
                table.add_row(Text(r.path), "", Text("unreadable", style="red"), "", Text(r.error))
            else:
                classes = ", ".join(f"{label} ×{n}" if n > 1 else label for label, n in r.classes.items())
                ms = f"{r.seconds * 1000:.0f}" if r.seconds is not None else ""
                table.add_row(Text(r.path), str(r.objects), Text(classes or "—"), ms, Text(r.overlay or ""))
        out.print(table)
    summary = (
        f"{len(results) - len(failed)} image(s) processed, {len(failed)} skipped; "
        f"{sum(r.objects for r in results)} object(s); wrote overlays and {escape(str(json_path))}"
    )
    err.print(summary, highlight=False, soft_wrap=True)
    raise typer.Exit(1 if failed else 0)


def detect(
    images: Images,
    model: ModelOpt,
    out_dir: OutOpt,
    threshold: ThresholdOpt = 0.5,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
):
    """Detect objects in images (files or folders): overlay PNGs and one COCO detections.json."""
    _run("detection", images, model, out_dir, threshold, workspace, as_json)


def segment(
    images: Images,
    model: ModelOpt,
    out_dir: OutOpt,
    threshold: ThresholdOpt = 0.5,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
):
    """Instance segmentation of images: overlays with masks and one COCO detections.json (RLE masks)."""
    _run("segmentation", images, model, out_dir, threshold, workspace, as_json)


# ------------------------------------------------------------------------------------------------
# vitrine eval --model M --data D


def _fmt(x: Any, digits: int = 3) -> str:
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

    from vitrine.cli import _emit_json, _Guard, err, out
    from vitrine.data.detection.convert import detect_format, read_any
    from vitrine.evaluate.detection import evaluate_detection, pr_curve_figure, predict_dataset, write_detection_report
    from vitrine.workspace import Workspace

    with _Guard():
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
            disable=not _show_progress(),
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
            tmp = html.with_name(f".{html.name}.{os.getpid()}.tmp")
            pr_curve_figure(report).write_html(str(tmp), include_plotlyjs=True, full_html=True)
            os.replace(tmp, html)
            written.append(html)
    if as_json:
        _emit_json({**report, "files": [str(p) for p in written]})
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
        table.add_row(label, *[_fmt(report[t].get(key)) for t in report["iou_types"]])
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
            _fmt(row.get("ap50")),
            _fmt(row.get("ap")),
            _fmt(row.get("precision")),
            _fmt(row.get("recall")),
            _fmt(row.get("f1")),
        )
    out.print(per_class)
    if report.get("unmapped"):
        unmapped = ", ".join(f"{k} ×{v}" for k, v in report["unmapped"].items())
        err.print(f"[yellow]left out[/] (classes not in the dataset): {unmapped}", highlight=False, soft_wrap=True)
    if written:
        err.print("wrote " + ", ".join(str(p) for p in written), highlight=False, soft_wrap=True)
    return report


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main `vitrine` app."""
    app.command("detect")(detect)
    app.command("segment")(segment)
