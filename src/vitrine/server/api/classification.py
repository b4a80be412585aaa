"""REST API for classification: datasets, their statistics and images, training jobs, runs and
predictions. Thin like v1: every route calls the core (vitrine.data, vitrine.train) and returns JSON.

The workspace is the folder the server was started on (``datasets/`` and ``runs/`` in it).
Images are served only when they are samples of the dataset named in the URL: the path is looked
up among the dataset's samples, never joined onto a folder as given.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from vitrine.core.atomic import atomic_path
from vitrine.core.errors import NotFound, VitrineError
from vitrine.core.jsonio import jsonable, read_json
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.runs import Run, list_runs, new_run_id
from vitrine.runs.leaderboard import leaderboard, run_row
from vitrine.runs.summary import summarize
from vitrine.server.api.responses import CSV, IMAGE, JPEG
from vitrine.server.deps import RunDep, StateDep, WorkspaceDep, read_upload
from vitrine.server.security import hide_paths, require, visible
from vitrine.server.state import per_app
from vitrine.tasks.train_classifier import (
    EMBEDDING_ONLY,
    FINETUNE_ONLY,
    PROBE_ONLY,
    TRAIN_JOB,
    ZERO_SHOT_ONLY,
    TrainRequest,
    finetune_config,
)

router = APIRouter(prefix="/api/v1", tags=["classification"])

THUMBS_DIR = "thumbs"  # under the dataset's folder
MAX_PER_CLASS = 64
CLASSIFIERS_KEPT = 4  # loaded classifiers kept in memory (least recently used dropped first)


# ------------------------------------------------------------------------------ caches and state
class _Cache:
    """What the classification routes keep between requests, per app: loaded datasets (with their
    sample index), computed statistics, loaded classifiers, and the run each training job makes."""

    def __init__(self):
        self.lock = threading.Lock()
        self.datasets: dict[Path, tuple[tuple, _Loaded]] = {}
        self.views: dict[Path, tuple[tuple, _Loaded]] = {}  # members' views of datasets with hidden splits
        self.stats: dict[tuple[Path, tuple[str, ...]], tuple[tuple, dict]] = {}
        self.stats_lock = threading.Lock()
        self.classifiers: OrderedDict[Path, tuple[tuple, Any, threading.Lock]] = OrderedDict()
        self.classifier_lock = threading.Lock()
        self.submit_lock = threading.Lock()


@dataclasses.dataclass
class _Loaded:
    name: str
    dir: Path
    dataset: ClassificationDataset
    by_path: dict[str, Sample]
    hidden: tuple[str, ...] = ()  # splits left out of this view: the caller may not see their labels


def cache(request: Request) -> _Cache:
    return per_app(request.app.state, "classification", _Cache)


CacheDep = Annotated[_Cache, Depends(cache)]


def _stamp(*paths: Path) -> tuple:
    """Size and modification time of files: a cache key that changes when any of them does."""
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _unknown_dataset(ws: Workspace, name: str) -> NotFound:
    names = ws.dataset_names()
    return NotFound(
        f"no dataset {name!r}",
        hint=("datasets here: " + ", ".join(names)) if names else "import one with `vitrine data import`",
    )


def loaded_dataset(name: str, ws: WorkspaceDep, c: CacheDep) -> _Loaded:
    """The dataset as the caller may see it: whole for its owner and admins; without its hidden
    splits (:mod:`vitrine.data.board`) for the members it is shared with, so that no route serves a
    hidden image, its path (which may hold its class) or its label to them."""
    if name not in ws.dataset_names():  # also refuses names that are not folder names
        raise _unknown_dataset(ws, name)
    from vitrine.data.board import read_board
    from vitrine.data.importers import load_dataset
    from vitrine.server.security import may

    directory = ws.dataset_dir(name)
    key = _stamp(directory / "dataset.json", directory / "samples.csv")
    with c.lock:
        hit = c.datasets.get(directory)
    if hit is not None and hit[0] == key:
        entry = hit[1]
    else:
        dataset = load_dataset(ws, name)
        entry = _Loaded(name, directory, dataset, {s.path: s for s in dataset.samples})
        with c.lock:
            c.datasets[directory] = (key, entry)
    board = read_board(ws, name)
    if not board.hidden or may("dataset", name, "manage"):
        return entry
    view_key = (*key, board.hidden)
    with c.lock:
        hit = c.views.get(directory)
    if hit is not None and hit[0] == view_key:
        return hit[1]
    full = entry.dataset
    kept = [s for s in full.samples if s.split not in board.hidden]
    view = dataclasses.replace(full, samples=kept, problems=[])
    entry = _Loaded(name, directory, view, {s.path: s for s in kept}, board.hidden)
    with c.lock:
        c.views[directory] = (view_key, entry)
    return entry


DatasetDep = Annotated[_Loaded, Depends(loaded_dataset)]


# ------------------------------------------------------------------------------ datasets
def dataset_row(ws: Workspace, name: str, c: _Cache) -> dict:
    try:
        ds = loaded_dataset(name, ws, c).dataset
    except VitrineError as exc:
        return {"name": name, "error": exc.to_dict()}
    summary = ds.summary()
    return {
        "name": name,
        "classes": len(ds.classes),
        "samples": len(ds.samples),
        "splits": summary["splits"],
        "source": summary["source"].get("kind") if isinstance(summary["source"], dict) else None,
        "problems": len(summary["problems"]),
    }


@router.get("/datasets")
def list_datasets(ws: WorkspaceDep, c: CacheDep):
    """Every dataset of the workspace with its size; a damaged one carries an ``error``."""
    return hide_paths([dataset_row(ws, name, c) for name in visible("dataset", ws.dataset_names())])


@router.get("/datasets/{name}")
def dataset_summary(d: DatasetDep):
    """The dataset's summary (classes, samples, splits, source) with the problems found at import
    and its counts per split and class."""
    out = d.dataset.summary()
    out["counts"] = {split: n for split, n in d.dataset.counts().items() if split not in d.hidden}
    out["hidden"] = list(d.hidden)  # splits the caller may not see (the board's hidden test set)
    return hide_paths(jsonable(out))


def dataset_stats_cached(d: _Loaded, c: _Cache) -> dict:
    from vitrine.data.stats import dataset_stats

    key = _stamp(d.dir / "dataset.json", d.dir / "samples.csv")
    with c.lock:
        hit = c.stats.get((d.dir, d.hidden))
    if hit is not None and hit[0] == key:
        return hit[1]
    with c.stats_lock:  # one computation at a time: it reads every image
        with c.lock:
            hit = c.stats.get((d.dir, d.hidden))
        if hit is not None and hit[0] == key:
            return hit[1]
        stats = jsonable(dataset_stats(d.dataset, cache_dir=d.dir))
        if d.hidden and isinstance(stats.get("counts"), dict):  # a member's view: no row for a hidden split
            stats["counts"] = {split: n for split, n in stats["counts"].items() if split not in d.hidden}
        with c.lock:
            c.stats[(d.dir, d.hidden)] = (key, stats)
        return stats


@router.get("/datasets/{name}/stats")
def dataset_stats_route(
    d: DatasetDep,
    c: CacheDep,
    per_image: Annotated[bool, Query(description="include the raw per-image values (large)")] = True,
):
    """Counts per class and split, image sizes (width, height, aspect ratio, file size) with
    percentiles and histograms, formats, duplicates and the groups leaking across splits,
    unreadable images, warnings. Computed once, then cached until the dataset changes."""
    stats = dataset_stats_cached(d, c)
    return stats if per_image else {k: v for k, v in stats.items() if k != "per_image"}


def _relative(d: _Loaded, path: Any) -> str:
    """A sample path as the API names it (relative to the dataset's image root, POSIX)."""
    p = Path(path)
    if p.is_absolute():
        try:
            return p.relative_to(d.dataset.root).as_posix()
        except ValueError:
            return p.as_posix()
    return p.as_posix()


@router.get("/datasets/{name}/samples")
def dataset_samples(
    d: DatasetDep,
    per_class: Annotated[int, Query(ge=1, le=MAX_PER_CLASS, description="images per class")] = 8,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
):
    """A few sample images per class (paths relative to the dataset, with their split)."""
    from vitrine.data.stats import sample_paths

    picked = sample_paths(d.dataset, per_class=per_class, seed=seed)
    out: dict[str, list[dict]] = {}
    for label in d.dataset.classes:
        rows = []
        for path in picked.get(label, []):
            rel = _relative(d, path)
            sample = d.by_path.get(rel)
            rows.append({"path": rel, "split": sample.split if sample else ""})
        out[label] = rows
    return {"dataset": d.name, "per_class": per_class, "seed": seed, "classes": list(d.dataset.classes), "samples": out}


def sample_file(d: _Loaded, path: str) -> Path:
    """The file of the sample ``path`` of dataset ``d``: 404 unless it is one of its samples."""
    sample = d.by_path.get(path)
    parts = path.replace("\\", "/").split("/")
    if sample is None or ".." in parts or path.startswith("/") or "\x00" in path:
        raise NotFound(f"no image {path!r} in dataset {d.name!r}")
    file = d.dataset.path_of(sample)
    if not file.is_file():
        raise NotFound(f"image {path!r} of dataset {d.name!r} is missing on disk", hint=f"looked in {file.parent}")
    return file


@router.get("/datasets/{name}/images/{path:path}", response_class=FileResponse, responses=IMAGE)
def dataset_image(d: DatasetDep, path: str):
    """The original image file of one sample."""
    return FileResponse(sample_file(d, path))


def dataset_thumbnail(d: _Loaded, path: str, size: int) -> Path | bytes:
    """A JPEG thumbnail of a sample, cached under the dataset's folder (made on first request);
    its bytes when that folder cannot be written to."""
    from vitrine.collection.imageio import make_thumbnail, open_image

    file = sample_file(d, path)
    st = file.stat()
    key = hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{size}".encode()).hexdigest()
    thumb = d.dir / THUMBS_DIR / key[:2] / f"{key}-{size}.jpg"
    if thumb.is_file():
        return thumb
    data = make_thumbnail(open_image(file, min_side=size), size=size)
    try:
        thumb.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(thumb, sync=False) as tmp:  # a cache: no fsync
            tmp.write_bytes(data)
    except OSError:  # a read-only dataset folder: no cache, same picture
        return data
    return thumb


@router.get("/datasets/{name}/thumbs/{path:path}", response_class=Response, responses=JPEG)
def dataset_thumb(d: DatasetDep, path: str, size: Annotated[int, Query(ge=32, le=1024)] = 320):
    """A JPEG thumbnail of one sample (longest side ``size``)."""
    thumb = dataset_thumbnail(d, path, size)
    headers = {"Cache-Control": "max-age=86400"}
    if isinstance(thumb, bytes):
        return Response(thumb, media_type="image/jpeg", headers=headers)
    return FileResponse(thumb, media_type="image/jpeg", headers=headers)


# ------------------------------------------------------------------------------ training
def _check_options(body: TrainRequest) -> None:
    """Refuse options that the method would silently ignore."""
    allowed = {
        "finetune": FINETUNE_ONLY,
        "linear-probe": EMBEDDING_ONLY + PROBE_ONLY + ("batch_size",),
        "zero-shot": EMBEDDING_ONLY + ZERO_SHOT_ONLY,
    }[body.method]
    given = [k for k, v in body.model_dump(exclude={"method", "run_id"}).items() if v is not None]
    extra = [k for k in given if k not in allowed]
    if extra:
        raise VitrineError(
            f"option(s) {', '.join(extra)} do not apply to method {body.method!r}",
            hint=f"{body.method} takes: {', '.join(allowed)}",
        )
    if body.embedding_model is not None:
        _model_spec(body.embedding_model, "embedding")  # unknown: 400 now rather than a failed job later
    if body.backbone is not None:
        _model_spec(body.backbone, "classification")
    if body.run_id is not None:
        from vitrine.core.workspace import check_name

        check_name(body.run_id, "run id")


def _model_spec(name: str, task: str):
    from vitrine.models import registry

    if task == "classification":
        import vitrine.models.classifiers.backbones  # noqa: F401  (registers the fine-tuning backbones)
    spec = registry.get(name)
    if spec.task != task:
        wanted = "a fine-tuning backbone" if task == "classification" else "an embedding model"
        choices = ", ".join(s.name for s in registry.list_models(task)) or "none"
        raise VitrineError(f"{name!r} is not {wanted}", hint=f"choose one of: {choices}")
    return spec


METHODS = {
    "linear-probe": "logistic regression on the embeddings of an embedding model (seconds to train)",
    "zero-shot": "no training: class names as text prompts for an embedding model",
    "finetune": "trains a pretrained backbone end to end (minutes to hours on a CPU)",
}


@router.get("/train/options")
def train_options():
    """What POST /datasets/{name}/train accepts: the methods, the fine-tuning backbones and the
    embedding models (with whether each is available on this server)."""
    from vitrine.models import registry

    try:
        import vitrine.models.classifiers.backbones  # noqa: F401  (registers the fine-tuning backbones)
    except ImportError:  # pragma: no cover - part of vitrine
        pass
    return {
        "methods": [{"name": k, "summary": v} for k, v in METHODS.items()],
        "backbones": [spec.describe(probe_hub=False) for spec in registry.list_models("classification")],
        "embedding_models": [spec.describe(probe_hub=False) for spec in registry.list_models("embedding")],
    }


def _job_dict(job, c: _Cache | None = None) -> dict:
    out = job.to_dict()
    out["run_id"] = (job.params or {}).get("run_id") if job.kind == TRAIN_JOB else None
    return out


@router.post("/datasets/{name}/train", status_code=202)
def start_training(d: DatasetDep, body: TrainRequest, st: StateDep, ws: WorkspaceDep, c: CacheDep):
    """Start training a classifier on the dataset in a background job; follow it with
    GET /api/v1/jobs/{job_id}, cancel it with POST /api/v1/jobs/{job_id}/cancel. The answer carries
    the ``run_id`` the run will have. One training per dataset at a time: while one is under way,
    the answer is that job."""
    _check_options(body)
    if body.method == "finetune":
        finetune_config(body)  # a bad option is a 400 now, not a failed job
    run_id = body.run_id or new_run_id(body.method, d.name)
    if (ws.run_dir(run_id) / "run.json").exists():
        raise VitrineError(f"run {run_id!r} already exists", hint="pick another run_id")
    params = {"dataset": d.name, "request": body.model_dump(mode="json", exclude_none=True), "run_id": run_id}
    with c.submit_lock:
        job = st.jobs.submit(TRAIN_JOB, f"dataset:{d.name}", params)
    return _job_dict(job, c)


@router.get("/datasets/{name}/jobs")
def dataset_jobs(d: DatasetDep, st: StateDep, c: CacheDep):
    """The training jobs of this dataset, newest first."""
    found = st.jobs.list(target=f"dataset:{d.name}", kind=TRAIN_JOB)
    mine = set(visible("job", [j.id for j in found]))
    return hide_paths([_job_dict(j, c) for j in found if j.id in mine])


# ------------------------------------------------------------------------------ runs
SORTS = ("created", "accuracy", "macro_f1", "images_per_second")


@router.get("/runs")
def runs(
    ws: WorkspaceDep,
    dataset: Annotated[str | None, Query(description="only the runs of this dataset")] = None,
    sort: Annotated[Literal["created", "accuracy", "macro_f1", "images_per_second"], Query()] = "created",
):
    """Every run of the workspace (newest first, or best first by ``sort``) with its scores."""
    found = [r for r in list_runs(ws) if dataset is None or r.record.get("dataset") == dataset]
    mine = set(visible("run", [r.id for r in found]))
    return hide_paths(jsonable(leaderboard([r for r in found if r.id in mine], sort)))


@router.get("/runs/{run_id}")
def run_detail(run: RunDep):
    """The run's record (config, state, progress, metrics) and its evaluation files."""
    per_class = read_json(run.dir / "per_class.json")
    if per_class is None and (run.dir / "per_class.json").is_file():
        import json

        try:  # a list of rows is fine too
            per_class = json.loads((run.dir / "per_class.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            per_class = None
    files = [n for n in ("metrics.json", "per_class.csv", "per_class.json", "confusion.csv") if (run.dir / n).is_file()]
    return hide_paths(
        jsonable(
            {
                "record": run.record,
                "summary": run_row(run),
                "metrics": read_json(run.dir / "metrics.json"),
                "per_class": per_class,
                "files": files,
            }
        )
    )


def _run_csv(run: Run, name: str) -> FileResponse:
    path = run.dir / name
    if not path.is_file():
        raise NotFound(f"run {run.id!r} has no {name}", hint="it is written when the run is evaluated")
    return FileResponse(path, media_type="text/csv; charset=utf-8", filename=f"{run.id}_{name}")


@router.get("/runs/{run_id}/confusion.csv", response_class=FileResponse, responses=CSV)
def run_confusion_csv(run: RunDep):
    return _run_csv(run, "confusion.csv")


@router.get("/runs/{run_id}/per_class.csv", response_class=FileResponse, responses=CSV)
def run_per_class_csv(run: RunDep):
    return _run_csv(run, "per_class.csv")


# ------------------------------------------------------------------------------ predictions
def classifier_for(run: Run, c: _Cache):
    """The run's classifier, loaded once (again when run.json changes), with a lock to use it."""
    from vitrine.predict.classifier import load_classifier

    key = _stamp(run.dir / "run.json")
    with c.classifier_lock:
        hit = c.classifiers.get(run.dir)
        if hit is not None and hit[0] == key:
            c.classifiers.move_to_end(run.dir)
            return hit[1], hit[2]
        clf = load_classifier(run)
        entry = (key, clf, threading.Lock())
        c.classifiers[run.dir] = entry
        while len(c.classifiers) > CLASSIFIERS_KEPT:
            c.classifiers.popitem(last=False)
        return clf, entry[2]


def model_card(run: Run) -> dict:
    r = run.record
    summary = summarize(run)
    return jsonable(
        {
            "id": run.id,
            "kind": r.get("kind"),
            "model": r.get("model"),
            "dataset": r.get("dataset"),
            "state": r.get("state"),
            "classes": len(r.get("classes") or []),
            "metrics": {"accuracy": summary["accuracy"], "macro_f1": summary["macro_f1"]},
            "evaluated_on": summary["evaluated_on"],
        }
    )


def predict_image(run: Run, c: _Cache, image, top: int) -> dict:
    clf, lock = classifier_for(run, c)
    started = time.perf_counter()
    with lock:
        probs = np.asarray(clf.predict_proba([image]), dtype=np.float64)
    seconds = time.perf_counter() - started
    classes = list(clf.classes)
    if probs.ndim != 2 or probs.shape != (1, len(classes)):
        raise VitrineError(f"run {run.id!r}: its classifier answered {probs.shape} for {len(classes)} classes")
    row = probs[0]
    order = np.argsort(-row, kind="stable")[:top]
    return {
        "classes": [{"label": classes[i], "probability": float(row[i])} for i in order],
        "model": model_card(run),
        "seconds": round(seconds, 4),
    }


Top = Annotated[int, Query(ge=1, le=1000, description="how many classes to return (best first)")]


@router.get("/runs/{run_id}/predict")
def predict_sample(
    run: RunDep,
    ws: WorkspaceDep,
    c: CacheDep,
    sample: Annotated[str, Query(min_length=1, description="a sample path of the run's dataset")],
    dataset: Annotated[str | None, Query(description="another dataset to take the sample from")] = None,
    top: Top = 10,
):
    """Classify one image of a dataset (by default the run's own)."""
    from vitrine.collection.imageio import open_image

    name = dataset or run.record.get("dataset") or ""
    require("dataset", name)  # the run's own dataset is not named by the request: check it here
    d = loaded_dataset(name, ws, c)
    image = open_image(sample_file(d, sample))
    out = predict_image(run, c, image, top)
    out["image"] = {"source": "dataset", "dataset": d.name, "path": sample, "label": d.by_path[sample].label}
    return out


@router.post("/runs/{run_id}/predict")
async def predict_upload(
    run: RunDep,
    st: StateDep,
    c: CacheDep,
    file: Annotated[UploadFile, File(description="an image to classify")],
    top: Annotated[int, Form(ge=1, le=1000)] = 10,
):
    """Classify an uploaded image (size-limited like every upload)."""
    from vitrine.collection.imageio import open_image_bytes

    data = await read_upload(file, st.settings.max_upload_bytes)
    name = file.filename or "upload"

    def work() -> dict:
        image = open_image_bytes(data, name=name)
        return predict_image(run, c, image, top)

    out = await run_in_threadpool(work)
    out["image"] = {"source": "upload", "name": name, "bytes": len(data)}
    return out


# ------------------------------------------------------------------------------ Plotly, served locally
def plotly_js_path() -> Path:
    """plotly.min.js as shipped inside the installed ``plotly`` package (no CDN: works offline)."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "package_data" / "plotly.min.js"
        if candidate.is_file():
            return candidate
    raise NotFound("plotly.min.js is not available", hint="install the plotly package on the server")


def plotly_js_response() -> Response:
    return FileResponse(
        plotly_js_path(), media_type="text/javascript; charset=utf-8", headers={"Cache-Control": "max-age=604800"}
    )
