"""The one weights lookup: explicit path, env var, package, cache, download; one availability check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models" / "embedders"))

from tiny_clip import populate_hf_cache  # noqa: E402

from vitrine.core.errors import ModelError, ModelUnavailable  # noqa: E402
from vitrine.weights import network  # noqa: E402
from vitrine.weights.resolve import availability, resolve  # noqa: E402
from vitrine.weights.spec import Transforms, WeightsSpec  # noqa: E402

URL = "https://download.example.org/models/tiny_net-0123abcd.pth"
HINT = "use `tiny-offline` instead"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_HOME", "VITRINE_WEIGHTS_TINY_NET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VITRINE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    if "torch" in sys.modules:
        monkeypatch.setattr(sys.modules["torch"].hub, "get_dir", lambda: str(tmp_path / "torch" / "hub"))
    network.clear_reachability_cache()
    yield
    network.clear_reachability_cache()


def torch_spec(**kw) -> WeightsSpec:
    return WeightsSpec(name="tiny-net", source="hub", url=URL, offline_hint=HINT, **kw)


def test_spec_needs_one_hub_location_and_a_known_source():
    with pytest.raises(ValueError):
        WeightsSpec(name="x", source="hub")
    with pytest.raises(ValueError):
        WeightsSpec(name="x", source="hub", url=URL, hf_repo="org/repo")
    with pytest.raises(ValueError):
        WeightsSpec(name="x", source="somewhere")


def test_spec_carries_transforms_categories_and_numeric_metrics():
    spec = torch_spec(transforms=Transforms(size=256), categories=lambda: ["a", "b"], metrics={"imagenet_top1": 75.1})
    assert spec.data_config()["input_size"] == [3, 256, 256]
    assert spec.get_categories() == ["a", "b"]
    assert spec.metrics["imagenet_top1"] == pytest.approx(75.1)
    assert spec.what == f"weights for tiny-net ({URL})"


def test_explicit_path_then_env_var_win_over_everything(tmp_path, monkeypatch):
    a, b, packaged = tmp_path / "a.pth", tmp_path / "b.pth", tmp_path / "packaged.pth"
    for p in (a, b, packaged):
        p.write_bytes(b"w")
    spec = WeightsSpec(name="tiny-net", source="package", package="tiny-pkg", package_file=lambda: packaged)
    assert resolve(spec).where == "package" and resolve(spec).path == packaged
    monkeypatch.setenv("VITRINE_WEIGHTS_TINY_NET", str(b))
    assert resolve(spec) == resolve(spec, None)
    assert resolve(spec).path == b and resolve(spec).where == "local"
    assert resolve(spec, str(a)).path == a
    assert availability(spec, str(a)).where == "local"
    with pytest.raises(ModelError):
        resolve(spec, str(tmp_path / "missing.pth"))
    assert not availability(spec, str(tmp_path / "missing.pth")).ok


def test_package_not_installed():
    spec = WeightsSpec(name="tiny-net", source="package", package="tiny-pkg", package_file=lambda: None)
    with pytest.raises(ModelUnavailable) as err:
        resolve(spec)
    assert "pip install tiny-pkg" in err.value.hint
    av = availability(spec)
    assert not av.ok and av.detail == "pip install tiny-pkg"


def test_torch_hub_cache_then_offline_error_naming_the_alternative(tmp_path):
    spec = torch_spec()
    with pytest.raises(ModelUnavailable) as err:
        resolve(spec)
    assert "not in the torch hub cache" in err.value.message and "offline mode" in err.value.message
    assert err.value.hint == HINT
    av = availability(spec, probe_hub=True)
    assert not av.ok and "offline mode is on" in av.detail
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "tiny_net-0123abcd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"w")
    assert resolve(spec).path == cached and resolve(spec).where == "cached"
    assert availability(spec).where == "cached"


def test_hugging_face_cache_then_offline_error(tmp_path):
    spec = WeightsSpec(name="tiny-net", source="hub", hf_repo="org/tiny", files=("m.safetensors", "m.bin"))
    with pytest.raises(ModelError) as err:
        resolve(spec)
    assert "VITRINE_WEIGHTS_TINY_NET" in err.value.hint  # the default hint: local weights, offline model
    with pytest.raises(ModelError) as err:
        resolve(WeightsSpec(name="tiny-net", source="hub", hf_repo="org/tiny", files=("m.bin",), offline_hint=HINT))
    assert err.value.hint == HINT
    src = tmp_path / "m.bin"
    src.write_bytes(b"w")
    populate_hf_cache(tmp_path / "hf", "org/tiny", {"m.bin": src})
    assert resolve(spec).where == "cached" and resolve(spec).path.read_bytes() == b"w"
    assert availability(spec).where == "cached"


def test_availability_not_probed_touches_no_network(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("network probed")

    monkeypatch.delenv("VITRINE_OFFLINE")
    monkeypatch.setattr(network, "_probe", boom)
    for spec in (torch_spec(), WeightsSpec(name="tiny-net", source="hub", hf_repo="org/tiny", files=("m.bin",))):
        av = availability(spec)
        assert not av.ok and "hub not probed" in av.detail


def test_one_probe_per_url_cached(monkeypatch):
    calls = []

    def probe(url, timeout):
        calls.append(url)
        return True

    monkeypatch.delenv("VITRINE_OFFLINE")
    monkeypatch.setattr(network, "_probe", probe)
    assert availability(torch_spec(), probe_hub=True).where == "downloadable"
    assert availability(torch_spec(), probe_hub=True).where == "downloadable"
    assert network.reachable("https://huggingface.co") is True
    assert calls == [URL, "https://huggingface.co"]
