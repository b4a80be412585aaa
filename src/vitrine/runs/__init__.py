"""The record every kind of run shares: one folder under ``<workspace>/runs/<id>/``.

``record`` holds :class:`Run` (``run.json``: id, kind, dataset, model, config, state, progress,
metrics, classes, times), :func:`list_runs` and the atomic JSON writer; ``checkpoint`` the atomic
checkpoint writer and reader, and the policy that picks ``best.pt``; ``lifecycle`` how a run goes
from running to done, cancelled or failed; ``summary`` the headline numbers of any kind of run;
``leaderboard`` the rows every run list shows. Training, evaluation, prediction, the server and
the CLI read and write runs through this package; it imports nothing from ``train/`` or
``evaluate/``.
"""

from vitrine.runs.record import (
    ARTIFACTS_ENV,
    CLASSIFICATION_RUN_KINDS,
    DETECTION_RUN_KINDS,
    FINAL_STATES,
    RUN_KINDS,
    RUN_STATES,
    SUBMISSION_KIND,
    Run,
    artifact_store,
    list_runs,
    new_run_id,
)

__all__ = [
    "ARTIFACTS_ENV",
    "CLASSIFICATION_RUN_KINDS",
    "DETECTION_RUN_KINDS",
    "FINAL_STATES",
    "RUN_KINDS",
    "SUBMISSION_KIND",
    "RUN_STATES",
    "Run",
    "artifact_store",
    "list_runs",
    "new_run_id",
]
