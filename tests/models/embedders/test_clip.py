"""open_clip embedders: the real ViT-B-32 code path (random weights), weights from a local file, from
the Hugging Face cache (offline), and clear errors when the hub cannot be reached."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

import tiny_clip  # noqa: E402
from tiny_clip import (  # noqa: E402
    make_tiny_clip_embedder,
    populate_hf_cache,
    save_tiny_clip_weights,
    tiny_multilingual_variant,
    tiny_variant,
)

import vitrine.models.embedders.clip as clip  # noqa: E402
from vitrine.core.errors import ModelError  # noqa: E402
from vitrine.models import registry  # noqa: E402
from vitrine.models.base import Embedder, embed_images  # noqa: E402
from vitrine.weights import network as W  # noqa: E402

_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "VITRINE_OFFLINE",
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "VITRINE_CLIP_PRETRAINED",
    "VITRINE_WEIGHTS_CLIP_VIT_B_32",
    "VITRINE_WEIGHTS_CLIP_MULTILINGUAL",
    "VITRINE_WEIGHTS_CLIP_MULTILINGUAL_TEXT",
    "VITRINE_WEIGHTS_CLIP_TINY_TEST",
    "VITRINE_WEIGHTS_CLIP_TINY_ML_TEST",
    "VITRINE_WEIGHTS_CLIP_TINY_ML_TEST_TEXT",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No real network and an empty HF cache in every test (tests that need more set it up)."""
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("VITRINE_OFFLINE", "1")
    W.clear_reachability_cache()
    yield cache
    W.clear_reachability_cache()


def images(n=3, size=(120, 90)):
    rng = np.random.default_rng(0)
    out = [Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]
    out.append(Image.new("L", (50, 70), 128))  # grayscale: preprocess must make it RGB
    return out[:n]


def assert_unit(x, n, d):
    assert x.shape == (n, d)
    assert x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# the real architecture, random weights


@pytest.fixture(scope="module")
def vit_b_32():
    import open_clip
    import torch

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    tok = open_clip.get_tokenizer("ViT-B-32")
    return clip.OpenClipEmbedder.from_open_clip("clip-vit-b-32", model, preprocess, tok, device="cpu")


def test_vit_b_32_random_weights_shapes_and_determinism(vit_b_32):
    emb = vit_b_32
    assert isinstance(emb, Embedder)
    assert emb.spaces.dims == {"joint": 512}
    assert emb.spaces.text_space == "joint" and emb.spaces.image_space == "joint"
    assert emb.batch_size == 32
    ims = images(3)
    x = emb.preprocess(ims[0])
    assert tuple(x.shape) == (3, 224, 224)
    t = time.perf_counter()
    a = embed_images(emb, ims)["joint"]
    per_image = (time.perf_counter() - t) / len(ims)
    print(f"ViT-B-32 random weights, CPU: {per_image * 1000:.0f} ms/image (batch of {len(ims)})")
    assert_unit(a, 3, 512)
    assert not np.allclose(a[0], a[1])
    # same input again (alone in its batch this time) -> same vector: eval mode, no randomness
    np.testing.assert_allclose(embed_images(emb, ims[:1])["joint"][0], a[0], atol=1e-4)

    texts = ["a photo of a cat", "a red car"]
    ta = emb.embed_texts(texts)
    assert_unit(ta, 2, 512)
    assert not np.allclose(ta[0], ta[1])
    np.testing.assert_allclose(emb.embed_texts(texts[:1])[0], ta[0], atol=1e-4)
    assert emb.embed_texts([]).shape == (0, 512)


# --------------------------------------------------------------------------------------------
# the tiny model and the embedder class


def test_tiny_embedder_protocol():
    emb = make_tiny_clip_embedder()
    assert isinstance(emb, Embedder)
    assert emb.spaces.dims == {"joint": tiny_clip.TINY_DIM}
    gray = Image.new("L", (40, 30), 100)
    v = embed_images(emb, [gray, Image.new("RGBA", (30, 40))])["joint"]
    assert_unit(v, 2, tiny_clip.TINY_DIM)
    # a list of preprocessed tensors and a single (C,H,W) tensor work too
    x = emb.preprocess(gray)
    np.testing.assert_allclose(emb.embed_batch([x])["joint"], emb.embed_batch(x)["joint"], atol=1e-6)
    assert emb.embed_batch(x.unsqueeze(0)[:0])["joint"].shape == (0, tiny_clip.TINY_DIM)
    # texts are batched; batching does not change results
    texts = [f"text number {i}" for i in range(5)]
    whole = emb.embed_texts(texts)
    emb.text_batch_size = 2
    np.testing.assert_allclose(emb.embed_texts(texts), whole, atol=1e-5)
    assert_unit(whole, 5, tiny_clip.TINY_DIM)
    # same seed -> same model
    np.testing.assert_array_equal(make_tiny_clip_embedder().embed_texts(texts), whole)


# --------------------------------------------------------------------------------------------
# weights from a local path


@pytest.fixture
def tiny_spec():
    variant = tiny_variant()
    spec = clip.register_variant(variant, replace=True)
    yield spec
    registry.unregister(variant.name)
    clip.VARIANTS.pop(variant.name, None)


def same_vectors(a, b):
    ims = images(2)
    texts = ["un chat", "a dog"]
    np.testing.assert_allclose(embed_images(a, ims)["joint"], embed_images(b, ims)["joint"], atol=1e-6)
    np.testing.assert_allclose(a.embed_texts(texts), b.embed_texts(texts), atol=1e-6)


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_local_weights_argument(tmp_path, tiny_spec, suffix):
    path = save_tiny_clip_weights(tmp_path / f"tiny{suffix}", seed=3)
    av = tiny_spec.availability(weights=str(path))
    assert av.ok and av.where == "local" and str(path) in av.detail
    loaded = tiny_spec.loader(weights=str(path), device="cpu")
    assert loaded.info["weights_from"] == "local"
    same_vectors(loaded, make_tiny_clip_embedder(seed=3))
    other = make_tiny_clip_embedder(seed=4).embed_texts(["un chat"])
    assert not np.allclose(loaded.embed_texts(["un chat"]), other)


def test_local_weights_env_var_and_folder(tmp_path, tiny_spec, monkeypatch):
    path = save_tiny_clip_weights(tmp_path / "dl" / "open_clip_pytorch_model.bin", seed=5)
    monkeypatch.setenv("VITRINE_WEIGHTS_CLIP_TINY_TEST", str(path))
    assert tiny_spec.availability().where == "local"
    same_vectors(tiny_spec.loader(device="cpu"), make_tiny_clip_embedder(seed=5))
    # a folder holding the checkpoint works too
    monkeypatch.setenv("VITRINE_WEIGHTS_CLIP_TINY_TEST", str(path.parent))
    same_vectors(tiny_spec.loader(), make_tiny_clip_embedder(seed=5))


def test_missing_local_path(tmp_path, monkeypatch):
    spec = clip.make_spec(clip.CLIP_VIT_B_32)
    missing = tmp_path / "does-not-exist.bin"
    with pytest.raises(ModelError) as exc:
        spec.loader(weights=str(missing))
    assert str(missing) in exc.value.message
    av = spec.availability(weights=str(missing))
    assert not av.ok and str(missing) in av.detail
    monkeypatch.setenv("VITRINE_WEIGHTS_CLIP_VIT_B_32", str(missing))
    with pytest.raises(ModelError, match="VITRINE_WEIGHTS_CLIP_VIT_B_32"):
        spec.loader()


def test_bad_local_file_gives_model_error(tmp_path, tiny_spec):
    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError) as exc:
        tiny_spec.loader(weights=str(bad))
    assert str(bad) in exc.value.message and "could not load weights" in exc.value.message


# --------------------------------------------------------------------------------------------
# weights from the Hugging Face cache, offline


def test_cached_weights_offline(tmp_path, tiny_spec, clean_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    av = tiny_spec.availability()
    assert not av.ok and "hub not probed" in av.detail
    src = save_tiny_clip_weights(tmp_path / "w.bin", seed=7)
    populate_hf_cache(clean_env, "vitrine-test/tiny-clip", {"open_clip_pytorch_model.bin": src})
    for probe in (False, True):
        av = tiny_spec.availability(probe_hub=probe)
        assert av.ok and av.where == "cached", av
    loaded = tiny_spec.loader()
    assert loaded.info["weights_from"] == "cached"
    assert Path(loaded.info["weights"]).parent.parent.parent.name == "models--vitrine-test--tiny-clip"
    same_vectors(loaded, make_tiny_clip_embedder(seed=7))


def test_real_spec_sees_cached_file(clean_env, tmp_path, monkeypatch):
    """availability finds open_clip's own file names in the right repos (nothing is loaded)."""
    dummy = tmp_path / "dummy"
    dummy.write_bytes(b"x")
    spec = clip.make_spec(clip.CLIP_VIT_B_32)
    populate_hf_cache(clean_env, "timm/vit_base_patch32_clip_224.openai", {"open_clip_model.safetensors": dummy})
    av = spec.availability()
    assert av.ok and av.where == "cached" and "open_clip_model.safetensors" in av.detail
    monkeypatch.setenv("VITRINE_CLIP_PRETRAINED", "laion2b_s34b_b79k")
    av = spec.availability()
    assert not av.ok and "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in av.detail
    populate_hf_cache(clean_env, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", {"open_clip_pytorch_model.bin": dummy})
    assert spec.availability().where == "cached"
    assert not spec.availability(pretrained="openai_nope").ok


def test_unknown_pretrained_tag():
    with pytest.raises(ModelError) as exc:
        clip.resolve_pretrained(clip.CLIP_VIT_B_32, "nonsense")
    assert "laion2b_s34b_b79k" in exc.value.hint and "openai" in exc.value.hint
    assert clip.resolve_pretrained(clip.CLIP_VIT_B_32, "laion2b-s34b-b79k") == "laion2b_s34b_b79k"
    assert clip.hub_location(clip.CLIP_VIT_B_32, "openai") == (
        "timm/vit_base_patch32_clip_224.openai",
        ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
    )


# --------------------------------------------------------------------------------------------
# hub unreachable


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "VITRINE_OFFLINE", "closed-port"])
def test_unreachable_hub_clear_error(how, monkeypatch):
    import socket

    monkeypatch.delenv("VITRINE_OFFLINE")
    if how == "closed-port":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    else:
        monkeypatch.setenv(how, "1")
    spec = clip.make_spec(clip.CLIP_VIT_B_32)
    t = time.monotonic()
    av = spec.availability(probe_hub=True)
    assert time.monotonic() - t < 3
    assert not av.ok and av.where == "unavailable"
    assert "VITRINE_WEIGHTS_CLIP_VIT_B_32" in av.detail
    with pytest.raises(ModelError) as exc:
        spec.loader()
    assert time.monotonic() - t < 3
    text = str(exc.value)
    assert "offline-concepts" in text
    assert "VITRINE_WEIGHTS_CLIP_VIT_B_32" in text
    assert "--weights" in text


def test_not_probed_touches_no_network(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("network probed")

    monkeypatch.delenv("VITRINE_OFFLINE")
    monkeypatch.setattr(W, "_probe", boom)
    for variant in (clip.CLIP_VIT_B_32, clip.CLIP_MULTILINGUAL):
        av = clip.make_spec(variant).availability()
        assert not av.ok and "hub not probed" in av.detail


# --------------------------------------------------------------------------------------------
# multilingual: weights + text tower config + tokenizer


def test_multilingual_card_and_availability():
    spec = clip.make_spec(clip.CLIP_MULTILINGUAL)
    assert "fr" in spec.card.languages
    assert "tokenizer" in spec.card.notes and "xlm-roberta-base" in spec.card.notes
    av = spec.availability()
    assert not av.ok and "tokenizer" in av.detail
    assert clip.hub_location(clip.CLIP_MULTILINGUAL, "laion5b_s13b_b90k")[0] == (
        "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k"
    )


@pytest.fixture
def tiny_ml(tmp_path):
    variant = tiny_multilingual_variant()
    spec = clip.register_variant(variant, replace=True)
    text_dir = tiny_clip.write_tiny_xlmr(tmp_path / "xlmr")
    model, preprocess, tok = tiny_clip.build_tiny_multilingual(text_dir, seed=11)
    weights = tmp_path / "ml.bin"
    import torch

    torch.save(model.state_dict(), weights)
    ref = clip.OpenClipEmbedder.from_open_clip("ref", model, preprocess, tok, device="cpu")
    yield spec, variant, text_dir, weights, ref
    registry.unregister(variant.name)
    clip.VARIANTS.pop(variant.name, None)


def test_multilingual_needs_tokenizer_files(tiny_ml, clean_env, monkeypatch):
    spec, variant, text_dir, weights, ref = tiny_ml
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    populate_hf_cache(clean_env, "vitrine-test/tiny-ml-clip", {"open_clip_pytorch_model.bin": weights})
    # weights cached, tokenizer not: not available, and the error says what is missing
    av = spec.availability(probe_hub=True)
    assert not av.ok and "tokenizer" in av.detail and "VITRINE_WEIGHTS_CLIP_TINY_ML_TEST_TEXT" in av.detail
    with pytest.raises(ModelError) as exc:
        spec.loader()
    assert "tokenizer" in exc.value.message and "VITRINE_WEIGHTS_CLIP_TINY_ML_TEST_TEXT" in exc.value.hint
    # tokenizer + config cached too: available, loads offline, French and English queries work
    populate_hf_cache(
        clean_env,
        "vitrine-test/tiny-xlmr",
        {"config.json": text_dir / "config.json", "tokenizer.json": text_dir / "tokenizer.json"},
    )
    av = spec.availability()
    assert av.ok and av.where == "cached" and "tokenizer" in av.detail
    loaded = spec.loader()
    texts = ["un chat rouge", "a red cat"]
    v = loaded.embed_texts(texts)
    assert_unit(v, 2, tiny_clip.TINY_DIM)
    np.testing.assert_allclose(v, ref.embed_texts(texts), atol=1e-5)
    same_vectors(loaded, ref)


def test_multilingual_text_folder_override(tiny_ml, monkeypatch, tmp_path):
    spec, variant, text_dir, weights, ref = tiny_ml
    monkeypatch.setenv("VITRINE_WEIGHTS_CLIP_TINY_ML_TEST", str(weights))
    monkeypatch.setenv("VITRINE_WEIGHTS_CLIP_TINY_ML_TEST_TEXT", str(text_dir))
    av = spec.availability()
    assert av.ok and av.where == "local"
    same_vectors(spec.loader(), ref)
    monkeypatch.setenv("VITRINE_WEIGHTS_CLIP_TINY_ML_TEST_TEXT", str(tmp_path))  # lacks the files
    assert not spec.availability().ok
    with pytest.raises(ModelError, match="config.json"):
        spec.loader()


# --------------------------------------------------------------------------------------------
# registry


def test_registered_specs():
    # registry.get also imports the other built-in models; fall back to the raw table without them
    have_builtins = importlib.util.find_spec("vitrine.models.embedders.offline_concepts") is not None
    for name in ("clip-vit-b-32", "clip-multilingual"):
        spec = registry.get(name) if have_builtins else registry._REGISTRY[name]
        assert spec.task == "embedding" and spec.source == "hub"
        assert "MIT" in spec.card.license and spec.card.summary and spec.card.reference
        d = spec.describe()
        assert d["available"] is False and d["availability"] == "unavailable"


# --------------------------------------------------------------------------------------------
# download from a (fake, local) hub


def test_download_when_hub_reachable(tmp_path, tiny_spec, monkeypatch):
    monkeypatch.delenv("VITRINE_OFFLINE")
    src = save_tiny_clip_weights(tmp_path / "w.bin", seed=9)
    with tiny_clip.FakeHub({"vitrine-test/tiny-clip": {"open_clip_pytorch_model.bin": src.read_bytes()}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        assert not tiny_spec.availability().ok  # not probed
        av = tiny_spec.availability(probe_hub=True)
        assert av.ok and av.where == "downloadable" and hub.endpoint in av.detail
        loaded = tiny_spec.loader()
        # open_clip's order: safetensors first (404 here), then the .bin
        gets = [p for m, p in hub.requests if m == "GET"]
        assert gets == ["/vitrine-test/tiny-clip/resolve/main/open_clip_pytorch_model.bin"]
    assert loaded.info["weights_from"] == "downloaded"
    same_vectors(loaded, make_tiny_clip_embedder(seed=9))
    # now cached: available without the hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert tiny_spec.availability().where == "cached"
    assert tiny_spec.loader().info["weights_from"] == "cached"


def test_multilingual_downloads_tokenizer_too(tiny_ml, monkeypatch):
    spec, variant, text_dir, weights, ref = tiny_ml
    monkeypatch.delenv("VITRINE_OFFLINE")
    repos = {
        "vitrine-test/tiny-ml-clip": {"open_clip_pytorch_model.bin": weights.read_bytes()},
        "vitrine-test/tiny-xlmr": {f: (text_dir / f).read_bytes() for f in ("config.json", "tokenizer.json")},
    }
    with tiny_clip.FakeHub(repos) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        av = spec.availability(probe_hub=True)
        assert av.ok and av.where == "downloadable" and "tokenizer" in av.detail
        loaded = spec.loader()
    same_vectors(loaded, ref)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert spec.availability().where == "cached"
