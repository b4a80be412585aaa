"""Pick how to run a model here, by measurement: the fastest variant that passes the parity gate.

:func:`choose` runs the reference (fp32, usually torch) and each candidate variant on the same real
images: every candidate's outputs go through the parity gate against the reference's, then the
reference and the candidates that passed are timed in interleaved rounds (a noisy shared machine
slows them alike) and the median of each is kept. A candidate is picked only when it passed and is
at least ``min_gain`` times faster than the reference; otherwise the reference stays. A candidate
that fails to build or to run is a trial with its error, never a crash.

The :class:`Choice` (picked variant, every trial's speed and parity, the machine) is saved as JSON so
the measurement runs once per model, weights and machine; ``vitrine models --bench`` shows it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.core.atomic import atomic_write_json
from vitrine.runtime.cache import runtime_version
from vitrine.runtime.parity import Parity
from vitrine.runtime.session import Variant


@dataclass
class Candidate:
    variant: Variant
    run: Callable[[Any], Any]  # one batch -> an array, or {name: array}
    build: Callable[[], None] | None = None  # optional slow preparation (export, quantize), timed apart
    notes: list[str] = field(default_factory=list)


@dataclass
class Trial:
    variant: Variant
    images_per_s: float | None = None
    parity: Parity | None = None
    error: str | None = None
    build_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            **self.variant.to_dict(),
            "images_per_s": None if self.images_per_s is None else round(self.images_per_s, 2),
            "parity": None if self.parity is None else self.parity.to_dict(),
            "error": self.error,
            "build_seconds": None if self.build_seconds is None else round(self.build_seconds, 2),
            "notes": list(self.notes),
        }


@dataclass
class Choice:
    picked: Variant
    reference: Variant
    trials: list[Trial]
    machine: str
    images: int
    batch: int
    measured_at: float = field(default_factory=time.time)
    raw: dict | None = None  # as read from disk (trials' parity kept as dicts)

    def trial(self, variant: Variant) -> Trial | None:
        return next((t for t in self.trials if t.variant == variant), None)

    @property
    def speedup(self) -> float | None:
        ref, got = self.trial(self.reference), self.trial(self.picked)
        if not ref or not got or not ref.images_per_s or not got.images_per_s:
            return None
        return got.images_per_s / ref.images_per_s

    def summary(self) -> str:
        """One line: what runs, how much faster, its parity figures."""
        picked = self.trial(self.picked)
        parts = [self.picked.label]
        if self.picked != self.reference and self.speedup:
            parts.append(f"{self.speedup:.2f}x {self.reference.label}")
        if picked is not None and picked.parity is not None and self.picked != self.reference:
            parts.append(", ".join(f"{k} {v:.3f}" for k, v in picked.parity.figures.items()))
        return " · ".join(parts)

    def to_dict(self) -> dict:
        return {
            "picked": self.picked.to_dict(),
            "reference": self.reference.to_dict(),
            "speedup": None if self.speedup is None else round(self.speedup, 2),
            "summary": self.summary(),
            "machine": self.machine,
            "images": self.images,
            "batch": self.batch,
            "measured_at": self.measured_at,
            "trials": [t.to_dict() for t in self.trials],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Choice:
        trials = []
        for t in data.get("trials", []):
            p = t.get("parity")
            parity = None
            if p:
                parity = Parity(dict(p["figures"]), dict(p["gate"]), int(p.get("samples", 0)), list(p.get("notes", [])))
            trials.append(
                Trial(
                    Variant(t["runtime"], t["precision"]),
                    t.get("images_per_s"),
                    parity,
                    t.get("error"),
                    t.get("build_seconds"),
                    list(t.get("notes", [])),
                )
            )
        return cls(
            picked=Variant(**data["picked"]),
            reference=Variant(**data["reference"]),
            trials=trials,
            machine=data.get("machine", ""),
            images=int(data.get("images", 0)),
            batch=int(data.get("batch", 0)),
            measured_at=float(data.get("measured_at", 0)),
            raw=dict(data),
        )


def machine_fingerprint() -> str:
    """What a measurement depends on: the CPU model, the cores this process may use, the runtimes."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    versions = ",".join(f"{r}={runtime_version(r)}" for r in ("onnxruntime", "openvino"))
    return f"{cpu} x{cores} {versions}"


def _concat(outputs: list[Any]) -> Any:
    if isinstance(outputs[0], Mapping):
        return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    if isinstance(outputs[0], np.ndarray):
        return np.concatenate(outputs)
    return [x for o in outputs for x in o]  # lists (detections per image)


def _run_all(run: Callable[[Any], Any], batches: Sequence[Any]) -> Any:
    return _concat([run(b) for b in batches])


def _batch_len(batch: Any) -> int:
    if isinstance(batch, Mapping):
        return len(next(iter(batch.values())))
    return len(batch)


def choose(
    reference: Candidate,
    candidates: Sequence[Candidate],
    batches: Sequence[Any],
    parity: Callable[[Any, Any], Parity],
    repeats: int = 3,
    min_gain: float = 1.1,
    progress: Callable[[str], None] | None = None,
) -> Choice:
    """Measure ``candidates`` against ``reference`` on ``batches`` (real images, preprocessed) and pick.
    The first batch is the one timed; parity is computed over all of them."""
    say = progress or (lambda _msg: None)
    n_images = sum(_batch_len(b) for b in batches)
    timed = batches[0]
    size = _batch_len(timed)
    say(f"reference {reference.variant.label} on {n_images} images")
    ref_trial = Trial(reference.variant, notes=list(reference.notes))
    ref_out = _run_all(reference.run, batches)
    trials = [ref_trial]
    runnable: list[tuple[Trial, Callable[[Any], Any]]] = [(ref_trial, reference.run)]
    for cand in candidates:
        trial = Trial(cand.variant, notes=list(cand.notes))
        trials.append(trial)
        try:
            if cand.build is not None:
                say(f"preparing {cand.variant.label}")
                t0 = time.perf_counter()
                cand.build()
                trial.build_seconds = time.perf_counter() - t0
            say(f"checking {cand.variant.label}")
            trial.parity = parity(ref_out, _run_all(cand.run, batches))
        except Exception as exc:  # noqa: BLE001 - a variant that cannot run here is a result, not a crash
            trial.error = f"{type(exc).__name__}: {exc}"[:500]
            continue
        if trial.parity.passed:
            runnable.append((trial, cand.run))
        else:
            say(f"{cand.variant.label} refused: {trial.parity.reason}")
    samples: dict[int, list[float]] = {id(t): [] for t, _ in runnable}
    for _ in range(max(1, repeats)):
        for trial, run in runnable:
            t0 = time.perf_counter()
            run(timed)
            samples[id(trial)].append(size / max(time.perf_counter() - t0, 1e-9))
    for trial, _ in runnable:
        trial.images_per_s = statistics.median(samples[id(trial)])
    best = ref_trial
    for trial, _ in runnable[1:]:
        if trial.images_per_s >= ref_trial.images_per_s * min_gain and trial.images_per_s > (best.images_per_s or 0):
            best = trial
    return Choice(best.variant, reference.variant, trials, machine_fingerprint(), n_images, size)


def save_choice(path: str | os.PathLike, choice: Choice) -> None:
    atomic_write_json(path, choice.to_dict())


def load_choice(path: str | os.PathLike, machine: str | None = None) -> Choice | None:
    """The saved choice, or None when there is none, it is unreadable, or it was measured on another
    machine (``machine``: :func:`machine_fingerprint` by default)."""
    try:
        data = json.loads(Path(path).read_text())
        choice = Choice.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if choice.machine != (machine or machine_fingerprint()):
        return None
    return choice
