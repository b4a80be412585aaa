"""Job handlers: one module per job kind, each registering its kind when imported. Importing
``vitrine.tasks`` registers them all (the server does, before its jobs resume); none imports
FastAPI, so a worker runs them without the web layer.

- ``index`` (:mod:`vitrine.tasks.index`): index a project's images
- ``tag`` (:mod:`vitrine.tasks.tag`): tag a project's images with a detector
- ``train`` (:mod:`vitrine.tasks.train_classifier`): train a classifier
- ``train-detector`` (:mod:`vitrine.tasks.train_detector`): train a detector
- ``sweep`` (:mod:`vitrine.tasks.sweep`): run a configuration sweep (Ray Tune, in a child process)
- ``score-submission`` (:mod:`vitrine.tasks.score_submission`): score a detector submitted as a model file
- ``evaluate-run`` (:mod:`vitrine.tasks.evaluate_run`): evaluate a trained classifier or detector again
- ``compare-embeddings`` (:mod:`vitrine.tasks.compare_embeddings`): score embedding models side by side
- ``map`` (:mod:`vitrine.tasks.map2d`): the 2-D map (UMAP) of a project's images
"""

from vitrine.tasks import (
    compare_embeddings,
    evaluate_run,
    index,
    map2d,
    score_submission,
    sweep,
    tag,
    train_classifier,
    train_detector,
)
from vitrine.tasks.compare_embeddings import COMPARE_EMBEDDINGS_JOB
from vitrine.tasks.evaluate_run import EVALUATE_RUN_JOB
from vitrine.tasks.index import INDEX_JOB
from vitrine.tasks.map2d import MAP_JOB
from vitrine.tasks.score_submission import SCORE_SUBMISSION_JOB
from vitrine.tasks.sweep import SWEEP_JOB
from vitrine.tasks.tag import TAG_JOB
from vitrine.tasks.train_classifier import TRAIN_JOB
from vitrine.tasks.train_detector import TRAIN_DETECTOR_JOB

KINDS = (
    INDEX_JOB,
    TAG_JOB,
    TRAIN_JOB,
    TRAIN_DETECTOR_JOB,
    SWEEP_JOB,
    SCORE_SUBMISSION_JOB,
    EVALUATE_RUN_JOB,
    COMPARE_EMBEDDINGS_JOB,
    MAP_JOB,
)

__all__ = [
    "COMPARE_EMBEDDINGS_JOB",
    "EVALUATE_RUN_JOB",
    "INDEX_JOB",
    "KINDS",
    "MAP_JOB",
    "SCORE_SUBMISSION_JOB",
    "SWEEP_JOB",
    "TAG_JOB",
    "TRAIN_DETECTOR_JOB",
    "TRAIN_JOB",
    "compare_embeddings",
    "evaluate_run",
    "index",
    "map2d",
    "score_submission",
    "sweep",
    "tag",
    "train_classifier",
    "train_detector",
]
