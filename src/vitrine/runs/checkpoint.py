"""A run's checkpoints (``checkpoints/last.pt``, ``best.pt``): written atomically, read safely,
and the policy that decides which validation is the best.

Every trainer saves through :meth:`vitrine.runs.Run.save_checkpoint` (which also publishes the
file to the artifact store); predictors and resume read them back with :func:`load_checkpoint`.
:class:`CheckpointPolicy` says which validation metric a run keeps ``best.pt`` for and in which
direction it improves (a classifier: the lowest val loss; a detector: the highest mAP).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vitrine.core.atomic import atomic_open
from vitrine.core.errors import VitrineError


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` with torch.save atomically: a crash leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        torch.save(state, fh)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint (tensors and plain data only: ``weights_only``)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise VitrineError(f"checkpoint {path} not found") from None
    except Exception as e:
        raise VitrineError(f"checkpoint {path} cannot be read: {type(e).__name__}: {e}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise VitrineError(f"checkpoint {path} is not a vitrine fine-tuning checkpoint")
    return state


@dataclass(frozen=True)
class CheckpointPolicy:
    """Which validation is the best: ``monitor`` (a key of the validation's metrics) improving by
    more than ``min_delta`` downwards (``mode="min"``: a loss) or upwards (``"max"``: a score).
    ``keep_first``: the first validation is kept as the best whatever its value (so that a run
    always has a ``best.pt`` once it validated); ``fallback``: the key read when a validation
    lacks ``monitor``."""

    monitor: str
    mode: str = "min"
    min_delta: float = 0.0
    keep_first: bool = False
    fallback: str | None = None

    def __post_init__(self):
        if self.mode not in ("min", "max"):
            raise ValueError(f"checkpoint policy mode {self.mode!r}: min or max")

    @property
    def initial(self) -> float:
        """The best value before any validation (what every value improves on)."""
        return math.inf if self.mode == "min" else -math.inf

    def value(self, metrics: dict):
        """The monitored value of a validation's metrics (None when it has none)."""
        if self.monitor in metrics or self.fallback is None:
            return metrics.get(self.monitor)
        return metrics.get(self.fallback)

    def is_better(self, value, best: float) -> bool:
        """Whether ``value`` (a number, or None) improves on ``best``."""
        if not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def should_save(self, value, best: float, first: bool) -> bool:
        """Whether the validation with ``value`` becomes ``best.pt`` (``first``: no best yet)."""
        return self.is_better(value, best) or (self.keep_first and first)

    def best_after(self, value, best: float, first: bool) -> float:
        """The best value once a validation with ``value`` has been seen."""
        if self.is_better(value, best):
            return float(value)
        if self.keep_first and first:
            return float(value) if isinstance(value, int | float) and math.isfinite(value) else self.initial
        return best

    def stored(self, best: float):
        """``best`` as checkpoints and run records keep it: None before any finite value."""
        return None if math.isinf(best) else best

    def loaded(self, stored) -> float:
        """The best value read back from a checkpoint (None: none yet)."""
        return self.initial if stored is None else float(stored)


__all__ = ["CheckpointPolicy", "load_checkpoint", "save_checkpoint"]
