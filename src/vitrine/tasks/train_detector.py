"""The ``train-detector`` job kind: train a Faster / Mask R-CNN on a dataset folder of the
workspace into a run; it resumes from the run's last.pt after a restart.

:func:`detection_source` finds the annotations a training names inside the dataset's folder."""

from __future__ import annotations

from pathlib import Path

from vitrine.core.errors import Cancelled, NotFound, VitrineError
from vitrine.core.jsonio import jsonable
from vitrine.core.workspace import Workspace
from vitrine.jobs import JobContext, register_kind
from vitrine.runs.summary import summarize
from vitrine.tasks.common import describe_progress

TRAIN_DETECTOR_JOB = "train-detector"


def detection_source(ws: Workspace, dataset: str, annotations: str | None = None) -> Path:
    """The annotation file or folder a training request names, inside the dataset's folder of the
    workspace: names that are not folder names, absolute paths, ``..`` and links leading outside
    the folder are refused."""
    directory = ws.dataset_dir(dataset)  # refuses names that are not plain folder names
    if not directory.is_dir():
        found = sorted(p.name for p in ws.datasets_dir.iterdir() if p.is_dir()) if ws.datasets_dir.is_dir() else []
        raise NotFound(
            f"no dataset folder {dataset!r} in the workspace",
            hint=("dataset folders here: " + ", ".join(found))
            if found
            else "make one with `vitrine data scenes` into the workspace's datasets/ folder",
        )
    if annotations is None:
        return directory
    rel = annotations.replace("\\", "/")
    parts = rel.split("/")
    if rel.startswith("/") or ".." in parts or "\x00" in rel or (len(rel) > 1 and rel[1] == ":"):
        raise VitrineError(
            f"annotations path {annotations!r} is not inside dataset {dataset!r}",
            hint="give a path relative to the dataset folder, e.g. annotations/instances_train.json",
        )
    target = (directory / rel).resolve()
    if not target.is_relative_to(directory.resolve()):
        raise VitrineError(f"annotations path {annotations!r} leads outside dataset {dataset!r}")
    if not target.exists():
        raise NotFound(f"no {annotations!r} in dataset {dataset!r}", hint="give a file or folder of the dataset")
    return target


def _train_progress(ctx: JobContext):
    def progress(stage: str, done: int = 0, total: int = 0, info: dict | None = None, **extra) -> None:
        details = {**(info or {}), **extra}
        message = describe_progress(stage, done, total, details)
        if stage != "train" and not message:
            message = {"validate": "validating", "evaluate": "evaluating on the held-out split"}.get(stage, stage)
        ctx.progress(stage, int(done or 0), int(total or 0), jsonable(details), message=message)

    return progress


def run_train_detector_job(ctx: JobContext, params: dict) -> dict:
    """The ``train-detector`` job kind: train a Faster / Mask R-CNN on dataset ``params["dataset"]``
    (``params["annotations"]`` inside it) with the options ``params["config"]`` into run
    ``params["run_id"]``. Run again after an interruption, it resumes from the run's last.pt; a run
    stopped before its first checkpoint starts over."""
    from vitrine.train.detection.config import RESUME_OVERRIDES
    from vitrine.train.detection.trainer import train_detector

    st = ctx.services
    ws = Workspace(st.settings.root) if st is not None else Workspace()
    run_id = params["run_id"]
    run_dir = ws.run_dir(run_id)
    config = dict(params.get("config") or {})
    resume = False
    if ctx.resumed and (run_dir / "run.json").exists():
        if (run_dir / "checkpoints" / "last.pt").is_file():
            resume = True
            config = {k: v for k, v in config.items() if k in RESUME_OVERRIDES}
            ctx.log(f"resuming run {run_id} from its last checkpoint")
        else:
            import shutil

            shutil.rmtree(run_dir)  # this job's own partial run, which cannot resume: start it over
            ctx.log(f"run {run_id} had no checkpoint to resume from: starting it over")
    source = detection_source(ws, params["dataset"], params.get("annotations"))
    ctx.set_checkpoint(run_dir / "checkpoints" / "last.pt")
    run = train_detector(
        ws,
        str(source),
        config,
        progress=_train_progress(ctx),
        cancel=ctx.cancel_event,
        run_id=run_id,
        resume=resume,
        dataset_name=params["dataset"],
    )
    if run.record.get("state") == "cancelled":
        raise Cancelled(f"training was cancelled; run {run.id} keeps its last checkpoint")
    return {"run_id": run.id, "state": run.record.get("state"), **summarize(run)}


register_kind(
    TRAIN_DETECTOR_JOB,
    run_train_detector_job,
    resumable=True,
    concurrency=1,
    description="train a detector (Faster / Mask R-CNN)",
)
