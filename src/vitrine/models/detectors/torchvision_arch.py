"""torchvision's detection architectures by builder name, rebuilt around a state_dict trained
elsewhere: which builders there are, how many classes a state_dict's head was trained for, which
builders its keys look like, and a strict load that says precisely what does not fit.

A state_dict from torchvision's reference scripts (``references/detection/train.py``) or any code
that built its model with ``torchvision.models.get_model(name, num_classes=...)`` is rebuilt with the
same builder (``weights=None, weights_backbone=None``: nothing is downloaded) and the number of
classes its head holds, background included (torchvision's convention: COCO models have 91).

Builders given ImageNet backbone weights freeze their batch norms (``FrozenBatchNorm2d``, no
``num_batches_tracked``); without weights they build ordinary ``BatchNorm2d``. :func:`load_strict`
turns a batch norm into the frozen kind where the state_dict says it was one, so the rebuilt network
is the trained one (same outputs, same parameter count).
"""

from __future__ import annotations

from collections.abc import Mapping

from vitrine.core.errors import ModelError

# families of torchvision builders, by name prefix; what each returns
FAMILIES = ("fasterrcnn", "maskrcnn", "retinanet", "fcos", "ssdlite", "ssd")
SEGMENTATION_FAMILIES = ("maskrcnn",)
UNSUPPORTED = {"keypointrcnn": "a keypoint detector (vitrine scores boxes and masks, not keypoints)"}
SHOWN = 6  # keys listed in an error, at most


def detection_archs() -> list[str]:
    """torchvision's detection builders vitrine can rebuild (every one but keypoint R-CNN)."""
    import torchvision
    from torchvision.models import detection

    names = torchvision.models.list_models(module=detection)
    return sorted(n for n in names if not any(n.startswith(p) for p in UNSUPPORTED))


def family(arch: str) -> str:
    """``fasterrcnn``, ``maskrcnn``, ``retinanet``, ``fcos``, ``ssdlite`` or ``ssd``."""
    for prefix in FAMILIES:
        if arch.startswith(prefix):
            return prefix
    raise ModelError(f"unknown torchvision detection architecture {arch!r}", hint=_archs_hint())


def task_of(arch: str) -> str:
    """``segmentation`` for the Mask R-CNNs, ``detection`` for every other builder."""
    return "segmentation" if family(arch) in SEGMENTATION_FAMILIES else "detection"


def _archs_hint() -> str:
    return "torchvision's detection builders: " + ", ".join(detection_archs())


def check_arch(arch: str) -> str:
    """``arch`` when it is one of :func:`detection_archs`; a :class:`ModelError` naming them otherwise."""
    arch = str(arch).strip()
    for prefix, why in UNSUPPORTED.items():
        if arch.startswith(prefix):
            raise ModelError(f"{arch} is {why}", hint=_archs_hint())
    if arch not in detection_archs():
        raise ModelError(f"unknown torchvision detection architecture {arch!r}", hint=_archs_hint())
    return arch


def _shape(state: Mapping, key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return tuple(int(d) for d in value.shape) if hasattr(value, "shape") else None


def _last_conv(state: Mapping, prefix: str) -> str | None:
    """The last 4-D weight under ``prefix`` (an SSD head's per-level block: a plain conv for SSD,
    depthwise + 1×1 convs for SSDlite; the 1×1 one predicts)."""
    found = [k for k in state if k.startswith(prefix) and k.endswith(".weight") and len(_shape(state, k) or ()) == 4]
    if not found:
        return None
    return max(found, key=lambda k: tuple(int(p) if p.isdigit() else -1 for p in k[len(prefix) :].split(".")[:-1]))


def _head_keys(fam: str, state: Mapping) -> tuple[str | None, str | None]:
    """(classification weight, box regression weight) of a family's head, as named in ``state``."""
    if fam in ("fasterrcnn", "maskrcnn"):
        return "roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.bbox_pred.weight"
    if fam in ("retinanet", "fcos"):
        return "head.classification_head.cls_logits.weight", "head.regression_head.bbox_reg.weight"
    return (
        _last_conv(state, "head.classification_head.module_list.0.") or "head.classification_head.module_list.0.weight",
        _last_conv(state, "head.regression_head.module_list.0.") or "head.regression_head.module_list.0.weight",
    )


def num_classes(arch: str, state: Mapping, source: str = "the checkpoint") -> int:
    """The number of classes (background included) the head of ``arch`` in ``state`` predicts.

    R-CNNs: rows of the box predictor's classifier. RetinaNet, FCOS and SSD predict every class at
    every anchor of a location: the classifier's output channels over the anchors per location
    (the box regressor's channels over 4)."""
    fam = family(arch)
    cls_key, box_key = _head_keys(fam, state)
    cls, box = _shape(state, cls_key or ""), _shape(state, box_key or "")
    if cls is None:
        guess = candidate_archs(state)
        raise ModelError(
            f"{source} has no {cls_key!r}: it is not the state_dict of a {arch}",
            hint=(f"its keys look like {' or '.join(guess)}: pass that --arch" if guess else _keys_hint(state)),
        )
    if fam in ("fasterrcnn", "maskrcnn"):
        return cls[0]
    if box is None or box[0] % 4 or not box[0] or cls[0] % (box[0] // 4):
        raise ModelError(
            f"{source}: cannot tell the class count of {arch} from {cls_key} {cls} and {box_key} {box}",
            hint="is it a state_dict of this architecture? " + _keys_hint(state),
        )
    return cls[0] // (box[0] // 4)


def _keys_hint(state: Mapping) -> str:
    keys = list(state)
    return f"its first keys: {', '.join(keys[:SHOWN])}" + (f" (of {len(keys)})" if len(keys) > SHOWN else "")


def candidate_archs(state: Mapping) -> list[str]:
    """The builders whose layout a state_dict's keys match (head and backbone); several when
    weights cannot tell them apart (the two MobileNetV3 Faster R-CNNs differ only in input size)."""
    keys = set(state)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    resnet = has("backbone.body.layer1.")
    mobilenet = has("backbone.body.0.") and not resnet
    if has("roi_heads.mask_predictor."):
        return ["maskrcnn_resnet50_fpn" if has("roi_heads.box_head.fc6.") else "maskrcnn_resnet50_fpn_v2"]
    if has("roi_heads.keypoint_predictor."):
        return []
    if has("roi_heads.box_predictor."):
        if mobilenet:
            return ["fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn"]
        return ["fasterrcnn_resnet50_fpn" if has("roi_heads.box_head.fc6.") else "fasterrcnn_resnet50_fpn_v2"]
    if has("head.regression_head.bbox_ctrness."):
        return ["fcos_resnet50_fpn"]
    if has("head.classification_head.cls_logits."):
        return ["retinanet_resnet50_fpn_v2" if has("head.classification_head.conv.0.1.") else "retinanet_resnet50_fpn"]
    if has("head.classification_head.module_list."):
        return ["ssdlite320_mobilenet_v3_large" if has("head.classification_head.module_list.0.0.") else "ssd300_vgg16"]
    return []


def build(arch: str, num_classes: int, **kwargs):
    """``arch``'s network for ``num_classes`` classes (background included), random weights, nothing
    downloaded; ``kwargs`` go to the builder (e.g. ``rpn_score_thresh``)."""
    from torchvision.models import get_model

    check_arch(arch)
    if num_classes < 2:
        raise ModelError(f"a {arch} head of {num_classes} class(es): at least 2 (background and one class)")
    try:
        return get_model(arch, weights=None, weights_backbone=None, num_classes=int(num_classes), **kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"torchvision cannot build {arch} with {kwargs or 'its defaults'}: {exc}") from None


def strip_prefix(state: dict, prefix: str = "module.") -> tuple[dict, bool]:
    """``state`` without the ``module.`` prefix DataParallel / DDP give every key (and whether it had it)."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}, True
    return state, False


def _freeze_batchnorms(model, state: Mapping) -> int:
    """Turn each ``BatchNorm2d`` whose statistics ``state`` holds without ``num_batches_tracked``
    into the ``FrozenBatchNorm2d`` it was trained as; returns how many."""
    import torch
    from torchvision.ops.misc import FrozenBatchNorm2d

    swapped = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, torch.nn.BatchNorm2d) or not name:
            continue
        if f"{name}.running_mean" in state and f"{name}.num_batches_tracked" not in state:
            frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, frozen)
            swapped += 1
    return swapped


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else "")


def load_strict(model, state: Mapping, arch: str, source: str = "the checkpoint") -> dict:
    """Load ``state`` into ``model`` (built by :func:`build`) strictly, after turning its batch norms
    frozen where the state says they were. Returns ``{"frozen_batchnorms": n}``. Raises
    :class:`ModelError` naming every mismatch: each key whose shape differs (expected vs found), the
    keys missing and the keys left over."""
    swapped = _freeze_batchnorms(model, state)
    expected = model.state_dict()
    found = dict(state)
    # FrozenBatchNorm2d drops a num_batches_tracked it is given: not a key left over
    for key in [k for k in found if k.endswith(".num_batches_tracked") and k not in expected]:
        if f"{key.rpartition('.')[0]}.running_mean" in expected:
            del found[key]
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k}: expected {tuple(expected[k].shape)}, found {tuple(found[k].shape)}"
        for k in expected
        if k in found and hasattr(found[k], "shape") and tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    not_tensors = [k for k in expected if k in found and not hasattr(found[k], "shape")]
    if missing or unexpected or shapes or not_tensors:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): " + "; ".join(shapes[:SHOWN]))
        if missing:
            parts.append(f"{len(missing)} key(s) missing: {_listed(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_listed(unexpected)}")
        if not_tensors:
            parts.append(f"not tensors: {_listed(not_tensors)}")
        guess = [a for a in candidate_archs(state) if a != arch]
        hint = (
            f"its keys look like {' or '.join(guess)}: pass that --arch"
            if guess
            else "was it trained with this architecture and other builder options (min_size, anchors)?"
        )
        raise ModelError(f"{source} does not fit {arch}: " + " | ".join(parts), hint=hint)
    model.load_state_dict(found, strict=True)
    return {"frozen_batchnorms": swapped}


__all__ = [
    "FAMILIES",
    "build",
    "candidate_archs",
    "check_arch",
    "detection_archs",
    "family",
    "load_strict",
    "num_classes",
    "strip_prefix",
    "task_of",
]
