"""Comparable run summaries (runs/summary.comparable) and the per-dataset board
(runs/leaderboard.board): one ranking per split fingerprint, the Pareto front."""

from __future__ import annotations

import pytest

from vitrine.core.errors import VitrineError
from vitrine.core.workspace import Workspace
from vitrine.runs import Run, list_runs
from vitrine.runs.leaderboard import board, pareto_front, run_row
from vitrine.runs.summary import comparable

FP_A = "sha256:aaaaaaaaaaaaaaaa"
FP_B = "sha256:bbbbbbbbbbbbbbbb"


def classifier(ws, run_id, accuracy, latency=None, fingerprint=FP_A, dataset="shapes", created=None, **cost):
    test = {"split": "test", "accuracy": accuracy, "macro_f1": accuracy / 2, "loss": 0.3}
    if fingerprint:
        test["fingerprint"] = fingerprint
    metrics = {"test": test, "train_seconds": 12.5}
    if latency is not None:
        metrics["speed"] = {
            "latency_ms": latency,
            "images_per_second": 1000.0 / latency * 4,
            "batch_size": 32,
            "device": "cpu",
            "threads": 2,
            "cpus": 2,
            "load_average": 0.5,
        }
    if cost:
        metrics["cost"] = cost
    config = {"backbone": "efficientnet-lite0", "image_size": 64, "lr": 0.01}
    run = Run.create(ws, "finetune", dataset, "efficientnet-lite0", config, run_id=run_id)
    run.update(state="done", metrics=metrics, **({"created_at": created} if created else {}))
    return run


def detector(ws, run_id, map50, latency, fingerprint=FP_B, dataset="shapes"):
    test = {"split": "test", "n_images": 4, "bbox_map50": map50, "segm_map50": map50 / 2, "fingerprint": fingerprint}
    metrics = {"test": test, "speed": {"ms_per_image": latency, "latency_ms": latency, "images_per_second": 3.0}}
    config = {"arch": "fasterrcnn", "backbone": "efficientnet-lite1", "image_size": 128}
    run = Run.create(ws, "detection", dataset, "fasterrcnn", config, run_id=run_id)
    run.update(state="done", metrics=metrics)
    (run.dir / "per_class_bbox.csv").write_text("category,ap50\nsquare,0.5\n")
    return run


# ------------------------------------------------------------------------------------------------
# the comparable summary


def test_a_new_classifier_run_summarises_every_comparable_field(tmp_path):
    ws = Workspace(tmp_path)
    run = classifier(ws, "new", 0.8, latency=5.0, parameters=1000, gflops=0.25, input_size=64, weights_bytes=4096)
    (run.dir / "per_class.csv").write_text("class,precision\na,1\n")
    s = comparable(run)
    assert s["task"] == "classify" and s["dataset"] == "shapes" and s["state"] == "done"
    assert s["split"] == "test" and s["fingerprint"] == FP_A
    assert s["arch"] == "efficientnet-lite0" and s["size"] == "64px"
    assert s["config"]["lr"] == 0.01
    assert s["primary_metric"] == "accuracy" and s["primary"] == 0.8
    assert s["metrics"]["macro_f1"] == 0.4 and "loss" not in s["metrics"]
    assert s["per_class"] == {"available": True, "files": ["per_class.csv"]}
    assert s["speed"]["latency_ms"] == 5.0 and s["speed"]["images_per_second"] == 800.0
    assert s["speed"]["device"] == "cpu" and s["speed"]["threads"] == 2 and s["speed"]["load_average"] == 0.5
    assert s["cost"] == {"parameters": 1000, "gflops": 0.25, "input_size": 64, "weights_bytes": 4096}
    assert s["train_seconds"] == 12.5
    row = run_row(run)  # the row keeps the old keys and adds the flat speed and cost figures
    assert row["accuracy"] == 0.8 and row["evaluated_on"] == "test" and row["kind"] == "finetune"
    assert row["latency_ms"] == 5.0 and row["parameters"] == 1000 and row["gflops"] == 0.25


def test_a_detector_run_is_a_detect_task_ranked_by_box_map50(tmp_path):
    s = comparable(detector(Workspace(tmp_path), "det", 0.6, 40.0))
    assert s["task"] == "detect" and s["primary_metric"] == "bbox_map50" and s["primary"] == 0.6
    assert s["metrics"]["segm_map50"] == 0.3 and "n_images" not in s["metrics"]
    assert s["arch"] == "fasterrcnn" and s["size"] == "efficientnet-lite1"
    assert s["per_class"]["available"] and s["fingerprint"] == FP_B


def test_an_old_run_without_the_new_fields_still_summarises_with_none(tmp_path):
    ws = Workspace(tmp_path)
    old = Run.create(ws, "linear-probe", "shapes", "clip-vit-b-32", {"C": [1.0]}, run_id="old")
    old.update(state="done", metrics={"test": {"split": "test", "accuracy": 0.7}, "speed": {"images_per_second": 50}})
    s = comparable(old)
    assert s["primary"] == 0.7 and s["arch"] == "clip-vit-b-32" and s["size"] is None
    assert s["fingerprint"] is None and s["train_seconds"] is None
    assert s["speed"]["latency_ms"] is None and s["speed"]["images_per_second"] == 50
    assert set(s["cost"].values()) == {None} and s["per_class"] == {"available": False, "files": []}
    unfinished = Run.create(ws, "detection", "shapes", "maskrcnn", {}, run_id="unfinished")
    s = comparable(unfinished)
    assert s["primary"] is None and s["split"] is None and s["metrics"] == {} and s["state"] == "created"
    assert [r["id"] for r in board(list_runs(ws), "shapes")["unranked"]] == ["unfinished", "old"]


# ------------------------------------------------------------------------------------------------
# the board


def test_runs_on_different_fingerprints_are_never_ranked_together(tmp_path):
    ws = Workspace(tmp_path)
    classifier(ws, "a-best", 0.9, latency=10.0, created=3.0)
    classifier(ws, "a-worst", 0.5, latency=5.0, created=2.0)
    classifier(ws, "b-only", 0.99, latency=1.0, fingerprint=FP_B, created=4.0)  # newer, but alone
    classifier(ws, "old", 0.95, fingerprint=None, created=1.0)
    classifier(ws, "elsewhere", 1.0, dataset="other")
    b = board(list_runs(ws), "shapes")
    assert [g["fingerprint"] for g in b["groups"]] == [FP_A, FP_B]  # the larger group first
    first, second = b["groups"]
    assert [r["id"] for r in first["rows"]] == ["a-best", "a-worst"] and [r["rank"] for r in first["rows"]] == [1, 2]
    assert [r["id"] for r in second["rows"]] == ["b-only"] and second["rows"][0]["rank"] == 1
    assert [r["id"] for r in b["unranked"]] == ["old"] and b["unranked"][0]["rank"] is None
    assert "never against each other" in b["note"] and b["primary_metric"] == "accuracy"
    # both runs of the first group are on its front: one is faster, the other more accurate
    assert [r["pareto"] for r in first["rows"]] == [True, True]
    # with the same size, the newer group comes first
    classifier(ws, "b-second", 0.1, latency=50.0, fingerprint=FP_B, created=5.0)
    assert [g["fingerprint"] for g in board(list_runs(ws), "shapes")["groups"]] == [FP_B, FP_A]


def test_board_by_task_and_sort(tmp_path):
    ws = Workspace(tmp_path)
    classifier(ws, "clf", 0.9, latency=10.0)
    detector(ws, "det-fast", 0.5, 20.0)
    detector(ws, "det-good", 0.7, 80.0)
    detector(ws, "det-bad", 0.4, 90.0)
    b = board(list_runs(ws), "shapes", task="detect")
    assert b["primary_metric"] == "bbox_map50" and b["note"] is None
    (group,) = b["groups"]
    assert [r["id"] for r in group["rows"]] == ["det-good", "det-fast", "det-bad"]
    assert {r["id"]: r["pareto"] for r in group["rows"]} == {"det-good": True, "det-fast": True, "det-bad": False}
    by_speed = board(list_runs(ws), "shapes", task="detect", sort="latency_ms")["groups"][0]["rows"]
    assert [r["id"] for r in by_speed] == ["det-fast", "det-good", "det-bad"]  # lower ms first
    by_mask = board(list_runs(ws), "shapes", task="detect", sort="segm_map50")["groups"][0]["rows"]
    assert by_mask[0]["id"] == "det-good"
    mixed = board(list_runs(ws), "shapes")  # both tasks: their fingerprints differ anyway
    assert {g["task"] for g in mixed["groups"]} == {"classify", "detect"} and mixed["primary_metric"] is None
    with pytest.raises(VitrineError, match="no run has that number"):
        board(list_runs(ws), "shapes", sort="nope")
    with pytest.raises(VitrineError, match="unknown task"):
        board(list_runs(ws), "shapes", task="segment")
    empty = board(list_runs(ws), "no-such-dataset")
    assert empty["groups"] == [] and empty["unranked"] == [] and empty["note"] is None


# ------------------------------------------------------------------------------------------------
# the Pareto front, hand-checked


def ids(rows):
    return [r["id"] for r in rows]


def test_pareto_front_hand_checked():
    rows = [
        {"id": "a", "latency_ms": 10, "primary": 0.90},
        {"id": "b", "latency_ms": 5, "primary": 0.80},
        {"id": "c", "latency_ms": 12, "primary": 0.85},  # slower and worse than a
        {"id": "d", "latency_ms": 5, "primary": 0.70},  # as fast as b, worse
        {"id": "e", "latency_ms": 30, "primary": 0.95},
        {"id": "f", "latency_ms": None, "primary": 0.99},  # no speed: never on the front
        {"id": "g", "latency_ms": 1, "primary": None},  # no score: never on the front
    ]
    assert ids(pareto_front(rows)) == ["b", "a", "e"]  # fastest first
    assert {r["id"]: r["pareto"] for r in rows} == dict(a=True, b=True, c=False, d=False, e=True, f=False, g=False)


def test_pareto_front_ties_and_edge_cases():
    twins = [{"id": "x", "latency_ms": 5, "primary": 0.8}, {"id": "y", "latency_ms": 5, "primary": 0.8}]
    assert ids(pareto_front(twins)) == ["x", "y"]  # equal points dominate neither
    assert pareto_front([]) == []
    one = [{"id": "only", "latency_ms": 3, "primary": 0.1}]
    assert ids(pareto_front(one)) == ["only"]
    same_score = [{"id": "slow", "latency_ms": 9, "primary": 0.5}, {"id": "fast", "latency_ms": 2, "primary": 0.5}]
    assert ids(pareto_front(same_score)) == ["fast"]
    # other axes, and a metric read from the row's metrics
    rows = [
        {"id": "p", "gflops": 1.0, "metrics": {"macro_f1": 0.3}},
        {"id": "q", "gflops": 2.0, "metrics": {"macro_f1": 0.2}},
    ]
    assert ids(pareto_front(rows, x="gflops", y="macro_f1")) == ["p"]
