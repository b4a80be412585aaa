"""EfficientNet-Lite0/1/2 as detection backbones: timm ``features_only`` bodies with the packaged
ImageNet weights, under a feature pyramid (Faster/Mask R-CNN, RetinaNet, FCOS) or under SSDlite's
extra layers.

``lite_fpn_backbone``
    strides 8, 16, 32 under a torchvision ``FeaturePyramidNetwork`` ``fpn_channels`` wide, plus a
    max-pooled stride-64 level (``extra="pool"``: the R-CNNs, 4 levels) or P6/P7 convolutions
    (``extra="p6p7"``: RetinaNet and FCOS as torchvision and their papers build them, 5 levels).
``lite_ssd_backbone``
    strides 16 and 32, then torchvision's four SSDlite extra blocks (1x1, depthwise 3x3 stride 2,
    1x1), 6 feature maps as ``ssdlite320_mobilenet_v3_large`` has.

``pretrained=True`` loads the weights through :mod:`vitrine.models.classifiers.backbones` (the
one place that knows how the packaged files map onto timm's networks); ``freeze_stages`` keeps the
stem and the first N stages as they are, ``freeze_bn`` fixes the body's batch-norm statistics.
"""

from __future__ import annotations

from collections import OrderedDict

from vitrine.core.errors import ModelError, VitrineError

LITE_BACKBONES = {"efficientnet-lite0": 0, "efficientnet-lite1": 1, "efficientnet-lite2": 2}
FPN_OUT_INDICES = (2, 3, 4)  # strides 8, 16, 32 (lite0: 40, 112, 320 channels; lite2: 48, 120, 352)
SSD_OUT_INDICES = (3, 4)  # strides 16, 32
SSD_EXTRA_CHANNELS = (512, 256, 256, 128)  # torchvision's ssdlite320 extra blocks


def fpn_levels(extra: str) -> int:
    return 4 if extra == "pool" else 5


def lite_body(backbone: str, out_indices, pretrained: bool, weights: str | None, freeze_stages: int, freeze_bn: bool):
    """timm's EfficientNet-Lite<n> feature extractor (the maps at ``out_indices``)."""
    import timm

    from vitrine.models.classifiers import backbones

    level = LITE_BACKBONES[backbone]
    body = timm.create_model(f"efficientnet_lite{level}", features_only=True, out_indices=tuple(out_indices))
    if pretrained:
        classifier, _ = backbones.build_classifier(backbone, 1000, pretrained=True, weights=weights)
        result = body.load_state_dict(classifier.state_dict(), strict=False)
        if result.missing_keys:
            raise ModelError(f"{backbone} weights lack {len(result.missing_keys)} backbone tensors")
        del classifier
    stages = [[body.conv_stem, body.bn1], *[[b] for b in body.blocks]]
    if freeze_stages > len(stages) - 1:
        raise VitrineError(
            f"freeze_stages={freeze_stages}: {backbone} has a stem and {len(stages) - 1} stages here",
            hint=f"freeze at most {len(stages) - 1}",
        )
    for group in stages[: freeze_stages + 1] if freeze_stages else []:
        for module in group:
            for p in module.parameters():
                p.requires_grad_(False)
    if freeze_bn:
        from timm.layers import freeze_batch_norm_2d

        body = freeze_batch_norm_2d(body)
    return body


def _fpn_class():
    import torch.nn as nn
    from torchvision.ops import FeaturePyramidNetwork

    class TimmFPNBackbone(nn.Module):
        """A timm ``features_only`` network under a FeaturePyramidNetwork: what torchvision's
        detection heads expect (an OrderedDict of feature maps, ``out_channels``)."""

        def __init__(self, body: nn.Module, in_channels: list[int], out_channels: int, extra_blocks):
            super().__init__()
            self.body = body
            self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra_blocks)
            self.out_channels = out_channels

        def forward(self, x):
            feats = self.body(x)
            return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))

    return TimmFPNBackbone


def lite_fpn_backbone(
    backbone: str,
    pretrained: bool,
    weights: str | None,
    fpn_channels: int,
    freeze_stages: int,
    freeze_bn: bool,
    extra: str = "pool",
):
    """EfficientNet-Lite features (strides 8/16/32) + FPN; ``extra``: ``pool`` (a max-pooled
    stride-64 level) or ``p6p7`` (two stride-2 convolutions: strides 64 and 128)."""
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    body = lite_body(backbone, FPN_OUT_INDICES, pretrained, weights, freeze_stages, freeze_bn)
    ch = int(fpn_channels)
    extra_blocks = LastLevelMaxPool() if extra == "pool" else LastLevelP6P7(ch, ch)
    return _fpn_class()(body, list(body.feature_info.channels()), ch, extra_blocks)


def lite_ssd_backbone(backbone: str, pretrained: bool, weights: str | None, freeze_stages: int, freeze_bn: bool):
    """EfficientNet-Lite features at strides 16 and 32, then SSDlite's four extra blocks: six maps
    for torchvision's ``SSDLiteHead``. ``.out_channels`` lists each map's channels."""
    import torch.nn as nn
    from torchvision.models.detection.ssdlite import _extra_block, _normal_init

    body = lite_body(backbone, SSD_OUT_INDICES, pretrained, weights, freeze_stages, freeze_bn)
    norm_layer = _ssd_norm_layer()
    channels = list(body.feature_info.channels())
    extras = nn.ModuleList()
    previous = channels[-1]
    for ch in SSD_EXTRA_CHANNELS:
        extras.append(_extra_block(previous, ch, norm_layer))
        previous = ch
    _normal_init(extras)

    class LiteSSDFeatures(nn.Module):
        def __init__(self, body: nn.Module, extra: nn.ModuleList, out_channels: list[int]):
            super().__init__()
            self.body = body
            self.extra = extra
            self.out_channels = out_channels

        def forward(self, x):
            feats = list(self.body(x))
            y = feats[-1]
            for block in self.extra:
                y = block(y)
                feats.append(y)
            return OrderedDict((str(i), f) for i, f in enumerate(feats))

    return LiteSSDFeatures(body, extras, [*channels, *SSD_EXTRA_CHANNELS])


def _ssd_norm_layer():
    """torchvision's SSDlite batch norm (eps 0.001, momentum 0.03)."""
    from functools import partial

    import torch.nn as nn

    return partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)


def ssd_head(in_channels: list[int], num_anchors: list[int], num_classes: int):
    from torchvision.models.detection.ssdlite import SSDLiteHead

    return SSDLiteHead(in_channels, num_anchors, num_classes, _ssd_norm_layer())
