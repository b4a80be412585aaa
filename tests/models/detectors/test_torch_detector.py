"""TorchvisionDetector: torchvision-style outputs -> Detections (thresholds, order, masks, batches)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitrine.core.errors import ModelError
from vitrine.models.detectors.base import Detections, Detector
from vitrine.models.detectors.torch_detector import TorchvisionDetector


class FakeDetectionModel(torch.nn.Module):
    """Answers like a torchvision detector: three boxes per image, in unsorted score order, with
    mask probabilities; records the inputs it got."""

    def __init__(self, with_masks=True):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.with_masks = with_masks
        self.calls: list[list[tuple]] = []

    def forward(self, images):
        self.calls.append([tuple(im.shape) for im in images])
        outs = []
        for im in images:
            assert im.dtype == torch.float32 and 0.0 <= float(im.min()) and float(im.max()) <= 1.0
            _, h, w = im.shape
            boxes = torch.tensor([[1.0, 2.0, 10.0, 12.0], [-5.0, 0.0, w + 7.0, h / 2], [3.0, 3.0, 8.0, 9.0]])
            out = {
                "boxes": boxes * self.scale,
                "labels": torch.tensor([1, 2, 7]),
                "scores": torch.tensor([0.4, 0.9, 0.7]),
            }
            if self.with_masks:
                probs = torch.zeros(3, 1, h, w)
                probs[0, 0, 2:12, 1:10] = 0.8
                probs[1, 0, : h // 2, :] = 0.51
                probs[1, 0, 0, 0] = 0.49  # just under the 0.5 threshold
                probs[2, 0, 3:9, 3:8] = 0.3  # never above 0.5: an empty mask
                out["masks"] = probs
            outs.append(out)
        return outs


def rgb(w=40, h=30, value=200):
    return Image.new("RGB", (w, h), (value, value // 2, 0))


def test_outputs_become_detections():
    model = FakeDetectionModel()
    det = TorchvisionDetector(model, {1: "cat", 2: "dog"}, name="fake", task="segmentation", device="cpu")
    assert isinstance(det, Detector)
    out = det.predict(rgb(), threshold=0.5)
    assert isinstance(out, Detections)
    assert model.calls == [[(3, 30, 40)]]  # CHW, at the image's own size
    assert out.scores.tolist() == pytest.approx([0.9, 0.7])  # sorted, 0.4 dropped
    assert out.labels == ["dog", "class 7"]  # an id missing from the map keeps a readable name
    assert out.class_ids.tolist() == [2, 7]
    assert out.boxes[0].tolist() == pytest.approx([0.0, 0.0, 40.0, 15.0])  # clipped to the image
    assert out.masks.shape == (2, 30, 40) and out.masks.dtype == bool
    assert out.masks[0, :15].sum() == 15 * 40 - 1 and not out.masks[0, 0, 0]  # 0.51 in, 0.49 out
    assert not out.masks[1].any()  # probabilities of 0.3: nothing
    assert (out.width, out.height, out.model) == (40, 30, "fake")
    assert out.seconds > 0
    assert len(det.predict(rgb(), threshold=0.95)) == 0


def test_grey_images_batches_and_boxes_only():
    model = FakeDetectionModel(with_masks=False)
    det = TorchvisionDetector(model, {1: "cat"}, name="fake", task="detection", device="cpu", batch_size=2)
    images = [rgb(40, 30), Image.new("L", (20, 25), 90), rgb(33, 17)]
    outs = det.predict_batch(images, threshold=0.0)
    assert model.calls == [[(3, 30, 40), (3, 25, 20)], [(3, 17, 33)]]  # two batches of at most 2
    assert [(o.width, o.height) for o in outs] == [(40, 30), (20, 25), (33, 17)]
    assert all(o.masks is None for o in outs) and all(len(o) == 3 for o in outs)
    single = det.predict(images[2], threshold=0.0)
    assert np.allclose(single.boxes, outs[2].boxes)


def test_segmentation_without_masks_and_bad_task():
    det = TorchvisionDetector(FakeDetectionModel(with_masks=False), {}, name="fake", task="segmentation")
    out = det.predict(rgb(), threshold=0.5)
    assert out.masks.shape == (2, 30, 40) and not out.masks.any()
    with pytest.raises(ModelError, match="task"):
        TorchvisionDetector(FakeDetectionModel(), {}, name="fake", task="keypoints")


def test_a_too_thin_image_is_refused_with_its_size():
    """A 1×4000 image would be scaled to zero pixels high by torchvision's transform (a RuntimeError
    deep in the backbone): it is an ImageError naming the size, before the model runs."""
    from vitrine.core.errors import ImageError

    model = FakeDetectionModel()
    det = TorchvisionDetector(model, {1: "cat"}, name="fake", task="detection", device="cpu")
    with pytest.raises(ImageError) as info:
        det.predict(rgb(w=4000, h=1))
    assert "4000×1" in info.value.message and info.value.status == 400
    assert model.calls == []
    assert det.predict(rgb(w=400, h=40), threshold=0.0).width == 400  # 10:1 is fine
