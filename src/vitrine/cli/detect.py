"""``vitrine detect`` / ``vitrine segment``: find objects in image files and folders.

    vitrine detect  --model M IMAGES_OR_FOLDERS... --out DIR [--threshold 0.5] [--json]
    vitrine segment --model M IMAGES_OR_FOLDERS... --out DIR [--threshold 0.5] [--json]

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
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from vitrine.cli._console import JsonOpt, emit_json, err, guard, out, show_progress
from vitrine.cli._inputs import collect_inputs, load_for_task
from vitrine.core.atomic import atomic_write_bytes

DETECTIONS_FILE = "detections.json"
Images = Annotated[list[Path], typer.Argument(help="image files and/or folders (searched recursively)")]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="a detector (see GET /api/v1/detectors), a fine-tuned run id, a .onnx/.pt/.pth file, "
        "or a folder from export-model",
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="folder for the overlays and detections.json")]
ThresholdOpt = Annotated[float, typer.Option(min=0.0, max=1.0, help="keep detections scoring at least this")]
WorkspaceOpt = Annotated[
    Path | None, typer.Option(help="workspace holding runs/ (default: $VITRINE_HOME or the current folder)")
]
ArchOpt = Annotated[
    str | None,
    typer.Option("--arch", help="a .pt/.pth state_dict: its torchvision builder (e.g. fasterrcnn_resnet50_fpn)"),
]
ClassesOpt = Annotated[
    Path | None,
    typer.Option("--classes", help="a .pt/.pth checkpoint: its class names, one a line (line 1 is label 1)"),
]


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


def _overlay_name(shown: str, taken: set[str]) -> str:
    """``<stem>.png``, or ``<stem>-2.png``... when two inputs share a name."""
    stem = Path(shown).stem or "image"
    name, n = f"{stem}.png", 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name.lower())
    return name


def coco_document(detector: Any, task: str, threshold: float, results: list[ImageResult], dets: dict) -> dict:
    """The detections.json document: info, images (id -> file), categories, annotations."""
    from vitrine.predict.export import to_coco_results

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
    from vitrine.core.errors import VitrineError
    from vitrine.predict.overlay import draw_overlay

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
                atomic_write_bytes(out_dir / name, buf.getvalue())
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
    arch: str | None = None,
    classes: Path | None = None,
) -> None:
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from rich.text import Text

    from vitrine.core.atomic import atomic_write_json
    from vitrine.core.errors import VitrineError
    from vitrine.core.workspace import Workspace

    with guard():
        inputs = collect_inputs(images)
        if not inputs:
            raise VitrineError("no images found", hint="give image files, or folders that hold some")
        ws = Workspace(workspace)
        detector = load_for_task(model, task, ws, **_checkpoint_options(arch, classes))
        for note in getattr(detector, "notes", ()):
            err.print(f"[dim]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
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
            disable=not show_progress(),
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
        emit_json(
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


def _checkpoint_options(arch: str | None, classes: Path | None) -> dict:
    """``arch`` and ``classes`` for :func:`~vitrine.predict.detector.load_detector`, when given."""
    return {k: v for k, v in (("arch", arch), ("classes", classes)) if v is not None}


def detect(
    images: Images,
    model: ModelOpt,
    out_dir: OutOpt,
    threshold: ThresholdOpt = 0.5,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
    arch: ArchOpt = None,
    classes: ClassesOpt = None,
):
    """Detect objects in images (files or folders): overlay PNGs and one COCO detections.json."""
    _run("detection", images, model, out_dir, threshold, workspace, as_json, arch, classes)


def segment(
    images: Images,
    model: ModelOpt,
    out_dir: OutOpt,
    threshold: ThresholdOpt = 0.5,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
    arch: ArchOpt = None,
    classes: ClassesOpt = None,
):
    """Instance segmentation of images: overlays with masks and one COCO detections.json (RLE masks)."""
    _run("segmentation", images, model, out_dir, threshold, workspace, as_json, arch, classes)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main `vitrine` app."""
    app.command("detect")(detect)
    app.command("segment")(segment)
