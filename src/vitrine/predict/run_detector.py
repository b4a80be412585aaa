"""A fine-tuned detector from its run: the network rebuilt from the checkpoint's config, its
weights loaded, predictions carrying the dataset's category ids.

:func:`load_run_detector` is what ``vitrine.predict.detector.load_detector(run_id)`` returns for a detection
or segmentation run; :class:`CategoryMapped` maps the network's labels 1..K back to the dataset's
category ids (the trainer evaluates through it too); :func:`model_options` turns a run's training
config into the options the network is built with.
"""

from __future__ import annotations

from dataclasses import fields

import torch

from vitrine.core.errors import ModelError
from vitrine.models.detectors.torchvision_family import DetectionModelOptions, build_detection_model
from vitrine.runs import DETECTION_RUN_KINDS, Run
from vitrine.runs.checkpoint import load_checkpoint


def model_options(config: dict) -> DetectionModelOptions:
    """The network options of a detection training config (``image_size`` is the network's
    ``min_size``; the config's other network fields keep their names)."""
    names = {f.name for f in fields(DetectionModelOptions)} - {"min_size"}
    values = {k: config[k] for k in names if k in config}
    values["min_size"] = int(config["image_size"])
    values["anchor_sizes"] = tuple(config["anchor_sizes"]) if config.get("anchor_sizes") else None
    if "aspect_ratios" in config:
        values["aspect_ratios"] = tuple(float(a) for a in config["aspect_ratios"])
    return DetectionModelOptions(**values)


class CategoryMapped(torch.nn.Module):
    """A detection network trained on labels 1..K whose predictions carry the dataset's category
    ids (``category_ids[k - 1]`` for label k): what a run's detector returns. Label 0, the
    background, is never a target; RetinaNet and FCOS score it like a class (sigmoid), so their
    detections of it are dropped."""

    def __init__(self, model: torch.nn.Module, category_ids: list[int]):
        super().__init__()
        self.model = model
        self.register_buffer("ids", torch.tensor([0, *category_ids], dtype=torch.int64), persistent=False)

    def forward(self, images, targets=None):
        out = self.model(images, targets)
        if self.training:
            return out
        for i, o in enumerate(out):
            keep = o["labels"] > 0
            if not bool(keep.all()):
                o = out[i] = {k: v[keep] for k, v in o.items()}
            o["labels"] = self.ids.to(o["labels"].device)[o["labels"]]
        return out


def load_run_detector(run: Run, device: str | None = None, checkpoint: str = "best"):
    """A :class:`~vitrine.models.detectors.torch_detector.TorchvisionDetector` over the run's best.pt (else
    last.pt), rebuilt from the run's config; class ids are the dataset's category ids."""
    names = ("best.pt", "last.pt") if checkpoint == "best" else ("last.pt", "best.pt")
    for name in names:
        path = run.checkpoints_dir / name
        if path.is_file():
            break
    else:
        raise ModelError(
            f"run {run.id!r} has no checkpoint yet (state: {run.record.get('state')})",
            hint="train it (again) with vitrine train-detector",
        )
    return detector_from_state(load_checkpoint(path), name=run.id, source=str(path), device=device)


def detector_from_state(state: dict, name: str, source: str, device: str | None = None):
    """The detector a vitrine detection checkpoint (``last.pt`` / ``best.pt``: ``kind``, ``config``,
    ``num_classes``, ``category_ids``, ``category_names``, ``model``) holds, named ``name``;
    ``source`` names the file in errors."""
    from vitrine.models.detectors.torch_detector import TorchvisionDetector

    kind = state.get("kind")
    if kind not in DETECTION_RUN_KINDS:
        raise ModelError(f"{source} is not a detection checkpoint (kind: {kind!r})")
    config = dict(state["config"])
    model = build_detection_model(model_options(config), int(state["num_classes"]), load_weights=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ModelError(f"{source}: the weights do not fit its config: {exc}") from None
    ids = [int(i) for i in state["category_ids"]]
    classes = dict(zip(ids, state["category_names"], strict=True))
    return TorchvisionDetector(CategoryMapped(model, ids), classes, name=name, task=kind, device=device)


__all__ = ["CategoryMapped", "detector_from_state", "load_run_detector", "model_options"]
