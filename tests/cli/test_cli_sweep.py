"""``vitrine sweep`` and ``vitrine sweeps``: errors (exit 2, the engine's message, no traceback),
a sweep from a YAML file with command-line overrides and --json, the list, Ctrl-C (exit 130, how
to resume) and --resume. Real Ray Tune, random-initialised models on 32 px images: the machinery,
never quality."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitrine.cli import app
from vitrine.core.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cli_helpers as cli  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "sweep_datasets", Path(__file__).resolve().parents[1] / "experiments" / "conftest.py"
)
_datasets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_datasets)

TINY = ["--set", "pretrained=false", "--set", "batch_size=8", "--set", "early_stopping_patience=none",
        "--set", "cache_mb=64"]  # fmt: skip


@pytest.fixture
def ws(tmp_path) -> Path:
    root = tmp_path / "ws"
    _datasets.make_colours(tmp_path / "images").save(Workspace(root).dataset_dir("colours"))
    return root


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["colours", "--task", "classify", "--grid", "image_size=32,big"],
            "option image_size: 'big' is not an integer",
        ),
        (["colours", "--task", "classify", "--grid", "nosuch=1,2"], "unknown option 'nosuch' for this trainer"),
        (["colours", "--task", "classify", "--grid", "lr"], "cannot read 'lr'"),
        (["colours", "--task", "classify", "--random", "lr=gauss:1"], "cannot read the distribution"),
        (["colours", "--task", "track"], "no sweeps for task 'track'"),
        (["colours"], "a sweep needs a DATASET and --task"),
        (["--resume", "nothing"], "no sweep 'nothing'"),
        (["--resume", "x", "--grid", "lr=1,2"], "--resume goes on with the sweep as it was made: --grid"),
        (["--file", "missing.yaml"], "cannot read missing.yaml"),
    ],
)
def test_bad_sweeps_exit_2_with_the_message(ws, args, words, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["sweep", *args, "--workspace", str(ws)])
    assert r.exit_code == 2, r.output
    assert words in r.output and "Traceback" not in r.output
    assert not (ws / "sweeps").exists()  # nothing made


def test_an_unreachable_cluster_is_exit_2(ws):
    """RAY_ADDRESS is honoured when --ray-address is not given; nothing answers there."""
    args = ["sweep", "colours", "--task", "classify", "--grid", "lr=0.01,0.1", "--name", "nowhere"]
    r = cli.run(*args, "--workspace", ws, timeout=120, env=cli.cli_env(RAY_ADDRESS="127.0.0.1:1"))
    assert r.returncode == 2, r.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in r.stderr and "Traceback" not in r.stderr
    assert json.loads((ws / "sweeps" / "nowhere" / "sweep.json").read_text())["state"] == "failed"


def test_no_sweeps_yet(ws):
    r = CliRunner().invoke(app, ["sweeps", "--workspace", str(ws)])
    assert r.exit_code == 0 and "no sweeps yet" in r.output
    assert json.loads(CliRunner().invoke(app, ["sweeps", "--workspace", str(ws), "--json"]).output) == []


@pytest.mark.slow
def test_a_sweep_from_a_file_with_overrides_then_the_list(ws, tmp_path):
    file = tmp_path / "sweep.yaml"
    file.write_text(
        "task: classify\ndataset: colours\ngrid:\n  lr: [0.001, 0.01, 0.1]\n  image_size: [32]\n"
        "base: {pretrained: false, batch_size: 8, early_stopping_patience: null, cache_mb: 64, epochs: 3}\n"
        "cpus_per_trial: 2\nname: from-file\n"
    )
    # --grid replaces the file's lr only, --set the file's epochs only
    r = cli.run("sweep", "--file", file, "--grid", "lr=0.01,0.05", "--set", "epochs=1", "--workspace", ws, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["id"] == "from-file" and out["state"] == "done" and out["counts"]["done"] == 2
    assert [t["params"] for t in out["trials"]] == [{"lr": 0.01, "image_size": 32}, {"lr": 0.05, "image_size": 32}]
    assert all(t["config"]["epochs"] == 1 and t["config"]["batch_size"] == 8 for t in out["trials"])
    assert out["best"]["metric"] == max(t["metric"] for t in out["trials"])

    listed = json.loads(cli.run("sweeps", "--workspace", ws, "--json").stdout)
    assert [(s["id"], s["state"], s["trials"]) for s in listed] == [("from-file", "done", 2)]
    one = json.loads(cli.run("sweeps", "from-file", "--workspace", ws, "--json").stdout)
    assert [t["run_id"] for t in one["trials"]] == ["from-file-t000", "from-file-t001"]
    table = cli.run("sweeps", "--workspace", ws, env=cli.cli_env(COLUMNS="200")).stdout
    assert "from-file" in table and "done" in table
    trials = cli.run("sweeps", "from-file", "--workspace", ws, env=cli.cli_env(COLUMNS="200")).stdout
    assert "lr=0.01" in trials and "lr=0.05" in trials


@pytest.mark.slow
def test_ctrl_c_cancels_cleanly_and_resume_finishes(ws):
    proc = cli.start("sweep", "colours", "--task", "classify", "--grid", "lr=0.003,0.01", *TINY,
                     "--set", "epochs=6", "--cpus-per-trial", "2", "--name", "ctrlc", "--workspace", ws,
                     start_new_session=True)  # fmt: skip
    run = ws / "runs" / "ctrlc-t000" / "run.json"
    deadline = time.monotonic() + 240
    while not (run.is_file() and (json.loads(run.read_text()).get("progress") or {}).get("epoch", 0) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, "the first trial never trained 2 epochs"
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    done = cli.finish(proc, timeout=240)
    assert done.returncode == 130, done.stderr
    assert "resume it with `vitrine sweep --resume ctrlc" in done.stderr and "Traceback" not in done.stderr
    record = json.loads((ws / "sweeps" / "ctrlc" / "sweep.json").read_text())
    assert record["state"] == "cancelled" and record["trials"][0]["state"] == "cancelled"
    first = json.loads(run.read_text())
    assert first["state"] == "cancelled" and first["progress"]["epoch"] < 6  # stopped, not failed

    r = cli.run("sweep", "--resume", "ctrlc", "--workspace", ws, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["state"] == "done" and [t["state"] for t in out["trials"]] == ["done", "done"]
    resumed = json.loads(run.read_text())
    assert resumed["created_at"] == first["created_at"] and resumed["progress"]["epoch"] == 6  # from its checkpoint
