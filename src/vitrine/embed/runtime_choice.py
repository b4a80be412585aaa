"""Which runtime embeds the images of an indexing run: torch, or a CPU runtime picked by measurement.

``--runtime`` (or ``VITRINE_RUNTIME``) says what to use: ``auto`` (the default), ``torch``, or a
variant (``onnxruntime``, ``onnxruntime-int8``, ``openvino``, ``openvino-bf16``, ``openvino-int8``).
With ``auto``:

* the choice saved for this model, weights and machine is used when there is one;
* otherwise, when at least ``VITRINE_RUNTIME_MIN_IMAGES`` images (default 1000) are to be embedded,
  every variant is exported, quantized (int8 calibrated on the run's own images), checked against
  torch by the parity gate and timed on up to ``VITRINE_RUNTIME_SAMPLE`` (default 128) of the images
  about to be indexed (:func:`vitrine.runtime.choose.choose`); the choice is saved and used;
* a smaller run stays on torch: the measurement (a minute or two) would cost more than it saves.

Whatever fails (a runtime not installed, an export error, a quantizer crash) is a note in the
decision and the run goes on with torch. The decision's ``line`` is what the index report shows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitrine.core.atomic import atomic_write_json
from vitrine.core.errors import VitrineError
from vitrine.embed.pipeline import EmbedItem, decode_batches
from vitrine.models.base import Embedder
from vitrine.models.embedders.image_runtime import (
    INPUT_FORMAT,
    VARIANTS,
    ImageTower,
    RuntimeImageEmbedder,
    build_session,
    image_tower,
    run_tower,
    streams_for,
)
from vitrine.models.preprocess import DECODE_MIN_SIDE
from vitrine.runtime.cache import runtime_dir
from vitrine.runtime.choose import Candidate, Choice, choose, load_choice
from vitrine.runtime.parity import embedding_parity
from vitrine.runtime.session import Variant, default_threads

RUNTIME_ENV = "VITRINE_RUNTIME"
MIN_IMAGES_ENV = "VITRINE_RUNTIME_MIN_IMAGES"
SAMPLE_ENV = "VITRINE_RUNTIME_SAMPLE"
DEFAULT_MIN_IMAGES = 1000
DEFAULT_SAMPLE = 128
CALIBRATION_IMAGES = 64
TORCH = Variant("torch", "fp32")

Say = Callable[[str], None]


@dataclass
class RuntimeDecision:
    """What embeds the images, and the one line saying why (shown in the index report)."""

    embedder: Embedder
    variant: Variant
    line: str
    choice: Choice | None = None
    measured: bool = False  # measured during this run (else: the saved choice, asked for, or torch)

    def to_dict(self) -> dict:
        return {
            **self.variant.to_dict(),
            "line": self.line,
            "measured": self.measured,
            "choice": None if self.choice is None else self.choice.to_dict(),
        }


def requested_runtime(value: str | None = None) -> str:
    """``value``, else ``VITRINE_RUNTIME``, else ``auto``; checked (a precise error when unknown)."""
    text = (value or os.environ.get(RUNTIME_ENV) or "auto").strip().lower()
    if text == "auto":
        return text
    try:
        Variant.parse(text)
    except ValueError as exc:
        raise VitrineError(
            f"runtime {text!r}: {exc}",
            hint="use auto, torch, onnxruntime, onnxruntime-int8, openvino, openvino-bf16 or openvino-int8",
        ) from None
    return text


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return max(0, int(raw))
    except ValueError:
        raise VitrineError(
            f"{name}={raw!r} is not a whole number", hint=f"unset it, or set a number ({default})"
        ) from None


def min_images() -> int:
    return _env_int(MIN_IMAGES_ENV, DEFAULT_MIN_IMAGES)


def choices_dir() -> Path:
    return runtime_dir() / "choices"


def choice_path(tower: ImageTower) -> Path:
    # the graph's input format in the name: a choice measured on another graph is measured again
    return model_choice_path(tower.name, tower.weights_hash, INPUT_FORMAT)


def model_choice_path(model: str, weights_hash: str, graph: str = "") -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in model)
    return choices_dir() / f"{safe}-{weights_hash}{'-' + graph if graph else ''}.json"


def saved_choices(model: str) -> list[dict]:
    """The choices saved on this machine for ``model`` (any weights file; ``<name>?weights=random``
    apart), newest first, one per weights file (a choice measured on an earlier export of the same
    weights is not shown); for ``vitrine models`` and the API (read without loading the model)."""
    name = model
    folder = choices_dir()
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        choice = load_choice(path)
        if choice is not None and (choice.raw or {}).get("model") == name:
            found.append({"model": name, "weights": choice.raw.get("weights"), **choice.to_dict()})
    newest: dict = {}
    for entry in sorted(found, key=lambda c: -c["measured_at"]):
        newest.setdefault(entry["weights"], entry)
    return list(newest.values())


def save_for(tower: ImageTower, choice: Choice) -> Path:
    """Save ``choice`` for the tower's model and weights on this machine (read back by :func:`select`)."""
    return save_for_model(tower.name, tower.weights_hash, choice, INPUT_FORMAT)


def save_for_model(model: str, weights_hash: str, choice: Choice, graph: str = "") -> Path:
    """Save ``choice`` for ``model`` with the weights ``weights_hash`` (no model loaded), where
    :func:`select` and :func:`saved_choices` read it; ``graph``: the exported graph's format."""
    path = model_choice_path(model, weights_hash, graph)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {**choice.to_dict(), "model": model, "weights": weights_hash})
    return path


# --------------------------------------------------------------------------------------------
# the sample of images measured on


def decode_sample(
    embedder: Embedder, tower: ImageTower, items: Sequence[EmbedItem], n: int
) -> tuple[list, list[np.ndarray]]:
    """Up to ``n`` of ``items`` decoded as indexing decodes them, prepared both ways: the torch
    model's tensors (the reference) and the runtime's arrays. Files that fail are skipped."""
    tensors, arrays = [], []
    wanted = list(items[: n + n // 4])  # a few spares for files that cannot be decoded

    def prepare(image):
        return embedder.preprocess(image), tower.prepare(image)

    for decoded in decode_batches(wanted, prepare, batch_size=32, min_side=DECODE_MIN_SIDE):
        for _item, prepared, _info, error in decoded:
            if error is None and len(arrays) < n:
                tensors.append(prepared[0])
                arrays.append(prepared[1])
    return tensors, arrays


def measure(
    embedder: Embedder,
    tower: ImageTower,
    items: Sequence[EmbedItem],
    say: Say | None = None,
    sample: int | None = None,
    variants: Sequence[Variant] | None = None,
    save: bool = True,
    repeats: int = 3,
) -> Choice:
    """Measure ``variants`` (default: every one) against torch on up to ``sample`` of ``items`` and
    pick (and save)."""
    import torch

    say = say or (lambda _m: None)
    variants = VARIANTS if variants is None else variants
    sample = sample or _env_int(SAMPLE_ENV, DEFAULT_SAMPLE)
    say(f"decoding {min(sample, len(items))} images to measure on")
    tensors, arrays = decode_sample(embedder, tower, items, sample)
    if len(arrays) < 2:
        raise VitrineError(
            f"cannot measure the runtimes on {len(arrays)} image(s): at least 2 must decode",
            hint="give a folder with more images",
        )
    size = min(tower.batch_size, len(arrays))
    batches = [
        {"torch": torch.stack(tensors[i : i + size]), "array": np.stack(arrays[i : i + size])}
        for i in range(0, len(arrays), size)
    ]
    calibration = np.stack(arrays[:CALIBRATION_IMAGES])
    threads = default_threads()
    sessions: dict[Variant, object] = {}

    def candidate(variant: Variant) -> Candidate:
        def build():
            sessions[variant] = build_session(tower, variant, calibration, threads=threads)

        def run(batch):
            return run_tower(tower, sessions[variant], batch["array"])

        streams = streams_for(variant, threads)
        note = f"{threads} threads" + (f", {streams} streams" if streams > 1 else "")
        return Candidate(variant, run, build, notes=[note])

    reference = Candidate(TORCH, lambda batch: embedder.embed_batch(batch["torch"]), notes=["torch"])
    choice = choose(
        reference, [candidate(v) for v in variants], batches, embedding_parity, repeats=repeats, progress=say
    )
    if save:
        save_for(tower, choice)
    return choice


def _refusals(choice: Choice) -> str:
    parts = []
    for t in choice.trials[1:]:
        if t.error:
            parts.append(f"{t.variant.label} failed")
        elif t.parity is not None and not t.parity.passed:
            parts.append(f"{t.variant.label} refused by parity")
        elif t.images_per_s and choice.trial(choice.reference) and choice.trial(choice.reference).images_per_s:
            gain = t.images_per_s / choice.trial(choice.reference).images_per_s
            parts.append(f"{t.variant.label} {gain:.2f}x")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# the decision


def torch_decision(
    embedder: Embedder, line: str, choice: Choice | None = None, measured: bool = False
) -> RuntimeDecision:
    return RuntimeDecision(embedder, TORCH, f"torch: {line}", choice, measured)


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text[:200]


def select(
    embedder: Embedder,
    items: Sequence[EmbedItem],
    requested: str | None = None,
    say: Say | None = None,
    may_measure: bool = True,
) -> RuntimeDecision:
    """The embedder to index ``items`` with (see the module docstring). Never raises for a runtime
    that fails: the decision is then torch, with the reason in its line. ``may_measure=False``: with
    ``auto`` and no saved choice, torch (a Ray actor sees one batch, not the whole job)."""
    say = say or (lambda _m: None)
    wanted = requested_runtime(requested)
    if wanted == "torch":
        return torch_decision(embedder, "asked for")
    if not items:
        return torch_decision(embedder, "nothing to embed")
    try:
        tower = image_tower(embedder)
    except Exception as exc:  # noqa: BLE001 - a model that cannot hand out its tower stays on torch
        return torch_decision(embedder, f"could not prepare the image tower for export ({_short(exc)})")
    if tower is None:
        return torch_decision(embedder, "this model has no CPU runtime export here (or runs on a GPU)")

    def calibration() -> np.ndarray:
        say("decoding calibration images")
        _tensors, arrays = decode_sample(embedder, tower, items, CALIBRATION_IMAGES)
        if not arrays:
            raise VitrineError("no image decoded to calibrate int8 on")
        return np.stack(arrays)

    choice, measured = None, False
    if wanted != "auto":
        variant = Variant.parse(wanted)
        if variant.runtime == "torch":
            return torch_decision(embedder, "asked for")
        how = "asked for, parity not measured: `vitrine models --bench` measures it"
    else:
        choice = load_choice(choice_path(tower))
        if choice is None and not may_measure:
            return torch_decision(
                embedder, "no runtime measured on this machine (`vitrine models --bench` measures one)"
            )
        if choice is None:
            least = min_images()
            if len(items) < least:
                return torch_decision(
                    embedder,
                    f"fewer than {least} images to embed ({len(items)}): the runtimes are measured from "
                    f"{least} on ({MIN_IMAGES_ENV})",
                )
            try:
                t0 = time.perf_counter()
                choice = measure(embedder, tower, items, say=say)
                measured = True
                say(f"measured in {time.perf_counter() - t0:.0f} s: {choice.summary()}")
            except Exception as exc:  # noqa: BLE001
                return torch_decision(embedder, f"measuring the runtimes failed ({_short(exc)})")
        variant = choice.picked
        if variant.runtime == "torch":
            why = _refusals(choice)
            return torch_decision(
                embedder, "no runtime passed the parity gate faster" + (f" ({why})" if why else ""), choice, measured
            )
        how = "measured now" if measured else "saved choice"
    try:
        say(f"loading {variant.label}")
        session = build_session(tower, variant, calibration, keep_compiled=True)
    except Exception as exc:  # noqa: BLE001 - a runtime that fails here leaves the run on torch
        return torch_decision(embedder, f"{variant.label} failed ({_short(exc)})", choice, measured)
    line = (choice.summary() if choice is not None else variant.label) + f" ({how})"
    return RuntimeDecision(RuntimeImageEmbedder(embedder, tower, session, variant), variant, line, choice, measured)
