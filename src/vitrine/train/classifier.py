"""What every trained classifier offers, whatever made it (fine-tuning, linear probe, zero-shot).

``load_classifier(run)`` reads the run's kind and returns an object with ``classes`` and
``predict_proba(images) -> (n, n_classes)`` over decoded RGB PIL images. Predict pages, the CLI
and evaluation only use this.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from vitrine.errors import VitrineError
from vitrine.train.runs import Run


@runtime_checkable
class Classifier(Protocol):
    classes: list[str]

    def predict_proba(self, images: list[Image.Image]) -> np.ndarray: ...


_LOADERS: dict[str, object] = {}  # kind -> callable(run) -> Classifier


def register_loader(kind: str, loader) -> None:
    _LOADERS[kind] = loader


def load_classifier(run: Run) -> Classifier:
    if run.record.get("state") not in ("done", "cancelled") and not (run.checkpoints_dir / "best.pt").exists():
        if run.kind != "zero-shot":
            raise VitrineError(f"run {run.id!r} has no trained model yet (state: {run.record.get('state')})")
    if run.kind not in _LOADERS:
        from vitrine.train import finetune, linear_probe, zero_shot  # noqa: F401  (they register)
    loader = _LOADERS.get(run.kind)
    if loader is None:
        raise VitrineError(f"cannot load a classifier of kind {run.kind!r}")
    return loader(run)
