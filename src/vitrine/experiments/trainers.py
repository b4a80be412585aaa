"""The trainers a sweep can drive, one entry per task: the config class whose options the search
space ranges over, the training function, the per-epoch metric early stopping watches, and the
headline metric a finished trial is ranked by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vitrine.core.errors import VitrineError
from vitrine.runs.summary import PRIMARY


@dataclass(frozen=True)
class SweepTask:
    name: str  # "classify" | "detect"
    epoch_metric: str  # reported at each epoch's end (ASHA watches it)
    epoch_mode: str  # "max" | "min"
    primary: str  # the finished run's headline metric: the leaderboard's (runs.summary.PRIMARY)

    def config_cls(self):
        if self.name == "classify":
            from vitrine.train.classification.config import FinetuneConfig

            return FinetuneConfig
        from vitrine.train.detection.config import DetectionConfig

        return DetectionConfig

    def train(self, workspace, dataset: str, config: dict, **kwargs) -> Any:
        """Train one trial: ``dataset`` is a workspace dataset name (classify) or an annotation
        file or folder (detect, an absolute path: trials run in other folders and processes)."""
        if self.name == "classify":
            from vitrine.train.classification.finetune import train_finetune

            return train_finetune(workspace, dataset, config, **kwargs)
        from vitrine.train.detection.trainer import train_detector

        return train_detector(workspace, None if kwargs.get("resume") else dataset, config, **kwargs)


TASKS = {
    "classify": SweepTask("classify", "val_accuracy", "max", PRIMARY["classify"]),
    "detect": SweepTask("detect", "val_bbox_map50", "max", PRIMARY["detect"]),
}


def sweep_task(name: str) -> SweepTask:
    aliases = {"classification": "classify", "detection": "detect", "segment": "detect", "segmentation": "detect"}
    key = aliases.get(name, name)
    if key not in TASKS:
        raise VitrineError(f"no sweeps for task {name!r}", hint="use --task classify or --task detect")
    return TASKS[key]
