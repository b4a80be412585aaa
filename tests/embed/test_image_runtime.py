"""Image towers on CPU runtimes: numpy preprocessing equal to torch's, export + parity (a tiny random
open_clip and offline-concepts' real Lite0), the parity gate refusing a damaged variant, the torch
fallback, the cache following the weights, and an index run on ONNX Runtime searching like torch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from vitrine.embed import runtime_choice
from vitrine.embed.pipeline import EmbedItem
from vitrine.models.embedders import image_runtime
from vitrine.models.embedders.image_runtime import array_transform, build_session, export_onnx, run_tower
from vitrine.runtime.parity import embedding_parity
from vitrine.runtime.session import Variant

OFFLINE = "offline-concepts"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VITRINE_RUNTIME", raising=False)
    return tmp_path / "cache"


def _photos() -> list[Image.Image]:
    """Small images of awkward shapes and modes (upscaled, landscape, portrait, grey, RGBA, extreme)."""
    rng = np.random.default_rng(0)

    def noise(w, h, mode="RGB"):
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)

    return [
        noise(300, 200),
        noise(150, 260),
        noise(224, 224),
        noise(97, 61, "L"),
        noise(256, 256, "RGBA"),
        noise(900, 120),
    ]


def tiny_clip():
    """An open_clip CLIP with a 2-layer, 64-wide ViT-B/32-shaped image tower: random weights, fast."""
    import open_clip
    import torch

    from vitrine.models.embedders.clip import OpenClipEmbedder

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg=open_clip.CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=32, image_size=224),
        text_cfg=open_clip.CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=2, layers=1),
    )
    preprocess = open_clip.image_transform(224, is_train=False)
    return OpenClipEmbedder.from_open_clip("tiny-clip", model, preprocess, open_clip.get_tokenizer("ViT-B-32"), "cpu")


@pytest.fixture(scope="module")
def clip():
    return tiny_clip()


@pytest.fixture(scope="module")
def offline():
    from vitrine.models import registry

    return registry.load(OFFLINE)


def _items(folder, n=None):
    files = sorted(p for p in folder.rglob("*.jpg"))[:n]
    return [EmbedItem(i, p, p.name) for i, p in enumerate(files)]


# ------------------------------------------------------------------------------ preprocessing


def test_numpy_preprocessing_gives_the_torch_arrays(clip):
    import timm

    lite0 = timm.data.create_transform(
        input_size=(3, 224, 224),
        interpolation="bicubic",
        crop_pct=0.875,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    from vitrine.models.preprocess import limit_aspect

    for name, torch_transform in (("open_clip", clip._preprocess), ("timm", lite0)):
        mirror = array_transform(torch_transform)
        for image in _photos():
            want = torch_transform(limit_aspect(image.convert("RGB"))).numpy()
            got = mirror(image)
            assert got.dtype == np.float32 and got.shape == want.shape == (3, 224, 224), name
            assert_same_pixels(got, want, mirror.std, (name, image.size, image.mode))
            # the graph's input: the same pixels before normalisation, a quarter of the bytes
            pixels = mirror.pixels(image)
            assert pixels.dtype == np.uint8 and pixels.shape == (224, 224, 3)
            assert np.array_equal(mirror.normalize(pixels), got)


def assert_same_pixels(got: np.ndarray, want: np.ndarray, std, where) -> None:
    """The same normalised pixels: only the region the crop keeps is resampled, so float rounding may
    move a value by one 8-bit level (1/255/std), rarely."""
    diff = np.abs(got - want)
    assert diff.max() <= 1.001 / 255 / min(std), where
    assert (diff > 1e-5).mean() <= 1e-3, where


def test_a_step_that_cannot_be_mirrored_is_named():
    from torchvision import transforms

    with pytest.raises(ValueError, match="ColorJitter"):
        array_transform(transforms.Compose([transforms.Resize(224), transforms.ColorJitter(0.1)]))


# ------------------------------------------------------------------------------ export and parity


def test_tiny_clip_exports_and_runs_on_both_runtimes_at_parity(clip, cache_dir):
    import torch

    tower = clip.image_tower()
    images = [im.convert("RGB") for im in _photos()] * 3
    arrays = np.stack([tower.prepare(im) for im in images])
    reference = clip.embed_batch(torch.stack([clip.preprocess(im) for im in images]))
    for variant in (Variant("onnxruntime", "fp32"), Variant("openvino", "fp32")):
        session = build_session(tower, variant, threads=1)
        out = run_tower(tower, session, arrays)
        assert set(out) == {"joint"} and out["joint"].shape == (len(images), 32)
        parity = embedding_parity(reference, out)
        assert parity.passed and parity.figures["min_cosine"] > 0.9999, (variant, parity.figures)
        one = run_tower(tower, session, arrays[0])  # a single image: the batch axis is dynamic
        assert one["joint"].shape == (1, 32)
    with pytest.raises(TypeError, match="uint8"):  # normalised floats are not the graph's input
        run_tower(tower, session, np.stack([tower.transform(im) for im in images]))
    # the session an index runs with keeps OpenVINO's compiled model: the next one loads it
    from vitrine.runtime.session import compiled_dir

    fp32 = Variant("openvino", "fp32")
    first = run_tower(tower, build_session(tower, fp32, threads=1, keep_compiled=True), arrays)["joint"]
    blobs = list(compiled_dir().iterdir())
    again = run_tower(tower, build_session(tower, fp32, threads=1, keep_compiled=True), arrays)["joint"]
    assert blobs and list(compiled_dir().iterdir()) == blobs and np.array_equal(first, again)
    # the export is a cached folder with its manifest
    onnx = export_onnx(tower)
    manifest = json.loads((onnx.parent / "artifact.json").read_text())
    assert onnx.is_file() and manifest["weights"] == tower.weights_hash and manifest["precision"] == "fp32"


@pytest.mark.slow
def test_int8_variants_are_calibrated_on_images_and_run(clip, cache_dir):
    tower = clip.image_tower()
    arrays = np.stack([tower.prepare(im.convert("RGB")) for im in _photos()] * 2)
    for variant in (Variant("onnxruntime", "int8"), Variant("openvino", "int8")):
        session = build_session(tower, variant, calibration=arrays, threads=1)
        out = run_tower(tower, session, arrays)["joint"]
        assert out.shape == (len(arrays), 32) and np.isfinite(out).all()
        assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-4)
    with pytest.raises(ValueError, match="calibration"):  # a new key (other weights) needs images
        tower.weights_hash = "other"
        build_session(tower, Variant("openvino", "int8"), calibration=None, threads=1)


@pytest.mark.slow
def test_offline_concepts_real_weights_export_at_parity(offline, demo_source, cache_dir):
    import torch

    from vitrine.collection.imageio import open_image

    tower = offline.image_tower()
    images = [open_image(p) for p in sorted((demo_source / "images").rglob("*.jpg"))]
    reference = offline.embed_batch(torch.stack([offline.preprocess(im) for im in images]))
    want = torch.stack([offline.preprocess(im) for im in images]).numpy()
    assert_same_pixels(np.stack([tower.transform(im) for im in images]), want, tower.transform.std, "demo")
    arrays = np.stack([tower.prepare(im) for im in images])
    for variant in (Variant("onnxruntime", "fp32"), Variant("openvino", "fp32")):
        out = run_tower(tower, build_session(tower, variant, threads=2), arrays)
        parity = embedding_parity(reference, out)
        assert set(out) == {"concepts", "visual"}
        assert parity.passed and parity.figures["recall_at_10"] == 1.0, (variant, parity.figures)
        assert parity.figures["min_cosine"] > 0.999


# ------------------------------------------------------------------------------ the choice


def test_the_gate_refuses_a_damaged_variant_and_the_run_stays_on_torch(clip, demo_source, cache_dir):
    tower = clip.image_tower()
    honest = tower.postprocess
    rng = np.random.default_rng(1)

    def damaged(outputs):  # what a broken quantization does: vectors far from the reference
        return {"joint": honest(outputs)["joint"] + rng.normal(0, 0.5, (len(outputs[0]), 32)).astype(np.float32)}

    tower.postprocess = damaged
    items = _items(demo_source / "images")
    choice = runtime_choice.measure(clip, tower, items, variants=[Variant("onnxruntime", "fp32")], sample=16, repeats=1)
    trial = choice.trials[1]
    assert not trial.parity.passed and "mean_cosine" in trial.parity.reason
    assert choice.picked == Variant("torch") and trial.images_per_s is None  # refused: never timed
    # the saved choice is used by the next run, whatever its size: torch, with the reason
    clip.image_tower = lambda: tower
    try:
        decision = runtime_choice.select(clip, items)
    finally:
        del clip.image_tower
    assert decision.variant == Variant("torch") and decision.choice is not None and not decision.measured
    assert "refused by parity" in decision.line
    saved = runtime_choice.saved_choices("tiny-clip")
    assert saved and saved[0]["picked"]["runtime"] == "torch" and saved[0]["weights"] == tower.weights_hash


@pytest.mark.slow
def test_a_passing_variant_is_measured_saved_and_used(clip, demo_source, cache_dir, monkeypatch):
    monkeypatch.setenv("VITRINE_RUNTIME_MIN_IMAGES", "5")
    monkeypatch.setattr(runtime_choice, "VARIANTS", (Variant("onnxruntime", "fp32"),))
    items = _items(demo_source / "images")
    steps = []
    # min_gain 1.1 may keep torch on a loaded machine: accept the choice either way, check its shape
    decision = runtime_choice.select(clip, items, "auto", say=steps.append)
    assert decision.measured and decision.choice is not None and steps
    trials = {t.variant.label: t for t in decision.choice.trials}
    assert trials["onnxruntime fp32"].parity.passed and trials["onnxruntime fp32"].images_per_s > 0
    if decision.variant.runtime == "onnxruntime":
        assert isinstance(decision.embedder, image_runtime.RuntimeImageEmbedder)
        assert "x torch fp32" in decision.line and "measured now" in decision.line
    again = runtime_choice.select(clip, items, "auto")
    assert not again.measured and again.variant == decision.variant


def test_small_runs_stay_on_torch_and_say_why(clip, demo_source, cache_dir):
    decision = runtime_choice.select(clip, _items(demo_source / "images"))
    assert decision.variant == Variant("torch") and decision.embedder is clip
    assert "fewer than 1000 images" in decision.line and decision.choice is None


def test_a_runtime_that_fails_falls_back_to_torch_with_a_note(clip, demo_source, cache_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise ImportError("No module named 'openvino'")

    monkeypatch.setattr(image_runtime, "open_session", broken)
    items = _items(demo_source / "images", 4)
    decision = runtime_choice.select(clip, items, "openvino")
    assert decision.variant == Variant("torch") and decision.embedder is clip
    assert decision.line.startswith("torch: openvino fp32 failed") and "No module named 'openvino'" in decision.line

    def no_export(*args, **kwargs):
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(image_runtime, "export_onnx", no_export)
    monkeypatch.setenv("VITRINE_RUNTIME_MIN_IMAGES", "1")
    decision = runtime_choice.select(clip, items, "auto")
    trials = decision.choice.trials
    assert decision.variant == Variant("torch") and all("exporter crashed" in t.error for t in trials[1:])
    assert "failed" in decision.line
    with pytest.raises(Exception, match="unknown runtime"):
        runtime_choice.select(clip, items, "tensorrt")


def test_the_cache_follows_the_weights(cache_dir):
    import torch

    model = tiny_clip()
    first = model.image_tower()
    path = export_onnx(first)
    assert export_onnx(model.image_tower()) == path  # same weights: the same folder, not rebuilt
    with torch.no_grad():
        model.model.visual.proj.add_(0.01)
    second = model.image_tower()
    assert second.weights_hash != first.weights_hash
    new = export_onnx(second)
    assert new != path and new.is_file() and path.is_file()


# ------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_index_on_onnxruntime_searches_like_torch(indexed_demo, fresh_demo, cache_dir, tmp_path):
    import vitrine

    report = vitrine.open_project(fresh_demo).index(model=OFFLINE, runtime="onnxruntime")
    assert report.embedded == 20 and report.runtime["runtime"] == "onnxruntime"
    assert "onnxruntime fp32" in report.runtime["line"]
    runtime, torch_ = vitrine.open_project(fresh_demo), vitrine.open_project(indexed_demo)
    for text in ("a cat", "a flower", "a building", "coffee"):
        got = [h.path for h in runtime.search(text, k=5).hits]
        want = [h.path for h in torch_.search(text, k=5).hits]
        assert got == want, text
    last = runtime.catalog.get_meta("last_index")
    assert last["runtime"]["runtime"] == "onnxruntime"


@pytest.mark.slow
def test_models_bench_prints_every_trial_and_the_api_shows_the_choice(
    offline, demo_source, cache_dir, tmp_path, monkeypatch
):
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from vitrine.cli import app as cli_app
    from vitrine.server.app import create_app

    images = tmp_path / "few"
    images.mkdir()
    for i, path in enumerate(sorted((demo_source / "images").rglob("*.jpg"))[:8]):
        shutil.copy(path, images / f"{i}.jpg")
    measure = runtime_choice.measure
    two = (Variant("onnxruntime", "fp32"), Variant("openvino", "bf16"))  # the int8 builds: tested above
    monkeypatch.setattr(runtime_choice, "measure", lambda *a, **kw: measure(*a, **kw, variants=two, repeats=1))
    run = CliRunner().invoke(cli_app, ["models", "--bench", OFFLINE, "--images", str(images), "--json"])
    assert run.exit_code == 0, run.output
    result = json.loads(run.stdout)
    labels = [t["runtime"] + " " + t["precision"] for t in result["trials"]]
    assert labels == ["torch fp32", "onnxruntime fp32", "openvino bf16"] and result["images"] == 8
    assert all(t["images_per_s"] or t["error"] or not t["parity"]["passed"] for t in result["trials"])
    assert result["trials"][1]["parity"]["figures"]["recall_at_10"] == 1.0

    table = CliRunner().invoke(cli_app, ["models", "--bench", OFFLINE, "--images", str(images)], terminal_width=160)
    assert table.exit_code == 0, table.output
    assert "onnxruntime fp32" in table.stdout and "recall@10" in table.stdout and "picked" in table.stdout
    bad = CliRunner().invoke(cli_app, ["models", "--bench", OFFLINE, "--images", str(tmp_path / "nowhere")])
    assert bad.exit_code != 0 and "not a folder" in bad.output

    (tmp_path / "root").mkdir()
    with TestClient(create_app(tmp_path / "root")) as client:
        models = {m["name"]: m for m in client.get("/api/v1/models").json()}
    assert models[OFFLINE]["runtime_choice"]["picked"] == json.loads(table_choice(cache_dir))["picked"]
    assert models["clip-vit-b-32"]["runtime_choice"] is None


def table_choice(cache_dir) -> str:
    (path,) = (cache_dir / "runtime" / "choices").glob("offline-concepts-*.json")
    return path.read_text()


def test_the_pipeline_stacks_numpy_arrays_and_torch_tensors():
    import torch

    from vitrine.embed.pipeline import stack

    arrays = stack([np.zeros((3, 4, 4), np.float32), np.ones((3, 4, 4), np.float32)])
    assert isinstance(arrays, np.ndarray) and arrays.shape == (2, 3, 4, 4)
    tensors = stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    assert isinstance(tensors, torch.Tensor) and tensors.shape == (2, 3, 4, 4)
