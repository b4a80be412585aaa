"""What the job handlers share: plain-JSON conversion, reading a JSON file that may be missing,
and the one-line progress message of a training job."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """Plain JSON types from what the core returns (numpy numbers and arrays, paths, tuples, sets);
    NaN and infinities become null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return value.as_posix()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return value


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``; None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_progress(stage: str, done: int, total: int, info: dict | None) -> str:
    """One line for the job's ``message``: epoch, step, loss, accuracy and time left when known."""
    info = info or {}
    bits = []
    if info.get("epoch") is not None:
        bits.append(f"epoch {info['epoch']}" + (f"/{info['epochs']}" if info.get("epochs") else ""))
    if info.get("step") is not None:
        bits.append(f"step {info['step']}" + (f"/{info['steps']}" if info.get("steps") else ""))
    for key, label in (("loss", "loss"), ("train_loss", "loss"), ("val_loss", "val loss")):
        if isinstance(info.get(key), (int, float)) and label not in " ".join(bits):
            bits.append(f"{label} {info[key]:.4f}")
    for key, label in (("val_accuracy", "val acc"), ("accuracy", "acc")):
        if isinstance(info.get(key), (int, float)):
            bits.append(f"{label} {info[key]:.3f}")
            break
    eta = info.get("eta_seconds")
    if isinstance(eta, (int, float)) and math.isfinite(eta):
        bits.append(f"about {_duration(eta)} left")
    return " · ".join(bits)


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"
