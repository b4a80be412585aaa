"""Embedders by name: timm:<name> and hf:<repo or folder>, random-initialised tiny architectures
(speed only: these tests check shapes, spaces and errors, never quality)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrine.core.errors import ModelError, ModelUnavailable
from vitrine.models import registry
from vitrine.models.base import embed_images

sys.path.insert(0, str(Path(__file__).parent))
from tiny_hf import tiny_hf_clip, tiny_hf_dinov2  # noqa: E402

IMAGES = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("L", (20, 50), 90)]


def _unit(v: np.ndarray) -> bool:
    return np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)


def test_timm_random_backbone_pooled_features():
    model = registry.load("timm:test_vit?weights=random")
    assert model.spaces.dims == {"visual": 64} and model.spaces.text_space is None
    v = embed_images(model, IMAGES)["visual"]
    assert v.shape == (2, 64) and v.dtype == np.float32 and _unit(v)
    assert model.info["data_config"]["input_size"] == [3, 160, 160]  # timm's own data config
    with pytest.raises(ModelError, match="cannot embed text"):
        model.embed_texts(["a cat"])
    spec = registry.get("timm:test_vit?weights=random")
    assert spec.describe()["availability_detail"] == "random weights: speed only"
    assert registry.is_random(spec.name) and not registry.is_random("timm:test_vit")


def test_hf_random_clip_embeds_images_and_text(tmp_path):
    folder = tiny_hf_clip(tmp_path / "clip")
    model = registry.load(f"hf:{folder}?weights=random")
    assert model.spaces.dims == {"joint": 16} and model.spaces.text_space == "joint"
    v = embed_images(model, IMAGES)["joint"]
    t = model.embed_texts(["a photo of a red square", "dog"])
    assert v.shape == (2, 16) and t.shape == (2, 16) and _unit(v) and _unit(t)


def test_hf_without_tokenizer_is_image_only_and_says_so(tmp_path):
    folder = tiny_hf_clip(tmp_path / "clip", tokenizer=False)
    model = registry.load(f"hf:{folder}?weights=random")
    assert model.spaces.text_space is None and "no tokenizer" in model.spaces.extra["text"]
    with pytest.raises(ModelError, match="no tokenizer files"):
        model.embed_texts(["a cat"])


def test_hf_random_dinov2_pooled_output(tmp_path):
    model = registry.load(f"hf:{tiny_hf_dinov2(tmp_path / 'dino')}?weights=random")
    assert model.spaces.dims == {"visual": 32} and model.spaces.text_space is None
    assert embed_images(model, IMAGES)["visual"].shape == (2, 32)


def test_bad_names_and_offline_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelError, match="timm has no model 'no_such_net'"):
        registry.load("timm:no_such_net?weights=random")
    with pytest.raises(ModelError, match="cannot read the option 'weights=fast'"):
        registry.get("timm:test_vit?weights=fast")
    with pytest.raises(ModelError, match="no random-weights variant"):
        registry.get("offline-concepts?weights=random")
    with pytest.raises(ModelError, match="does not name a Hugging Face repo"):
        registry.load("hf:a/b/c")
    with pytest.raises(ModelError, match="has no config.json"):
        registry.load(f"hf:{tmp_path}?weights=random")
    for name, what in (("timm:resnet18", "timm/resnet18"), ("hf:facebook/dinov2-small", "facebook/dinov2-small")):
        with pytest.raises(ModelUnavailable) as info:
            registry.load(name)
        err = info.value
        assert err.status == 503 and name in err.message and what in err.message and "offline mode" in err.message
        assert f"{name}?weights=random" in err.hint
    av = registry.get("timm:resnet18").check(probe_hub=True)
    assert not av.ok and "offline mode" in av.detail  # the failed load is remembered


def test_weights_from_the_hub_cache_load_offline(tmp_path, monkeypatch, request):
    """Pretrained weights found in the Hugging Face cache (laid out as huggingface_hub does) load
    with the hub unreachable: a timm backbone's file, and a transformers CLIP checkpoint whose
    weights equal those saved (so the cache, not a random init, was read)."""
    import timm
    import torch
    from tiny_clip import populate_hf_cache
    from transformers import AutoModel, CLIPConfig

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("VITRINE_OFFLINE", "1")

    net = timm.create_model("test_vit", pretrained=False, num_classes=0)
    torch.save(net.state_dict(), tmp_path / "pytorch_model.bin")
    repo = timm.models.get_pretrained_cfg("test_vit").hf_hub_id
    populate_hf_cache(cache, repo, {"pytorch_model.bin": tmp_path / "pytorch_model.bin"})
    name = "timm:test_vit"
    registry.unregister(name)
    request.addfinalizer(lambda: [registry.unregister(n) for n in (name, "hf:someone/tiny-clip")])  # cached per process
    model = registry.load(name)
    assert model.info["weights_from"] == "cached"
    first = next(iter(net.state_dict()))
    assert torch.equal(model.model.state_dict()[first].cpu(), net.state_dict()[first])
    assert registry.get(name).check().where == "cached"

    folder = tiny_hf_clip(tmp_path / "clip")
    AutoModel.from_config(CLIPConfig.from_pretrained(folder)).save_pretrained(folder)
    files = {f.name: f for f in folder.iterdir() if f.is_file()}
    assert "model.safetensors" in files
    populate_hf_cache(cache, "someone/tiny-clip", files)
    model = registry.load("hf:someone/tiny-clip")
    assert model.info["weights_from"] == "cached" and model.spaces.text_space == "joint"
    saved = AutoModel.from_pretrained(folder).state_dict()
    key = "visual_projection.weight"
    assert torch.equal(model.model.state_dict()[key].cpu(), saved[key])
