"""The ``score-submission`` job kind: a detector submitted as a model file (a YOLO exported to ONNX,
a torchvision checkpoint: any file :func:`vitrine.predict.detector.load_detector` reads) run on a
split of a workspace dataset (typically its hidden test split) and scored like every run.

The server keeps the uploaded file in the run's folder (``runs/<run_id>/model.<suffix>``) and
submits this job; the job predicts every image of the split, evaluates with pycocotools, times the
model with the speed harness, and records a finished ``detection`` run marked as a submission
(:func:`vitrine.evaluate.imported.record_detector`). Run again after a restart, it starts over,
unless the run was recorded already (the run only exists once it is scored)."""

from __future__ import annotations

from pathlib import Path

from vitrine.core.workspace import Workspace
from vitrine.jobs import JobContext, register_kind
from vitrine.runs.summary import summarize

SCORE_SUBMISSION_JOB = "score-submission"


def run_score_submission_job(ctx: JobContext, params: dict) -> dict:
    """Score the model file ``params["model"]`` (inside run ``params["run_id"]``'s folder) on split
    ``params["split"]`` of dataset ``params["dataset"]``."""
    from vitrine.evaluate.detection import evaluate_detection, predict_dataset
    from vitrine.evaluate.imported import record_detector
    from vitrine.evaluate.submission import load_target
    from vitrine.predict.detector import load_detector

    st = ctx.services
    ws = Workspace(st.settings.root) if st is not None else Workspace()
    run_id = params["run_id"]
    if (ws.run_dir(run_id) / "run.json").is_file():  # scored before a restart: nothing to do again
        from vitrine.runs import Run

        run = Run.load(ws, run_id)
        return {"run_id": run.id, "state": run.record.get("state"), **summarize(run)}
    model = ws.run_dir(run_id) / Path(params["model"]).name
    target = load_target(ws, params["dataset"], params.get("split") or "test")
    detector = load_detector(str(model), categories=target.gt.categories)
    ctx.progress("predict", 0, len(target.gt.images), message=f"predicting {len(target.gt.images)} images")

    def progress(done: int, total: int) -> None:
        ctx.check_cancel("scoring cancelled")
        ctx.progress("predict", done, total, message=f"predicting: {done}/{total} images")

    predictions = predict_dataset(detector, target.gt, threshold=0.05, progress=progress)
    ctx.progress("evaluate", 0, 0, message="evaluating and timing the model")
    report = evaluate_detection(target.gt, predictions)
    run = record_detector(
        ws,
        detector,
        target.gt,
        report,
        split=target.split,
        dataset=params["dataset"],
        source=str(model),
        run_id=run_id,
        label=params.get("label") or model.stem,
        extra={"submission": True},
        fingerprint_of=target.dataset,
        predictions=predictions,
    )
    return {"run_id": run.id, "state": run.record.get("state"), **summarize(run)}


register_kind(
    SCORE_SUBMISSION_JOB,
    run_score_submission_job,
    resumable=True,
    concurrency=1,
    description="score a detector submitted as a model file on a dataset split",
)
