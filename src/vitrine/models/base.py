"""What every embedding model offers to the rest of vitrine.

A model embeds images (and, when it can, text) into one or more named *spaces*. A space is a
vector space with its own FAISS index: CLIP has a single ``joint`` space where text and images
meet; ``offline-concepts`` has a ``concepts`` space (text-comparable, built by concept bridging)
and a ``visual`` space (the classifier's penultimate features) used for image-to-image search.

All vectors are float32, L2-normalised, so inner product is cosine similarity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ModelCard:
    """A short description shown by ``vitrine models``, the API and the UI."""

    summary: str
    license: str = ""
    languages: tuple[str, ...] = ("en",)
    reference: str = ""
    notes: str = ""


@dataclass
class Spaces:
    """Names and dimensions of a model's vector spaces, and which space each query kind uses."""

    dims: dict[str, int]
    text_space: str | None  # space that text queries are compared in (None: no text search)
    image_space: str  # space that image ("more like this") queries are compared in
    extra: dict = field(default_factory=dict)


@runtime_checkable
class Embedder(Protocol):
    """A loaded model. ``embed_images`` takes decoded RGB PIL images, already EXIF-transposed."""

    name: str
    spaces: Spaces
    batch_size: int  # a good default batch for this model on CPU

    def preprocess(self, image: Image.Image):  # -> torch.Tensor or float32 ndarray (C,H,W); in decode workers
        ...

    def embed_batch(self, batch) -> dict[str, np.ndarray]:  # batch: stacked preprocess outputs
        """Return {space: (n, dim) float32 L2-normalised} for every space in ``spaces.dims``."""
        ...

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Return (n, dim) float32 L2-normalised vectors in ``spaces.text_space``."""
        ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def embed_images(model: Embedder, images: list[Image.Image]) -> dict[str, np.ndarray]:
    """Convenience: preprocess and embed a small list of images in one batch."""
    import torch

    batch = torch.stack([model.preprocess(im) for im in images])
    return model.embed_batch(batch)
