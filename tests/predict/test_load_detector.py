"""load_detector / list_detectors: registry names, fine-tuned runs in a workspace, and the errors."""

from __future__ import annotations

import sys
import types

import pytest

from vitrine.core.errors import ModelError, NotFound
from vitrine.core.workspace import Workspace
from vitrine.models.detectors.ssd import OpenCVSSDDetector
from vitrine.predict.detector import list_detectors, load_detector
from vitrine.runs import Run


def make_run(ws: Workspace, run_id: str, kind: str = "finetune", **fields) -> Run:
    run = Run.create(ws, kind, "scenes", "maskrcnn-small", {}, run_id=run_id)
    run.update(**fields)
    return run


def test_registry_name_is_loaded_once():
    det = load_detector("ssd-mobilenet-v2-coco")
    assert isinstance(det, OpenCVSSDDetector) and det.task == "detection" and det.classes[17] == "cat"
    assert load_detector(" ssd-mobilenet-v2-coco ") is det  # cached per process


def test_unknown_and_wrong_kinds(tmp_path):
    ws = Workspace(tmp_path)
    with pytest.raises(ModelError, match="unknown detection model 'nope'") as err:
        load_detector("nope", workspace=ws)
    assert "ssd-mobilenet-v2-coco" in err.value.hint
    with pytest.raises(ModelError, match="embedding model, not a detector"):
        load_detector("offline-concepts")
    with pytest.raises(ModelError, match="unknown detection model"):
        load_detector("../etc/passwd", workspace=ws)
    with pytest.raises(ModelError, match="no detection model"):
        load_detector("")
    make_run(ws, "a-classifier", state="done")
    with pytest.raises(ModelError, match="not a detector"):
        load_detector("a-classifier", workspace=ws)


def test_runs_resolve_through_the_training_module(tmp_path, monkeypatch):
    ws = Workspace(tmp_path)
    make_run(ws, "det-run", task="segmentation", state="done", classes=["shirt", "shoe"], metrics={"map50": 0.7})
    make_run(ws, "running-run", task="detection", state="running")
    make_run(ws, "clf-run", state="done")

    # no vitrine.predict.run_detector: a clear NotFound (importing a None module raises ImportError)
    monkeypatch.setitem(sys.modules, "vitrine.predict.run_detector", None)
    with pytest.raises(NotFound, match="cannot load fine-tuned detectors"):
        load_detector("det-run", workspace=ws)

    calls = []
    fake = types.ModuleType("vitrine.predict.run_detector")

    def load_run_detector(run, device=None):
        calls.append((run.id, device))
        return "the detector"

    fake.load_run_detector = load_run_detector
    monkeypatch.setitem(sys.modules, "vitrine.predict.run_detector", fake)
    assert load_detector("det-run", device="cpu", workspace=str(tmp_path)) == "the detector"
    assert calls == [("det-run", "cpu")]

    rows = {r["name"]: r for r in list_detectors(workspace=ws)}
    assert "ssd-mobilenet-v2-coco" in rows and rows["ssd-mobilenet-v2-coco"]["kind"] == "registry"
    assert rows["det-run"]["kind"] == "run" and rows["det-run"]["task"] == "segmentation"
    assert rows["det-run"]["available"] is True and rows["det-run"]["classes"] == ["shirt", "shoe"]
    assert rows["running-run"]["available"] is False
    assert "clf-run" not in rows
    assert list_detectors(workspace=tmp_path / "empty")  # registry rows even without runs
