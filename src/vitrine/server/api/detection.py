"""REST API for object detection and instance segmentation. Thin like v1: every route calls the core
(``vitrine.predict``: detectors by name, the overlay drawer, the JSON export) and returns
JSON or a PNG.

An image comes either as an upload (``file``) or from a collection (``project`` + ``path``, looked
up in the project's catalog, never joined onto a folder as given). Models are loaded once per
process by the registry; inference runs in a worker thread, one request at a time per model.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from collections import OrderedDict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from vitrine.core.errors import ModelError, NotFound, VitrineError
from vitrine.core.jsonio import jsonable, read_json
from vitrine.core.workspace import Workspace
from vitrine.runs import DETECTION_RUN_KINDS, Run
from vitrine.runs.leaderboard import leaderboard, run_row
from vitrine.server.deps import DetectionRunDep, StateDep, read_upload
from vitrine.server.state import AppState, per_app
from vitrine.tasks.train_detector import TRAIN_DETECTOR_JOB, detection_source

router = APIRouter(prefix="/api/v1", tags=["detection"])

MaskFormat = Literal["rle", "polygon", "none"]
DEFAULT_MODEL = "ssd-mobilenet-v2-coco"
RUN_DETECTORS_KEPT = 4  # fine-tuned detectors kept loaded (least recently used dropped first)
_LOCKS_GUARD = threading.Lock()


# ------------------------------------------------------------------------------ models
def _detectors(st: AppState) -> list[dict]:
    from vitrine.predict.detector import list_detectors
    from vitrine.server.security import visible

    rows = list_detectors(workspace=st.settings.root)
    runs = set(visible("run", [str(r.get("name")) for r in rows if r.get("kind") == "run"]))
    return [r for r in rows if r.get("kind") != "run" or str(r.get("name")) in runs]  # runs the caller may read


def _names(rows: list[dict], task: str | None = None) -> list[str]:
    return [str(r.get("name")) for r in rows if task is None or r.get("task") == task]


def _model_lock(request: Request, detector: Any) -> threading.Lock:
    """One lock per loaded model: OpenCV DNN nets and torch models are not safe to run from two
    threads at once."""
    locks = per_app(request.app.state, "detector_locks", dict)
    with _LOCKS_GUARD:
        return locks.setdefault(id(detector), threading.Lock())


class _RunDetectors:
    """Fine-tuned detectors loaded from runs, kept per app (the registry caches its own models):
    the few used last, each until its run.json changes."""

    def __init__(self):
        self.lock = threading.Lock()
        self.loaded: OrderedDict[str, tuple[tuple, Any]] = OrderedDict()

    def get(self, st: AppState, name: str) -> Any:
        from vitrine.core.workspace import Workspace
        from vitrine.predict.detector import load_detector

        record = Workspace(st.settings.root).runs_dir / name / "run.json"
        try:
            stamp = (record.stat().st_size, record.stat().st_mtime_ns)
        except OSError:
            stamp = ()
        with self.lock:
            hit = self.loaded.get(name)
            if hit is not None and hit[0] == stamp:
                self.loaded.move_to_end(name)
                return hit[1]
            detector = load_detector(name, workspace=st.settings.root)
            self.loaded[name] = (stamp, detector)
            while len(self.loaded) > RUN_DETECTORS_KEPT:
                self.loaded.popitem(last=False)
            return detector


def _run_detectors(request: Request) -> _RunDetectors:
    return per_app(request.app.state, "run_detectors", _RunDetectors)


def load_model(st: AppState, name: str, task: str, runs: _RunDetectors | None = None) -> Any:
    """The detector ``name``: a registry model (loaded once per process by the registry) or a
    fine-tuned run (kept in ``runs``). An unknown name is a 404 naming the known ones; a boxes-only
    model asked to segment is a 400 naming the segmentation models."""
    from vitrine.predict.detector import load_detector

    rows = _detectors(st)
    if name not in _names(rows):
        known = ", ".join(_names(rows)) or "none"
        raise NotFound(f"no detection or segmentation model {name!r}", hint=f"known models: {known}")
    if task == "segmentation":
        row = next(r for r in rows if r.get("name") == name)
        if row.get("task") != "segmentation":
            seg = _names(rows, "segmentation")
            raise VitrineError(
                f"model {name!r} only detects boxes: it cannot segment",
                hint=(
                    "use a segmentation model: " + ", ".join(seg)
                    if seg
                    else "no segmentation model here: fine-tune one (Mask R-CNN) or install one from the hub"
                )
                + f"; or POST /api/v1/detect for boxes from {name!r}",
            )
    is_run = any(r.get("name") == name and r.get("kind") == "run" for r in rows)
    try:
        if is_run and runs is not None:
            return runs.get(st, name)
        return load_detector(name, workspace=st.settings.root)
    except ModelError:
        raise
    except VitrineError as exc:  # any other problem loading it is the model's, not the request's
        raise ModelError(exc.message, hint=exc.hint) from None


# ------------------------------------------------------------------------------ inputs
async def read_image(
    st: AppState, file: UploadFile | None, project: str | None, path: str | None
) -> tuple[Image.Image, dict]:
    """The image of a request, decoded, with a description of where it came from."""
    from vitrine.collection.imageio import open_image, open_image_bytes

    if file is not None and (project or path):
        raise VitrineError("give either an uploaded file or a collection image (project + path), not both")
    if file is not None:
        data = await read_upload(file, st.settings.max_upload_bytes)
        name = file.filename or "upload"
        image = await run_in_threadpool(open_image_bytes, data, name=name)
        return image, {"source": "upload", "name": name, "bytes": len(data)}
    if project and path:
        proj = st.project(project)
        file_path = await run_in_threadpool(proj.image_path, path)
        image = await run_in_threadpool(open_image, file_path)
        return image, {"source": "collection", "project": project, "path": path}
    if project or path:
        raise VitrineError(
            "a collection image needs both project and path", hint="e.g. project=demo&path=animals/cat.jpg"
        )
    raise VitrineError(
        "no image given", hint="upload one as the multipart field 'file', or name a collection image (project + path)"
    )


def _parse_classes(classes: str | None) -> set[str] | None:
    if classes is None or not classes.strip():
        return None
    return {c.strip() for c in classes.split(",") if c.strip()}


async def _infer(request: Request, detector: Any, image: Image.Image, threshold: float) -> Any:
    lock = _model_lock(request, detector)

    def work():
        with lock:
            return detector.predict(image, threshold=threshold)

    return await run_in_threadpool(work)


def result_json(det: Any, detector: Any, task: str, mask_format: str) -> dict:
    """The answer of /detect and /segment: model, task, size, time, and one row per detection
    (box in pixel xyxy, class id, label, score, the class's overlay colour, and for segmentation
    the mask)."""
    from vitrine.predict.export import detections_to_json
    from vitrine.predict.overlay import class_color

    exported = detections_to_json(det, mask_format=mask_format if det.masks is not None else "none")
    rows = exported.get("detections", []) if isinstance(exported, dict) else exported
    detections = []
    for row in rows:
        box = row.get("box", row.get("bbox"))
        out = {
            "box": [round(float(v), 2) for v in box],
            "class_id": int(row.get("class_id", row.get("category_id", 0))),
            "label": row.get("label", row.get("class", "")),
            "score": round(float(row["score"]), 4),
        }
        out["color"] = list(class_color(out["label"]))  # the overlay's colour of the class (RGB)
        if mask_format != "none" and row.get("mask") is not None:
            out["mask"] = row["mask"]
        detections.append(out)
    return jsonable(
        {
            "model": getattr(detector, "name", det.model),
            "task": task,
            "model_task": getattr(detector, "task", task),
            "width": int(det.width),
            "height": int(det.height),
            "seconds": round(float(det.seconds), 4),
            "mask_format": mask_format if task == "segmentation" else "none",
            "detections": detections,
        }
    )


# ------------------------------------------------------------------------------ routes
Threshold = Annotated[float, Form(ge=0.0, le=1.0, description="keep detections scoring at least this (0..1)")]
ModelName = Annotated[str, Form(min_length=1, max_length=200, description="a name from GET /api/v1/detectors")]
Upload = Annotated[UploadFile | None, File(description="an image (multipart upload)")]
ProjectField = Annotated[str | None, Form(description="a collection (with path)")]
PathField = Annotated[str | None, Form(description="an image path of the collection, relative to images/")]
ProjectQuery = Annotated[str | None, Query(alias="project", description="a collection (with path)")]
PathQuery = Annotated[str | None, Query(alias="path", description="an image path of the collection")]
Classes = Annotated[str | None, Form(description="overlay only these class labels (comma-separated)")]
Alpha = Annotated[float, Form(ge=0.0, le=1.0, description="mask opacity in the overlay")]


@router.get("/detectors")
def detectors(st: StateDep):
    """Every detection and instance-segmentation model: the registry's (with whether it is
    available here) and the runs fine-tuned in this workspace."""
    return jsonable(_detectors(st))


@dataclasses.dataclass
class ImageInput:
    """Where the image of a request comes from: an upload, or a collection image."""

    file: UploadFile | None
    project: str | None
    path: str | None


def image_input(
    file: Upload = None,
    project: ProjectField = None,
    path: PathField = None,
    project_q: ProjectQuery = None,
    path_q: PathQuery = None,
) -> ImageInput:
    return ImageInput(file, project or project_q, path or path_q)


@dataclasses.dataclass
class Drawing:
    """What every route takes besides the image and the model: the score threshold, and for the
    PNG the classes to draw and the mask opacity."""

    threshold: float
    classes: str | None
    alpha: float


def drawing(threshold: Threshold = 0.5, classes: Classes = None, alpha: Alpha = 0.45) -> Drawing:
    return Drawing(threshold, classes, alpha)


ImageDep = Annotated[ImageInput, Depends(image_input)]
DrawingDep = Annotated[Drawing, Depends(drawing)]
Format = Annotated[Literal["json", "png"], Query(description="json, or png for the annotated image")]
PNG = {200: {"content": {"image/png": {}}}}
JSON_OR_PNG = {200: {"content": {"application/json": {}, "image/png": {}}}}


async def _answer(
    request: Request, st: AppState, task: str, src: ImageInput, model: str, opts: Drawing, mask_format: str, fmt: str
):
    # the input first: a bad upload is a 4xx whatever the state of the model, and never loads it
    image, source = await read_image(st, src.file, src.project, src.path)
    detector = await run_in_threadpool(load_model, st, model, task, _run_detectors(request))
    det = await _infer(request, detector, image, opts.threshold)
    wanted = _parse_classes(opts.classes)
    if wanted is not None:  # a class by its label or its id, like draw_overlay's filter
        pairs = zip(det.labels, det.class_ids, strict=True)
        det = det.select([lab in wanted or str(int(cid)) in wanted for lab, cid in pairs])
    if fmt == "png":
        return await overlay_response(image, det, opts.alpha)
    out = await run_in_threadpool(result_json, det, detector, task, mask_format)
    out["threshold"] = opts.threshold
    out["image"] = source
    return out


async def overlay_response(image: Image.Image, det: Any, alpha: float) -> Response:
    from vitrine.predict.overlay import draw_overlay

    def work() -> bytes:
        drawn = draw_overlay(image, det, alpha=alpha)
        buf = io.BytesIO()
        drawn.convert("RGB").save(buf, format="PNG")
        return buf.getvalue()

    data = await run_in_threadpool(work)
    return Response(data, media_type="image/png", headers={"Content-Disposition": 'inline; filename="overlay.png"'})


@router.post("/detect", responses=JSON_OR_PNG)
async def detect(
    request: Request,
    st: StateDep,
    src: ImageDep,
    opts: DrawingDep,
    model: ModelName = DEFAULT_MODEL,
    format: Format = "json",
):
    """Detect objects in an image (upload ``file``, or ``project`` + ``path``): boxes in pixel
    xyxy, classes and scores. ``?format=png`` answers the annotated image instead."""
    return await _answer(request, st, "detection", src, model, opts, "none", format)


@router.post("/segment", responses=JSON_OR_PNG)
async def segment(
    request: Request,
    st: StateDep,
    src: ImageDep,
    opts: DrawingDep,
    model: ModelName,
    mask_format: Annotated[MaskFormat, Form(description="masks as COCO RLE, polygons, or none")] = "rle",
    format: Format = "json",
):
    """Instance segmentation of an image: boxes, classes, scores and one mask per object (COCO
    RLE or polygons). A boxes-only model is refused with the segmentation models to use instead."""
    return await _answer(request, st, "segmentation", src, model, opts, mask_format, format)


@router.post("/detect/overlay", response_class=Response, responses=PNG)
async def detect_overlay(
    request: Request, st: StateDep, src: ImageDep, opts: DrawingDep, model: ModelName = DEFAULT_MODEL
):
    """The image with its detections drawn (boxes, labels with scores), as PNG."""
    return await _answer(request, st, "detection", src, model, opts, "none", "png")


@router.post("/segment/overlay", response_class=Response, responses=PNG)
async def segment_overlay(request: Request, st: StateDep, src: ImageDep, opts: DrawingDep, model: ModelName):
    """The image with its instance masks, boxes and labels drawn, as PNG."""
    return await _answer(request, st, "segmentation", src, model, opts, "none", "png")


# ------------------------------------------------------------------------------ training detectors
# A training request names its dataset as a folder of the workspace's ``datasets/`` (e.g. one made by
# ``vitrine data scenes --out <workspace>/datasets/<name>``): the name is the dataset's key, so the
# ownership policy applies to it like to any dataset. ``annotations`` may then pick a file or
# folder inside that dataset folder (a COCO json, a YOLO data.yaml, a CVAT xml, a VOC folder);
# nothing outside it is ever read.
API_REFUSED_OPTIONS = ("weights",)  # a path on the server: the CLI's to give, not a request's


class DetectionTrainRequest(BaseModel):
    """What to train: a dataset folder of the workspace, and options of DetectionConfig (arch,
    backbone, pretrained, image_size, epochs, batch_size, lr, max_minutes, ...; left out: defaults)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=200, description="a folder of the workspace's datasets/")
    annotations: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="an annotation file or folder inside the dataset folder (default: the folder's COCO files)",
    )
    config: dict[str, Any] = Field(default_factory=dict, description="DetectionConfig options")
    run_id: str | None = Field(None, min_length=1, max_length=100, description="the new run's id (default: made up)")


def detection_config(options: dict) -> Any:
    """A DetectionConfig from a request's options; a bad option is a VitrineError (400)."""
    from vitrine.train.detection.config import DetectionConfig

    refused = sorted(k for k in options if k in API_REFUSED_OPTIONS)
    if refused:
        raise VitrineError(
            f"option(s) {', '.join(refused)} cannot be set through the API",
            hint="local weights files are given on the command line (vitrine train-detector --weights)",
        )
    try:
        return DetectionConfig.from_dict(dict(options))
    except VitrineError:
        raise
    except (TypeError, ValueError) as exc:
        raise VitrineError(f"bad detection training options: {exc}", hint="see DetectionConfig's options") from None


def _detector_job_dict(job) -> dict:
    out = job.to_dict()
    out["run_id"] = (job.params or {}).get("run_id")
    return out


@router.post("/detection/train", status_code=202)
def start_detector_training(body: DetectionTrainRequest, st: StateDep):
    """Start training a detector in a background job; follow it with GET /api/v1/jobs/{job_id},
    cancel it with POST /api/v1/jobs/{job_id}/cancel (the run keeps its last.pt). ``dataset`` is a
    folder of the workspace's ``datasets/`` (``annotations`` a file or folder inside it); ``config``
    holds DetectionConfig options. Bad options or an unusable dataset are refused (400/404) before
    any job starts. The answer carries the ``run_id`` the run will have."""
    from vitrine.core.workspace import check_name
    from vitrine.data.detection.resolve import resolve_dataset
    from vitrine.runs import new_run_id
    from vitrine.train.detection.data import check_dataset

    ws = Workspace(st.settings.root)
    cfg = detection_config(body.config)
    source = detection_source(ws, body.dataset, body.annotations)
    ds, _, _ = resolve_dataset(str(source), body.dataset)
    check_dataset(ds, cfg.arch)
    if body.run_id is not None:
        check_name(body.run_id, "run id")
    run_id = body.run_id or new_run_id(cfg.arch, body.dataset)
    if (ws.run_dir(run_id) / "run.json").exists():
        raise VitrineError(f"run {run_id!r} already exists", hint="pick another run_id")
    params = {
        "dataset": body.dataset,
        "annotations": body.annotations,
        "config": jsonable(body.config),
        "run_id": run_id,
    }
    job = st.jobs.submit(TRAIN_DETECTOR_JOB, f"run:{run_id}", params)
    return _detector_job_dict(job)


# ------------------------------------------------------------------------------ detection runs
def _metrics_report(run: Run) -> dict:
    """The run's evaluation report (detection_metrics.json: per IoU type, per class, PR curves)."""
    return read_json(run.dir / "detection_metrics.json") or {}


@router.get("/detection/runs")
def detection_runs(st: StateDep):
    """Every detection and instance-segmentation run the caller may read, newest first, with its
    state and metrics (box / mask mAP, P/R/F1, mean IoU, ms/image)."""
    from vitrine.runs import list_runs
    from vitrine.server.security import hide_paths, visible

    found = [r for r in list_runs(Workspace(st.settings.root)) if r.record.get("kind") in DETECTION_RUN_KINDS]
    mine = set(visible("run", [r.id for r in found]))
    return hide_paths(jsonable(leaderboard([r for r in found if r.id in mine])))


def _run_job(st: AppState, run_id: str) -> dict | None:
    """The newest training job of the run, if the caller may read it."""
    from vitrine.server.security import visible

    jobs = st.jobs.list(f"run:{run_id}", kind=TRAIN_DETECTOR_JOB, limit=5)
    mine = set(visible("job", [j.id for j in jobs]))
    job = next((j for j in jobs if j.id in mine), None)
    return _detector_job_dict(job) if job is not None else None


@router.get("/detection/runs/{run_id}")
def detection_run(run: DetectionRunDep, st: StateDep):
    """The run's record (config, state, progress, metrics), its summary, the per-class AP table
    and PR curve data per IoU type (``bbox``, ``segm``), and its training job."""
    report = _metrics_report(run)
    types = [t for t in report.get("iou_types", []) if isinstance(report.get(t), dict)]
    files = [p.name for p in sorted(run.dir.glob("*")) if p.is_file() and p.suffix in (".json", ".csv")]
    from vitrine.server.security import hide_paths

    return hide_paths(
        jsonable(
            {
                "record": run.record,
                "summary": run_row(run),
                "iou_types": types,
                "per_class": {t: report[t].get("per_class", []) for t in types},
                "pr_curves": {t: report[t].get("pr_curves", []) for t in types},
                "files": files,
                "job": _run_job(st, run.id),
            }
        )
    )


@router.get("/detection/runs/{run_id}/pr-curves")
def detection_run_pr_curves(
    run: DetectionRunDep,
    iou_type: Annotated[Literal["bbox", "segm"] | None, Query(description="one panel only")] = None,
):
    """The run's precision-recall curves at IoU 0.5, one line per class, as a Plotly figure (JSON:
    ``data`` and ``layout``, ready for ``Plotly.react``)."""
    import json

    from vitrine.evaluate.detection import pr_curve_figure

    report = _metrics_report(run)
    types = [t for t in report.get("iou_types", []) if isinstance(report.get(t), dict)]
    if not types:
        raise NotFound(
            f"run {run.id!r} has no evaluation yet (state: {run.record.get('state')})",
            hint="the PR curves are written when its training finishes",
        )
    if iou_type is not None and iou_type not in types:
        raise NotFound(f"run {run.id!r} has no {iou_type} evaluation", hint=f"it has: {', '.join(types)}")
    return json.loads(pr_curve_figure(report, iou_type).to_json())
