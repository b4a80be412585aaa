"""Run checkpoints: written atomically (a crash while saving keeps the previous one), read safely."""

from __future__ import annotations

import pytest
import torch

from vitrine.core.errors import VitrineError
from vitrine.runs.checkpoint import load_checkpoint, save_checkpoint


def test_checkpoint_write_is_atomic_when_the_process_dies_while_saving(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "epoch": 1})

    real_save = torch.save

    def crash_half_way(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 half a checkpoint")  # bytes hit the (temporary) file, then the crash
        raise OSError("simulated crash: disk full")

    monkeypatch.setattr(torch, "save", crash_half_way)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "epoch": 2})
    monkeypatch.setattr(torch, "save", real_save)

    state = load_checkpoint(path)  # the previous checkpoint, intact
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(VitrineError, match="cannot be read"):
        load_checkpoint(bad)
