"""The compare-embeddings job resumes: a model whose run finished is not scored again, a model
whose run was cut short is started over (its partial run removed)."""

from __future__ import annotations

from vitrine.core.workspace import Workspace
from vitrine.runs import Run
from vitrine.tasks import KINDS
from vitrine.tasks.compare_embeddings import COMPARE_EMBEDDINGS_JOB, _finished


def test_the_kind_is_registered():
    assert COMPARE_EMBEDDINGS_JOB in KINDS


def test_finished_runs_are_kept_and_partial_ones_removed(tmp_path):
    ws = Workspace(tmp_path)
    done = Run.create(ws, "embedding", "tiny", "timm:test_vit?weights=random", {"random_weights": True}, "r-done")
    done.update(state="done", metrics={"all": {"split": "all", "fingerprint": "f", "images": 8, "knn10_accuracy": 0.5}})
    cut = Run.create(ws, "embedding", "tiny", "offline-concepts", {}, "r-cut")
    cut.update(state="running")

    entry = _finished(ws, "r-done")
    assert entry == {
        "model": "timm:test_vit?weights=random",
        "run_id": "r-done",
        "random_weights": True,
        "scores": {"knn10_accuracy": 0.5},
        "images": 8,
        "resumed": True,
    }
    assert _finished(ws, "r-cut") is None and not (ws.run_dir("r-cut")).exists()
    assert _finished(ws, "never-started") is None
