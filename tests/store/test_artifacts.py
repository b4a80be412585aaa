"""Artifact storage through fsspec: local disk (atomic writes) and an object-store-like file
system (fsspec's memory://). S3 itself is not reachable from the test machines."""

from __future__ import annotations

import os
import uuid

import pytest

from vitrine.core.errors import NotFound, VitrineError
from vitrine.store.artifacts import ArtifactStore, export_tree


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(tmp_path / "artifacts")
    return ArtifactStore(f"memory://bucket-{uuid.uuid4().hex[:8]}/exports")


def test_put_read_list_exists(store):
    assert store.list() == [] and not store.exists("a/b.json")
    url = store.put_bytes("a/b.json", b'{"x": 1}')
    assert store.exists("a/b.json") and store.read_bytes("a/b.json") == b'{"x": 1}'
    assert url.endswith("a/b.json")
    store.put_bytes("a/b.json", b"replaced")
    assert store.read_bytes("a/b.json") == b"replaced"
    store.put_bytes("top.txt", b"t")
    store.put_bytes("a/c/d.bin", bytes(range(256)))
    assert store.list() == ["a/b.json", "a/c/d.bin", "top.txt"]
    assert store.list("a/c") == ["a/c/d.bin"]
    assert store.list("nothing/here") == []
    with store.open("a/c/d.bin") as fh:
        assert fh.read(3) == b"\x00\x01\x02"
    store.delete("top.txt")
    assert not store.exists("top.txt")


def test_bad_keys_and_missing_files(store, tmp_path):
    for bad in ("../escape", "/abs/path", "", "a/../../b"):
        with pytest.raises(VitrineError, match="invalid artifact key"):
            store.put_bytes(bad, b"x")
    with pytest.raises(NotFound, match="no artifact"):
        store.open("missing.json")
    with pytest.raises(NotFound):
        store.delete("missing.json")
    with pytest.raises(VitrineError, match="reading only"):
        store.open("x", "wb")
    with pytest.raises(NotFound, match="no file"):
        store.put_file("x", tmp_path / "not-there")


def test_local_writes_are_atomic(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path / "a")
    store.put_bytes("run/metrics.json", b"old")
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        store.put_bytes("run/metrics.json", b"new, never complete")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert store.read_bytes("run/metrics.json") == b"old"  # the old file stays whole
    assert sorted(p.name for p in (tmp_path / "a" / "run").iterdir()) == ["metrics.json"]  # no temporary left


def test_export_a_run_folder(store, tmp_path):
    from vitrine.core.workspace import Workspace
    from vitrine.runs import Run

    ws = Workspace(tmp_path / "ws")
    run = Run.create(ws, "linear-probe", "shapes", "offline-concepts", {"C": 1.0}, "run-1")
    run.update(state="done", metrics={"test": {"accuracy": 0.9}})
    (run.dir / "metrics.json").write_text('{"accuracy": 0.9}')
    run.checkpoints_dir.mkdir(parents=True)
    (run.checkpoints_dir / "last.pt").write_bytes(os.urandom(4096))
    (run.dir / "tb").mkdir()
    (run.dir / "tb" / "events.out").write_bytes(b"ev")
    (run.dir / ".run.json.1.2.tmp").write_text("half")  # a write under way is not exported

    keys = export_tree(run.dir, store, "exports/run-1")
    assert keys == [
        "exports/run-1/checkpoints/last.pt",
        "exports/run-1/metrics.json",
        "exports/run-1/run.json",
        "exports/run-1/tb/events.out",
    ]
    assert store.list("exports") == keys
    assert store.read_bytes("exports/run-1/checkpoints/last.pt") == (run.checkpoints_dir / "last.pt").read_bytes()
    assert b'"state": "done"' in store.read_bytes("exports/run-1/run.json")
    assert export_tree(run.dir, store, "light", skip=["checkpoints", "tb"]) == ["light/metrics.json", "light/run.json"]


def test_unusable_urls_are_clear_errors():
    with pytest.raises(VitrineError, match="cannot use"):
        ArtifactStore("nosuchproto://x/y")
    with pytest.raises(VitrineError, match="empty"):
        ArtifactStore("  ")


def test_s3_without_s3fs_says_what_to_install(monkeypatch):
    import sys

    import fsspec

    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if it were not installed (the tests install it)
    known = sys.modules["fsspec.registry"]._registry  # (fsspec.registry is the read-only view)
    for protocol in ("s3", "s3a"):
        monkeypatch.delitem(known, protocol, raising=False)  # nor already imported by another test
    assert fsspec  # imported for its registry module
    with pytest.raises(VitrineError) as caught:
        ArtifactStore("s3://bucket/prefix")
    assert "s3fs" in str(caught.value)
