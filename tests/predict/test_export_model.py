"""``vitrine export-model`` and ``predict|detect --model EXPORTED``: export + parity for a classifier and
detectors (FCOS on ONNX Runtime, Mask R-CNN on OpenVINO), the numpy preprocessing against the torch
transform, int8 kept or refused by the parity gate, prediction without torch, and bad input.

Nothing is trained: the runs hold checkpoints of small randomly initialised networks (EfficientNet-
Lite0 at 32 px; 64 px detectors with narrow FPNs), with the detectors' classification biases raised so
that they report boxes (a random detector scores every box ~0.01, below every threshold) and FCOS's
box regression offset so that its boxes have an area. Parity is numerical, never quality.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from vitrine.core.errors import ModelError, VitrineError
from vitrine.core.workspace import Workspace
from vitrine.predict import export_model as E
from vitrine.predict.exported import MANIFEST, classifier_input, load_exported
from vitrine.runs import Run

CLASSES = ["blue", "green", "red"]
SIZE = 32
DET = {"fpn_channels": 16, "box_head_dim": 32, "mask_head_channels": 16, "rpn_pre_nms_top_n_test": 100}
DET |= {"rpn_post_nms_top_n_test": 30, "box_detections_per_img": 20, "pretrained": False}


def _classifier_run(ws: Workspace) -> Run:
    from vitrine.models.classifiers import backbones

    torch.manual_seed(0)
    model, data_config = backbones.build_classifier("efficientnet-lite0", len(CLASSES), pretrained=False)
    state = model.state_dict()
    state["classifier.weight"] = state["classifier.weight"] * 20  # spread the probabilities of a random head
    config = {"backbone": "efficientnet-lite0", "image_size": SIZE}
    run = Run.create(ws, "finetune", "shapes", "efficientnet-lite0", config, run_id="shapes-ft")
    header = {"kind": "finetune", "config": config, "classes": CLASSES, "backbone": "efficientnet-lite0"}
    run.save_checkpoint("best.pt", {**header, "image_size": SIZE, "data_config": data_config, "model": state})
    run.update(state="done", classes=CLASSES)
    return run


def _detector_run(ws: Workspace, arch: str) -> Run:
    from vitrine.models.detectors.torchvision_family import DetectionModelOptions, build_detection_model

    torch.manual_seed(1)
    opts = {**DET, "arch": arch, "fpn_channels": 64 if arch == "fcos" else 16}
    model = build_detection_model(DetectionModelOptions(**opts, min_size=64), 3, load_weights=False)
    state = model.state_dict()
    for key in state:
        if key.endswith(("cls_logits.bias", "cls_score.bias")):
            state[key] = state[key] + 5.0  # confident enough to report boxes
        if arch == "fcos" and key.endswith("bbox_reg.bias"):
            state[key] = state[key] + 1.0  # boxes with an area (relu(0) is a point)
    kind = "segmentation" if arch == "maskrcnn" else "detection"
    config = {**opts, "image_size": 64}
    run = Run.create(ws, kind, "scenes", arch, config, run_id=f"scenes-{arch}", extra={"task": kind})
    categories = {"category_ids": [1, 7], "category_names": ["rectangle", "disc"]}
    run.save_checkpoint("best.pt", {"kind": kind, "config": config, "num_classes": 3, **categories, "model": state})
    run.update(state="done", classes=["rectangle", "disc"])
    return run


def _images(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i, (w, h) in enumerate([(64, 64), (80, 60), (50, 70), (96, 64), (40, 40)]):
        im = Image.fromarray(rng.integers(0, 70, (h, w, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(im)
        draw.rectangle([5 + i, 5, 30, 25 + i], fill=(220, 40, 40))
        draw.ellipse([20, 24 + i, 38, 38 + i], fill=(40, 210, 40))
        im.save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    workspace = Workspace(root / "ws")
    _classifier_run(workspace)
    _detector_run(workspace, "fcos")
    _detector_run(workspace, "maskrcnn")
    return workspace, _images(root / "images")


@pytest.fixture(scope="module")
def exported(ws, tmp_path_factory) -> dict[str, Path]:
    """The classifier and FCOS exported to ONNX once, for the tests that run them."""
    workspace, images = ws
    out = tmp_path_factory.mktemp("exported")
    for run_id in ("shapes-ft", "scenes-fcos"):
        E.export_run(Run.load(workspace, run_id), "onnx", images=_paths(images), output=out / run_id)
    return {"clf": out / "shapes-ft", "det": out / "scenes-fcos"}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINE_CACHE_DIR", str(tmp_path / "cache"))


def invoke(*args):
    from vitrine.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def _paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


# ------------------------------------------------------------------------------------------------
# preprocessing


@pytest.mark.parametrize(
    ("size", "interpolation", "mode"),
    [
        ((64, 48), "bilinear", "RGB"),
        ((300, 200), "bicubic", "RGB"),
        ((20, 90), "bilinear", "L"),
        ((17, 17), "bilinear", "RGB"),
    ],
)
def test_numpy_preprocessing_matches_the_torch_transform(size, interpolation, mode):
    from vitrine.models.classifiers.transforms import eval_transform

    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    config = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "interpolation": interpolation}
    reference = eval_transform(32, config)(image.convert("RGB")).numpy()
    pre = {"resize_shorter": 32, "center_crop": 32, "max_aspect": 3.0, **config}
    ours = classifier_input(image, pre)
    assert ours.shape == reference.shape == (3, 32, 32) and ours.dtype == np.float32
    # PIL's and torchvision's antialiased resizes round a few pixels differently by one grey level
    assert np.abs(ours - reference).max() <= 2.5 / 255 / 0.224
    assert np.abs(ours - reference).mean() < 2e-3


# ------------------------------------------------------------------------------------------------
# classifiers


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_export_a_classifier_and_predict_with_it(ws, exported, tmp_path, fmt):
    from vitrine.predict.classifier import FinetuneClassifier
    from vitrine.runtime.cache import file_hash

    workspace, images = ws
    run = Run.load(workspace, "shapes-ft")
    if fmt == "onnx":  # written by the fixture, through the same function
        folder = exported["clf"]
    else:
        folder = tmp_path / "out"
        report = E.export_run(run, fmt, images=_paths(images), output=folder)
        assert report.folder == folder and report.int8 is None
    names = {p.name for p in folder.iterdir()}
    assert {"model.onnx", MANIFEST} <= names and not [n for n in names if n.endswith(".tmp")]
    if fmt == "openvino":
        assert {"model.xml", "model.bin"} <= names
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["task"] == "classification" and manifest["classes"] == CLASSES
    assert manifest["files"] == {"fp32": "model.xml" if fmt == "openvino" else "model.onnx"}
    assert manifest["preprocess"]["resize_shorter"] == SIZE and len(manifest["preprocess"]["mean"]) == 3
    assert manifest["weights_hash"] == file_hash(run.checkpoints_dir / "best.pt")
    assert manifest["exported_by"]["opset"] == 17 and "torch" in manifest["exported_by"]
    (row,) = manifest["parity"]["variants"]
    assert row["passed"] and row["figures"]["top1_agreement"] == 1.0
    assert row["figures"]["max_probability_change"] < 1e-3 and manifest["parity"]["images"] == 5

    pictures = [Image.open(p).convert("RGB") for p in _paths(images)]
    expected = FinetuneClassifier(run.dir, device="cpu").predict_proba(pictures)
    got = load_exported(folder).predict_proba(pictures)
    assert got.shape == (5, 3) and np.abs(got - expected).max() < 1e-3
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert np.ptp(expected, axis=0).max() > 0.01  # the images are told apart: the check can fail


@pytest.mark.parametrize("fmt", ["onnx", pytest.param("openvino", marks=pytest.mark.slow)])
def test_int8_kept_when_the_gate_passes(ws, tmp_path, fmt):
    workspace, images = ws
    args = ("export-model", "shapes-ft", "--workspace", workspace.root, "--int8", "-i", images, "--format", fmt)
    result = invoke(*args, "-o", tmp_path / "q", "--json")
    data = json.loads(result.stdout)
    runtime, suffix = ("onnxruntime", "onnx") if fmt == "onnx" else ("openvino", "xml")
    fp32, int8 = data["parity"]["variants"]
    assert fp32["variant"] == f"{runtime} fp32" and int8["variant"] == f"{runtime} int8"
    if fmt == "openvino" and not int8["passed"]:
        # NNCF's int8 of this random network may flip a near-tie: then the gate must have refused it
        assert result.exit_code == 1 and data["int8"] == "refused" and int8["figures"]["top1_agreement"] < 0.95
        assert not (tmp_path / "q" / "model-int8.xml").exists() and data["precision"] == "fp32"
        return
    assert result.exit_code == 0, result.output
    assert data["int8"] == "passed" and data["precision"] == "int8" and int8["passed"]
    manifest = json.loads((tmp_path / "q" / MANIFEST).read_text())
    assert manifest["files"] == {"fp32": f"model.{suffix}", "int8": f"model-int8.{suffix}"}
    model = load_exported(tmp_path / "q")
    assert model.session.precision == "int8" and model.session.runtime == runtime
    named = load_exported(tmp_path / "q" / f"model.{suffix}")  # a file named: that one
    assert named.session.precision == "fp32"
    pictures = [Image.open(p).convert("RGB") for p in _paths(images)]
    assert (model.predict_proba(pictures).argmax(1) == named.predict_proba(pictures).argmax(1)).all()


def _damaged_quantize(fmt, folder, source, target, input_name, arrays, task):
    """A 'quantized' model whose logits are negated: it runs, and fails the gate."""
    import onnx
    from onnx import helper

    model = onnx.load(str(folder / source))
    out = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{out}_raw" if o == out else o for o in node.output]
    model.graph.node.append(helper.make_node("Neg", [f"{out}_raw"], [out]))
    onnx.save(model, str(folder / target))
    return folder / target


def test_the_gate_refuses_a_damaged_int8(ws, tmp_path, monkeypatch):
    workspace, images = ws
    monkeypatch.setattr(E, "_quantize", _damaged_quantize)
    args = ("export-model", "shapes-ft", "--workspace", workspace.root, "--int8", "-i", images)
    result = invoke(*args, "-o", tmp_path / "refused")
    assert result.exit_code == 1, result.output
    assert "int8 refused by the parity gate" in result.stderr and "--force" in result.stderr
    assert "failed" in result.stdout and "top-1" in result.stdout  # the verdict and figures, in the table
    manifest = json.loads((tmp_path / "refused" / MANIFEST).read_text())
    assert manifest["precision"] == "fp32" and manifest["files"] == {"fp32": "model.onnx"}
    assert manifest["parity"]["int8"] == "refused"
    refused = manifest["parity"]["variants"][1]
    assert (
        not refused["passed"] and refused["figures"]["top1_agreement"] < 0.95 and "top1_agreement" in refused["reason"]
    )
    assert not (tmp_path / "refused" / "model-int8.onnx").exists()

    result = invoke(*args, "-o", tmp_path / "forced", "--force")
    assert result.exit_code == 0, result.output
    assert "failed the parity gate (--force)" in result.stderr
    manifest = json.loads((tmp_path / "forced" / MANIFEST).read_text())
    assert manifest["precision"] == "int8" and manifest["parity"]["int8"] == "forced"
    assert (tmp_path / "forced" / "model-int8.onnx").is_file()


def test_a_quantizer_that_fails_is_a_refusal_not_a_crash(ws, tmp_path, monkeypatch):
    workspace, images = ws

    def failing(*args):
        raise ModelError("ONNX Runtime could not quantize the model to int8: unsupported op")

    monkeypatch.setattr(E, "_quantize", failing)
    report = E.export_run(Run.load(workspace, "shapes-ft"), "onnx", True, _paths(images)[:2], tmp_path / "q")
    assert report.refused and report.manifest["precision"] == "fp32"
    assert "unsupported op" in report.manifest["parity"]["variants"][1]["reason"]
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["model.onnx", MANIFEST]


# ------------------------------------------------------------------------------------------------
# detectors


def _annotations(folder: Path) -> list[dict]:
    return json.loads((folder / "detections.json").read_text())["annotations"]


def test_export_fcos_and_detect_with_it(ws, exported, tmp_path):
    workspace, images = ws
    manifest = json.loads((exported["det"] / MANIFEST).read_text())
    assert manifest["task"] == "detection" and manifest["outputs"] == ["boxes", "labels", "scores"]
    assert manifest["label_ids"] == [0, 1, 7] and manifest["classes"][1] == {"id": 7, "name": "disc"}
    (row,) = manifest["parity"]["variants"]
    assert row["passed"] and row["figures"]["boxes_kept"] == 1.0 and row["figures"]["mean_iou"] > 0.999
    assert not row["notes"]  # there were boxes to compare

    by_run = invoke("detect", "-m", "scenes-fcos", "--workspace", workspace.root, images, "--out", tmp_path / "r")
    by_file = invoke("detect", "-m", exported["det"] / "model.onnx", images, "--out", tmp_path / "e")
    assert by_run.exit_code == by_file.exit_code == 0, by_file.output
    a, b = _annotations(tmp_path / "r"), _annotations(tmp_path / "e")
    assert len(a) == len(b) > 10
    for x, y in zip(a, b, strict=True):
        assert x["image_id"] == y["image_id"] and x["category_id"] == y["category_id"]
        assert np.allclose(x["bbox"], y["bbox"], atol=0.02) and abs(x["score"] - y["score"]) < 1e-3
    assert (tmp_path / "e" / "0.png").is_file()


@pytest.mark.slow
def test_export_mask_rcnn_to_openvino_and_segment_with_it(ws, tmp_path):
    workspace, images = ws
    run = Run.load(workspace, "scenes-maskrcnn")
    three = _paths(images)[:3]
    report = E.export_run(run, "openvino", images=three, output=tmp_path / "m")
    assert report.manifest["outputs"] == ["boxes", "labels", "scores", "masks"]
    assert report.manifest["parity"]["variants"][0]["passed"]
    by_run = invoke("segment", "-m", run.id, "--workspace", workspace.root, *three, "--out", tmp_path / "r")
    exported = invoke("segment", "-m", tmp_path / "m", *three, "--out", tmp_path / "e")
    assert by_run.exit_code == exported.exit_code == 0, exported.output
    a, b = _annotations(tmp_path / "r"), _annotations(tmp_path / "e")
    assert len(a) == len(b) > 10
    same_masks = sum(x["segmentation"] == y["segmentation"] for x, y in zip(a, b, strict=True))
    assert same_masks >= 0.9 * len(a)


# ------------------------------------------------------------------------------------------------
# without torch


def test_predict_and_detect_with_an_exported_model_never_import_torch(ws, exported, tmp_path):
    workspace, images = ws
    code = textwrap.dedent(
        f"""
        import json, sys
        from typer.testing import CliRunner
        from vitrine.cli import app
        runner = CliRunner()
        p = runner.invoke(app, ["predict", "--model", {str(exported["clf"])!r}, {str(images)!r}, "--json"])
        d = runner.invoke(app, ["detect", "--model", {str(exported["det"])!r}, {str(images)!r},
                                "--out", {str(tmp_path / "out")!r}, "--json"])
        print(json.dumps({{"torch": "torch" in sys.modules, "codes": [p.exit_code, d.exit_code],
                          "predict": p.stdout, "detect": d.stdout}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout.strip().splitlines()[-1])
    assert data["torch"] is False and data["codes"] == [0, 0], data
    predicted = json.loads(data["predict"])
    assert predicted["run"] == "shapes-ft" and predicted["model"]["runtime"] == "onnxruntime"
    by_run = json.loads(invoke("predict", "-m", "shapes-ft", "--workspace", workspace.root, images, "--json").stdout)
    assert [p["pred"] for p in predicted["predictions"]] == [p["pred"] for p in by_run["predictions"]]
    for a, b in zip(predicted["predictions"], by_run["predictions"], strict=True):
        assert abs(a["prob"] - b["prob"]) < 1e-3
    assert json.loads(data["detect"])["processed"] == 5 and (tmp_path / "out" / "detections.json").is_file()


# ------------------------------------------------------------------------------------------------
# bad input


def test_bad_input_gets_precise_errors(ws, tmp_path):
    workspace, images = ws
    root = workspace.root
    Run.create(workspace, "linear-probe", "shapes", "tiny", {}, run_id="a-probe")
    result = invoke("export-model", "a-probe", "--workspace", root, "-i", images)
    assert result.exit_code == 2 and "linear-probe run: export-model exports fine-tuned networks" in result.stderr
    result = invoke("export-model", "nope", "--workspace", root, "-i", images)
    assert result.exit_code == 2 and "no run 'nope'" in result.stderr
    result = invoke("export-model", "shapes-ft", "--workspace", root, "--format", "tflite", "-i", images)
    assert result.exit_code == 2 and "unknown export format 'tflite'" in result.stderr
    result = invoke("export-model", "shapes-ft", "--workspace", root, "-i", tmp_path / "missing")
    assert result.exit_code == 2 and "no such file or folder" in result.stderr
    (tmp_path / "fake.png").write_text("not an image")
    result = invoke("export-model", "shapes-ft", "--workspace", root, "-i", tmp_path / "fake.png")
    assert result.exit_code == 2 and "none of the 1 image file(s) given could be read" in result.stderr
    assert "fake.png" in result.stderr
    # the run's dataset is not in the workspace: no default images
    result = invoke("export-model", "shapes-ft", "--workspace", root)
    assert result.exit_code == 2 and "--images" in result.stderr
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    result = invoke("export-model", "shapes-ft", "--workspace", root, "-i", images, "-o", taken)
    assert result.exit_code == 2 and "not overwriting" in result.stderr and (taken / "mine.txt").is_file()

    # exported models: a folder that is not one, a damaged manifest, the wrong command
    plain = tmp_path / "plain"
    plain.mkdir()
    result = invoke("predict", "--model", plain, images)
    assert result.exit_code == 2 and f"no {MANIFEST} in it" in result.stderr
    result = invoke("detect", "--model", plain, images, "--out", tmp_path / "o")
    assert result.exit_code == 2 and f"no {MANIFEST} in it" in result.stderr
    (plain / MANIFEST).write_text("{not json")
    with pytest.raises(ModelError, match="cannot read it"):
        load_exported(plain)
    with pytest.raises(ModelError, match="does not exist"):
        load_exported(tmp_path / "gone")


def test_a_failed_export_leaves_nothing_behind(ws, tmp_path, monkeypatch):
    workspace, images = ws

    def broken(self, path, example):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(E._Network, "export", broken)
    with pytest.raises(VitrineError, match="could not export efficientnet-lite0 to ONNX: unsupported operator"):
        E.export_run(Run.load(workspace, "shapes-ft"), "onnx", images=_paths(images)[:1], output=tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "cache"] or not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_default_parity_images_come_from_the_runs_validation_split(ws, tmp_path):
    import shutil

    from vitrine.data.dataset import ClassificationDataset, Sample

    workspace, images = ws
    other = Workspace(tmp_path / "ws")
    shutil.copytree(workspace.run_dir("shapes-ft"), other.run_dir("shapes-ft"))
    samples = [Sample(p.name, CLASSES[i % 3], "val" if i < 3 else "train") for i, p in enumerate(_paths(images))]
    ClassificationDataset("shapes", images, samples).save(other.dataset_dir("shapes"))
    run = Run.load(other, "shapes-ft")
    assert E.parity_images(run) == [images / f"{i}.png" for i in range(3)]
    report = E.export_run(run, "onnx")
    assert report.images == 3 and report.folder == run.dir / "exports" / "onnx"
    assert report.manifest["parity"]["variants"][0]["passed"]


def test_a_missing_runtime_falls_back_to_the_other_with_a_note(ws, exported, tmp_path, monkeypatch):
    workspace, images = ws
    E.export_run(Run.load(workspace, "shapes-ft"), "openvino", images=_paths(images), output=tmp_path / "ov")
    pictures = [Image.open(p).convert("RGB") for p in _paths(images)]
    expected = load_exported(tmp_path / "ov").predict_proba(pictures)
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now fails
    model = load_exported(tmp_path / "ov")
    assert model.session.runtime == "onnxruntime" and "OpenVINO is not installed" in model.notes[0]
    assert np.abs(model.predict_proba(pictures) - expected).max() < 1e-4
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # neither: the reason, not a crash
    with pytest.raises(ModelError, match="not installed"):
        load_exported(exported["clf"])
