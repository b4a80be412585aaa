"""Per-image predictions of an evaluated classifier (predictions.csv): written from probabilities,
read back, one confusion cell picked, sorted and paged; on a hand-made case with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vitrine.core.errors import NotFound, VitrineError
from vitrine.evaluate.predictions import FIELDS, cell, predictions_csv, read_predictions, write_predictions

CLASSES = ["cat", "dog", "owl", "fox"]
PATHS = ["b/1.png", "a/2.png", "c/3.png", "d/4.png"]
Y_TRUE = [0, 0, 1, 2]  # cat, cat, dog, owl
PROBS = np.array(
    [
        [0.70, 0.20, 0.05, 0.05],  # cat -> cat
        [0.10, 0.60, 0.25, 0.05],  # cat -> dog (p_true 0.10)
        [0.05, 0.15, 0.00, 0.80],  # dog -> fox
        [0.30, 0.55, 0.10, 0.05],  # owl -> dog (p_true 0.10)
    ]
)


def test_the_csv_has_true_predicted_and_the_top_three(tmp_path):
    text = predictions_csv(PATHS, Y_TRUE, PROBS, CLASSES)
    lines = text.splitlines()
    assert lines[0] == ",".join(FIELDS) == "path,true,predicted,p_true,top1,p1,top2,p2,top3,p3"
    assert lines[2] == "a/2.png,cat,dog,0.1000,dog,0.6000,owl,0.2500,cat,0.1000"
    write_predictions(tmp_path, PATHS, Y_TRUE, PROBS, CLASSES)
    rows = read_predictions(tmp_path)
    assert [r.path for r in rows] == PATHS
    assert rows[2].to_dict() == {
        "path": "c/3.png",
        "true": "dog",
        "predicted": "fox",
        "p_true": 0.15,
        "p_predicted": 0.8,
        "top": [
            {"label": "fox", "probability": 0.8},
            {"label": "dog", "probability": 0.15},
            {"label": "cat", "probability": 0.05},
        ],
    }


def test_two_classes_keep_two_in_the_top(tmp_path):
    write_predictions(tmp_path, ["x.png"], [1], np.array([[0.4, 0.6]]), ["no", "yes"])
    (row,) = read_predictions(tmp_path)
    assert row.top == (("yes", 0.6), ("no", 0.4)) and row.predicted == row.true == "yes"


def test_a_cell_sorted_and_paged(tmp_path):
    write_predictions(tmp_path, PATHS, Y_TRUE, PROBS, CLASSES)
    rows = read_predictions(tmp_path)
    total, page = cell(rows, true="cat", predicted="dog")
    assert total == 1 and [r.path for r in page] == ["a/2.png"]
    total, page = cell(rows, predicted="dog")  # a column: every image predicted dog
    assert total == 2 and [r.path for r in page] == ["a/2.png", "d/4.png"]  # 0.60 before 0.55
    assert [r.path for r in cell(rows, sort="name")[1]] == sorted(PATHS)
    assert [r.path for r in cell(rows, sort="p_true")[1]] == ["a/2.png", "d/4.png", "c/3.png", "b/1.png"]
    total, page = cell(rows, sort="name", offset=1, limit=2)
    assert total == 4 and [r.path for r in page] == ["b/1.png", "c/3.png"]
    assert cell(rows, true="fox") == (0, [])
    with pytest.raises(VitrineError, match="unknown sort 'size'"):
        cell(rows, sort="size")


def test_missing_and_damaged_files(tmp_path):
    with pytest.raises(NotFound):
        read_predictions(tmp_path)
    (tmp_path / "predictions.csv").write_text("path,true,predicted,p_true,top1,p1\nx.png,a,b,high,b,0.9\n")
    with pytest.raises(VitrineError, match="damaged at line 2"):
        read_predictions(tmp_path)


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="3 paths"):
        predictions_csv(PATHS[:3], Y_TRUE, PROBS, CLASSES)
