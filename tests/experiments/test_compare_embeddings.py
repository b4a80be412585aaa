"""compare-embeddings on a tiny dataset with tiny random-weight models: the code paths, the runs on
the board and the errors. Random weights test plumbing and speed, never quality."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrine.core.errors import ModelError, ModelUnavailable, VitrineError
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.experiments.embeddings import (
    compare_embeddings,
    dataset_target,
    parse_models,
    probe_accuracy,
    project_target,
)
from vitrine.runs import list_runs
from vitrine.runs.leaderboard import board

sys.path.insert(0, str(Path(__file__).parents[1] / "models" / "embedders"))
from tiny_hf import tiny_hf_clip  # noqa: E402

TINY = "timm:test_vit?weights=random"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 210)}


def make_dataset(tmp_path, splits=("train", "train", "val", "test"), name="tiny") -> ClassificationDataset:
    root = tmp_path / f"{name}-images"
    rng = np.random.default_rng(0)
    samples = []
    for label, colour in COLOURS.items():
        for i, split in enumerate(splits):
            rel = f"{label}/{i}.png"
            (root / label).mkdir(parents=True, exist_ok=True)
            pixels = np.clip(np.array(colour) + rng.integers(-20, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / rel)
            samples.append(Sample(rel, label, split))
    ds = ClassificationDataset(name=name, root=root, samples=samples, source={"kind": "test"})
    ds.save(Workspace(tmp_path / "ws").dataset_dir(name))
    return ds


def test_parse_models_refuses_bad_names_before_any_work():
    assert parse_models(" timm:test_vit?weights=random, timm:test_vit?weights=random ,") == [TINY]
    with pytest.raises(ModelError, match="unknown model 'no-such'"):
        parse_models("offline-concepts,no-such")
    with pytest.raises(VitrineError, match="at least one"):
        parse_models(" , ")
    with pytest.raises(ModelError, match="not an embedding model"):
        parse_models("efficientnet-b0")  # a fine-tuning backbone of the registry


def test_probe_accuracy_splits():
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8, dtype=np.float32) * 5
    labels = np.repeat(np.arange(3), 10)
    vectors = centres[labels] + rng.normal(0, 0.1, (30, 8)).astype(np.float32)
    splits = ["train"] * 6 + ["val"] * 4
    acc, on = probe_accuracy(vectors, labels, splits * 3)
    assert (acc, on) == (1.0, "val")
    acc, on = probe_accuracy(vectors, labels, [""] * 30)  # no splits: a seeded 80/20 split
    assert acc == 1.0 and on.startswith("20%")
    assert probe_accuracy(vectors[:10], labels[:10], ["train"] * 5 + ["val"] * 5)[0] is None  # one class
    # 4 images of 2 classes, no val or test: too few for a stratified 80/20 split, a plain one instead
    few = [0, 1, 10, 11]
    acc, on = probe_accuracy(vectors[few], labels[few], ["train"] * 4)
    assert acc in (0.0, 1.0) and on.startswith("20%")


def test_compare_records_embedding_runs_on_the_board(tmp_path):
    ds = make_dataset(tmp_path)
    ws = Workspace(tmp_path / "ws")
    target = dataset_target(ws, ds)
    seen = []
    result = compare_embeddings(ws, target, [TINY], k=3, progress=lambda *a: seen.append(a[0]))
    (entry,) = result["models"]
    assert result["images"] == 12 and result["classes"] == 3
    assert entry["random_weights"] and entry["note"] == "random weights: speed only"
    s = entry["scores"]
    for key in ("knn1_accuracy", "knn10_accuracy", "map_at_k", "probe_accuracy"):
        assert 0.0 <= s[key] <= 1.0, key
    assert s["zero_shot_accuracy"] is None and s["text_query_ms"] is None  # image-only backbone
    assert s["dim"] == 64 and s["bytes_per_vector"] == 4 * 64 + 8
    assert s["images_per_second"] > 0 and entry["probe_scored_on"] == "val"
    assert any(stage.startswith(TINY) for stage in seen)

    (run,) = list_runs(ws)
    assert run.kind == "embedding" and run.record["state"] == "done"
    assert run.record["config"]["random_weights"] is True and run.record["note"] == "random weights: speed only"
    b = board(list_runs(ws), "tiny", task="embedding")
    (group,) = b["groups"]
    assert group["primary_metric"] == "knn10_accuracy"
    (row,) = group["rows"]
    assert row["primary"] == pytest.approx(s["knn10_accuracy"]) and row["random_weights"] is True
    assert row["latency_ms"] > 0 and row["images_per_second"] > 0 and row["rank"] == 1


def test_hidden_splits_are_left_out(tmp_path):
    ds = make_dataset(tmp_path)
    ws = Workspace(tmp_path / "ws")
    target = dataset_target(ws, ds, exclude_splits=["test"])
    result = compare_embeddings(ws, target, [TINY], k=3, record=False)
    assert result["images"] == 9 and result["hidden_splits_left_out"] == ["test"]
    assert list_runs(ws) == []


def test_limit_and_bad_input(tmp_path):
    ds = make_dataset(tmp_path)
    ws = Workspace(tmp_path / "ws")
    target = dataset_target(ws, ds)
    assert compare_embeddings(ws, target, [TINY], k=2, limit=6, record=False)["images"] == 6
    with pytest.raises(VitrineError, match="k must be"):
        compare_embeddings(ws, target, [TINY], k=0)
    one = make_dataset(tmp_path, name="one")
    one.samples = [s for s in one.samples if s.label == "red"]
    with pytest.raises(VitrineError, match="at least 2 classes"):
        compare_embeddings(ws, dataset_target(ws, one), [TINY])


def test_offline_hub_is_a_503_naming_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    from vitrine.models import registry

    registry.unregister("timm:test_vit")  # a model loaded earlier in this process stays loaded
    ds = make_dataset(tmp_path)
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(ModelUnavailable, match="timm:test_vit") as info:
        compare_embeddings(ws, dataset_target(ws, ds), ["timm:test_vit"])
    assert info.value.status == 503 and "?weights=random" in info.value.hint


def test_a_project_labelled_by_folders_with_an_ontology(tmp_path):
    from vitrine.collection.layout import init_project

    paths = init_project(tmp_path / "proj", keywords={"red": "a red square", "green": "a green square"})
    for label, colour in list(COLOURS.items())[:2]:
        (paths.images_dir / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20 + i, 20), colour).save(paths.images_dir / label / f"{i}.png")
    Image.new("RGB", (20, 20)).save(paths.images_dir / "loose.png")  # no folder: no label
    target = project_target(paths.project_dir)
    assert target.kind == "project" and target.ontology_file is not None
    clip = f"hf:{tiny_hf_clip(tmp_path / 'clip')}?weights=random"
    result = compare_embeddings(tmp_path / "ws", target, [clip], k=2, record=False)
    (entry,) = result["models"]
    assert result["images"] == 6 and result["notes"] == ["1 image(s) without a folder label left out"]
    assert entry["zero_shot_prompts"] == "ontology"
    s = entry["scores"]
    assert 0 <= s["zero_shot_accuracy"] <= 1 and 0 <= s["keyword_map_at_k"] <= 1 and s["text_query_ms"] > 0


def test_a_model_scored_in_another_of_its_spaces(tmp_path):
    """``name#space``: here the tiny CLIP's only space named explicitly; an unknown space is refused."""
    ds = make_dataset(tmp_path)
    ws = Workspace(tmp_path / "ws")
    clip = f"hf:{tiny_hf_clip(tmp_path / 'clip')}?weights=random"
    result = compare_embeddings(ws, dataset_target(ws, ds), [f"{clip}#joint"], k=2)
    (entry,) = result["models"]
    assert entry["model"] == f"{clip}#joint" and entry["space"] == "joint"
    (row,) = board(list_runs(ws), "tiny", task="embedding")["groups"][0]["rows"]
    assert (row["arch"], row["size"]) == (f"{clip}#joint", "joint")
    with pytest.raises(ModelError, match="has no space 'nope'"):
        compare_embeddings(ws, dataset_target(ws, ds), [f"{clip}#nope"], record=False)
    with pytest.raises(ModelError, match="is not a space name"):
        parse_models("offline-concepts#a b")
