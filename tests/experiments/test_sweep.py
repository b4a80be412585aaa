"""Sweeps on a real local Ray Tune: every trial an ordinary run; resumed after the driver is killed
without re-running a finished trial; cancelled and resumed; early stopping recorded honestly.
Random-initialised models on tiny images: these tests check the machinery, never quality."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from vitrine.core.errors import Cancelled
from vitrine.experiments.sweep import STOPPED_NOTE, Sweep, SweepSpec, best_trial, list_sweeps, reconcile, run_sweep
from vitrine.runs import Run, list_runs

pytestmark = pytest.mark.slow

# random initialisation and tiny images: these sweeps test the machinery, not quality
TINY = ["pretrained=false", "batch_size=8", "early_stopping_patience=none", "cache_mb=64"]


def _wait(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _record(sweep: Sweep) -> dict:
    return json.loads((sweep.dir / "sweep.json").read_text())


def test_a_sweep_killed_mid_way_resumes_without_rerunning_finished_trials(sweep_ws):
    spec = SweepSpec.build(
        "classify", "colours", grid=["image_size=32,40,48"], base=[*TINY, "epochs=1"], name="killed", cpus_per_trial=2
    )
    sweep = Sweep.create(sweep_ws, spec)
    assert [t["run_id"] for t in sweep.trials] == ["killed-t000", "killed-t001", "killed-t002"]
    driver = (
        "import sys; from vitrine.core.workspace import Workspace;"
        "from vitrine.experiments.sweep import Sweep, run_sweep;"
        "ws = Workspace(sys.argv[1]); run_sweep(ws, Sweep.load(ws, 'killed'), poll_seconds=0.3)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", driver, str(sweep_ws.root)],
        start_new_session=True,  # its local Ray lives in its process group: SIGKILL takes all of it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: any(t["state"] == "done" for t in _record(sweep)["trials"]), 240, "a finished trial")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {t["run_id"]: t["state"] for t in _record(sweep)["trials"]}
    finished = [rid for rid, state in before.items() if state == "done"]
    created = {rid: Run.load(sweep_ws, rid).record["created_at"] for rid in finished}

    sweep = run_sweep(sweep_ws, Sweep.load(sweep_ws, "killed"), poll_seconds=0.5)
    assert sweep.record["state"] == "done" and sweep.record["attempts"] == 2
    assert [t["state"] for t in sweep.trials] == ["done"] * 3
    for rid in finished:  # not trained again: the same run, created once
        assert Run.load(sweep_ws, rid).record["created_at"] == created[rid]
    runs = {r.id: r for r in list_runs(sweep_ws)}
    assert set(runs) == {t["run_id"] for t in sweep.trials}  # every trial an ordinary run
    for t in sweep.trials:
        run = runs[t["run_id"]]
        assert run.record["state"] == "done" and run.record["config"]["image_size"] == t["params"]["image_size"]
        assert isinstance(t["metric"], float) and 0 <= t["metric"] <= 1
        assert run.record["data"]["threads"] == 2  # the trial's CPUs, not the machine's default
    assert best_trial(sweep)["metric"] == max(t["metric"] for t in sweep.trials)
    assert [s.id for s in list_sweeps(sweep_ws)] == ["killed"]
    # nothing left to do: a third call runs no trial
    assert run_sweep(sweep_ws, Sweep.load(sweep_ws, "killed")).record["attempts"] == 2


def test_cancel_stops_the_running_trial_and_a_resume_finishes_the_sweep(sweep_ws):
    spec = SweepSpec.build(
        "classify", "colours", grid=["lr=0.003,0.01"], base=[*TINY, "epochs=12"], name="cancelled", cpus_per_trial=2
    )
    sweep = Sweep.create(sweep_ws, spec)
    cancel = threading.Event()
    outcome: dict = {}

    def drive():
        try:
            run_sweep(sweep_ws, sweep, cancel=cancel, poll_seconds=0.3)
        except Cancelled as exc:
            outcome["cancelled"] = exc.message

    thread = threading.Thread(target=drive)
    thread.start()

    def training():
        path = sweep_ws.run_dir("cancelled-t000") / "run.json"
        return path.is_file() and (json.loads(path.read_text()).get("progress") or {}).get("epoch", 0) >= 2

    _wait(training, 240, "the first trial to train two epochs")
    cancel.set()
    thread.join(240)
    assert not thread.is_alive() and "resume it to go on" in outcome["cancelled"]
    record = _record(sweep)
    assert record["state"] == "cancelled"
    assert record["trials"][0]["state"] == "cancelled"
    assert Run.load(sweep_ws, "cancelled-t000").record["state"] == "cancelled"
    assert record["trials"][1]["state"] in ("pending", "cancelled")  # never started, or stopped too
    created = Run.load(sweep_ws, "cancelled-t000").record["created_at"]
    assert (sweep_ws.run_dir("cancelled-t000") / "checkpoints" / "last.pt").is_file()

    sweep = run_sweep(sweep_ws, Sweep.load(sweep_ws, "cancelled"), poll_seconds=0.5)
    assert sweep.record["state"] == "done" and [t["state"] for t in sweep.trials] == ["done", "done"]
    history = Run.load(sweep_ws, "cancelled-t000").record
    assert history["state"] == "done" and history["progress"]["epoch"] == 12
    assert history["created_at"] == created  # resumed from its checkpoint, not started over


def test_reconcile_marks_runs_the_scheduler_stopped(sweep_ws):
    spec = SweepSpec.build("classify", "colours", grid=["lr=0.003,0.01"], base=TINY, name="asha", early_stopping=True)
    sweep = Sweep.create(sweep_ws, spec)
    for t, state in zip(sweep.trials, ("done", "running"), strict=True):  # as a killed trial actor leaves them
        run = Run.create(sweep_ws, "finetune", "colours", "efficientnet-lite0", t["config"], run_id=t["run_id"])
        run.update(state=state, metrics={"test": {"accuracy": 0.5}} if state == "done" else {})
    reconcile(sweep_ws, sweep, stopped={1})
    assert [t["state"] for t in sweep.trials] == ["done", "stopped"]
    assert sweep.trials[0]["metric"] == 0.5
    stopped = Run.load(sweep_ws, "asha-t001").record
    assert stopped["state"] == "cancelled" and stopped["error"] == STOPPED_NOTE.format(metric="val_accuracy")
    assert stopped["finished_at"]


def test_early_stopping_on_ray_tune_ends_every_trial(sweep_ws):
    spec = SweepSpec.build(
        "classify",
        "colours",
        grid=["lr=0.0001,0.003,0.01,0.03"],
        base=[*TINY, "epochs=4"],
        name="early",
        early_stopping=True,
        cpus_per_trial=1,
    )
    sweep = run_sweep(sweep_ws, Sweep.create(sweep_ws, spec), poll_seconds=0.5)
    assert sweep.record["state"] == "done"
    for t in sweep.trials:
        run = Run.load(sweep_ws, t["run_id"]).record
        assert (t["state"], run["state"]) in (("done", "done"), ("stopped", "cancelled")), (t, run["state"])
        if t["state"] == "stopped":
            assert "ASHA" in run["error"] and run["progress"]["epoch"] < 4
