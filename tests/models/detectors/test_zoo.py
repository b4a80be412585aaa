"""Registry entries for detectors: the COCO label map, the torchvision architectures (random weights:
the code path and output shapes, not quality), weights from a local file or the torch hub cache, and
the offline error naming the packaged detector."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from vitrine.core.errors import ModelError
from vitrine.models import registry
from vitrine.models.detectors import zoo
from vitrine.models.detectors.coco_labels import COCO_CATEGORIES, coco_label
from vitrine.models.detectors.torch_detector import TorchvisionDetector
from vitrine.predict.detector import list_detectors, load_detector
from vitrine.weights import local as W


@pytest.fixture(autouse=True)
def offline_empty_cache(monkeypatch, tmp_path):
    """No network and an empty torch hub cache."""
    monkeypatch.setenv("VITRINE_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    for name in zoo.TORCHVISION_MODELS:
        monkeypatch.delenv(W.weights_env_var(name), raising=False)
    yield tmp_path / "torch-home"


def test_coco_label_map_matches_torchvision():
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    categories = MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]  # 91 slots, "N/A" for unused ids
    assert len(categories) == zoo.COCO_NUM_CLASSES
    from_torchvision = {i: c for i, c in enumerate(categories) if c not in ("N/A", "__background__")}
    assert from_torchvision == COCO_CATEGORIES
    assert len(COCO_CATEGORIES) == 80 and coco_label(17) == "cat" and coco_label(12) == "class 12"


def test_registry_entries_match_torchvision_weights():
    import torchvision.models.detection as tvd

    specs = {s.name: s for s in registry.list_models()}
    assert specs["ssd-mobilenet-v2-coco"].task == "detection" and specs["ssd-mobilenet-v2-coco"].source == "package"
    for name, zm in zoo.TORCHVISION_MODELS.items():
        assert specs[name].task == zm.task and specs[name].source == "hub"
        enum = getattr(tvd, zm.weights_enum).COCO_V1
        assert enum.url == zm.url  # the url kept here (no torchvision import when listing) is the enum's
        assert enum.meta["categories"][17] == "cat"
    assert specs["maskrcnn-r50-fpn"].task == specs["maskrcnn-r50-fpn-v2"].task == "segmentation"
    assert specs["fasterrcnn-r50-fpn"].task == "detection"
    rows = {r["name"]: r for r in list_detectors(workspace=os.getcwd())}
    assert rows["ssd-mobilenet-v2-coco"]["available"] is True
    assert rows["maskrcnn-r50-fpn"]["available"] is False
    assert "torch hub cache" in rows["maskrcnn-r50-fpn"]["availability_detail"]
    assert all(r["task"] in ("detection", "segmentation") for r in rows.values())


@pytest.mark.parametrize("name", list(zoo.TORCHVISION_MODELS))
def test_offline_error_names_the_packaged_detector(name):
    with pytest.raises(ModelError) as err:
        load_detector(name)
    assert "not in the torch hub cache" in err.value.message and "offline mode" in err.value.message
    assert "ssd-mobilenet-v2-coco" in err.value.hint and "--weights PATH" in err.value.hint
    with pytest.raises(ModelError, match="not found"):
        load_detector(name, weights="/nonexistent/weights.pth")


def test_wrong_local_weights_are_reported(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ModelError, match="not fasterrcnn-r50-fpn weights"):
        zoo.load_torchvision_detector("fasterrcnn-r50-fpn", weights=str(bad), device="cpu")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read weights"):
        zoo.load_torchvision_detector("fasterrcnn-r50-fpn", weights=str(garbage), device="cpu")


def random_image(w=120, h=90):
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))


def wrap_random(name):
    """The real architecture, randomly initialised, small input size; every proposal kept."""
    torch.manual_seed(0)
    model = zoo.build_torchvision_model(name, min_size=128, max_size=160)
    model.roi_heads.score_thresh = 0.0
    model.roi_heads.detections_per_img = 5
    return TorchvisionDetector(model, COCO_CATEGORIES, name=name, task=zoo.TORCHVISION_MODELS[name].task, device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(zoo.TORCHVISION_MODELS))
def test_real_architecture_random_weights_runs_through_the_wrapper(name):
    torch.set_num_threads(1)
    det = wrap_random(name)
    out = det.predict(random_image(), threshold=0.0)
    assert len(out) == 5 and out.boxes.shape == (5, 4) and out.boxes.dtype == np.float32
    assert (out.boxes[:, [0, 2]] <= 120).all() and (out.boxes[:, [1, 3]] <= 90).all()
    assert (out.boxes[:, 2] >= out.boxes[:, 0]).all()
    assert list(out.scores) == sorted(out.scores, reverse=True)
    assert all(0 < c < zoo.COCO_NUM_CLASSES for c in out.class_ids)
    if det.task == "segmentation":
        assert out.masks.shape == (5, 90, 120) and out.masks.dtype == bool
    else:
        assert out.masks is None


@pytest.mark.slow
def test_local_file_and_torch_hub_cache(tmp_path, offline_empty_cache):
    torch.set_num_threads(1)
    name = "fasterrcnn-r50-fpn"
    reference = wrap_random(name)
    path = tmp_path / "weights.pth"
    torch.save(reference.model.state_dict(), path)
    image = random_image()
    expected = reference.predict(image, threshold=0.0)

    loaded = load_detector(name, weights=str(path), device="cpu")  # --weights PATH
    assert isinstance(loaded, TorchvisionDetector) and loaded.name == name
    assert registry.get(name).describe()["available"] is False  # nothing cached
    assert registry.get(name).availability(weights=str(path)).where == "local"
    loaded.model.transform.min_size, loaded.model.transform.max_size = (128,), 160
    loaded.model.roi_heads.score_thresh, loaded.model.roi_heads.detections_per_img = 0.0, 5
    got = loaded.predict(image, threshold=0.0)
    assert np.allclose(got.boxes, expected.boxes, atol=1e-3) and got.labels == expected.labels

    checkpoints = offline_empty_cache / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    os.link(path, checkpoints / os.path.basename(zoo.TORCHVISION_MODELS[name].url))
    av = registry.get(name).availability()
    assert av.ok and av.where == "cached"
    cached = zoo.load_torchvision_detector(name, device="cpu")  # offline, from the cache
    assert cached.classes[17] == "cat"
