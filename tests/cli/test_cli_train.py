"""``vitrine train``, ``vitrine runs``, ``vitrine eval`` and ``vitrine tensorboard`` on a tiny dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitrine.cli import app

sys.path.insert(0, str(Path(__file__).parent.parent / "train" / "classification"))
from test_finetune import CLASSES, make_shapes  # noqa: E402

TINY = ["--random-init", "--image-size", "32", "--batch-size", "8", "--patience", "0"]


@pytest.fixture
def workspace(tmp_path) -> Path:
    ws = tmp_path / "ws"
    dataset = make_shapes(tmp_path / "images", broken=False)
    dataset.save(ws / "datasets" / dataset.name)
    return ws


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"VITRINE_NO_PROGRESS": "1"})


def describe(result) -> str:
    return f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{result.exception!r}"


def test_train_runs_eval_and_tensorboard(workspace):
    result = invoke("train", "shapes", "--workspace", workspace, *TINY, "--epochs", "1", "--name", "cli-run", "--json")
    assert result.exit_code == 0, describe(result)
    record = json.loads(result.stdout)
    assert record["id"] == "cli-run" and record["state"] == "done" and record["kind"] == "finetune"
    assert record["config"]["image_size"] == 32 and record["config"]["pretrained"] is False
    assert "epoch 1/1" in result.stderr  # the per-epoch line

    result = invoke("runs", "--workspace", workspace, "--json")
    assert result.exit_code == 0, describe(result)
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == ["cli-run"]
    row = rows[0]
    assert (row["kind"], row["dataset"], row["model"], row["state"]) == (
        "finetune",
        "shapes",
        "efficientnet-lite0",
        "done",
    )
    assert 0 <= row["accuracy"] <= 1 and 0 <= row["macro_f1"] <= 1 and row["evaluated_on"] == "test"

    result = invoke("eval", "cli-run", "--workspace", workspace, "--split", "val", "--json")
    assert result.exit_code == 0, describe(result)
    report = json.loads(result.stdout)
    assert report["split"] == "val" and report["n"] == 6 and report["run"] == "cli-run"
    assert [r["class"] for r in report["per_class"]] == list(CLASSES)
    assert report["speed"]["images_per_second"] > 0
    run_dir = workspace / "runs" / "cli-run"
    assert (run_dir / "confusion.csv").read_text().splitlines()[0].endswith(",".join(CLASSES))
    assert json.loads((run_dir / "run.json").read_text())["metrics"]["val"]["n"] == 6

    result = invoke("eval", "cli-run", "--workspace", workspace)  # the tables
    assert result.exit_code == 0, describe(result)
    assert "accuracy" in result.stdout and "macro f1" in result.stdout and "green" in result.stdout

    result = invoke("runs", "--workspace", workspace)
    assert result.exit_code == 0 and "cli-run" in result.stdout

    result = invoke("tensorboard", "cli-run", "--workspace", workspace, "--port", "6123")
    assert result.exit_code == 0, describe(result)
    line = " ".join(result.stdout.split())
    assert line.startswith("tensorboard --logdir") and "--port 6123" in line
    assert str(run_dir / "tb") in result.stdout.replace("\n", "")


def test_ctrl_c_saves_and_resume_finishes_the_run(workspace, monkeypatch):
    import vitrine.train.classification.finetune as ft

    real = ft.train_finetune

    def cancelled_after_epoch_1(ws, ds, config, **kw):
        """What a Ctrl-C after the first epoch does: the CLI's cancel event is set."""
        show = kw["progress"]

        def progress(stage, done, total, info=None):
            show(stage, done, total, info)
            if stage == "epoch":
                kw["cancel"].set()

        return real(ws, ds, config, **{**kw, "progress": progress})

    monkeypatch.setattr(ft, "train_finetune", cancelled_after_epoch_1)
    result = invoke("train", "shapes", "--workspace", workspace, *TINY, "--epochs", "2", "--name", "cli-c")
    assert result.exit_code == 130, describe(result)
    assert "--resume cli-c" in " ".join(result.stderr.split())
    record = json.loads((workspace / "runs" / "cli-c" / "run.json").read_text())
    assert record["state"] == "cancelled" and record["progress"]["epoch"] == 1

    monkeypatch.setattr(ft, "train_finetune", real)
    result = invoke("train", "shapes", "--workspace", workspace, "--resume", "cli-c", "--json")
    assert result.exit_code == 0, describe(result)
    record = json.loads(result.stdout)
    assert record["state"] == "done" and record["metrics"]["epochs_completed"] == 2
    assert [h["epoch"] for h in record["metrics"]["history"]] == [1, 2]


def test_keyboard_interrupt_exits_130_with_the_resume_hint(workspace, monkeypatch):
    import vitrine.train.classification.finetune as ft

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(ft, "train_finetune", interrupted)
    result = invoke("train", "shapes", "--workspace", workspace, *TINY, "--name", "cli-k")
    assert result.exit_code == 130, describe(result)
    assert "resume with" in result.stderr and "--resume cli-k" in " ".join(result.stderr.split())


def test_option_mistakes_are_clear_errors(workspace):
    result = invoke("train", "shapes", "--workspace", workspace, "--method", "linear-probe", "--epochs", "3")
    assert result.exit_code == 2 and "only for --method finetune" in result.stderr
    result = invoke("train", "shapes", "--workspace", workspace, "--method", "nope")
    assert result.exit_code == 2 and "unknown method" in result.stderr
    result = invoke("train", "nosuch", "--workspace", workspace)
    assert result.exit_code == 2 and "no dataset" in result.stderr
    result = invoke("train", "shapes", "--workspace", workspace, "--schedule", "sometimes")
    assert result.exit_code == 2 and "schedule" in result.stderr
    assert not (workspace / "runs").exists() or not list((workspace / "runs").iterdir())
    result = invoke("eval", "nosuch", "--workspace", workspace)
    assert result.exit_code == 2 and "no run" in result.stderr
    result = invoke("runs", "--workspace", workspace, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
