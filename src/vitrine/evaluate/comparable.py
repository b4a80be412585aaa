"""What makes a run comparable, recorded when it is evaluated: the fingerprint of the exact split it
was scored on, and what its model costs (parameters, GFLOPs at its input size, weights on disk).

Trainers and :func:`~vitrine.evaluate.classification.evaluate_run` call these next to the speed
harness (:mod:`vitrine.evaluate.speed`), so every run kind records the same fields:

- ``split_record(dataset, split, ...)`` → ``{"split", "fingerprint"}``, kept beside the split's
  metrics in ``run.json`` (``metrics[<split>]``);
- ``classifier_cost(classifier)`` and ``torch_cost(model, example, weights, input_size)`` →
  ``{"parameters", "gflops", "input_size", "weights_bytes"}``, kept as ``metrics["cost"]``.

A cost figure never fails a run: what cannot be measured is None (and logged).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vitrine.data.fingerprint import classification_fingerprint, detection_fingerprint
from vitrine.evaluate.cost import gflops, parameter_count, weights_bytes


def split_record(dataset, split: str | None, *, samples=None, image_ids=None) -> dict:
    """``{"split", "fingerprint"}`` of the split a run is scored on: a classification dataset's
    ``split`` (or the ``samples`` scored under that name), a detection dataset's (or its images
    ``image_ids``)."""
    if hasattr(dataset, "samples"):
        fingerprint = classification_fingerprint(dataset, split or "all", samples)
    else:
        fingerprint = detection_fingerprint(dataset, split, image_ids)
    return {"split": split, "fingerprint": fingerprint}


def torch_cost(model, example: Any, weights: str | os.PathLike | None, input_size: int | None) -> dict:
    """Parameters, GFLOPs of one forward pass on ``example`` and the size of ``weights``."""
    out: dict = {"parameters": None, "gflops": None, "input_size": input_size, "weights_bytes": weights_bytes(weights)}
    if model is None:
        return out
    out["parameters"] = parameter_count(model)
    if example is not None:
        value = gflops(model, example)
        out["gflops"] = None if value is None else round(value, 4)
    return out


def _image_module(classifier):
    """The torch module that sees the images of a classifier (its network, or its embedder's image
    tower), or None."""
    import torch

    embedder = getattr(classifier, "model", None)
    candidates = (
        getattr(getattr(embedder, "model", None), "visual", None),  # open_clip: the image tower
        embedder,  # a fine-tuned network
        getattr(embedder, "classifier", None),  # offline-concepts: its ImageNet classifier
        getattr(embedder, "model", None),
    )
    for c in candidates:
        if isinstance(c, torch.nn.Module):
            return c
    return None


def _input_size(classifier, module) -> int:
    for source in (classifier, module):
        size = getattr(source, "image_size", None)
        if isinstance(size, int | tuple | list):
            return int(size if isinstance(size, int) else size[0])
    return 224


def classifier_cost(classifier, weights: str | os.PathLike | None = None) -> dict:
    """The cost of a saved classifier (fine-tuned network, linear probe or zero-shot): its image
    network's parameters and GFLOPs on one image at its input size; ``weights`` (default: its
    checkpoint) on disk. For a linear probe or zero-shot classifier the weights are the run's own
    files (the embedding model is shared by every run that uses it, and counted in parameters)."""
    import torch

    module = _image_module(classifier)
    size = _input_size(classifier, module) if module is not None else None
    if weights is None:
        weights = getattr(classifier, "checkpoint", None)
    example = None
    if module is not None:
        try:
            device = next(module.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        example = torch.zeros(1, 3, size, size, device=device)
    cost = torch_cost(module, example, weights, size)
    pipeline = getattr(classifier, "pipeline", None)
    coef = getattr(pipeline[-1], "coef_", None) if hasattr(pipeline, "__getitem__") else None
    if coef is not None and cost["parameters"] is not None:  # the probe's linear layer
        cost["parameters"] += int(coef.size) + int(getattr(pipeline[-1], "intercept_", coef[:, 0]).size)
    return cost


def run_file(run_dir: Path, *names: str) -> Path | None:
    """The first of ``names`` that exists in the run folder."""
    for name in names:
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


__all__ = ["classifier_cost", "run_file", "split_record", "torch_cost"]
