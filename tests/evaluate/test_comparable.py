"""What a run records to be comparable (evaluate/comparable.py): the cost of each kind of
classifier, and the split record."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.data.fingerprint import classification_fingerprint
from vitrine.evaluate.comparable import classifier_cost, run_file, split_record


def tiny_net() -> torch.nn.Module:
    # 3*4*3*3 + 4 = 112 parameters; one 3x3 conv at 16 px: 2 * 108 * 16 * 16 = 55 296 FLOPs
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten())


def test_a_fine_tuned_network_costs_its_parameters_flops_and_checkpoint(tmp_path):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"x" * 1234)
    clf = SimpleNamespace(model=tiny_net(), image_size=16, checkpoint=checkpoint)
    cost = classifier_cost(clf)
    assert cost == {"parameters": 112, "gflops": round(55_296 / 1e9, 4), "input_size": 16, "weights_bytes": 1234}


def test_an_embedding_classifier_counts_its_image_network_and_its_linear_layer(tmp_path):
    x, y = np.random.default_rng(0).normal(size=(12, 5)), np.array([0, 1, 2] * 4)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(x, y)
    (tmp_path / "classifier.joblib").write_bytes(b"y" * 99)
    embedder = SimpleNamespace(classifier=tiny_net())  # as offline-concepts holds its network
    clf = SimpleNamespace(model=embedder, pipeline=pipeline)
    cost = classifier_cost(clf, run_file(tmp_path, "classifier.joblib", "classifier.npz"))
    assert cost["parameters"] == 112 + 3 * 5 + 3 and cost["input_size"] == 224 and cost["gflops"] > 0
    assert cost["weights_bytes"] == 99
    # an embedder without a torch module: nothing measured, nothing invented
    bare = classifier_cost(SimpleNamespace(model=SimpleNamespace()), None)
    assert bare == {"parameters": None, "gflops": None, "input_size": None, "weights_bytes": None}
    assert run_file(tmp_path, "classifier.npz") is None


def test_split_record(tmp_path):
    (tmp_path / "a.png").write_bytes(b"1")
    ds = ClassificationDataset("d", tmp_path, [Sample("a.png", "cat", "test"), Sample("b.png", "dog", "train")])
    assert split_record(ds, "test") == {"split": "test", "fingerprint": classification_fingerprint(ds, "test")}
    assert split_record(ds, "all")["fingerprint"] != split_record(ds, "test")["fingerprint"]
