"""The runtime core: the cache folder, sessions on both runtimes, the parity gate, the choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitrine.runtime import cache
from vitrine.runtime.choose import Candidate, Choice, choose, load_choice, machine_fingerprint, save_choice
from vitrine.runtime.parity import classification_parity, detection_parity, embedding_parity
from vitrine.runtime.session import Variant, open_session


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A small convolutional model exported with torch's exporter (dynamic batch)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 16),
    ).eval()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    x = torch.randn(2, 3, 32, 32)
    torch.onnx.export(
        model,
        (x,),
        str(path),
        input_names=["pixels"],
        output_names=["out"],
        dynamic_axes={"pixels": {0: "n"}, "out": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    with torch.inference_mode():
        ref = model(x).numpy()
    return path, x.numpy(), ref


def test_cache_builds_once_and_keys_change_with_inputs(cache_dir):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "model.onnx").write_bytes(b"onnx")
        return {"size": 4}

    key = cache.artifact_key("m", "w1", "onnxruntime", {"precision": "fp32"})
    a = cache.cached("m", key, build)
    b = cache.cached("m", key, build)
    assert a == b and len(calls) == 1
    assert json.loads((a / cache.MANIFEST).read_text())["size"] == 4
    assert cache.artifact_key("m", "w2", "onnxruntime", {"precision": "fp32"}) != key
    assert cache.artifact_key("m", "w1", "onnxruntime", {"precision": "int8"}) != key
    assert cache.artifact_key("m", "w1", "openvino", {"precision": "fp32"}) != key


def test_cache_leaves_nothing_when_a_build_fails(cache_dir):
    def build(folder):
        (folder / "half.onnx").write_bytes(b"half")
        raise RuntimeError("export failed")

    key = cache.artifact_key("m", "w", "onnxruntime")
    with pytest.raises(RuntimeError):
        cache.cached("m", key, build)
    parent = cache.artifact_dir("m", key).parent
    assert list(parent.iterdir()) == []


def test_file_hash_follows_the_bytes(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 10)
    h1 = cache.file_hash(f)
    f.write_bytes(b"b" * 11)
    assert cache.file_hash(f) != h1


@pytest.mark.parametrize("variant", ["onnxruntime", "openvino", "openvino-bf16"])
def test_sessions_match_torch(tiny_onnx, variant):
    path, x, ref = tiny_onnx
    session = open_session(path, Variant.parse(variant), threads=1)
    out = session.run({session.input_names[0]: x})[0]
    tol = 5e-2 if variant.endswith("bf16") else 1e-4
    np.testing.assert_allclose(out, ref, atol=tol, rtol=tol)


def test_openvino_streams_split_a_batch(tiny_onnx):
    path, x, ref = tiny_onnx
    big = np.concatenate([x] * 4)
    session = open_session(path, Variant("openvino"), threads=2, streams=2)
    out = session.run({session.input_names[0]: big})[0]
    np.testing.assert_allclose(out, np.concatenate([ref] * 4), atol=1e-4)


def test_embedding_parity_passes_noise_and_refuses_damage():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(200, 64)).astype(np.float32)
    slight = ref + rng.normal(scale=0.01, size=ref.shape)
    damaged = ref + rng.normal(scale=0.6, size=ref.shape)
    ok = embedding_parity(ref, slight)
    bad = embedding_parity(ref, damaged)
    assert ok.passed and ok.figures["mean_cosine"] > 0.99
    assert not bad.passed and "recall_at_10" in bad.reason
    both = embedding_parity({"a": ref, "b": ref}, {"a": slight, "b": damaged})
    assert not both.passed and len(both.notes) == 2


def test_classification_and_detection_parity():
    logits = np.eye(5)[[0, 1, 2, 3, 4] * 4] * 5
    assert classification_parity(logits, logits + 0.01).passed
    assert not classification_parity(logits, np.roll(logits, 1, axis=1)).passed
    boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], dtype=float)
    ref = [(boxes, np.array([1, 2]), np.array([0.9, 0.8]))]
    assert detection_parity(ref, [(boxes + 0.1, np.array([1, 2]), np.array([0.88, 0.8]))]).passed
    moved = detection_parity(ref, [(boxes + 4, np.array([1, 2]), np.array([0.9, 0.8]))])
    assert not moved.passed and moved.figures["class_agreement"] == 1.0
    assert not detection_parity(ref, [(boxes, np.array([2, 1]), np.array([0.9, 0.8]))]).passed


def test_choose_picks_the_fastest_variant_that_passes(tmp_path):
    import time

    rng = np.random.default_rng(1)
    data = rng.normal(size=(64, 32)).astype(np.float32)

    def slow(batch):
        time.sleep(0.02)
        return batch

    def fast_but_wrong(batch):
        return rng.normal(size=batch.shape).astype(np.float32)

    def fast(batch):
        time.sleep(0.002)
        return batch + 1e-4

    def broken(batch):
        raise RuntimeError("no such op")

    choice = choose(
        Candidate(Variant("torch"), slow),
        [
            Candidate(Variant("openvino", "int8"), fast_but_wrong),
            Candidate(Variant("openvino", "bf16"), fast),
            Candidate(Variant("onnxruntime", "int8"), broken),
        ],
        [data[:32], data[32:]],
        embedding_parity,
    )
    assert choice.picked == Variant("openvino", "bf16")
    assert choice.speedup > 2
    assert not choice.trial(Variant("openvino", "int8")).parity.passed
    assert choice.trial(Variant("openvino", "int8")).images_per_s is None  # refused: never timed
    assert "no such op" in choice.trial(Variant("onnxruntime", "int8")).error
    path = tmp_path / "choice.json"
    save_choice(path, choice)
    again = load_choice(path)
    assert again.picked == choice.picked and again.summary() == choice.summary()
    assert load_choice(path, machine="another machine") is None
    assert machine_fingerprint() == again.machine


def test_choose_keeps_the_reference_when_nothing_is_faster():
    data = np.ones((8, 4), dtype=np.float32)
    choice = choose(
        Candidate(Variant("torch"), lambda b: b),
        [Candidate(Variant("onnxruntime"), lambda b: b)],
        [data],
        embedding_parity,
        min_gain=100,
    )
    assert choice.picked == Variant("torch")
    assert isinstance(Choice.from_dict(choice.to_dict()), Choice)
