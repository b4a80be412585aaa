"""The run lifecycle (runs/lifecycle.py) and the checkpoint policy (runs/checkpoint.py): how a run
ends is recorded the same way by every trainer, and best.pt follows the policy's direction."""

from __future__ import annotations

import json
import math

import pytest

from vitrine.core.errors import Cancelled, VitrineError
from vitrine.core.workspace import Workspace
from vitrine.runs import Run
from vitrine.runs.checkpoint import CheckpointPolicy
from vitrine.runs.lifecycle import run_lifecycle


@pytest.fixture
def run(tmp_path):
    return Run.create(Workspace(tmp_path), "linear-probe", "shapes", "offline-concepts", {}, run_id="r1")


def on_disk(run: Run) -> dict:
    return json.loads((run.dir / "run.json").read_text(encoding="utf-8"))


def test_a_run_that_finishes_is_done_with_its_fields(run):
    with run_lifecycle(run) as life:
        life.start(classes=["a", "b"])
        assert on_disk(run)["state"] == "running" and on_disk(run)["started_at"] > 0
        life.done(metrics={"accuracy": 0.5}, progress={"stage": "done"})
    record = on_disk(run)
    assert record["state"] == "done" and record["metrics"] == {"accuracy": 0.5}
    assert record["classes"] == ["a", "b"] and record["finished_at"] >= record["started_at"]
    assert "error" not in record


def test_a_cancelled_run_is_cancelled_with_finished_at(run):
    with pytest.raises(Cancelled), run_lifecycle(run) as life:
        life.start()
        raise Cancelled("stop asked for")
    record = on_disk(run)
    assert record["state"] == "cancelled" and record["error"] == "stop asked for"
    assert record["finished_at"] >= record["started_at"]


def test_ctrl_c_cancels_and_is_raised_again(run):
    with pytest.raises(KeyboardInterrupt), run_lifecycle(run) as life:
        life.start()
        raise KeyboardInterrupt
    record = on_disk(run)
    assert record["state"] == "cancelled" and record["error"] == "interrupted" and record["finished_at"]


def test_a_trainer_records_its_own_state_on_cancel(run):
    def on_cancel(exc):
        return {"progress": {"stage": "cancelled", "step": 3}, "metrics": {"steps": 3}}

    with pytest.raises(Cancelled), run_lifecycle(run, on_cancel=on_cancel) as life:
        life.start(error=None)
        raise Cancelled("cancelled; resume with run id r1")
    record = on_disk(run)
    assert record["state"] == "cancelled" and record["progress"] == {"stage": "cancelled", "step": 3}
    assert record["metrics"] == {"steps": 3} and record["error"] is None and record["finished_at"]


def test_a_failing_on_cancel_still_cancels(run):
    def on_cancel(exc):
        raise RuntimeError("the trainer was half set up")

    with pytest.raises(Cancelled), run_lifecycle(run, on_cancel=on_cancel):
        raise Cancelled("stop")
    assert on_disk(run)["state"] == "cancelled" and on_disk(run)["finished_at"]


def test_a_failure_records_its_error_text(run):
    with pytest.raises(ValueError), run_lifecycle(run) as life:
        life.start()
        raise ValueError("the loss became nan")
    record = on_disk(run)
    assert record["state"] == "failed" and record["error"] == "ValueError: the loss became nan"
    assert record["finished_at"] >= record["started_at"]


def test_a_vitrine_error_records_its_message(run):
    with pytest.raises(VitrineError), run_lifecycle(run):
        raise VitrineError("the train split needs 2 classes", hint="add images")
    record = on_disk(run)
    assert record["state"] == "failed" and record["error"] == "the train split needs 2 classes"


# ------------------------------------------------------------------------------------------------
# the checkpoint policy


def best_epoch_of(policy: CheckpointPolicy, values: list) -> tuple[int | None, float]:
    """Feed validations to the policy as a trainer does; the epoch (1-based) kept as best.pt."""
    best, best_epoch = policy.initial, None
    for epoch, value in enumerate(values, start=1):
        if policy.should_save(value, best, first=best_epoch is None):
            best, best_epoch = policy.best_after(value, best, first=best_epoch is None), epoch
    return best_epoch, best


def test_min_policy_keeps_the_lowest_loss():
    policy = CheckpointPolicy("val_loss", "min", min_delta=1e-6)
    assert best_epoch_of(policy, [0.9, 0.5, 0.7, 0.5, 0.6]) == (2, 0.5)
    assert policy.value({"val_loss": 0.3, "val_accuracy": 0.9}) == 0.3
    # a validation without a number (no val image read) never becomes the best
    assert best_epoch_of(policy, [math.nan, None]) == (None, math.inf)
    assert best_epoch_of(policy, [math.nan, 0.8]) == (2, 0.8)


def test_max_policy_keeps_the_highest_score():
    policy = CheckpointPolicy("segm_map50", "max", min_delta=1e-9, keep_first=True, fallback="bbox_map50")
    assert best_epoch_of(policy, [0.2, 0.6, 0.4, 0.6]) == (2, 0.6)
    # the first validation is kept whatever its score; a number then replaces it
    assert best_epoch_of(policy, [None, 0.1]) == (2, 0.1)
    assert best_epoch_of(policy, [None, None]) == (1, -math.inf)
    assert policy.value({"bbox_map50": 0.4}) == 0.4 and policy.value({"segm_map50": 0.3, "bbox_map50": 0.4}) == 0.3


def test_policy_directions_disagree_on_the_same_numbers():
    values = [0.3, 0.1, 0.2]
    assert best_epoch_of(CheckpointPolicy("m", "min"), values)[0] == 2
    assert best_epoch_of(CheckpointPolicy("m", "max"), values)[0] == 1
    with pytest.raises(ValueError):
        CheckpointPolicy("m", "sideways")


def test_policy_stores_no_infinity():
    policy = CheckpointPolicy("val_loss", "min")
    assert policy.stored(policy.initial) is None and policy.loaded(None) == math.inf
    assert policy.loaded(policy.stored(0.25)) == 0.25
