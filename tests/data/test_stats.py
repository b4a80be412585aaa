"""Dataset statistics against numbers worked out by hand on a tiny dataset."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrine.data import ClassificationDataset, Sample, dataset_stats, import_dataset, sample_paths


def img(path: Path, size, value: int, fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path, fmt)
    return path


@pytest.fixture
def tiny(tmp_path) -> ClassificationDataset:
    """cat: 3 train + 1 test (a copy of a train image: leakage), dog: 1 train + 1 val (JPEG),
    plus one unreadable file."""
    root = tmp_path / "root"
    img(root / "train/cat/a.png", (10, 20), 1)
    img(root / "train/cat/b.png", (30, 10), 2)
    img(root / "train/cat/c.png", (20, 20), 3)
    (root / "test/cat").mkdir(parents=True)
    shutil.copyfile(root / "train/cat/a.png", root / "test/cat/a-copy.png")
    img(root / "train/dog/d.png", (20, 20), 4)
    img(root / "val/dog/e.jpg", (16, 8), 5, "JPEG")
    (root / "val/dog/broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    samples = [
        Sample("train/cat/a.png", "cat", "train"),
        Sample("train/cat/b.png", "cat", "train"),
        Sample("train/cat/c.png", "cat", "train"),
        Sample("test/cat/a-copy.png", "cat", "test"),
        Sample("train/dog/d.png", "dog", "train"),
        Sample("val/dog/e.jpg", "dog", "val"),
        Sample("val/dog/broken.png", "dog", "val"),
    ]
    return ClassificationDataset("tiny", root, samples)


def test_stats_by_hand(tiny):
    st = dataset_stats(tiny)
    assert st["total"] == 7 and st["classes"] == ["cat", "dog"]
    assert st["counts"] == {
        "train": {"cat": 3, "dog": 1},
        "val": {"cat": 0, "dog": 2},
        "test": {"cat": 1, "dog": 0},
    }
    assert st["per_class"] == {"cat": 4, "dog": 3}
    assert st["imbalance_ratio"] == pytest.approx(4 / 3, abs=1e-4)
    assert st["measured"] == 7 and st["sampled"] is False

    # the six readable images: widths 10 30 20 10 20 16, heights 20 10 20 20 20 8
    assert st["width"]["n"] == 6 and st["width"]["min"] == 10 and st["width"]["max"] == 30
    assert st["width"]["mean"] == pytest.approx(106 / 6, abs=1e-3)
    assert st["width"]["percentiles"]["p50"] == pytest.approx(18.0)
    assert st["height"]["min"] == 8 and st["height"]["max"] == 20
    assert st["aspect"]["min"] == 0.5 and st["aspect"]["max"] == 3
    assert sum(st["width"]["histogram"]["counts"]) == 6
    assert sorted(st["per_image"]["width"]) == [10, 10, 16, 20, 20, 30]
    sizes = sorted(os.path.getsize(tiny.path_of(s)) for s in tiny.samples)
    assert sorted(st["per_image"]["file_size"]) == sizes  # every existing file, the broken one too
    assert st["file_size"]["min"] == sizes[0] and st["file_size"]["max"] == sizes[-1]
    assert st["formats"] == {"PNG": 5, "JPEG": 1}

    dup = st["duplicates"]
    assert dup["n_groups"] == 1 and dup["n_images"] == 2 and dup["redundant"] == 1
    group = dup["groups"][0]
    assert group["paths"] == ["test/cat/a-copy.png", "train/cat/a.png"]
    assert group["splits"] == ["test", "train"] and group["labels"] == ["cat", "cat"]
    assert group["size"] == os.path.getsize(tiny.path_of(tiny.samples[0]))
    assert st["leakage"] == [group]  # spans train and test
    assert st["label_conflicts"] == []
    assert [u["path"] for u in st["unreadable"]] == ["val/dog/broken.png"]
    assert any(w.startswith("leakage") for w in st["warnings"])
    assert any("cannot be read" in w for w in st["warnings"])
    assert any("'dog' has no test image" in w for w in st["warnings"])
    json.dumps(st)  # plain JSON


def test_no_leakage_within_one_split_but_label_conflict(tmp_path):
    root = tmp_path / "r"
    img(root / "x.png", (4, 4), 9)
    shutil.copyfile(root / "x.png", root / "y.png")
    ds = ClassificationDataset("d", root, [Sample("x.png", "a", "train"), Sample("y.png", "b", "train")])
    st = dataset_stats(ds)
    assert st["duplicates"]["n_groups"] == 1 and st["leakage"] == []
    assert len(st["label_conflicts"]) == 1


def test_max_images_samples_a_subset(tiny):
    st = dataset_stats(tiny, max_images=3, seed=1)
    assert st["measured"] == 3 and st["sampled"] is True and st["total"] == 7
    assert st == {
        **dataset_stats(tiny, max_images=3, seed=1),
        "elapsed_s": st["elapsed_s"],
        "computed_at": st["computed_at"],
    }


def test_cache_in_the_dataset_folder(tiny, tmp_path):
    directory = import_dataset(tmp_path / "ws", tiny)
    first = dataset_stats(tiny, cache_dir=directory)
    assert first["cached"] is False and (directory / "stats.json").is_file()
    second = dataset_stats(tiny, cache_dir=directory)
    assert second["cached"] is True
    assert {k: v for k, v in second.items() if k != "cached"} == {k: v for k, v in first.items() if k != "cached"}
    assert dataset_stats(tiny, cache_dir=directory, refresh=True)["cached"] is False

    tiny.samples.pop()  # the dataset changes: the cache no longer applies
    import_dataset(tmp_path / "ws", tiny, overwrite=True)
    third = dataset_stats(tiny, cache_dir=directory)
    assert third["cached"] is False and third["total"] == 6 and third["unreadable"] == []


def test_sample_paths(tiny):
    picked = sample_paths(tiny, per_class=2, seed=0)
    assert set(picked) == {"cat", "dog"}
    assert len(picked["cat"]) == 2 and len(picked["dog"]) == 2
    assert all(p in {s.path for s in tiny.samples if s.label == c} for c, ps in picked.items() for p in ps)
    assert picked == sample_paths(tiny, per_class=2, seed=0)
    assert sample_paths(tiny, per_class=10)["cat"] == sorted(s.path for s in tiny.samples if s.label == "cat")
    assert sample_paths(tiny, per_class=5, split="val") == {"cat": [], "dog": ["val/dog/broken.png", "val/dog/e.jpg"]}
