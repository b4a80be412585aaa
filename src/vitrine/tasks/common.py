"""What the job handlers share: the one-line progress message of a training job."""

from __future__ import annotations

import math


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
