"""The ``evaluate-classifier`` job kind: evaluate a classification run again on a split of its
dataset (:func:`vitrine.evaluate.classification.evaluate_run`, what ``vitrine eval RUN_ID`` does),
which rewrites its report and keeps each image's prediction (``predictions.csv``) for error
browsing: the way a run evaluated before per-image predictions were kept gets them. Resumable:
after a restart it simply evaluates again."""

from __future__ import annotations

from vitrine.core.workspace import Workspace
from vitrine.jobs import JobContext, register_kind

EVALUATE_JOB = "evaluate-classifier"


def run_evaluate_job(ctx: JobContext, params: dict) -> dict:
    """Evaluate run ``params["run"]`` on split ``params["split"]`` of its own dataset."""
    from vitrine.evaluate.classification import evaluate_run

    st = ctx.services
    ws = Workspace(st.settings.root) if st is not None else Workspace()
    split = params.get("split") or "test"

    def progress(stage: str, done: int, total: int, *_) -> None:
        ctx.check_cancel("evaluation cancelled")
        ctx.progress(stage, done, total, message=f"evaluating on the {split} split: {done}/{total} images")

    report = evaluate_run(ws, params["run"], None, split, progress=progress)
    return {
        "run": params["run"],
        "split": split,
        "n": report["n"],
        "accuracy": report.get("accuracy"),
        "macro_f1": report.get("macro_f1"),
        "skipped": len(report.get("skipped") or []),
    }


register_kind(
    EVALUATE_JOB,
    run_evaluate_job,
    resumable=True,
    concurrency=1,
    description="evaluate a classification run again on a split of its dataset",
)
