"""Detection fine-tuning: model builders, the training loop, checkpoints, resume, time budget,
cancel, the run's detector and bad input.

Everything trains from random initialisation (nothing downloaded) on a tiny generated dataset:
64 x 64 noise images with red rectangles (polygon masks) and green discs (RLE masks), and a
deliberately small network (narrow FPN and heads, few proposals). One test loads the packaged
ImageNet weights of EfficientNet-Lite0; ResNet-50-FPN models are built with random weights, or
from a COCO-format checkpoint written by the test itself.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from vitrine.core.errors import Cancelled, ModelError, VitrineError
from vitrine.core.workspace import Workspace
from vitrine.data.detection.model import Annotation, Category, DetectionDataset, ImageRecord
from vitrine.models.detectors.torchvision_family import DetectionModelOptions, build_detection_model
from vitrine.predict.run_detector import load_run_detector
from vitrine.runs.checkpoint import load_checkpoint
from vitrine.train.detection import trainer as D
from vitrine.train.detection.config import DetectionConfig
from vitrine.train.detection.data import DetectionSamples, augment, train_transform

SIZE = 64
TINY = {
    "pretrained": False,
    "image_size": SIZE,
    "fpn_channels": 16,
    "box_head_dim": 32,
    "mask_head_channels": 16,
    "rpn_pre_nms_top_n_train": 100,
    "rpn_post_nms_top_n_train": 50,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 30,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 32,
    "box_detections_per_img": 20,
    "batch_size": 2,
    "epochs": 2,
    "lr": 0.01,
    "warmup_steps": 2,
    "threads": 1,
    "eval_batch_size": 4,
    "log_every": 1,
}


def make_scenes(root: Path, n_train: int = 6, n_val: int = 2, n_test: int = 2, seed: int = 0) -> DetectionDataset:
    """Noise images with a red rectangle (category 1, polygon) and/or a green disc (category 7, RLE).
    The last train image has no object at all."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ds = DetectionDataset(categories=[Category(1, "rectangle"), Category(7, "disc")], root=root)
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    ann_id = 1
    for i, split in enumerate(splits, start=1):
        im = Image.fromarray(rng.integers(0, 70, (SIZE, SIZE, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(im)
        name = f"{split}/{i:03d}.png"
        ds.images.append(ImageRecord(i, name, SIZE, SIZE, split))
        empty = split == "train" and i == n_train
        if not empty:
            x, y = (int(v) for v in rng.integers(2, 26, 2))
            w, h = (int(v) for v in rng.integers(14, 30, 2))
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=(220, 40, 40))
            poly = [x, y, x + w, y, x + w, y + h, x, y + h]
            ds.annotations.append(Annotation(ann_id, i, 1, (x, y, w, h), [list(map(float, poly))], area=w * h))
            ann_id += 1
        if not empty and i % 2 == 0:
            cx, cy, r = (int(v) for v in (*rng.integers(18, 46, 2), rng.integers(7, 12)))
            disc = Image.new("L", (SIZE, SIZE), 0)
            ImageDraw.Draw(disc).ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
            mask = np.asarray(disc, dtype=np.uint8)
            im.paste((40, 210, 40), mask=Image.fromarray(mask * 255))
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle = {"size": [SIZE, SIZE], "counts": rle["counts"].decode("ascii")}
            ys, xs = np.nonzero(mask)
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min()))
            ds.annotations.append(Annotation(ann_id, i, 7, box, rle, area=float(mask.sum())))
            ann_id += 1
        (root / split).mkdir(exist_ok=True)
        im.save(root / name)
    return ds


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def scenes(tmp_path) -> DetectionDataset:
    return make_scenes(tmp_path / "scenes")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted Mask R-CNN run (2 epochs of 3 steps), shared by the tests that read it."""
    tmp = tmp_path_factory.mktemp("det-run")
    ds = make_scenes(tmp / "scenes")
    ws = Workspace(tmp / "ws")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = D.train_detector(ws, ds, dict(TINY), run_id="full", dataset_name="shapes")
    finally:
        torch.set_num_threads(before)
    return ws, ds, run


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------
# model builders


def test_lite0_builders_have_the_right_heads():
    opts = DetectionModelOptions(pretrained=False, min_size=SIZE, fpn_channels=16, box_head_dim=32)
    mask_model = build_detection_model(opts, num_classes=8)
    assert mask_model.roi_heads.box_predictor.cls_score.out_features == 8
    assert mask_model.roi_heads.box_predictor.bbox_pred.out_features == 8 * 4
    assert mask_model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 8
    assert mask_model.backbone.out_channels == 16
    assert mask_model.transform.min_size == (SIZE,)
    assert mask_model.rpn._post_nms_top_n["training"] == opts.rpn_post_nms_top_n_train
    box_model = build_detection_model(DetectionModelOptions(arch="fasterrcnn", pretrained=False), num_classes=3)
    assert not box_model.roi_heads.has_mask()
    assert box_model.roi_heads.box_predictor.cls_score.out_features == 3
    # anchors scaled to the image size: one size per pyramid level (strides 8, 16, 32, 64)
    assert len(box_model.rpn.anchor_generator.sizes) == 4


def test_lite0_packaged_imagenet_weights_are_loaded():
    from vitrine.models.classifiers import backbones

    classifier, _ = backbones.build_classifier("efficientnet-lite0", 10, pretrained=True)
    model = build_detection_model(DetectionModelOptions(freeze_stages=2), num_classes=3)
    body = model.backbone.body
    assert torch.equal(body.conv_stem.weight, classifier.conv_stem.weight)
    assert torch.equal(body.blocks[3][0].conv_pw.weight, classifier.blocks[3][0].conv_pw.weight)
    # the stem and the first two stages are frozen, the rest trains; batch norm is frozen (pretrained)
    assert not body.conv_stem.weight.requires_grad
    assert not any(p.requires_grad for p in body.blocks[1].parameters())
    assert all(p.requires_grad for p in body.blocks[2].parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    random_model = build_detection_model(DetectionModelOptions(pretrained=False), num_classes=3)
    assert not torch.equal(random_model.backbone.body.conv_stem.weight, classifier.conv_stem.weight)


@pytest.mark.parametrize("arch", ["maskrcnn", "fasterrcnn"])
@pytest.mark.parametrize("backbone", ["resnet50-fpn", "resnet50-fpn-v2"])
def test_resnet50_fpn_builders_random_weights(arch, backbone):
    model = build_detection_model(
        DetectionModelOptions(arch=arch, backbone=backbone, pretrained=False, min_size=SIZE), num_classes=5
    )
    assert model.roi_heads.box_predictor.cls_score.out_features == 5
    assert model.roi_heads.has_mask() == (arch == "maskrcnn")
    if arch == "maskrcnn":
        assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 5
    assert len(model.rpn.anchor_generator.sizes) == 5
    model.eval()
    with torch.inference_mode():
        out = model([torch.rand(3, SIZE, SIZE)])
    assert set(out[0]) >= {"boxes", "labels", "scores"}


def test_resnet50_coco_weights_offline_error_and_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINE_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    opts = DetectionModelOptions(arch="fasterrcnn", backbone="resnet50-fpn", min_size=SIZE)
    with pytest.raises(ModelError) as exc:
        build_detection_model(opts, num_classes=4)
    assert "not in the torch hub cache" in exc.value.message
    assert "efficientnet-lite0" in exc.value.hint
    # a COCO-format checkpoint (91 classes) given as a local file: loaded, then new heads for 4 classes
    import torchvision

    coco = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "coco.pth"
    torch.save(coco.state_dict(), path)
    model = build_detection_model(
        DetectionModelOptions(arch="fasterrcnn", backbone="resnet50-fpn", weights=str(path), freeze_stages=1), 4
    )
    assert torch.equal(model.backbone.body.layer3[0].conv1.weight, coco.backbone.body.layer3[0].conv1.weight)
    assert torch.equal(model.rpn.head.conv[0][0].weight, coco.rpn.head.conv[0][0].weight)
    assert model.roi_heads.box_predictor.cls_score.out_features == 4
    assert not model.backbone.body.layer1[0].conv1.weight.requires_grad
    assert model.backbone.body.layer2[0].conv1.weight.requires_grad
    assert isinstance(model.backbone.body.bn1, torchvision.ops.FrozenBatchNorm2d)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot be read"):
        build_detection_model(
            DetectionModelOptions(arch="fasterrcnn", backbone="resnet50-fpn", weights=str(tmp_path / "junk.pth")), 4
        )


def test_bad_options_are_refused():
    with pytest.raises(VitrineError, match="arch"):
        DetectionConfig(arch="yolo")
    with pytest.raises(VitrineError, match="anchor_sizes"):
        DetectionConfig(anchor_sizes=[8, 16])
    with pytest.raises(VitrineError, match="optimizer"):
        DetectionConfig(optimizer="rmsprop")
    with pytest.raises(VitrineError, match="no option"):
        DetectionConfig.from_dict({"learning_rate": 0.1})


# ------------------------------------------------------------------------------------------------
# data


def test_targets_are_clipped_and_masks_decoded(scenes):
    scenes.annotations.append(Annotation(900, 1, 1, (50.0, 50.0, 40.0, 40.0), None))  # runs off the image
    scenes.annotations.append(Annotation(901, 1, 1, (70.0, 10.0, 5.0, 5.0), None))  # entirely outside
    samples = DetectionSamples(scenes, with_masks=True, budget_bytes=2**30)
    (image, target), why = samples.get(0)
    assert why is None and image.shape == (3, SIZE, SIZE) and image.dtype == torch.uint8
    boxes, masks = target["boxes"], target["masks"]
    assert boxes.shape[0] == masks.shape[0] == target["labels"].shape[0]
    assert float(boxes.max()) <= SIZE and float(boxes.min()) >= 0
    assert boxes[-1].tolist() == [50.0, 50.0, SIZE, SIZE]  # clipped; its mask is the clipped box
    assert int(masks[-1].sum()) == (SIZE - 50) ** 2
    assert samples.dropped == 1
    # polygon and RLE masks decode to the pixels drawn: the mask's extent is the box
    for box, mask in zip(boxes[:-1], masks[:-1], strict=True):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert abs(xs.min().item() - box[0].item()) <= 1 and abs(xs.max().item() + 1 - box[2].item()) <= 1
    (empty_image, empty), _ = samples.get(5)  # the train image without objects
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, SIZE, SIZE)


def test_augmentation_keeps_boxes_and_masks_together(scenes):
    samples = DetectionSamples(scenes, with_masks=True, budget_bytes=2**30)
    transform = train_transform("light")
    torch.manual_seed(3)
    (image, target), _ = samples.get(1)
    for _ in range(10):
        img, out = augment(transform, image, target)
        assert img.shape == image.shape
        assert out["boxes"].shape[0] == out["masks"].shape[0] == out["labels"].shape[0]
        for box, mask in zip(out["boxes"], out["masks"], strict=True):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert len(xs) > 0
            assert abs(xs.min().item() - box[0].item()) <= 2 and abs(xs.max().item() + 1 - box[2].item()) <= 2
            assert abs(ys.min().item() - box[1].item()) <= 2 and abs(ys.max().item() + 1 - box[3].item()) <= 2


# ------------------------------------------------------------------------------------------------
# training, checkpoints, resume


def test_training_run_records_everything(finished):
    ws, ds, run = finished
    record = json.loads((run.dir / "run.json").read_text())
    assert record["state"] == "done" and record["kind"] == "segmentation"
    assert record["classes"] == ["rectangle", "disc"] and record["category_ids"] == [1, 7]
    assert record["config"]["arch"] == "maskrcnn"
    metrics = record["metrics"]
    assert metrics["steps"] == 6 and metrics["epochs_completed"] == 2 and metrics["stopped"] == "epochs"
    for entry in metrics["history"]:
        assert np.isfinite(entry["train_loss"]) and entry["train_loss"] < 50
        assert np.isfinite(entry["train_loss_mask"])
        assert 0 <= entry["val_bbox_map50"] <= 1 and "val_segm_map50" in entry
    test = metrics["test"]
    assert test["split"] == "test" and test["n_images"] == 2
    for key in ("bbox_map50", "bbox_map", "segm_map50", "segm_map"):
        assert 0 <= test[key] <= 1
    assert metrics["speed"]["ms_per_image"] > 0
    # what makes the run comparable: the test split's fingerprint, speed by the one harness, cost
    from vitrine.data.fingerprint import detection_fingerprint

    assert test["fingerprint"] == detection_fingerprint(ds, "test")
    speed = metrics["speed"]
    assert speed["latency_ms"] > 0 and speed["latency_images"] == 10 and speed["images_per_second"] > 0
    cost = metrics["cost"]
    assert cost["parameters"] > 0 and cost["gflops"] > 0 and cost["input_size"] == record["config"]["image_size"]
    assert cost["weights_bytes"] == (run.dir / "checkpoints" / "best.pt").stat().st_size
    assert (run.dir / "checkpoints" / "last.pt").is_file() and (run.dir / "checkpoints" / "best.pt").is_file()
    assert (run.dir / "detection_metrics.json").is_file() and (run.dir / "per_class_segm.csv").is_file()
    assert any((run.dir / "tb").iterdir())
    # the run sits beside classification runs and is listed with them
    from vitrine.runs import list_runs

    assert [r.id for r in list_runs(ws)] == ["full"]


def test_tensorboard_has_loss_components_and_map(finished):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, run = finished
    acc = EventAccumulator(str(run.dir / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/loss_mask", "train/loss_objectness", "lr", "val/segm_map50", "val/bbox_map"} <= tags
    assert len(acc.Scalars("train/loss")) == 6


def test_resume_continues_exactly(finished, tmp_path):
    """Cancelled mid-epoch 2 and resumed: the same weights, optimizer state and step as uninterrupted."""
    _, ds, full = finished
    ws = Workspace(tmp_path / "ws")
    cancel = threading.Event()

    def progress(stage, done, total, info):
        if stage == "train" and done == 4:
            cancel.set()

    with pytest.raises(Cancelled):
        D.train_detector(ws, ds, dict(TINY), run_id="r", dataset_name="shapes", progress=progress, cancel=cancel)
    half = load_checkpoint(ws.run_dir("r") / "checkpoints" / "last.pt")
    assert (half["step"], half["epoch"], half["step_in_epoch"]) == (4, 1, 1)
    assert json.loads((ws.run_dir("r") / "run.json").read_text())["state"] == "cancelled"
    with pytest.raises(VitrineError, match="cannot change"):
        D.train_detector(ws, ds, {"lr": 0.5}, run_id="r", resume=True, dataset_name="shapes")
    run = D.train_detector(ws, ds, None, run_id="r", resume=True, dataset_name="shapes")
    assert run.record["state"] == "done"
    a = load_checkpoint(full.dir / "checkpoints" / "last.pt")
    b = load_checkpoint(run.dir / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6
    assert _state_equal(a["model"], b["model"])
    mom_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    mom_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert len(mom_a) == len(mom_b) > 0 and all(torch.equal(x, y) for x, y in zip(mom_a, mom_b, strict=True))
    assert not _state_equal(a["model"], half["model"])  # it did train after resuming


def test_time_budget_stops_cleanly_and_evaluates(scenes, tmp_path):
    ws = Workspace(tmp_path / "ws")
    config = {**TINY, "epochs": 500, "max_minutes": 0.05}
    run = D.train_detector(ws, scenes, config, run_id="budget", dataset_name="shapes")
    metrics = run.record["metrics"]
    assert run.record["state"] == "done" and metrics["stopped"] == "time budget"
    assert 0 < metrics["steps"] < 500 * 3
    assert "bbox_map50" in metrics["test"]
    state = load_checkpoint(run.dir / "checkpoints" / "last.pt")
    assert state["step"] == metrics["steps"]
    assert (run.dir / "checkpoints" / "best.pt").is_file()


def test_cancel_keeps_last_checkpoint(scenes, tmp_path):
    ws = Workspace(tmp_path / "ws")
    cancel = threading.Event()

    def progress(stage, done, total, info):
        if stage == "train" and done == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        D.train_detector(ws, scenes, dict(TINY), run_id="c", dataset_name="shapes", progress=progress, cancel=cancel)
    record = json.loads((ws.run_dir("c") / "run.json").read_text())
    assert record["state"] == "cancelled"
    state = load_checkpoint(ws.run_dir("c") / "checkpoints" / "last.pt")
    assert state["step"] == 2 and state["category_ids"] == [1, 7]


# ------------------------------------------------------------------------------------------------
# the run's detector


def test_load_run_detector_predicts(finished):
    from vitrine.predict.detector import Detector, load_detector

    ws, ds, run = finished
    image = Image.open(Path(ds.root) / ds.images[-1].file_name).convert("RGB")
    det = load_run_detector(run)
    assert isinstance(det, Detector) and det.task == "segmentation"
    assert det.classes == {1: "rectangle", 7: "disc"}
    out = det.predict(image, threshold=0.0)
    assert out.masks is not None and out.masks.shape == (len(out), SIZE, SIZE)
    assert set(out.class_ids.tolist()) <= {1, 7} and set(out.labels) <= {"rectangle", "disc"}
    assert np.all(out.boxes[:, 2] <= SIZE) and np.all(np.diff(out.scores) <= 0)
    # the same through vitrine.predict.detector.load_detector, by run id
    again = load_detector("full", workspace=ws).predict(image, threshold=0.0)
    assert np.allclose(again.scores, out.scores) and np.allclose(again.boxes, out.boxes)


def test_fasterrcnn_run_from_a_coco_file(tmp_path):
    from vitrine.data.detection.coco import to_coco

    ds = make_scenes(tmp_path / "images", n_train=4, n_val=2, n_test=0)
    to_coco(ds, tmp_path / "instances.json")
    ws = Workspace(tmp_path / "ws")
    config = {**TINY, "arch": "fasterrcnn", "epochs": 1}
    run = D.train_detector(ws, tmp_path / "instances.json", config, run_id="boxes")
    assert run.record["kind"] == "detection" and run.record["dataset"] == "instances"
    assert run.record["metrics"]["val"]["val_bbox_map50"] is not None
    assert "segm_map50" not in run.record["metrics"]["val"]
    # evaluated on val (no test split): the final evaluation and its fingerprint are kept beside it
    from vitrine.runs.summary import comparable

    summary = comparable(run)
    assert summary["split"] == "val" and summary["fingerprint"] and summary["primary"] is not None
    det = load_run_detector(run)
    out = det.predict(Image.open(tmp_path / "images" / ds.images[0].file_name), threshold=0.0)
    assert out.masks is None or out.masks.shape[0] == len(out)


# ------------------------------------------------------------------------------------------------
# bad input


def test_bad_datasets_give_clear_errors(scenes, tmp_path):
    ws = Workspace(tmp_path / "ws")
    empty = DetectionDataset(categories=list(scenes.categories), root=scenes.root)
    with pytest.raises(VitrineError, match="no images"):
        D.train_detector(ws, empty, dict(TINY), dataset_name="empty")
    unknown = make_scenes(tmp_path / "unknown")
    unknown.annotations[2].category_id = 42
    with pytest.raises(VitrineError) as exc:
        D.train_detector(ws, unknown, dict(TINY), dataset_name="unknown")
    message = exc.value.message
    assert "annotation id 3" in message and "category id 42" in message and "known ids: 1, 7" in message
    assert ".png" in message
    boxes_only = make_scenes(tmp_path / "boxes")
    for a in boxes_only.annotations:
        a.segmentation = None
    with pytest.raises(VitrineError, match="no masks") as exc:
        D.train_detector(ws, boxes_only, dict(TINY), dataset_name="boxes")
    assert "fasterrcnn" in exc.value.hint
    no_train = make_scenes(tmp_path / "notrain", n_train=0)
    with pytest.raises(VitrineError, match="no train images"):
        D.train_detector(ws, no_train, dict(TINY), dataset_name="notrain")
    with pytest.raises(VitrineError, match="not found"):
        D.train_detector(ws, tmp_path / "missing.json", dict(TINY))
    assert not ws.runs_dir.exists() or not any(ws.runs_dir.iterdir())  # nothing left behind


def test_unreadable_images_are_skipped(scenes, tmp_path):
    (Path(scenes.root) / scenes.images[0].file_name).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ws = Workspace(tmp_path / "ws")
    run = D.train_detector(ws, scenes, {**TINY, "epochs": 1}, run_id="skip", dataset_name="shapes")
    assert run.record["state"] == "done"
    assert [s["file"] for s in run.record["metrics"]["skipped"]] == [scenes.images[0].file_name]


# ------------------------------------------------------------------------------------------------
# the command line


def test_cli_train_detector(tmp_path):
    from typer.testing import CliRunner

    from vitrine.cli import app
    from vitrine.data.detection.coco import to_coco

    ds = make_scenes(tmp_path / "images", n_train=4, n_val=2, n_test=0)
    to_coco(ds, tmp_path / "instances.json")

    def invoke(*args):
        return CliRunner().invoke(app, [str(a) for a in args], env={"VITRINE_NO_PROGRESS": "1"})

    common = ["--workspace", tmp_path / "ws", "--random-init", "--image-size", SIZE, "--threads", 1]
    result = invoke(
        "train-detector", tmp_path / "instances.json", *common, "--epochs", 1, "--batch-size", 2,
        "--fpn-channels", 16, "--proposals", 30, "--name", "cli-det", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["state"] == "done" and record["kind"] == "segmentation"
    assert record["config"]["rpn_post_nms_top_n_train"] == 30 and record["config"]["fpn_channels"] == 16
    listed = json.loads(invoke("runs", "--workspace", tmp_path / "ws", "--json").stdout)
    assert "cli-det" in [r["id"] for r in listed]
    bad = invoke("train-detector", tmp_path / "missing.json", "--workspace", tmp_path / "ws")
    assert bad.exit_code == 2 and "not found" in bad.output and "Traceback" not in bad.output
    bad = invoke("train-detector", tmp_path / "instances.json", "--workspace", tmp_path / "ws", "--arch", "yolo")
    assert bad.exit_code == 2 and "arch" in bad.output


# ------------------------------------------------------------------------------------------------
# the rest of the family: RetinaNet, FCOS, SSDlite on EfficientNet-Lite1/Lite2


@pytest.mark.parametrize("backbone", ["efficientnet-lite1", "efficientnet-lite2"])
def test_lite1_lite2_packaged_imagenet_weights_are_loaded(backbone):
    from vitrine.models.classifiers import backbones

    classifier, _ = backbones.build_classifier(backbone, 10, pretrained=True)
    opts = DetectionModelOptions(arch="ssdlite", backbone=backbone, freeze_stages=1, min_size=SIZE)
    body = build_detection_model(opts, num_classes=3).backbone.body
    assert torch.equal(body.conv_stem.weight, classifier.conv_stem.weight)
    assert torch.equal(body.blocks[4][0].conv_pw.weight, classifier.blocks[4][0].conv_pw.weight)
    assert not body.blocks[0][0].conv_dw.weight.requires_grad and body.blocks[1][0].conv_pw.weight.requires_grad
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())  # frozen with pretrained weights


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "backbone"),
    [("retinanet", "efficientnet-lite1"), ("fcos", "efficientnet-lite0"), ("ssdlite", "efficientnet-lite2")],
)
def test_one_stage_archs_train_resume_and_detect(arch, backbone, scenes, tmp_path):
    """One epoch through the one trainer, cancelled after its first step and resumed; the run is
    rebuilt by predict/run_detector.py and detects (random init: code paths, not quality)."""
    ws = Workspace(tmp_path / "ws")
    config = {
        **TINY,
        "arch": arch,
        "backbone": backbone,
        "epochs": 1,
        "box_score_thresh": 0.0,  # every candidate comes out: the background label must not
        "fpn_channels": 64 if arch == "fcos" else 16,
    }
    cancel = threading.Event()

    def progress(stage, done, total, info):
        if stage == "train" and done == 1:
            cancel.set()

    with pytest.raises(Cancelled):
        D.train_detector(ws, scenes, config, run_id=arch, dataset_name="shapes", progress=progress, cancel=cancel)
    assert load_checkpoint(ws.run_dir(arch) / "checkpoints" / "last.pt")["step"] == 1
    run = D.train_detector(ws, scenes, None, run_id=arch, resume=True, dataset_name="shapes")
    record = run.record
    assert record["state"] == "done" and record["kind"] == "detection"
    assert record["model"] == f"{arch}-{backbone}" and record["metrics"]["steps"] == 3
    # the loss components of this arch, summed into train/loss, are logged per epoch
    epoch = record["metrics"]["history"][-1]
    components = {"retinanet": {"classification", "bbox_regression"}, "ssdlite": {"classification", "bbox_regression"}}
    components["fcos"] = {"classification", "bbox_regression", "bbox_ctrness"}
    assert {f"train_{k}" for k in components[arch]} <= set(epoch)
    assert epoch["val_bbox_map50"] is not None and "val_segm_map50" not in epoch
    assert "bbox_map50" in record["metrics"]["test"] and "segm_map50" not in record["metrics"]["test"]
    # R-CNN options of the base config do not apply: ignored, and said so
    notes = [n for n in record["data"]["notes"] if n.startswith(f"options {arch} does not use, ignored: ")]
    assert len(notes) == 1 and "rpn_pre_nms_top_n_train=100" in notes[0] and "mask_head_channels=16" in notes[0]
    det = load_run_detector(run)
    assert det.task == "detection" and det.classes == {1: "rectangle", 7: "disc"}
    image = Image.open(Path(scenes.root) / scenes.images[-1].file_name).convert("RGB")
    out = det.predict(image, threshold=0.0)
    assert len(out) > 0 and out.masks is None
    assert set(out.class_ids.tolist()) <= {1, 7} and set(out.labels) <= {"rectangle", "disc"}
    assert np.all(out.boxes[:, 2] <= SIZE) and np.all(np.diff(out.scores) <= 0)


# ------------------------------------------------------------------------------------------------
# the predictions a run keeps for its errors view


@pytest.mark.slow
def test_a_trained_run_keeps_its_predictions_and_vitrine_eval_brings_them_back(tmp_path):
    """Random weights: the counts say nothing about quality, only that the errors view counts what
    the report counted, and that `vitrine eval RUN` gives an older run its predictions."""
    from typer.testing import CliRunner

    from vitrine.cli import app
    from vitrine.core.jsonio import read_json
    from vitrine.data.detection.coco import to_coco
    from vitrine.evaluate.detection import evaluate_detection
    from vitrine.evaluate.predictions_file import PREDICTIONS_FILE, read_predictions
    from vitrine.evaluate.run_errors import NoPredictions, load_run_errors

    ds = make_scenes(tmp_path / "images", n_train=4, n_val=2, n_test=2)
    to_coco(ds, tmp_path / "instances.json")
    ws = Workspace(tmp_path / "ws")
    config = {**TINY, "arch": "fasterrcnn", "epochs": 1, "score_threshold": 0.05}
    run = D.train_detector(ws, tmp_path / "instances.json", config, run_id="boxes")
    doc = read_predictions(run.dir)
    assert doc["split"] == "test" and sorted(doc["image_ids"]) == [im.id for im in ds.images if im.split == "test"]
    assert doc["results"] and all(r["category_id"] in (1, 7) for r in doc["results"])

    def agree():
        errs = load_run_errors(ws, run)
        report = read_json(run.dir / "detection_metrics.json")["bbox"]
        counts = errs.errors(iou_threshold=0.5, score_threshold=0.05)["counts"]
        assert (counts["tp"], counts["fp"], counts["fn"]) == (report["tp"], report["fp"], report["fn"])
        assert counts["fp"] + counts["tp"] > 0
        again = evaluate_detection(errs.gt, errs.results, iou_type="bbox", score_threshold=0.2, iou_threshold=0.3)
        counts = errs.errors(iou_threshold=0.3, score_threshold=0.2)["counts"]
        assert (counts["tp"], counts["fp"], counts["fn"]) == (
            again["bbox"]["tp"],
            again["bbox"]["fp"],
            again["bbox"]["fn"],
        )

    agree()
    # a run evaluated before runs kept their predictions: says how to get them, and `vitrine eval` does
    (run.dir / PREDICTIONS_FILE).unlink()
    with pytest.raises(NoPredictions, match="evaluated before") as err:
        load_run_errors(ws, run)
    assert err.value.hint.startswith("evaluate it again to keep them: vitrine eval boxes ")
    result = CliRunner().invoke(
        app, ["eval", "boxes", "--workspace", str(tmp_path / "ws"), "--json"], env={"VITRINE_NO_PROGRESS": "1"}
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run"] == "boxes" and (run.dir / PREDICTIONS_FILE).is_file()
    agree()
