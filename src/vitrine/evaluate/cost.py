"""What a model costs, beside its speed: parameters, GFLOPs at an input size and weights on disk,
measured the same way for every run so that a leaderboard can compare them.

GFLOPs are floating-point operations (a multiply-add counts 2, as Ultralytics reports them; papers and
torchvision's tables often give multiply-adds, half of this) counted by PyTorch's own
``FlopCounterMode`` on one forward pass of an example input, so they follow the model's real code
path, including a detector's internal resize. Operations PyTorch does not count (NMS, ROI align) are
left out and are small beside the convolutions.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def parameter_count(model) -> int:
    """Every parameter of a torch module (trainable or frozen)."""
    return int(sum(p.numel() for p in model.parameters()))


def gflops(model, example: Any) -> float | None:
    """GFLOPs of one forward pass of ``model`` (a torch module, run in eval mode without gradients)
    on ``example`` (what the model's forward takes: a batch tensor, or a list of image tensors for a
    torchvision detector). None, logged, when the pass cannot be counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(example)
        return counter.get_total_flops() / 1e9
    except Exception as exc:  # noqa: BLE001 - a cost figure must never fail a run
        log.warning("cannot count the FLOPs of %s: %s: %s", type(model).__name__, type(exc).__name__, exc)
        return None
    finally:
        model.train(was_training)


def weights_bytes(path: str | os.PathLike | None) -> int | None:
    """The size on disk of a weights file, or of every file under a weights folder."""
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return None


def model_cost(model, example: Any = None, weights: str | os.PathLike | None = None) -> dict:
    """``{"parameters", "gflops", "weights_bytes"}`` for a torch module; GFLOPs only when an
    ``example`` input is given, the size only when a ``weights`` path is."""
    return {
        "parameters": parameter_count(model),
        "gflops": gflops(model, example) if example is not None else None,
        "weights_bytes": weights_bytes(weights),
    }
