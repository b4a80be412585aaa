"""torchvision detection checkpoints trained elsewhere: torchvision's reference-script checkpoints,
bare state_dicts with --arch, vitrine's own run checkpoints, rebuilt and run through the
TorchvisionDetector path; scored and recorded on a leaderboard; bad files refused precisely.

The networks have random weights (a small MobileNetV3 Faster R-CNN, 3 classes, 64-px images): these
tests check that the rebuilt network is the saved one (same boxes, scores and labels) and the
plumbing, never detection quality.
"""

import argparse
import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vitrine.core.errors import ModelError
from vitrine.data.detection.model import Category
from vitrine.models.detectors import torchvision_arch as tva
from vitrine.models.detectors.torch_detector import TorchvisionDetector
from vitrine.predict.detector import load_detector
from vitrine.predict.torchvision_checkpoint import CheckpointDetector, class_names

ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"
NAMES = ["cat", "dog", "bird"]
IMAGE = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))


def _network(seed: int = 0, arch: str = ARCH, num_classes: int = 4):
    """A random network whose boxes, scores and labels differ from one another: its batch norms hold
    the statistics of a batch of noise (freshly initialised, a deep MobileNet's activations vanish
    and every proposal looks the same), its RPN's box deltas are damped (so that proposals stay
    inside the image) and its box classifier is spread out."""
    from torchvision.models import get_model

    torch.manual_seed(seed)
    model = get_model(arch, weights=None, weights_backbone=None, num_classes=num_classes)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: one batch's statistics
    with torch.no_grad():
        model.backbone.train()(torch.rand(4, 3, 320, 320))
        for name, p in model.named_parameters():
            if "box_predictor" in name:
                p.normal_(0.0, 0.01)
            elif name.startswith("rpn.head.bbox_pred"):
                p.mul_(0.01)
    return model.eval()


@pytest.fixture(scope="module")
def source():
    return _network()


def _expected(model, threshold: float = 0.05):
    """What the saved network itself finds in IMAGE (labels as it outputs them)."""
    found = TorchvisionDetector(model, {}, name="source", device="cpu").predict(IMAGE, threshold)
    assert len(found) > 3 and len(set(found.scores.round(4).tolist())) > 3  # a real comparison
    return found


def _same(found, expected):
    assert len(found) == len(expected)
    assert np.allclose(found.boxes, expected.boxes, atol=1e-4)
    assert np.allclose(found.scores, expected.scores, atol=1e-6)
    assert (found.class_ids == expected.class_ids).all()


def _reference_checkpoint(model, path, **args):
    """What torchvision's references/detection/train.py saves after an epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[16, 22], gamma=0.1)
    namespace = argparse.Namespace(
        model=ARCH, dataset="custom", data_path="/data/shop", epochs=26, weights=None, weights_backbone=None,
        rpn_score_thresh=None, trainable_backbone_layers=None, data_augmentation="hflip", **args,
    )  # fmt: skip
    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "lr_scheduler": scheduler.state_dict(), "args": namespace, "epoch": 3}  # fmt: skip
    assert isinstance(checkpoint["lr_scheduler"]["milestones"], Counter)
    torch.save(checkpoint, path)
    return path


def test_a_reference_checkpoint_predicts_what_the_saved_model_did(tmp_path, source):
    path = _reference_checkpoint(source, tmp_path / "model_25.pth")
    (tmp_path / "classes.txt").write_text("\n".join(NAMES) + "\n\n")
    det = load_detector(str(path), classes=str(tmp_path / "classes.txt"), device="cpu")
    assert isinstance(det, CheckpointDetector) and isinstance(det, TorchvisionDetector)
    assert det.source_info["format"] == "reference" and det.source_info["arch"] == ARCH
    assert det.source_info["num_classes"] == 4 and det.source_info["epoch"] == 3 and det.input_size == 320
    assert det.classes == {1: "cat", 2: "dog", 3: "bird"} and "classes.txt" in det.notes[-1]
    expected = _expected(source)
    found = det.predict(IMAGE, 0.05)
    _same(found, expected)
    assert found.labels == [NAMES[c - 1] for c in expected.class_ids]
    # a first line __background__ (torchvision's own category lists) is label 0
    (tmp_path / "with-bg.txt").write_text("__background__\n" + "\n".join(NAMES))
    assert load_detector(str(path), classes=str(tmp_path / "with-bg.txt"), device="cpu").classes[1] == "cat"
    # forks that save args as a dict are read the same way
    torch.save({"model": source.state_dict(), "args": {"model": ARCH, "dataset": "custom"}}, tmp_path / "fork.pth")
    assert load_detector(str(tmp_path / "fork.pth"), classes=NAMES).source_info["format"] == "reference"


def test_a_bare_state_dict_needs_its_arch_and_may_carry_the_ddp_prefix(tmp_path, source):
    path = tmp_path / "weights.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    with pytest.raises(ModelError, match="weights only .*--arch") as refused:
        load_detector(str(path))
    assert "fasterrcnn_mobilenet_v3_large_320_fpn" in refused.value.hint  # its keys' candidates
    det = load_detector(str(path), arch=ARCH, classes=NAMES, device="cpu")
    assert det.source_info["format"] == "state_dict" and any("module." in n for n in det.notes)
    _same(det.predict(IMAGE, 0.05), _expected(source))
    # no names, no dataset: labels are shown by number, and the note says how to name them
    plain = load_detector(str(path), arch=ARCH, device="cpu")
    assert plain.predict(IMAGE, 0.05).labels[0].startswith("class ") and "--classes" in plain.notes[-1]


def test_frozen_batch_norms_are_rebuilt_frozen(tmp_path):
    """Builders given ImageNet backbone weights freeze their batch norms (no num_batches_tracked);
    the rebuilt network is frozen the same way, so it has the trained one's parameters."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    model = _network(seed=1)
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(module, key).detach())
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, frozen)
    path = _reference_checkpoint(model, tmp_path / "frozen.pth")
    det = load_detector(str(path), classes=NAMES, device="cpu")
    assert any("frozen" in n for n in det.notes)
    assert sum(p.numel() for p in det.model.parameters()) == sum(p.numel() for p in model.parameters())
    _same(det.predict(IMAGE, 0.05), _expected(model))


def test_a_vitrine_run_checkpoint_loads_from_its_file(tmp_path):
    from vitrine.models.detectors.torchvision_family import build_detection_model
    from vitrine.predict.run_detector import model_options

    config = {"arch": "fasterrcnn", "backbone": "efficientnet-lite0", "image_size": 64, "pretrained": False}
    torch.manual_seed(2)
    model = build_detection_model(model_options(config), 4, load_weights=False).eval()
    state = {"kind": "detection", "config": config, "num_classes": 4, "category_ids": [3, 5, 7],
             "category_names": NAMES, "model": model.state_dict(), "optimizer": {}, "epoch": 1}  # fmt: skip
    torch.save(state, tmp_path / "best.pt")
    det = load_detector(str(tmp_path / "best.pt"), device="cpu")
    assert det.source_info == {"format": "vitrine", "arch": "fasterrcnn", "backbone": "efficientnet-lite0",
                               "num_classes": 4, "class_names": "checkpoint"}  # fmt: skip
    assert det.classes == {3: "cat", 5: "dog", 7: "bird"}
    expected = TorchvisionDetector(model, {}, name="source", device="cpu").predict(IMAGE, 0.0)
    found = det.predict(IMAGE, 0.0)
    assert len(found) == len(expected) > 0 and np.allclose(found.boxes, expected.boxes, atol=1e-4)
    assert found.class_ids.tolist() == [[3, 5, 7][c - 1] for c in expected.class_ids]
    with pytest.raises(ModelError, match="holds its architecture and class names"):
        load_detector(str(tmp_path / "best.pt"), arch=ARCH)


def test_class_names_from_a_dataset(tmp_path):
    three = [Category(7, "bird"), Category(2, "cat"), Category(4, "dog")]
    ids, names, how, note = class_names(4, classes=None, categories=three, source="m.pt")
    assert ids == [2, 4, 7] and names[2] == "cat" and how == "dataset-order" and "id order" in note
    # the reference scripts train COCO on its own ids: 91 outputs, categories up to id 90
    coco = [Category(1, "person"), Category(3, "car"), Category(90, "toothbrush")]
    ids, names, how, _ = class_names(91, classes=None, categories=coco, source="m.pt")
    assert ids == list(range(1, 91)) and names[90] == "toothbrush" and how == "dataset-ids"
    with pytest.raises(ModelError, match="predicts 3 class.* 2 categories") as refused:
        class_names(4, classes=None, categories=three[:2], source="m.pt")
    assert "--classes" in refused.value.hint
    (tmp_path / "two.txt").write_text("cat\ndog\n")
    with pytest.raises(ModelError, match="names 2 class.*predicts 3"):
        class_names(4, classes=tmp_path / "two.txt", categories=None, source="m.pt")
    (tmp_path / "gap.txt").write_text("cat\n\ndog\n")
    with pytest.raises(ModelError, match="line 2 is blank"):
        class_names(4, classes=tmp_path / "gap.txt", categories=None, source="m.pt")


def test_bad_files_are_refused_precisely(tmp_path, source):
    (tmp_path / "notes.pt").write_bytes(b"these are not weights")
    with pytest.raises(ModelError, match="notes.pt is not a PyTorch checkpoint"):
        load_detector(str(tmp_path / "notes.pt"))
    with pytest.raises(ModelError, match="checkpoint .*missing.pt not found"):
        load_detector(str(tmp_path / "missing.pt"))
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "dict.pt")
    with pytest.raises(ModelError, match="neither a state_dict"):
        load_detector(str(tmp_path / "dict.pt"))
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ModelError, match="unknown torchvision detection architecture 'yolo'") as refused:
        load_detector(str(tmp_path / "weights.pt"), arch="yolo")
    assert "fasterrcnn_resnet50_fpn" in refused.value.hint
    with pytest.raises(ModelError, match="keypoint detector"):
        load_detector(str(tmp_path / "weights.pt"), arch="keypointrcnn_resnet50_fpn")
    # the other MobileNetV3 Faster R-CNN has the same layout: it loads (its input size differs)
    assert load_detector(str(tmp_path / "weights.pt"), arch="fasterrcnn_mobilenet_v3_large_fpn").input_size == 800
    with pytest.raises(ModelError, match="does not fit fasterrcnn_resnet50_fpn: .*key.s. missing") as refused:
        load_detector(str(tmp_path / "weights.pt"), arch="fasterrcnn_resnet50_fpn")
    assert ARCH in refused.value.hint
    with pytest.raises(ModelError, match="no 'head.classification_head.cls_logits.weight'"):
        load_detector(str(tmp_path / "weights.pt"), arch="retinanet_resnet50_fpn")
    broken = source.state_dict()
    broken["backbone.fpn.layer_blocks.0.0.weight"] = torch.zeros(256, 256, 1, 1)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(
        ModelError, match=r"layer_blocks.0.0.weight: expected \(256, 256, 3, 3\), found \(256, 256, 1, 1\)"
    ):
        load_detector(str(tmp_path / "broken.pt"), arch=ARCH)
    path = _reference_checkpoint(source, tmp_path / "ref.pth")
    with pytest.raises(ModelError, match="trained as fasterrcnn_mobilenet_v3_large_320_fpn .*--arch says"):
        load_detector(str(path), arch="fasterrcnn_resnet50_fpn")
    with pytest.raises(ModelError, match="for a .pt / .pth checkpoint"):
        load_detector("ssd-mobilenet-v2-coco", arch=ARCH)


class Payload:
    """A class a checkpoint must never get to build (a pickle can call anything at load time)."""

    ran = False

    def __reduce__(self):
        return (_mark, ())


def _mark():
    Payload.ran = True
    return "ran"


def test_only_argparse_namespace_may_be_unpickled(tmp_path, source):
    torch.save({"model": source.state_dict(), "args": Payload()}, tmp_path / "payload.pth")
    with pytest.raises(ModelError, match="pickles a .*_mark object.*weights_only=True"):
        load_detector(str(tmp_path / "payload.pth"))
    assert not Payload.ran
    torch.save(source, tmp_path / "whole.pt")  # the model object itself
    with pytest.raises(ModelError, match="pickles a torchvision.models.detection.faster_rcnn.FasterRCNN") as refused:
        load_detector(str(tmp_path / "whole.pt"))
    assert "state_dict" in refused.value.hint


def _shop(tmp_path, categories):
    (tmp_path / "shop" / "images").mkdir(parents=True)
    images = []
    for i, split in enumerate(("test", "test", "val")):
        name = f"images/{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            tmp_path / "shop" / name
        )
        images.append({"id": i + 1, "file_name": name, "width": 64, "height": 64, "split": split})
    coco = {
        "images": images,
        "categories": [{"id": i, "name": n} for i, n in categories],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": categories[i % len(categories)][0],
                         "bbox": [8.0, 8.0, 30.0, 30.0], "area": 900.0, "iscrowd": 0} for i in range(3)],
    }  # fmt: skip
    (tmp_path / "shop" / "annotations").mkdir()
    data = tmp_path / "shop" / "annotations" / "instances.json"
    data.write_text(json.dumps(coco))
    return data


@pytest.mark.slow
def test_a_reference_checkpoint_is_recorded_on_the_leaderboard(tmp_path, source):
    """`vitrine eval --model ckpt.pth --data D --data-split test --record`: names from the dataset's
    categories in id order, speed by the one harness, parameters and GFLOPs of the torch network."""
    from vitrine.cli import app

    data = _shop(tmp_path, [(1, "cat"), (2, "dog"), (3, "bird")])
    path = _reference_checkpoint(source, tmp_path / "model_25.pth")
    runner = CliRunner()
    ws = ["--workspace", str(tmp_path / "ws")]
    args = ["eval", "--model", str(path), "--data", str(data), "--data-split", "test", "--record", "--name", "tv"]
    scored = runner.invoke(app, [*args, *ws, "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["run"] == "tv" and "id order" in scored.stderr
    record = json.loads((tmp_path / "ws" / "runs" / "tv" / "run.json").read_text())
    assert record["config"]["arch"] == ARCH and record["config"]["format"] == "reference"
    assert "id order" in record["data"]["notes"][-1]
    shown = runner.invoke(app, ["leaderboard", "shop", *ws, "--json"])
    assert shown.exit_code == 0, shown.output
    row = json.loads(shown.stdout)["groups"][0]["rows"][0]
    assert row["id"] == "tv" and row["arch"] == ARCH and row["split"] == "test"
    assert row["latency_ms"] > 0 and row["weights_bytes"] == path.stat().st_size
    assert row["parameters"] == sum(p.numel() for p in source.parameters()) and row["gflops"] > 0.1


def test_eval_asks_for_class_names_the_dataset_cannot_give(tmp_path, source):
    """A dataset whose categories cannot name the model's 3 classes: --classes, said precisely."""
    from vitrine.cli import app

    path = _reference_checkpoint(source, tmp_path / "model_25.pth")
    runner = CliRunner()
    ws = ["--workspace", str(tmp_path / "ws")]
    two = _shop(tmp_path / "two", [(1, "cat"), (2, "dog")])
    refused = runner.invoke(app, ["eval", "--model", str(path), "--data", str(two), *ws])
    assert refused.exit_code == 2 and "--classes" in refused.output and "2 categories" in refused.output
    (tmp_path / "classes.txt").write_text("cat\ndog\nbird\n")
    named = runner.invoke(app, ["eval", "--model", str(path), "--data", str(two), "--classes",
                                str(tmp_path / "classes.txt"), *ws, "--json"])  # fmt: skip
    assert named.exit_code == 0, named.output
    unmapped = json.loads(named.stdout).get("unmapped") or {}
    assert set(unmapped) <= {"bird"}  # cat and dog are the dataset's; bird, the model's third class, is not


def test_vitrine_detect_runs_a_checkpoint(tmp_path, source):
    from vitrine.cli import app

    path = _reference_checkpoint(source, tmp_path / "model.pth")
    IMAGE.save(tmp_path / "a.png")
    (tmp_path / "classes.txt").write_text("\n".join(NAMES))
    found = CliRunner().invoke(app, ["detect", "--model", str(path), str(tmp_path / "a.png"), "--out",
                                     str(tmp_path / "out"), "--classes", str(tmp_path / "classes.txt"),
                                     "--threshold", "0.05", "--json"])  # fmt: skip
    assert found.exit_code == 0, found.output
    classes = json.loads(found.stdout)["images"][0]["classes"]
    expected = _expected(source)
    assert sum(classes.values()) == len(expected) and set(classes) <= set(NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("arch", tva.detection_archs())
def test_every_builder_class_count_is_read_from_its_head(arch):
    from torchvision.models import get_model

    state = get_model(arch, weights=None, weights_backbone=None, num_classes=6).state_dict()
    assert tva.num_classes(arch, state) == 6
    assert arch in tva.candidate_archs(state)
    assert tva.task_of(arch) == ("segmentation" if arch.startswith("maskrcnn") else "detection")
