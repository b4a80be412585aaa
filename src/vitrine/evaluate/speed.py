"""The one speed harness: how fast a model answers on this machine, measured the same way for every
kind of run so that runs can be ranked by speed.

Two figures, both with preprocessing included (what a user waits for; decoding the files is not):

- **latency**: milliseconds per image at batch 1 (median over single-image calls, min and max too);
- **throughput**: images per second at a batch size (the median of repeated timed passes over the
  images).

Untimed warm-up calls come first, with the shapes the timed calls use (oneDNN and cuDNN pay for a new
shape the first time). The report records what the figures depend on: device, threads, CPUs and the
machine's load average when measured, so a number taken on a busy machine says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SpeedReport:
    latency_ms: float | None  # median ms per image at batch 1
    latency_ms_min: float | None
    latency_ms_max: float | None
    latency_images: int  # single-image calls timed
    images_per_second: float | None  # at ``batch_size``
    batch_size: int
    images: int  # images per timed pass
    repeats: int  # timed passes
    device: str
    threads: int | None
    cpus: int | None
    load_average: float | None  # the 1-minute load average when measured (None where unknown)

    def to_dict(self) -> dict:
        return asdict(self)


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return int(torch.get_num_threads())


def machine_load() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def measure(
    predict: Callable[[list], Any],
    images: Sequence[Any],
    *,
    batch_size: int = 32,
    latency_images: int = 10,
    warmup: int = 1,
    min_seconds: float = 0.5,
    max_repeats: int = 3,
    device: str = "cpu",
) -> SpeedReport:
    """Time ``predict`` (a callable taking a list of inputs) on ``images``.

    ``latency_images`` single-image calls (cycling through ``images``; 0 skips latency) and passes
    over all ``images`` in batches of ``batch_size`` (repeated up to ``max_repeats`` times until
    ``min_seconds`` have passed; ``batch_size`` 0 skips throughput), each after ``warmup`` untimed
    calls of the same shapes.
    """
    images = list(images)
    if not images:
        raise ValueError("the speed harness needs at least one image")
    batch_size = max(0, int(batch_size))
    warmup = max(0, int(warmup))

    latencies: list[float] = []
    if latency_images > 0:
        for i in range(warmup):
            predict([images[i % len(images)]])
        for i in range(int(latency_images)):
            item = [images[i % len(images)]]
            t0 = time.perf_counter()
            predict(item)
            latencies.append((time.perf_counter() - t0) * 1000.0)

    passes: list[float] = []
    if batch_size:
        rest = len(images) % batch_size
        for _ in range(warmup):
            predict(images[:batch_size])
            if rest and len(images) > batch_size:
                predict(images[:rest])
        while True:
            t0 = time.perf_counter()
            for i in range(0, len(images), batch_size):
                predict(images[i : i + batch_size])
            passes.append(time.perf_counter() - t0)
            if len(passes) >= max(1, max_repeats) or sum(passes) >= min_seconds:
                break

    seconds = max(_median(passes), 1e-9) if passes else None
    return SpeedReport(
        latency_ms=_median(latencies) if latencies else None,
        latency_ms_min=min(latencies) if latencies else None,
        latency_ms_max=max(latencies) if latencies else None,
        latency_images=len(latencies),
        images_per_second=len(images) / seconds if seconds else None,
        batch_size=batch_size,
        images=len(images),
        repeats=len(passes),
        device=str(device),
        threads=_torch_threads(),
        cpus=os.cpu_count(),
        load_average=machine_load(),
    )
