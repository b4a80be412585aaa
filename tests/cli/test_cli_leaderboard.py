"""``vitrine leaderboard``: one Rich table per split fingerprint, --json, --csv, --sort, and the
80-column terminal."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from typer.testing import CliRunner

from vitrine.cli import app
from vitrine.core.workspace import Workspace
from vitrine.runs import Run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cli_helpers as cli  # noqa: E402

LONG_ID = "20261205-142233-finetune-paysages-de-bretagne-efficientnet-lite0-a1b2"
FP_A, FP_B = "sha256:aaaaaaaaaaaaaaaa", "sha256:bbbbbbbbbbbbbbbb"


def fabricate(ws: Workspace, run_id: str, accuracy: float, latency: float, fingerprint: str | None = FP_A) -> Run:
    test = {"split": "test", "accuracy": accuracy, "macro_f1": accuracy - 0.1}
    if fingerprint:
        test["fingerprint"] = fingerprint
    metrics = {
        "test": test,
        "speed": {"latency_ms": latency, "images_per_second": 2000 / latency, "device": "cpu", "threads": 2},
        "cost": {"parameters": 3_400_000, "gflops": 0.41, "input_size": 64, "weights_bytes": 13_000_000},
        "train_seconds": 30.0,
    }
    config = {"backbone": "efficientnet-lite0", "image_size": 64}
    run = Run.create(ws, "finetune", "shapes", "efficientnet-lite0", config, run_id=run_id)
    run.update(state="done", metrics=metrics)
    return run


def board_workspace(tmp_path) -> Path:
    ws = Workspace(tmp_path)
    fabricate(ws, LONG_ID, 0.91, 12.0)
    fabricate(ws, "fast", 0.85, 4.0)
    fabricate(ws, "slow-and-bad", 0.80, 20.0)
    fabricate(ws, "elsewhere", 0.99, 1.0, fingerprint=FP_B)
    fabricate(ws, "old", 0.95, 5.0, fingerprint=None)
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"VITRINE_NO_PROGRESS": "1", "COLUMNS": "80"})


def test_leaderboard_json_and_csv(tmp_path):
    ws = board_workspace(tmp_path)
    result = invoke("leaderboard", "shapes", "-w", ws, "--json")
    assert result.exit_code == 0, result.output
    board = json.loads(result.stdout)
    assert [g["fingerprint"] for g in board["groups"]] == [FP_A, FP_B]
    assert [r["id"] for r in board["groups"][0]["rows"]] == [LONG_ID, "fast", "slow-and-bad"]
    assert [r["pareto"] for r in board["groups"][0]["rows"]] == [True, True, False]
    assert [r["id"] for r in board["unranked"]] == ["old"] and board["note"]
    assert board["primary_metric"] == "accuracy"

    result = invoke("leaderboard", "shapes", "-w", ws, "--csv", "-", "--sort", "latency_ms")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["id"], r["rank"], r["fingerprint"]) for r in rows] == [
        ("fast", "1", FP_A),
        (LONG_ID, "2", FP_A),
        ("slow-and-bad", "3", FP_A),
        ("elsewhere", "1", FP_B),
        ("old", "", ""),
    ]
    assert rows[0]["pareto"] == "True" and rows[2]["pareto"] == "False" and rows[0]["device"] == "cpu"
    assert json.loads(rows[0]["metrics"])["macro_f1"] == 0.75

    out_file = tmp_path / "board.csv"
    result = invoke("leaderboard", "shapes", "-w", ws, "--csv", out_file)
    assert result.exit_code == 0 and len(out_file.read_text().splitlines()) == 6

    result = invoke("leaderboard", "shapes", "-w", ws, "--csv", tmp_path / "missing" / "board.csv")
    assert result.exit_code == 2 and "cannot write the CSV" in result.output
    result = invoke("leaderboard", "shapes", "-w", ws, "--sort", "bogus")
    assert result.exit_code == 2 and "macro_f1" in result.output and "Traceback" not in result.output
    result = invoke("leaderboard", "shapes", "-w", ws, "--task", "segment")
    assert result.exit_code == 2 and "classify, detect" in result.output
    result = invoke("leaderboard", "nothing-here", "-w", ws)
    assert result.exit_code == 0 and "no runs of dataset 'nothing-here' yet" in result.output


def test_leaderboard_table_fits_an_80_column_terminal(tmp_path):
    """One table per fingerprint; run ids whole on one line; every line within 80 columns."""
    ws = board_workspace(tmp_path)
    result = cli.run("leaderboard", "shapes", "-w", ws, env=cli.cli_env(COLUMNS="80"))
    assert result.returncode == 0, cli.describe(result)
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), result.stdout
    headers = [line for line in lines if "GFLOPs" in line]
    assert len(headers) == 2 and all(h.rstrip().endswith(" P") for h in headers)  # no column cut off
    assert "…" not in result.stdout
    assert sum(FP_A in line for line in lines) == 1 and sum(FP_B in line for line in lines) == 1
    for run_id in (LONG_ID, "fast", "slow-and-bad", "elsewhere", "old"):
        assert any(run_id in line for line in lines), (run_id, result.stdout)
    table = result.stdout[: result.stdout.index(FP_B)]
    assert "accuracy" in table and "ms b1" in table and "GFLOPs" in table and "3.4M" in table
    assert table.count("*") == 2  # the Pareto front of the first group: LONG_ID and fast
    assert "never against each other" in cli.flat(result.stderr)
