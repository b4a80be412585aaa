"""``hf:<repo id>``: a Hugging Face vision encoder by name (``transformers``).

What the checkpoint's ``config.json`` says (``model_type``) decides how it embeds:

* a model with an image and a text tower (``CLIPModel``, ``SiglipModel``: any model with
  ``get_image_features`` and ``get_text_features``) embeds images and text in one ``joint``
  space (its projections), so text search and zero-shot work; text needs the repo's tokenizer
  files (without them the model is image-only and says so in ``spaces.extra``);
* any other vision model (``CLIPVisionModel``, DINOv2, ViT... through ``AutoModel``) embeds images
  only, in a ``visual`` space: its pooled output (``pooler_output``; the first token of the last
  hidden state when the model has no pooler).

Vectors are L2-normalised. Preprocessing is the repo's image processor
(``preprocessor_config.json``, through ``AutoImageProcessor``) after vitrine's aspect-ratio
bound; a checkpoint without one is resized (shorter side) and centre-cropped to the config's
``image_size`` and normalised with CLIP's mean and std for CLIP models, 0.5 for SigLIP,
ImageNet's otherwise.

``<repo id>`` is a hub repo (``openai/clip-vit-base-patch32``, ``facebook/dinov2-small``) or a
local folder holding a checkpoint (``hf:/models/my-clip``). A repo's files come from the Hugging
Face cache, else are downloaded when the hub answers; offline with nothing cached, loading
answers :class:`~vitrine.core.errors.ModelUnavailable` (503 in the API) naming the model and what
to do. ``hf:<repo or folder>?weights=random`` builds the architecture from its config alone,
randomly initialised (only ``config.json`` is needed): speed only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vitrine.core.errors import ModelError, ModelUnavailable
from vitrine.models.base import ModelCard, Spaces, l2_normalize
from vitrine.models.preprocess import limit_aspect
from vitrine.models.registry import ModelSpec, register_family
from vitrine.weights import hf, network
from vitrine.weights.spec import Availability

PREFIX = "hf"
CONFIG = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
OPTIONAL_FILES = (
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "spiece.model",
)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _tensor(out):
    """A features tensor from what a transformers method returns (a tensor, or an output whose
    ``pooler_output`` holds the projected features, as in transformers 5)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is not None:
        return pooled
    return out.last_hidden_state[:, 0]


class HfVisionEmbedder:
    """A transformers vision encoder (or the image tower of a CLIP-like model) behind the Embedder protocol."""

    batch_size = 32

    def __init__(self, name: str, model, processor=None, tokenizer=None, device: str | None = None, info=None):
        self.name = name
        self.device = str(device or _default_device())
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.processor = processor
        self.info = dict(info or {})
        self.joint = hasattr(model, "get_image_features") and hasattr(model, "get_text_features")
        self.tokenizer = tokenizer if self.joint else None
        self.model_type = getattr(self.config, "model_type", "")
        self._transform = None if processor is not None else self._fallback_transform()
        dim = self._dim()
        space = "joint" if self.joint else "visual"
        extra = {"family": "transformers", "model_type": self.model_type, **self.info}
        if self.joint and self.tokenizer is None:
            extra["text"] = "no tokenizer files with this checkpoint: text queries are unavailable"
        if self.joint and hasattr(model, "logit_scale"):
            extra["logit_scale"] = float(model.logit_scale.detach().exp().clamp(max=100.0))
        self.spaces = Spaces(
            dims={space: dim},
            text_space=space if self.joint and self.tokenizer is not None else None,
            image_space=space,
            extra=extra,
        )

    def _vision_config(self):
        return getattr(self.config, "vision_config", None) or self.config

    def _dim(self) -> int:
        import torch

        size = int(getattr(self._vision_config(), "image_size", 224) or 224)
        with torch.inference_mode():
            x = torch.zeros(1, int(getattr(self._vision_config(), "num_channels", 3) or 3), size, size)
            return int(self._features(x.to(self.device)).shape[-1])

    def _fallback_transform(self):
        from torchvision import transforms

        size = int(getattr(self._vision_config(), "image_size", 224) or 224)
        if "siglip" in self.config.model_type:
            mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        elif "clip" in self.config.model_type:
            mean, std = CLIP_MEAN, CLIP_STD
        else:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        return transforms.Compose(
            [
                transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                transforms.Normalize(mean, std),
            ]
        )

    def preprocess(self, image):
        if image.mode != "RGB":
            image = image.convert("RGB")
        image = limit_aspect(image)
        if self._transform is not None:
            return self._transform(image)
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def _features(self, x):
        if self.joint:
            return _tensor(self.model.get_image_features(pixel_values=x))
        return _tensor(self.model(pixel_values=x))

    def embed_batch(self, batch) -> dict[str, np.ndarray]:
        import torch

        if not isinstance(batch, torch.Tensor):
            batch = torch.stack(list(batch))
        with torch.inference_mode():
            feats = self._features(batch.to(self.device))
        return {self.spaces.image_space: l2_normalize(feats.float().cpu().numpy())}

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        if self.spaces.text_space is None:
            raise ModelError(
                f"model {self.name!r} cannot embed text"
                + ("" if self.joint else ": it is an image-only encoder")
                + (" (its checkpoint has no tokenizer files)" if self.joint else ""),
                hint="use a CLIP or SigLIP checkpoint with its tokenizer, or offline-concepts",
            )
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros((0, self.spaces.dims[self.spaces.text_space]), np.float32)
        text_config = getattr(self.config, "text_config", None)
        max_length = int(getattr(text_config, "max_position_embeddings", 77) or 77)
        padding = "max_length" if "siglip" in self.model_type else True  # SigLIP was trained padded
        tokens = self.tokenizer(texts, padding=padding, truncation=True, max_length=max_length, return_tensors="pt")
        kwargs = {"input_ids": tokens["input_ids"].to(self.device)}
        if "attention_mask" in tokens and "siglip" not in self.model_type:
            kwargs["attention_mask"] = tokens["attention_mask"].to(self.device)
        with torch.inference_mode():
            feats = _tensor(self.model.get_text_features(**kwargs))
        return l2_normalize(feats.float().cpu().numpy())


# ------------------------------------------------------------------------------------------------
# where a checkpoint's files are


def _local_folder(ref: str) -> Path | None:
    if ref.startswith(("/", "./", "../", "~")) or os.path.isabs(ref):
        path = Path(ref).expanduser()
        if not path.is_dir():
            raise ModelError(f"model 'hf:{ref}': no folder {path}", hint="give a folder holding config.json")
        return path
    return None


def _check_repo(ref: str) -> None:
    parts = ref.split("/")
    if len(parts) > 2 or not all(parts) or any(c.isspace() for c in ref):
        raise ModelError(
            f"'hf:{ref}' does not name a Hugging Face repo",
            hint="e.g. hf:openai/clip-vit-base-patch32, hf:facebook/dinov2-small, or hf:/a/local/folder",
        )


def _what_to_do(name: str) -> str:
    return (
        f"run once where the hub is reachable (its files then stay in the Hugging Face cache, "
        f"HF_HUB_CACHE), or download the repo elsewhere and name its folder (hf:/path/to/folder); "
        f"{name}?weights=random times the architecture from its config alone (speed only)"
    )


def _unreachable(name: str, what: str) -> ModelUnavailable:
    why = "offline mode is on" if network.is_offline() else f"the hub {hf.hf_endpoint()} is unreachable"
    return ModelUnavailable(f"model {name!r}: {what} not in the Hugging Face cache and {why}", hint=_what_to_do(name))


def model_dir(name: str, ref: str, random: bool) -> tuple[Path, str]:
    """The folder holding the checkpoint's files (a local folder, a cache snapshot, or one just
    downloaded), and where it was found. ``random``: only ``config.json`` is needed."""
    local = _local_folder(ref)
    if local is not None:
        if not (local / CONFIG).is_file():
            raise ModelError(f"model {name!r}: {local} has no {CONFIG}", hint="give a transformers checkpoint folder")
        if not random and not any((local / f).is_file() for f in WEIGHT_FILES):
            raise ModelError(
                f"model {name!r}: {local} has no weights ({' or '.join(WEIGHT_FILES)})",
                hint=f"add them, or use {name}?weights=random (speed only)",
            )
        return local, "local"
    _check_repo(ref)
    config = hf.hf_cached_file(ref, CONFIG)
    if config is not None and (random or hf.hf_cached_file(ref, WEIGHT_FILES) is not None):
        return config.parent, "cached"
    if not hf.hub_reachable():
        raise _unreachable(name, f"{ref}'s {'config' if random else 'weights'}")
    folder = hf.download_hf_file(ref, CONFIG, model_name=name).parent
    if not random:
        hf.download_hf_file(ref, WEIGHT_FILES, model_name=name)
    for extra in OPTIONAL_FILES:  # processor and tokenizer: used when the repo has them
        try:
            hf.download_hf_file(ref, extra, model_name=name)
        except ModelError:
            continue
    return folder, "downloaded"


def _processor(folder: Path):
    if not (folder / "preprocessor_config.json").is_file():
        return None
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except Exception:  # noqa: BLE001 (an unreadable processor: the fallback transform does)
        return None


def _tokenizer(folder: Path):
    if not any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json", "spiece.model")):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception:  # noqa: BLE001 (no usable tokenizer: image-only, and the embedder says so)
        return None


def load(name: str, ref: str, random: bool = False, device: str | None = None) -> HfVisionEmbedder:
    from transformers import AutoConfig, AutoModel

    folder, where = model_dir(name, ref, random)
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        if random:
            model = AutoModel.from_config(config)
        else:
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:
        raise ModelError(
            f"model {name!r}: transformers cannot build it from {folder}: {type(e).__name__}: "
            f"{str(e).splitlines()[0][:300] if str(e) else ''}",
            hint="name a vision encoder checkpoint (CLIP, SigLIP, DINOv2, ViT...)",
        ) from e
    if not hasattr(model, "get_image_features"):
        main = getattr(model, "main_input_name", "")
        if main != "pixel_values":
            raise ModelError(
                f"model {name!r} is a {config.model_type} model, not a vision encoder (it takes {main or 'no images'})",
                hint="name a vision encoder checkpoint (CLIP, SigLIP, DINOv2, ViT...)",
            )
    info = {"repo": ref, "weights_from": "random" if random else where}
    return HfVisionEmbedder(name, model, _processor(folder), _tokenizer(folder), device, info)


def availability(name: str, ref: str, probe_hub: bool = False) -> Availability:
    try:
        local = _local_folder(ref)
        if local is None:
            _check_repo(ref)
    except ModelError as e:
        return Availability(False, "unavailable", e.message)
    if local is not None:
        ok = (local / CONFIG).is_file() and any((local / f).is_file() for f in WEIGHT_FILES)
        return Availability(ok, "local" if ok else "unavailable", f"checkpoint folder {local}")
    if hf.hf_cached_file(ref, CONFIG) is not None and hf.hf_cached_file(ref, WEIGHT_FILES) is not None:
        return Availability(True, "cached", f"{ref} in the Hugging Face cache")
    if not probe_hub:
        return Availability(False, "unavailable", f"{ref}: not in the Hugging Face cache; hub not probed")
    if hf.hub_reachable():
        return Availability(True, "downloadable", f"will download {ref} from {hf.hf_endpoint()}")
    return Availability(False, "unavailable", f"{ref}: not in the Hugging Face cache and the hub is unreachable")


def make_spec(ref: str) -> ModelSpec:
    name = f"{PREFIX}:{ref}"

    def _loader(weights=None, device=None, **_):
        if weights:
            raise ModelError(
                f"model {name!r} takes no --weights file", hint="name a checkpoint folder instead: hf:/path/to/folder"
            )
        return load(name, ref, False, device)

    def _random(device=None):
        return load(name, ref, True, device)

    def _availability(weights=None, probe_hub=False, **_):
        return availability(name, ref, probe_hub)

    return ModelSpec(
        name=name,
        task="embedding",
        source="local" if ref.startswith(("/", ".", "~")) else "hub",
        card=ModelCard(
            summary=f"Hugging Face {ref}: pooled, L2-normalised image features (text too for CLIP/SigLIP).",
            license="see the repo's model card",
            reference=f"https://huggingface.co/{ref}" if not ref.startswith(("/", ".", "~")) else "",
        ),
        loader=_loader,
        availability=_availability,
        random_loader=_random,
    )


register_family(PREFIX, make_spec, "hf:<repo id or checkpoint folder> (a transformers vision encoder)")
