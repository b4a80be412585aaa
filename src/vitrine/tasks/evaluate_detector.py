"""The ``evaluate-detector`` job kind: a trained detection run evaluated again on the split it was
evaluated on (:func:`vitrine.evaluate.run_errors.reevaluate_detection_run`), so that a run evaluated
before runs kept their predictions gets them (its errors view), with its report rewritten. Run again
after a restart, it starts over: nothing is half-written (the report and predictions are atomic)."""

from __future__ import annotations

from vitrine.core.workspace import Workspace
from vitrine.jobs import JobContext, register_kind

EVALUATE_DETECTOR_JOB = "evaluate-detector"


def run_evaluate_detector_job(ctx: JobContext, params: dict) -> dict:
    """Evaluate run ``params["run_id"]`` again with its best checkpoint."""
    from vitrine.evaluate.detection import report_summary
    from vitrine.evaluate.run_errors import reevaluate_detection_run
    from vitrine.runs import Run

    st = ctx.services
    ws = Workspace(st.settings.root) if st is not None else Workspace()
    run = Run.load(ws, params["run_id"])

    def progress(done: int, total: int) -> None:
        ctx.check_cancel("evaluation cancelled")
        ctx.progress("evaluate", done, total, message=f"predicting: {done}/{total} images")

    ctx.progress("evaluate", 0, 0, message="loading the run's detector")
    report = reevaluate_detection_run(ws, run, progress=progress)
    return {"run_id": run.id, "images": report.get("images"), **report_summary(report)}


register_kind(
    EVALUATE_DETECTOR_JOB,
    run_evaluate_detector_job,
    resumable=True,
    concurrency=1,
    description="evaluate a trained detection run again, keeping its predictions",
)
