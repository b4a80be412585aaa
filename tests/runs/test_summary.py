"""One summary for any run kind (runs/summary.py) and the leaderboard built from it
(runs/leaderboard.py)."""

from __future__ import annotations

import json
import math

from vitrine.core.workspace import Workspace
from vitrine.runs import Run, list_runs
from vitrine.runs.leaderboard import leaderboard, run_row
from vitrine.runs.summary import summarize


def make(ws: Workspace, run_id: str, kind: str = "finetune", **fields) -> Run:
    run = Run.create(ws, kind, "shapes", "efficientnet-lite0", {}, run_id=run_id)
    run.update(**fields)
    return run


def test_classification_summary_from_the_record(tmp_path):
    ws = Workspace(tmp_path)
    run = make(
        ws,
        "ft",
        state="done",
        metrics={"test": {"split": "test", "accuracy": 0.75, "macro_f1": 0.7}, "speed": {"images_per_second": 120}},
    )
    assert summarize(run) == {
        "accuracy": 0.75,
        "macro_f1": 0.7,
        "evaluated_on": "test",
        "images_per_second": 120.0,
    }


def test_classification_summary_falls_back_on_metrics_json(tmp_path):
    ws = Workspace(tmp_path)
    run = make(ws, "lp", kind="linear-probe", state="done")
    (run.dir / "metrics.json").write_text(json.dumps({"split": "test", "accuracy": 0.5, "macro_f1": 0.4}))
    s = summarize(run)
    assert s["accuracy"] == 0.5 and s["macro_f1"] == 0.4 and s["evaluated_on"] == "test"


def test_detection_summary(tmp_path):
    ws = Workspace(tmp_path)
    test = {"split": "test", "n_images": 4, "bbox_map50": 0.6, "segm_map50": 0.5, "speed": {"ms_per_image": 12.5}}
    run = make(ws, "det", kind="segmentation", state="done", metrics={"test": test})
    s = summarize(run)
    assert s["bbox_map50"] == 0.6 and s["segm_map50"] == 0.5 and s["bbox_map"] is None
    assert s["evaluated_on"] == "test" and s["n_images"] == 4 and s["ms_per_image"] == 12.5
    assert "accuracy" not in s


def test_an_unfinished_run_has_an_empty_summary(tmp_path):
    ws = Workspace(tmp_path)
    assert set(summarize(make(ws, "new")).values()) == {None}
    assert set(summarize(make(ws, "new-det", kind="detection")).values()) == {None}


def test_rows_carry_what_the_run_is_and_its_numbers(tmp_path):
    ws = Workspace(tmp_path)
    run = make(ws, "ft", state="running", progress={"stage": "train", "step": 2})
    row = run_row(run)
    assert row["id"] == "ft" and row["kind"] == "finetune" and row["dataset"] == "shapes"
    assert row["model"] == "efficientnet-lite0" and row["state"] == "running"
    assert row["progress"] == {"stage": "train", "step": 2} and row["created_at"] and row["finished_at"] is None
    assert row["accuracy"] is None


def test_leaderboard_never_ranks_a_missing_score_above_a_number(tmp_path):
    ws = Workspace(tmp_path)
    for run_id, accuracy in (("none-1", None), ("low", 0.2), ("nan", math.nan), ("high", 0.9), ("zero", 0.0)):
        metrics = {} if accuracy is None else {"test": {"accuracy": accuracy, "split": "test"}}
        make(ws, run_id, state="done", metrics=metrics)
    make(ws, "det", kind="detection", state="done", metrics={"test": {"bbox_map50": 0.9}})
    ranked = [row["id"] for row in leaderboard(list_runs(ws), "accuracy")]
    assert ranked[:3] == ["high", "low", "zero"]
    assert set(ranked[3:]) == {"none-1", "nan", "det"}
    # by creation (the default): the order list_runs gives, newest first
    assert [row["id"] for row in leaderboard(list_runs(ws))] == [r.id for r in list_runs(ws)]
    assert [row["id"] for row in leaderboard(list_runs(ws), "bbox_map50")][0] == "det"
