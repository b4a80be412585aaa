"""Reproducible, stratified train/val/test splits."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from vitrine.core.errors import VitrineError
from vitrine.data import ClassificationDataset, Sample, assign_splits
from vitrine.data.split import split_notes

SIZES = {"a": 100, "b": 60, "c": 40, "d": 20}  # 220 samples, imbalanced


def make(sizes=SIZES, split: str = "") -> ClassificationDataset:
    samples = [Sample(f"{label}/{i:03d}.png", label, split) for label, n in sizes.items() for i in range(n)]
    return ClassificationDataset("d", "/nowhere", samples)


def mapping(ds: ClassificationDataset) -> dict[str, str]:
    return {s.path: s.split for s in ds.samples}


def test_same_seed_same_split_whatever_the_order():
    ds = make()
    first = assign_splits(ds, seed=7)
    shuffled = make()
    random.Random(3).shuffle(shuffled.samples)
    second = assign_splits(shuffled, seed=7)
    assert mapping(first) == mapping(second)
    assert [s.path for s in second.samples] == [s.path for s in shuffled.samples]  # order kept
    assert mapping(assign_splits(ds, seed=8)) != mapping(first)
    assert all(s.split == "" for s in ds.samples)  # the input is not modified
    assert first.source["split"]["seed"] == 7 and first.source["split"]["counts"] == {
        "train": 176,
        "val": 22,
        "test": 22,
    }


def test_stratified_proportions():
    ds = assign_splits(make(), val=0.1, test=0.2, seed=0)
    counts = ds.counts()
    assert sum(counts["test"].values()) == 44 and sum(counts["val"].values()) == 22
    for label, n in SIZES.items():
        assert abs(counts["test"][label] - 0.2 * n) <= 1, (label, counts)
        assert abs(counts["val"][label] - 0.1 * n) <= 1, (label, counts)
        assert counts["train"][label] + counts["val"][label] + counts["test"][label] == n
    assert not split_notes(ds)


def test_keep_existing_split_and_carve_val_from_train():
    ds = make({"a": 50, "b": 50}, split="train")
    for i, s in enumerate(ds.samples):
        if i % 5 == 0:
            ds.samples[i] = Sample(s.path, s.label, "test")
    given_test = {s.path for s in ds.samples if s.split == "test"}
    out = assign_splits(ds, val=0.1, test=0.1, seed=0)
    assert {s.path for s in out.samples if s.split == "test"} == given_test  # kept as given
    counts = Counter(s.split for s in out.samples)
    assert counts == {"train": 72, "val": 8, "test": 20}  # val: 10% of the 80 given train samples
    notes = split_notes(out)
    assert any("kept the given split" in n for n in notes) and any("carved from the train" in n for n in notes)

    resplit = assign_splits(ds, val=0.1, test=0.1, seed=0, keep_existing=False)
    assert Counter(s.split for s in resplit.samples) == {"train": 80, "val": 10, "test": 10}
    assert {s.path for s in resplit.samples if s.split == "test"} != given_test

    no_val = assign_splits(ds, val=0.0, test=0.1, seed=0)  # nothing to carve
    assert Counter(s.split for s in no_val.samples) == {"train": 80, "test": 20}


def test_mixed_given_and_unassigned():
    ds = make({"a": 30, "b": 30})
    ds.samples[:10] = [Sample(s.path, s.label, "test") for s in ds.samples[:10]]
    out = assign_splits(ds, val=0.1, test=0.1, seed=1)
    assert all(s.split == "test" for s in out.samples[:10])
    assert all(s.split for s in out.samples)
    assert Counter(s.split for s in out.samples[10:]) == {"train": 40, "val": 5, "test": 5}


def test_too_small_for_stratification_falls_back_with_a_note():
    ds = make({"a": 10, "b": 10, "lonely": 1})
    out = assign_splits(ds, val=0.1, test=0.1, seed=0)
    assert all(s.split for s in out.samples)
    assert any("single sample" in n for n in split_notes(out))

    tiny = make({"a": 2, "b": 2, "c": 2, "d": 2, "e": 2})  # 10 samples, 5 classes: 1 test image
    out = assign_splits(tiny, val=0.1, test=0.1, seed=0)
    assert Counter(s.split for s in out.samples) == {"train": 8, "val": 1, "test": 1}
    assert any("cannot stratify" in n for n in split_notes(out))

    three = make({"a": 3})
    out = assign_splits(three, val=0.1, test=0.1, seed=0)
    assert Counter(s.split for s in out.samples) == {"train": 3}
    assert any("rounds to none" in n for n in split_notes(out))


def test_invalid_fractions():
    with pytest.raises(VitrineError):
        assign_splits(make(), val=0.6, test=0.5)
    with pytest.raises(VitrineError):
        assign_splits(make(), val=-0.1)
    bad = make({"a": 3}, split="holdout")
    with pytest.raises(VitrineError, match="unknown split"):
        assign_splits(bad)
