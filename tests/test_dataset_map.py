"""The 2-D map of a tiny classification dataset: computed from the embeddings cache, cached,
stale after a relabel or a file replaced in place, coloured by label, split and cluster; a view
without a hidden split maps none of its images; the ``map`` job's handler for a dataset."""

from __future__ import annotations

import dataclasses
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.dataset_map import (
    dataset_map,
    dataset_map_colors,
    dataset_map_points,
    dataset_map_state,
)
from vitrine.search import map2d
from vitrine.search.map2d import BadMapParameter, MapNotReady, MapParams
from vitrine.tasks.map2d import dataset_map_target, run_map_job

FAST = MapParams(n_neighbors=3, n_epochs=20)
SPLITS = ("train", "train", "val", "test")


def tiny(tmp_path) -> tuple[Workspace, ClassificationDataset]:
    """Eight small images of two colours (red, blue), each label in train, val and test."""
    ws = Workspace(tmp_path / "ws")
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    samples = []
    for label, rgb in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / label).mkdir(parents=True)
        for i, split in enumerate(SPLITS):
            px = np.clip(np.array(rgb) + rng.integers(-25, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / label / f"{i}.png")
            samples.append(Sample(f"{label}/{i}.png", label, split))
    ds = ClassificationDataset("tiny", root, samples)
    ds.save(ws.dataset_dir("tiny"))
    return ws, ds


@pytest.mark.slow  # UMAP's first compile in the process (about 10 s)
def test_cached_stale_after_a_relabel_or_a_new_file_and_coloured(tmp_path, monkeypatch):
    ws, ds = tiny(tmp_path)
    calls = []
    real = map2d.embed_2d
    monkeypatch.setattr(map2d, "embed_2d", lambda v, p: calls.append(len(v)) or real(v, p))
    state = dataset_map_state(ws, ds)
    assert state["model"] == "offline-concepts" and not state["ready"] and not state["stale"]
    with pytest.raises(MapNotReady, match="no map of 'offline-concepts' yet"):
        dataset_map_points(ws, ds)

    first = dataset_map(ws, ds, params=FAST)
    assert first["computed"] and first["points"] == first["total"] == 8 and calls == [8]
    assert (ws.dataset_dir("tiny") / "embeddings" / "offline-concepts-visual.npz").is_file()
    again = dataset_map(ws, ds, params=FAST)
    assert again["computed"] is False and calls == [8]  # cached: no UMAP
    assert dataset_map_state(ws, ds)["ready"]

    pts = dataset_map_points(ws, ds)
    assert pts["path"] == sorted(s.path for s in ds.samples) and len(pts["x"]) == len(pts["y"]) == 8
    assert pts["labels"] == ["blue", "red"] and pts["splits"] == ["test", "train", "val"]
    assert [pts["labels"][c] for c in pts["label"]] == ["blue"] * 4 + ["red"] * 4
    by_label = dataset_map_colors(ws, ds, "label")
    assert by_label["categories"] == ["blue", "red"] and by_label["counts"] == [4, 4]
    by_split = dataset_map_colors(ws, ds, "split")
    assert by_split["categories"] == ["test", "train", "val"] and by_split["counts"] == [2, 4, 2]
    assert dataset_map_colors(ws, ds, "cluster", clusters=2)["clusters"] == 2
    with pytest.raises(BadMapParameter, match="cannot colour by 'folder'"):
        dataset_map_colors(ws, ds, "folder")

    # a relabel rewrites samples.csv: the map is stale until computed again
    relabelled = dataclasses.replace(ds, samples=[dataclasses.replace(ds.samples[0], label="blue"), *ds.samples[1:]])
    relabelled.save(ws.dataset_dir("tiny"))
    assert dataset_map_state(ws, relabelled)["stale"]
    with pytest.raises(MapNotReady, match="before dataset 'tiny' last changed"):
        dataset_map_colors(ws, relabelled, "label")
    assert dataset_map(ws, relabelled, params=FAST)["computed"] and len(calls) == 2
    assert dataset_map_colors(ws, relabelled, "label")["counts"] == [5, 3]

    # a file replaced in place (same name, other pixels): stale again
    Image.new("RGB", (40, 40), (20, 200, 20)).save(ds.path_of(ds.samples[1]))
    assert dataset_map_state(ws, relabelled)["stale"]

    # the view without the test split: its own map, with no test image among the points
    view = dataclasses.replace(relabelled, samples=[s for s in relabelled.samples if s.split != "test"])
    assert not dataset_map_state(ws, view, hidden=("test",))["ready"]
    out = dataset_map(ws, view, params=FAST, hidden=("test",))
    assert out["computed"] and out["points"] == 6
    pts = dataset_map_points(ws, view, hidden=("test",))
    assert "test" not in pts["splits"] and not {"red/3.png", "blue/3.png"} & set(pts["path"])
    assert (ws.dataset_dir("tiny") / "maps" / "all").is_dir() and len(
        list((ws.dataset_dir("tiny") / "maps").iterdir())
    ) == 2


@pytest.mark.slow
def test_the_map_job_for_a_dataset_drops_the_hidden_splits(tmp_path, monkeypatch):
    ws, ds = tiny(tmp_path)
    monkeypatch.setenv("VITRINE_HOME", str(ws.root))
    progress = []
    ctx = SimpleNamespace(
        services=None, cancel_event=threading.Event(), progress=lambda stage, done=0, total=0: progress.append(stage)
    )
    params = {"dataset": "tiny", "hidden": ["test"], "model": None, "umap": {"n_neighbors": 3, "n_epochs": 20}}
    result = run_map_job(ctx, params)
    assert result["kind"] == "map" and result["dataset"] == "tiny" and result["points"] == 6
    assert "umap" in progress
    assert dataset_map_target("tiny", "offline-concepts") == "dataset:tiny/map/offline-concepts/all"
    assert dataset_map_target("tiny", "offline-concepts", ("test",)).startswith(
        "dataset:tiny/map/offline-concepts/without-"
    )
