"""What every trained classifier offers, whatever made it (fine-tuning, linear probe, zero-shot).

``load_classifier(run)`` reads the run's kind and returns an object with ``classes`` and
``predict_proba(images) -> (n, n_classes)`` over decoded RGB PIL images. Predict pages, the CLI
and evaluation only use this; the trainers write the files these classes read:

    finetune       checkpoints/best.pt (else last.pt)
    linear-probe   classifier.json + classifier.joblib (a scikit-learn pipeline over embeddings)
    zero-shot      classifier.json + classifier.npz (the class prompts' text vectors)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from vitrine.core.errors import VitrineError
from vitrine.runs import Run
from vitrine.runs.checkpoint import load_checkpoint


@runtime_checkable
class Classifier(Protocol):
    classes: list[str]

    def predict_proba(self, images: list[Image.Image]) -> np.ndarray: ...


# ------------------------------------------------------------------------------------------------
# shared by the linear probe and the zero-shot classifier (and their trainers)


def embed_pil_images(model, space: str, images: list, batch_size: int | None = None) -> np.ndarray:
    """Vectors in ``space`` for decoded RGB images, ``batch_size`` (default: the model's) at a time."""
    from vitrine.models.base import embed_images

    dim = model.spaces.dims[space]
    if not images:
        return np.zeros((0, dim), dtype=np.float32)
    step = batch_size or model.batch_size or 32
    parts = [embed_images(model, images[i : i + step])[space] for i in range(0, len(images), step)]
    return np.concatenate(parts).astype(np.float32, copy=False)


def full_proba(pipeline, vectors: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all ``n_classes`` (a class absent from the train split gets 0)."""
    out = np.zeros((len(vectors), n_classes), dtype=np.float64)
    if len(vectors):
        out[:, pipeline.classes_] = pipeline.predict_proba(vectors)
    return out


def softmax_scores(image_vectors: np.ndarray, text_vectors: np.ndarray, logit_scale: float) -> np.ndarray:
    logits = logit_scale * (np.asarray(image_vectors, np.float64) @ np.asarray(text_vectors, np.float64).T)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------------
# fine-tuning


class FinetuneClassifier:
    """A fine-tuned network from a run's best.pt (else last.pt): ``predict_proba`` over PIL images."""

    kind = "finetune"

    def __init__(self, run_dir: str | os.PathLike, device: str | None = None, batch_size: int = 64):
        import torch

        from vitrine.models.classifiers import backbones
        from vitrine.models.classifiers.transforms import eval_transform

        run_dir = Path(run_dir)
        for name in ("best.pt", "last.pt"):
            path = run_dir / "checkpoints" / name
            if path.is_file():
                break
        else:
            raise VitrineError(f"run {run_dir.name!r} has no checkpoint", hint="train it (again) with vitrine train")
        state = load_checkpoint(path)
        self.checkpoint = path
        self.classes: list[str] = list(state["classes"])
        config = state.get("config") or {}
        self.backbone = state.get("backbone") or config.get("backbone")
        self.image_size = int(state.get("image_size") or config.get("image_size") or 224)
        self.channels_last = bool(config.get("channels_last"))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, data_config = backbones.build_classifier(self.backbone, len(self.classes), pretrained=False)
        model.load_state_dict(state["model"])
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.to(self.device).eval()
        self.data_config = state.get("data_config") or data_config
        self.transform = eval_transform(self.image_size, self.data_config)
        self.batch_size = batch_size

    def predict_proba(self, images) -> np.ndarray:
        import torch

        images = list(images)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = [
                    im if im.mode == "RGB" else im.convert("RGB") for im in images[start : start + self.batch_size]
                ]
                x = torch.stack([self.transform(im) for im in batch]).to(self.device)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                out.append(self.model(x).float().softmax(dim=1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)))


def load_finetuned(run: Run) -> FinetuneClassifier:
    return FinetuneClassifier(run.dir)


# ------------------------------------------------------------------------------------------------
# linear probe


class LinearProbeClassifier:
    """A saved linear probe: embeds images with its model and space, then applies the pipeline."""

    kind = "linear-probe"

    def __init__(self, run_dir: str | Path):
        import joblib

        from vitrine.models import registry

        run_dir = Path(run_dir)
        try:
            meta = json.loads((run_dir / "classifier.json").read_text(encoding="utf-8"))
            self.pipeline = joblib.load(run_dir / "classifier.joblib")
        except FileNotFoundError:
            raise VitrineError(
                f"run {run_dir.name!r} has no saved linear probe", hint="train it again (it takes seconds)"
            ) from None
        except (OSError, ValueError) as exc:
            raise VitrineError(f"run {run_dir.name!r}: cannot read its linear probe: {exc}") from None
        self.classes: list[str] = list(meta["classes"])
        self.embedding_model: str = meta["embedding_model"]
        self.space: str = meta["space"]
        self.model = registry.load(self.embedding_model)

    def proba_from_vectors(self, vectors: np.ndarray) -> np.ndarray:
        return full_proba(self.pipeline, np.asarray(vectors, dtype=np.float32), len(self.classes))

    def predict_proba(self, images) -> np.ndarray:
        return self.proba_from_vectors(embed_pil_images(self.model, self.space, list(images)))


def load_linear_probe(run: Run) -> LinearProbeClassifier:
    return LinearProbeClassifier(run.dir)


# ------------------------------------------------------------------------------------------------
# zero-shot


class ZeroShotClassifier:
    """Cosine between an image and each class prompt, through a softmax at ``logit_scale``."""

    kind = "zero-shot"

    def __init__(self, run_dir: str | Path):
        from vitrine.models import registry

        run_dir = Path(run_dir)
        try:
            meta = json.loads((run_dir / "classifier.json").read_text(encoding="utf-8"))
            with np.load(run_dir / "classifier.npz", allow_pickle=False) as data:
                self.text_vectors = np.asarray(data["text_vectors"], dtype=np.float32)
        except FileNotFoundError:
            raise VitrineError(
                f"run {run_dir.name!r} has no saved zero-shot classifier", hint="make it again"
            ) from None
        except (OSError, ValueError, KeyError) as exc:
            raise VitrineError(f"run {run_dir.name!r}: cannot read its zero-shot classifier: {exc}") from None
        self.classes: list[str] = list(meta["classes"])
        self.embedding_model: str = meta["embedding_model"]
        self.space: str = meta["space"]
        self.logit_scale = float(meta["logit_scale"])
        self.prompts = meta.get("prompts")
        self.model = registry.load(self.embedding_model)

    def proba_from_vectors(self, vectors: np.ndarray) -> np.ndarray:
        return softmax_scores(vectors, self.text_vectors, self.logit_scale)

    def predict_proba(self, images) -> np.ndarray:
        return self.proba_from_vectors(embed_pil_images(self.model, self.space, list(images)))


def load_zero_shot(run: Run) -> ZeroShotClassifier:
    return ZeroShotClassifier(run.dir)


# ------------------------------------------------------------------------------------------------
# by run kind

_LOADERS: dict[str, object] = {  # kind -> callable(run) -> Classifier
    FinetuneClassifier.kind: load_finetuned,
    LinearProbeClassifier.kind: load_linear_probe,
    ZeroShotClassifier.kind: load_zero_shot,
}


def register_loader(kind: str, loader) -> None:
    _LOADERS[kind] = loader


def load_classifier(run: Run) -> Classifier:
    if run.record.get("state") not in ("done", "cancelled") and not (run.checkpoints_dir / "best.pt").exists():
        if run.kind != "zero-shot":
            raise VitrineError(f"run {run.id!r} has no trained model yet (state: {run.record.get('state')})")
    loader = _LOADERS.get(run.kind)
    if run.record.get("submission"):
        raise VitrineError(
            f"run {run.id!r} is a submission: predictions scored on a split, not a model that can predict",
            hint="predict with a trained run",
        )
    if loader is None:
        raise VitrineError(f"cannot load a classifier of kind {run.kind!r}")
    return loader(run)
