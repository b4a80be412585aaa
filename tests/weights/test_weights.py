"""Weights resolution shared by hub models: local override, HF cache, hub probe, download errors."""

from __future__ import annotations

import http.server
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models" / "embedders"))

from tiny_clip import populate_hf_cache  # noqa: E402

from vitrine.core.errors import ModelError  # noqa: E402
from vitrine.weights import hf, local, network  # noqa: E402

_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "VITRINE_OFFLINE",
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "VITRINE_WEIGHTS_CLIP_VIT_B_32",
    "VITRINE_WEIGHTS_MY_MODEL_V2",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    network.clear_reachability_cache()
    yield
    network.clear_reachability_cache()


def closed_port_endpoint() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def test_env_var_name():
    assert local.weights_env_var("clip-vit-b-32") == "VITRINE_WEIGHTS_CLIP_VIT_B_32"
    assert local.weights_env_var("my.model v2") == "VITRINE_WEIGHTS_MY_MODEL_V2"


def test_local_override_argument_wins_over_env(tmp_path, monkeypatch):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    assert local.local_weights_override("clip-vit-b-32") is None
    monkeypatch.setenv("VITRINE_WEIGHTS_CLIP_VIT_B_32", str(b))
    assert local.local_weights_override("clip-vit-b-32") == b
    assert local.local_weights_override("clip-vit-b-32", weights=str(a)) == a
    assert local.local_weights_override("clip-vit-b-32", weights=a) == a


def test_local_override_missing_path(tmp_path, monkeypatch):
    missing = tmp_path / "nope" / "weights.bin"
    with pytest.raises(ModelError) as exc:
        local.local_weights_override("clip-vit-b-32", weights=str(missing))
    assert str(missing) in str(exc.value)
    assert exc.value.hint

    monkeypatch.setenv("VITRINE_WEIGHTS_CLIP_VIT_B_32", str(missing))
    with pytest.raises(ModelError) as exc:
        local.local_weights_override("clip-vit-b-32")
    assert str(missing) in exc.value.message
    assert "VITRINE_WEIGHTS_CLIP_VIT_B_32" in exc.value.message


def test_cache_dir_follows_env_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "x"))
    assert hf.hf_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hf.hf_cache_dir() == tmp_path / "home" / "hub"


def test_hf_cached_file(tmp_path, monkeypatch):
    src = tmp_path / "w.bin"
    src.write_bytes(b"weights")
    assert hf.hf_cached_file("org/repo", "w.bin") is None
    populate_hf_cache(tmp_path / "hf-cache", "org/repo", {"w.bin": src})
    found = hf.hf_cached_file("org/repo", "w.bin")
    assert found is not None and found.read_bytes() == b"weights"
    # candidates: the first cached one wins
    assert hf.hf_cached_file("org/repo", ["w.safetensors", "w.bin"]) == found
    assert hf.hf_cached_file("org/other", "w.bin") is None
    # through HF_HOME too
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hf.hf_cached_file("org/repo", "w.bin") is None
    populate_hf_cache(tmp_path / "home" / "hub", "org/repo", {"w.bin": src})
    assert hf.hf_cached_file("org/repo", "w.bin") is not None


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "VITRINE_OFFLINE"])
def test_hub_unreachable_offline_is_immediate(monkeypatch, var):
    monkeypatch.setenv(var, "1")
    t = time.monotonic()
    assert hf.hub_reachable() is False
    assert time.monotonic() - t < 0.1


def test_hub_unreachable_closed_port(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    t = time.monotonic()
    assert hf.hub_reachable(timeout=1.0) is False
    assert time.monotonic() - t < 1.5


def test_hub_probe_does_not_hang_on_silent_server(monkeypatch):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)  # accepts connections, never answers
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{srv.getsockname()[1]}")
        t = time.monotonic()
        assert hf.hub_reachable(timeout=0.5) is False
        assert time.monotonic() - t < 1.0
    finally:
        srv.close()


def test_hub_reachable_with_answering_server_and_cache(monkeypatch):
    calls = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802
            calls.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/")
        assert hf.hub_reachable() is True
        assert hf.hub_reachable() is True  # cached: no second request
        assert len(calls) == 1
        monkeypatch.setenv("VITRINE_OFFLINE", "1")  # offline wins over the cache
        assert hf.hub_reachable() is False
    finally:
        server.shutdown()
        server.server_close()


def test_download_offline_raises_with_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as exc:
        hf.download_hf_file("org/repo", "w.bin", model_name="clip-vit-b-32")
    text = str(exc.value)
    assert "offline-concepts" in text
    assert "VITRINE_WEIGHTS_CLIP_VIT_B_32" in text
    assert "--weights" in text


def test_download_unreachable_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    t = time.monotonic()
    with pytest.raises(ModelError) as exc:
        hf.download_hf_file("org/repo", "w.bin", model_name="clip-vit-b-32")
    assert time.monotonic() - t < 3
    assert "unreachable" in exc.value.message
    assert "offline-concepts" in exc.value.hint


def test_download_uses_cache_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = tmp_path / "w.bin"
    src.write_bytes(b"w")
    populate_hf_cache(tmp_path / "hf-cache", "org/repo", {"w.bin": src})
    assert hf.download_hf_file("org/repo", ["w.safetensors", "w.bin"]).read_bytes() == b"w"
