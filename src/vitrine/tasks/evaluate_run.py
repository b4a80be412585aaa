"""The ``evaluate-run`` job kind: a trained run evaluated again, which rewrites its report and keeps
the per-image predictions its errors are browsed by; the way a run evaluated before predictions
were kept gets them. Resumable: after a restart it simply evaluates again (the report and the
predictions are written atomically, so nothing is half-written).

- a classifier (:data:`vitrine.runs.record.CLASSIFICATION_RUN_KINDS`): on ``params["split"]`` of
  its dataset (:func:`vitrine.evaluate.classification.evaluate_run`, what ``vitrine eval RUN_ID``
  does), keeping ``predictions.csv``;
- a detector (:data:`vitrine.runs.record.DETECTION_RUN_KINDS`): on the split it was evaluated on,
  with its best checkpoint (:func:`vitrine.evaluate.run_errors.reevaluate_detection_run`), keeping
  ``predictions.json.gz``.
"""

from __future__ import annotations

from vitrine.core.workspace import Workspace
from vitrine.jobs import JobContext, register_kind

EVALUATE_RUN_JOB = "evaluate-run"


def run_evaluate_job(ctx: JobContext, params: dict) -> dict:
    """Evaluate run ``params["run"]`` again (``params["split"]``: a classifier's split)."""
    from vitrine.runs import Run
    from vitrine.runs.record import DETECTION_RUN_KINDS

    st = ctx.services
    ws = Workspace(st.settings.root) if st is not None else Workspace()
    run = Run.load(ws, params["run"])
    if run.kind in DETECTION_RUN_KINDS:
        return _detector(ctx, ws, run)
    return _classifier(ctx, ws, run, params.get("split") or "test")


def _classifier(ctx: JobContext, ws: Workspace, run, split: str) -> dict:
    from vitrine.evaluate.classification import evaluate_run

    def progress(stage: str, done: int, total: int, *_) -> None:
        ctx.check_cancel("evaluation cancelled")
        ctx.progress(stage, done, total, message=f"evaluating on the {split} split: {done}/{total} images")

    report = evaluate_run(ws, run.id, None, split, progress=progress)
    return {
        "run": run.id,
        "split": split,
        "n": report["n"],
        "accuracy": report.get("accuracy"),
        "macro_f1": report.get("macro_f1"),
        "skipped": len(report.get("skipped") or []),
    }


def _detector(ctx: JobContext, ws: Workspace, run) -> dict:
    from vitrine.evaluate.detection import report_summary
    from vitrine.evaluate.run_errors import reevaluate_detection_run

    def progress(done: int, total: int) -> None:
        ctx.check_cancel("evaluation cancelled")
        ctx.progress("evaluate", done, total, message=f"predicting: {done}/{total} images")

    ctx.progress("evaluate", 0, 0, message="loading the run's detector")
    report = reevaluate_detection_run(ws, run, progress=progress)
    return {"run": run.id, "run_id": run.id, "images": report.get("images"), **report_summary(report)}


register_kind(
    EVALUATE_RUN_JOB,
    run_evaluate_job,
    resumable=True,
    concurrency=1,
    description="evaluate a trained run again, keeping its per-image predictions",
)
