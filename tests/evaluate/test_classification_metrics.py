"""Classification metrics against values computed by hand, the report files, speed."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest

from vitrine.evaluate.classification import classification_report, measure_speed, write_report

CLASSES = ["cat", "dog", "fox"]
# true labels and probabilities; predictions (argmax) are 0, 1, 1, 0, 2, 1
Y_TRUE = [0, 0, 1, 1, 2, 2]
PROBS = np.array(
    [
        [0.70, 0.20, 0.10],  # cat -> cat        top-2 {cat, dog}: hit
        [0.20, 0.50, 0.30],  # cat -> dog        top-2 {dog, fox}: miss
        [0.10, 0.80, 0.10],  # dog -> dog        hit
        [0.50, 0.30, 0.20],  # dog -> cat        top-2 {cat, dog}: hit
        [0.10, 0.20, 0.70],  # fox -> fox        hit
        [0.20, 0.45, 0.35],  # fox -> dog        top-2 {dog, fox}: hit
    ]
)


def test_metrics_match_hand_computed_values():
    r = classification_report(Y_TRUE, PROBS, CLASSES, ks=(1, 2, 3, 5))
    assert r["n"] == 6 and r["classes"] == CLASSES
    assert r["accuracy"] == pytest.approx(3 / 6)
    # rows: true class, columns: predicted class
    assert r["confusion_matrix"] == [[1, 1, 0], [1, 1, 0], [0, 1, 1]]
    rows = {row["class"]: row for row in r["per_class"]}
    # cat: 1 of 2 predicted cats is right, 1 of 2 cats found
    assert (rows["cat"]["precision"], rows["cat"]["recall"], rows["cat"]["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    # dog: 1 of 3 predicted dogs is right, 1 of 2 dogs found; F1 = 2 * (1/3 * 1/2) / (1/3 + 1/2) = 0.4
    assert (rows["dog"]["precision"], rows["dog"]["recall"], rows["dog"]["f1"]) == pytest.approx((1 / 3, 0.5, 0.4))
    # fox: the one predicted fox is right, 1 of 2 foxes found; F1 = 2/3
    assert (rows["fox"]["precision"], rows["fox"]["recall"], rows["fox"]["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert [rows[c]["support"] for c in CLASSES] == [2, 2, 2]
    assert [rows[c]["predicted"] for c in CLASSES] == [2, 3, 1]
    assert r["macro_precision"] == pytest.approx((0.5 + 1 / 3 + 1.0) / 3)
    assert r["macro_recall"] == pytest.approx(0.5)
    assert r["macro_f1"] == pytest.approx((0.5 + 0.4 + 2 / 3) / 3)
    assert r["weighted_f1"] == pytest.approx(r["macro_f1"])  # equal supports
    # top-k: 5 of 6 have the true class in their two most probable; k >= number of classes skipped
    assert r["top_k"] == {"top_1": pytest.approx(0.5), "top_2": pytest.approx(5 / 6)}


def test_weighted_average_and_a_class_that_never_occurs():
    classes = ["a", "b", "c", "d"]
    y = [0, 0, 0, 1]
    probs = np.array([[0.9, 0.1, 0, 0], [0.9, 0.1, 0, 0], [0.1, 0.9, 0, 0], [0.2, 0.8, 0, 0]])
    r = classification_report(y, probs, classes, ks=(1, 3))
    rows = {row["class"]: row for row in r["per_class"]}
    assert rows["c"] == {"class": "c", "precision": 0, "recall": 0, "f1": 0, "support": 0, "predicted": 0}
    # macro over the classes present (a, b): a: P=1, R=2/3, F1=0.8; b: P=1/2, R=1, F1=2/3
    assert r["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert r["weighted_f1"] == pytest.approx((3 * 0.8 + 1 * 2 / 3) / 4)
    assert r["top_k"]["top_3"] == pytest.approx(1.0)


def test_two_classes_and_empty_input():
    r = classification_report([0, 1, 1], np.array([[0.6, 0.4], [0.3, 0.7], [0.8, 0.2]]), ["no", "yes"])
    assert r["accuracy"] == pytest.approx(2 / 3) and r["top_k"] == {"top_1": pytest.approx(2 / 3)}
    empty = classification_report([], np.zeros((0, 3)), CLASSES)
    assert empty["n"] == 0 and empty["accuracy"] is None and empty["confusion_matrix"] == [[0] * 3] * 3


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        classification_report([0, 1], np.zeros((2, 2)), CLASSES)
    with pytest.raises(ValueError, match="class indexes"):
        classification_report([0, 7], np.zeros((2, 3)), CLASSES)


def test_report_files_carry_class_names(tmp_path):
    report = {"split": "test", **classification_report(Y_TRUE, PROBS, CLASSES, ks=(1, 2))}
    written = write_report(tmp_path, report)
    assert {p.name for p in written} == {
        "metrics.json",
        "per_class.csv",
        "per_class.json",
        "confusion.csv",
        "confusion.svg",
    }
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(0.5) and metrics["split"] == "test"
    with open(tmp_path / "per_class.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["class"] for r in rows] == CLASSES
    assert list(rows[0]) == ["class", "precision", "recall", "f1", "support", "predicted"]
    assert float(rows[1]["f1"]) == pytest.approx(0.4) and rows[1]["support"] == "2"
    per_class_json = json.loads((tmp_path / "per_class.json").read_text())
    assert [r["class"] for r in per_class_json] == CLASSES
    with open(tmp_path / "confusion.csv", newline="") as fh:
        table = list(csv.reader(fh))
    assert table == [
        ["true \\ predicted", "cat", "dog", "fox"],
        ["cat", "1", "1", "0"],
        ["dog", "1", "1", "0"],
        ["fox", "0", "1", "1"],
    ]
    svg = (tmp_path / "confusion.svg").read_text()
    assert svg.startswith("<svg") and "fox" in svg and "test split" in svg
    assert not list(tmp_path.glob(".*tmp"))


class _SleepyClassifier:
    classes = CLASSES
    device = "cpu"

    def __init__(self):
        self.calls = 0

    def predict_proba(self, images):
        self.calls += 1
        time.sleep(0.001 * len(images))
        return np.full((len(images), 3), 1 / 3)


def test_measure_speed_reports_positive_numbers():
    clf = _SleepyClassifier()
    speed = measure_speed(clf, list(range(10)), batch_size=4, warmup=1, min_seconds=0.0)
    assert speed["ms_per_image"] >= 1.0 and speed["images_per_second"] > 0
    assert speed["ms_per_image"] == pytest.approx(1000 / speed["images_per_second"])
    assert speed["batch_size"] == 4 and speed["device"] == "cpu" and speed["images"] == 10
    assert clf.calls == 2 + 3  # warm-up: one full batch and one of the last batch's size; then 3 batches
    with pytest.raises(ValueError):
        measure_speed(clf, [])
