"""The detector family: every architecture on every EfficientNet-Lite size builds and runs in train
and eval mode; anchors follow the image size; options an architecture does not use are ignored,
values it cannot take refused. Random initialisation throughout (code paths, not quality)."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch

from vitrine.core.errors import VitrineError
from vitrine.models.detectors.torchvision_family import (
    ARCH_OPTIONS,
    ARCHS,
    DetectionModelOptions,
    build_detection_model,
    used_options,
)
from vitrine.train.detection.config import KINDS, DetectionConfig

SIZE = 64
LITES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
LOSSES = {
    "maskrcnn": {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"},
    "fasterrcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
    "retinanet": {"classification", "bbox_regression"},
    "fcos": {"classification", "bbox_regression", "bbox_ctrness"},
    "ssdlite": {"classification", "bbox_regression"},
}


@pytest.fixture(autouse=True)
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def tiny(arch: str, backbone: str = "efficientnet-lite0", size: int = SIZE, **kw) -> DetectionModelOptions:
    return DetectionModelOptions(
        arch=arch,
        backbone=backbone,
        pretrained=False,
        min_size=size,
        fpn_channels=64 if arch == "fcos" else 16,
        box_head_dim=32,
        mask_head_channels=16,
        mask_head_layers=1,
        box_score_thresh=0.0,
        box_detections_per_img=10,
        **kw,
    )


def _targets(with_masks: bool) -> list[dict]:
    one = {"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0]]), "labels": torch.tensor([2])}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    if with_masks:
        one["masks"] = torch.zeros(1, SIZE, SIZE, dtype=torch.uint8)
        one["masks"][0, 6:30, 4:40] = 1
        empty["masks"] = torch.zeros(0, SIZE, SIZE, dtype=torch.uint8)
    return [one, empty]


@pytest.mark.slow  # 15 cases of 2-8 s on 2 CPU threads
@pytest.mark.parametrize("backbone", LITES)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_on_every_lite_size_trains_and_predicts(arch, backbone):
    torch.manual_seed(0)
    model = build_detection_model(tiny(arch, backbone), num_classes=3)
    model.train()
    losses = model([torch.rand(3, SIZE, SIZE), torch.rand(3, SIZE, SIZE)], _targets(arch == "maskrcnn"))
    assert set(losses) == LOSSES[arch]
    loss = sum(losses.values())
    assert math.isfinite(float(loss.detach()))
    loss.backward()
    assert model.backbone.body.conv_stem.weight.grad is not None  # the backbone trains too
    model.eval()
    with torch.inference_mode():
        out = model([torch.rand(3, SIZE, SIZE + 16)])
    assert {"boxes", "labels", "scores"} <= set(out[0])
    assert ("masks" in out[0]) == (arch == "maskrcnn")
    boxes = out[0]["boxes"]
    assert 0 < len(boxes) <= 10  # score threshold 0: the detections-per-image cap
    assert float(boxes[:, 2].max()) <= SIZE + 16 + 1e-3 and float(boxes[:, 3].max()) <= SIZE + 1e-3


def test_sizes_differ_in_depth_and_width():
    counts = {}
    for backbone in LITES:
        model = build_detection_model(tiny("fasterrcnn", backbone), num_classes=3)
        body = model.backbone.body
        counts[backbone] = (sum(p.numel() for p in body.parameters()), list(body.feature_info.channels()))
    assert counts["efficientnet-lite0"][0] < counts["efficientnet-lite1"][0] < counts["efficientnet-lite2"][0]
    assert counts["efficientnet-lite1"][1] == counts["efficientnet-lite0"][1] == [40, 112, 320]
    assert counts["efficientnet-lite2"][1] == [48, 120, 352]  # 1.1 x wider


def _anchor_sizes(model, arch: str, size: int) -> list[float]:
    """The widths of the square (ratio 1) anchors of each level, in pixels of the resized image."""
    from torchvision.models.detection.image_list import ImageList

    model.eval()
    image = torch.rand(1, 3, size, size)
    images = ImageList(image, [(size, size)])
    features = list(model.backbone(image).values())
    generator = model.rpn.anchor_generator if arch in ("maskrcnn", "fasterrcnn") else model.anchor_generator
    anchors = generator(images, features)[0]
    widths = anchors[:, 2] - anchors[:, 0]
    return sorted({round(float(w), 1) for w, h in zip(widths, anchors[:, 3] - anchors[:, 1], strict=True) if w == h})


@pytest.mark.parametrize("arch", ARCHS)
def test_anchors_follow_the_image_size(arch):
    small = _anchor_sizes(build_detection_model(tiny(arch, size=128), 3), arch, 128)
    large = _anchor_sizes(build_detection_model(tiny(arch, size=256), 3), arch, 256)
    if arch == "fcos":  # FCOS's points are sized by the strides, whatever the image size
        assert small == large == [8.0, 16.0, 32.0, 64.0, 128.0]
    else:
        assert len(small) == len(large) and [b / a for a, b in zip(small, large, strict=True)] == pytest.approx(
            [2.0] * len(small), rel=0.05
        )


def test_arch_options_cover_every_option():
    assert ARCH_OPTIONS["maskrcnn"] == {f.name for f in fields(DetectionModelOptions)}
    assert all(used_options(a) <= ARCH_OPTIONS["maskrcnn"] for a in ARCHS)
    assert KINDS == {
        "maskrcnn": "segmentation",
        "fasterrcnn": "detection",
        "retinanet": "detection",
        "fcos": "detection",
        "ssdlite": "detection",
    }


def test_unused_options_are_ignored_and_reported_bad_values_refused():
    # a base config with R-CNN and anchor options serves every arch: what they do not use is ignored
    base = {"anchor_sizes": [8, 16, 32, 64], "rpn_post_nms_top_n_test": 50, "mask_head_layers": 2}
    assert DetectionConfig(arch="maskrcnn", **base).ignored_options() == {}
    assert DetectionConfig(arch="fasterrcnn", **base).ignored_options() == {"mask_head_layers": 2}
    ignored = DetectionConfig(arch="fcos", **base).ignored_options()
    assert ignored == {"anchor_sizes": [8, 16, 32, 64], "rpn_post_nms_top_n_test": 50, "mask_head_layers": 2}
    assert set(DetectionConfig(arch="ssdlite", fpn_channels=32, max_size=300).ignored_options()) == {
        "fpn_channels",
        "max_size",
    }
    # values an arch uses but cannot take are refused, naming the option
    with pytest.raises(VitrineError, match="anchor_sizes.*5 positive sizes"):
        DetectionConfig(arch="retinanet", anchor_sizes=[8, 16, 32, 64])
    with pytest.raises(VitrineError, match="fpn_channels.*multiple of 32"):
        DetectionConfig(arch="fcos", fpn_channels=48)
    with pytest.raises(VitrineError, match="ResNet-50 FPN serves Faster / Mask R-CNN only"):
        DetectionConfig(arch="ssdlite", backbone="resnet50-fpn")
    with pytest.raises(VitrineError, match="arch"):
        DetectionConfig(arch="yolo")


def test_ssdlite_resizes_to_a_square_of_image_size():
    model = build_detection_model(tiny("ssdlite", size=96), 3)
    assert model.transform.fixed_size == (96, 96)
    assert model.head.classification_head.module_list[0][1].out_channels == 3 * 6  # 6 boxes per place


def test_lite_backbones_normalise_as_their_weights_were_trained():
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    lite0 = build_detection_model(tiny("retinanet", "efficientnet-lite0"), 3).transform
    lite2 = build_detection_model(tiny("retinanet", "efficientnet-lite2"), 3).transform
    assert isinstance(lite0, GeneralizedRCNNTransform)
    assert lite0.image_mean == [0.485, 0.456, 0.406]  # unchanged for the runs already trained on Lite0
    assert lite2.image_mean == [0.5, 0.5, 0.5] and lite2.image_std == [0.5, 0.5, 0.5]
