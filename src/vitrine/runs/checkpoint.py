"""A run's checkpoints (``checkpoints/last.pt``, ``best.pt``): written atomically, read safely.

Every trainer saves through :meth:`vitrine.runs.Run.save_checkpoint` (which also publishes the
file to the artifact store); predictors and resume read them back with :func:`load_checkpoint`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import torch

from vitrine.errors import VitrineError
from vitrine.store.durable import fsync_dir


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` with torch.save atomically: a crash leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
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


__all__ = ["load_checkpoint", "save_checkpoint"]
