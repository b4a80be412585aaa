"""The trainers a sweep can drive, one entry per task: the config class whose options the search
space ranges over (and :meth:`SweepTask.options`, those options described for a form), the training
function, the per-epoch metric early stopping watches, and the headline metric a finished trial is
ranked by."""

from __future__ import annotations

import dataclasses
import types
import typing
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

    def choices(self) -> dict[str, list[str]]:
        """{option: the values its config accepts} for the options checked against a fixed list."""
        if self.name == "classify":
            import vitrine.models.classifiers.backbones  # noqa: F401  (registers the fine-tuning backbones)
            from vitrine.models import registry
            from vitrine.train.classification import config as c

            backbones = [s.name for s in registry.list_models("classification")]
            return {"backbone": backbones, "schedule": [*c.SCHEDULES], "augment": [*c.AUGMENTS], "amp": [*c.AMP_MODES]}
        from vitrine.models.detectors.torchvision_family import ARCHS, DETECTION_BACKBONES
        from vitrine.train.detection import config as d

        return {
            "arch": [*ARCHS],
            "backbone": [*DETECTION_BACKBONES],
            "optimizer": [*d.OPTIMIZERS],
            "schedule": [*d.SCHEDULES],
            "augment": [*d.AUGMENTS],
        }

    def options(self, leave_out: tuple[str, ...] = ()) -> list[dict]:
        """Every option of the trainer's config, in its order: ``name``, ``type`` (bool, int,
        float, str, or "list of int"...), ``optional`` (None allowed), ``default`` and, where the
        config accepts a fixed list, ``choices``. ``leave_out`` names options not to list."""
        cls = self.config_cls()
        hints = typing.get_type_hints(cls)
        choices = self.choices()
        out = []
        for f in dataclasses.fields(cls):
            if f.name in leave_out:
                continue
            kinds, optional = _kinds(hints[f.name])
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = None
            row = {"name": f.name, "type": " or ".join(kinds), "optional": optional, "default": default}
            if f.name in choices:
                row["choices"] = choices[f.name]
            out.append(row)
        return out

    def train(self, workspace, dataset: str, config: dict, **kwargs) -> Any:
        """Train one trial: ``dataset`` is a workspace dataset name (classify) or an annotation
        file or folder (detect, an absolute path: trials run in other folders and processes)."""
        if self.name == "classify":
            from vitrine.train.classification.finetune import train_finetune

            return train_finetune(workspace, dataset, config, **kwargs)
        from vitrine.train.detection.trainer import train_detector

        return train_detector(workspace, None if kwargs.get("resume") else dataset, config, **kwargs)


def _kinds(tp) -> tuple[list[str], bool]:
    """The type names a config field's hint allows ("int", "list of float"...) and whether None does."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    names = []
    for t in args:
        if t is type(None):
            continue
        if typing.get_origin(t) is list:
            (item,) = typing.get_args(t) or (str,)
            names.append(f"list of {getattr(item, '__name__', str(item))}")
        else:
            names.append(getattr(t, "__name__", str(t)))
    return names, type(None) in args


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
