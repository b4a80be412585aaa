"""``timm:<model name>``: any timm image model as an image-only embedder.

The model is built with ``timm.create_model(name, num_classes=0)``, so its forward pass returns
the pooled backbone features (global pooling after the last stage, no classifier head); those
features, L2-normalised, are the ``visual`` space. Preprocessing is timm's own data config for the
model (``resolve_data_config`` + ``create_transform``: its input size, crop, interpolation, mean
and std), after vitrine's aspect-ratio bound. There is no text tower: no text search, no zero-shot.

Pretrained weights are timm's default tag for the name (``resnet50`` means ``resnet50.a1_in1k``;
name a tag to pick another, ``timm:resnet50.tv_in1k``), found by vitrine's one lookup
(:mod:`vitrine.weights.resolve`): ``--weights PATH`` / ``VITRINE_WEIGHTS_TIMM_<NAME>``, then the
Hugging Face cache, then a download when the hub answers. Offline with nothing cached, loading
answers :class:`~vitrine.core.errors.ModelUnavailable` (503 in the API) naming the model, the repo
and what to do. ``timm:<name>?weights=random`` builds the architecture randomly initialised
(nothing is read or downloaded): its vectors time the architecture and mean nothing else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitrine.core.errors import ModelError, ModelUnavailable
from vitrine.models.base import ModelCard, Spaces, l2_normalize
from vitrine.models.preprocess import limit_aspect
from vitrine.models.registry import ModelSpec, register_family
from vitrine.weights import hf, network
from vitrine.weights.local import local_weights_override, weights_env_var
from vitrine.weights.spec import Availability

PREFIX = "timm"
SPACE = "visual"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TimmEmbedder:
    """A timm backbone (``num_classes=0``: pooled features) behind the Embedder protocol."""

    batch_size = 32

    def __init__(self, name: str, model, device: str | None = None, info: dict | None = None):
        import timm

        self.name = name
        self.device = str(device or _default_device())
        self.model = model.to(self.device).eval()
        config = timm.data.resolve_data_config({}, model=self.model)
        self.transform = timm.data.create_transform(**config)
        self.info = {"data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}}
        self.info.update(info or {})
        self.spaces = Spaces(
            dims={SPACE: int(self.model.num_features)},
            text_space=None,
            image_space=SPACE,
            extra={"family": "timm", **{k: v for k, v in self.info.items() if k in ("arch", "weights_from")}},
        )

    def preprocess(self, image):
        if image.mode != "RGB":
            image = image.convert("RGB")
        return self.transform(limit_aspect(image))

    def embed_batch(self, batch) -> dict[str, np.ndarray]:
        import torch

        if not isinstance(batch, torch.Tensor):
            batch = torch.stack(list(batch))
        with torch.inference_mode():
            feats = self.model(batch.to(self.device))
        return {SPACE: l2_normalize(feats.float().cpu().numpy())}

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        raise ModelError(
            f"model {self.name!r} is an image-only backbone: it cannot embed text",
            hint="use a model with a text tower (CLIP, offline-concepts, hf:<a CLIP or SigLIP repo>)",
        )


def _check_arch(arch: str) -> None:
    import timm

    base = arch.split(".", 1)[0]
    if not timm.is_model(base):
        close = timm.list_models(f"*{base[:6]}*")[:8] if base else []
        raise ModelError(
            f"timm has no model {arch!r}",
            hint=("close names: " + ", ".join(close) + "; " if close else "") + "see timm.list_models() for every name",
        )


def _hub_location(arch: str) -> tuple[str, str]:
    """``(hub repo id, tag)`` of timm's pretrained weights for ``arch`` (``model`` or ``model.tag``)."""
    import timm

    try:
        from_cfg = timm.models.get_pretrained_cfg(arch)  # None: the name has no pretrained weights
    except RuntimeError:  # an unknown tag
        from_cfg = None
    if from_cfg is None:
        raise ModelError(
            f"timm model {arch!r} has no pretrained weights",
            hint=f"name a tag that has (timm.list_pretrained('{arch.split('.')[0]}*')), or use "
            f"timm:{arch}?weights=random to time the architecture",
        )
    repo = getattr(from_cfg, "hf_hub_id", None) or ""
    if not repo:
        raise ModelError(
            f"timm model {arch!r}: its pretrained weights are not on the Hugging Face hub",
            hint=f"download them elsewhere and set {weights_env_var(PREFIX + ':' + arch)}=PATH",
        )
    return repo, getattr(from_cfg, "tag", "") or ""


def _what_to_do(name: str) -> str:
    return (
        f"run once where the hub is reachable (the weights are then in the Hugging Face cache), or "
        f"point at the weights file with --weights PATH or {weights_env_var(name)}=PATH; "
        f"{name}?weights=random times the architecture (speed only)"
    )


def resolve_weights(name: str, arch: str, weights: str | None) -> tuple[Path, str]:
    """``(weights file, where)``: a local file, the hub cache, or a download."""
    local = local_weights_override(name, weights)
    if local is not None:
        if not local.is_file():
            raise ModelError(f"model {name!r}: {local} is not a weights file", hint=_what_to_do(name))
        return local, "local"
    repo, _ = _hub_location(arch)
    cached = hf.hf_cached_file(repo, WEIGHT_FILES)
    if cached is not None:
        return cached, "cached"
    if not hf.hub_reachable():
        why = "offline mode is on" if network.is_offline() else f"the hub {hf.hf_endpoint()} is unreachable"
        raise ModelUnavailable(
            f"model {name!r}: its weights ({repo}) are not in the Hugging Face cache and {why}",
            hint=_what_to_do(name),
        )
    return hf.download_hf_file(repo, WEIGHT_FILES, model_name=name), "downloaded"


def load(name: str, arch: str, weights: str | None = None, device: str | None = None) -> TimmEmbedder:
    import timm

    _check_arch(arch)
    path, where = resolve_weights(name, arch, weights)
    try:
        model = timm.create_model(arch, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path)})
    except Exception as e:  # wrong architecture for the file, truncated file...
        raise ModelError(
            f"model {name!r}: could not load weights from {path}: {type(e).__name__}: {str(e).splitlines()[0][:300]}",
            hint=f"the file must hold timm {arch} weights",
        ) from e
    return TimmEmbedder(name, model, device, {"arch": arch, "weights": str(path), "weights_from": where})


def load_random(name: str, arch: str, device: str | None = None) -> TimmEmbedder:
    import timm

    _check_arch(arch)
    model = timm.create_model(arch, pretrained=False, num_classes=0)
    return TimmEmbedder(name, model, device, {"arch": arch, "weights_from": "random"})


def availability(name: str, arch: str, weights: str | None = None, probe_hub: bool = False) -> Availability:
    try:
        _check_arch(arch)
        local = local_weights_override(name, weights)
        if local is not None:
            return Availability(True, "local", f"weights file {local}")
        repo, _ = _hub_location(arch)
    except ModelError as e:
        return Availability(False, "unavailable", e.message)
    cached = hf.hf_cached_file(repo, WEIGHT_FILES)
    if cached is not None:
        return Availability(True, "cached", f"{repo} weights in the Hugging Face cache ({cached})")
    if not probe_hub:
        return Availability(False, "unavailable", f"{repo} weights: not in the cache; hub not probed")
    if hf.hub_reachable():
        return Availability(True, "downloadable", f"will download {repo} from {hf.hf_endpoint()}")
    return Availability(False, "unavailable", f"{repo} weights not in the cache and the hub is unreachable")


def make_spec(arch: str) -> ModelSpec:
    """The spec of ``timm:<arch>`` (the name is checked when the model loads, not here, so that
    naming a model never imports timm)."""
    name = f"{PREFIX}:{arch}"
    if any(c in arch for c in "/\\ ") or not arch.strip():
        raise ModelError(f"{name!r} is not a timm model name", hint="e.g. timm:resnet50 or timm:convnext_tiny.fb_in1k")

    def _loader(weights=None, device=None, **_):
        return load(name, arch, weights, device)

    def _random(device=None):
        return load_random(name, arch, device)

    def _availability(weights=None, probe_hub=False, **_):
        return availability(name, arch, weights, probe_hub)

    return ModelSpec(
        name=name,
        task="embedding",
        source="hub",
        card=ModelCard(
            summary=f"timm {arch}: pooled backbone features as an image embedding (no text search).",
            license="see the model card of the timm weights",
            reference="timm, https://github.com/huggingface/pytorch-image-models",
            notes="image-only: similar-image search and the linear probe; no text queries, no zero-shot.",
        ),
        loader=_loader,
        availability=_availability,
        random_loader=_random,
    )


register_family(PREFIX, make_spec, "timm:<model name> (any timm image model)")
