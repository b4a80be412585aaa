"""``vitrine predict``: files and folders, a corrupt file, CSV and JSON output, an unknown run.

Predictions run in-process (Typer's test runner) with the tiny colour model of
tests/train/test_linear_probe.py, registered for the test; the unknown-run case runs the real
command line in a subprocess (it fails before any model is loaded).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train" / "classification"))
import cli_helpers as cli  # noqa: E402
import test_linear_probe as shared  # noqa: E402
from test_linear_probe import COLOURS, TINY, saved_dataset  # noqa: E402

tiny_model = shared.tiny_model  # the fixture, shared


@pytest.fixture
def probe_run(tmp_path, tiny_model):
    from vitrine.train.classification.linear_probe import train_linear_probe

    ws, _ = saved_dataset(tmp_path)
    run = train_linear_probe(ws, "colours", embedding_model=TINY, run_id="colours-probe")
    return ws, run


def _images(folder: Path) -> dict[str, str]:
    """Some images to classify, by expected class; one corrupt file and one non-image beside them."""
    (folder / "more" / "deeper").mkdir(parents=True)
    expected = {}
    for name, colour in (("a.png", "red"), ("more/b.jpg", "green"), ("more/deeper/c.png", "blue")):
        Image.new("RGB", (30, 20), COLOURS[colour]).save(folder / name)
        expected[str(folder / name)] = colour
    (folder / "more" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "notes.txt").write_text("not an image")  # not an image suffix: ignored in folders
    return expected


def _invoke(*args):
    from vitrine.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_predict_files_and_folders_csv_with_error_row(tmp_path, probe_run):
    ws, run = probe_run
    folder = tmp_path / "todo"
    expected = _images(folder)
    single = tmp_path / "single.png"
    Image.new("RGB", (16, 16), COLOURS["blue"]).save(single)
    out_csv = tmp_path / "preds.csv"

    result = _invoke(
        "predict", "--model", run.id, "--workspace", ws.root, "--top-k", "2", "-o", out_csv, single, folder, single
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    with open(out_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "pred", "prob", "class_1", "prob_1", "class_2", "prob_2", "error"]
    by_path = {r["path"]: r for r in rows}
    assert len(rows) == 5  # single (once, though given twice), 3 images, the corrupt file
    assert by_path[str(single)]["pred"] == "blue"
    for path, colour in expected.items():
        row = by_path[path]
        assert row["pred"] == colour == row["class_1"] and row["error"] == ""
        assert 0 < float(row["prob_2"]) <= float(row["prob"]) <= 1
    broken = by_path[str(folder / "more" / "broken.jpg")]
    assert broken["pred"] == "" and broken["prob"] == "" and broken["error"]
    assert "broken.jpg" in result.stderr and "1 unreadable" in result.stderr
    assert "a.png" in result.stdout  # the table


def test_predict_json_and_csv_to_stdout(tmp_path, probe_run):
    ws, run = probe_run
    folder = tmp_path / "todo"
    expected = _images(folder)
    result = _invoke("predict", "-m", run.dir, folder, "--json")  # a run folder works too
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["run"] == "colours-probe" and data["kind"] == "linear-probe"
    preds = {p["path"]: p for p in data["predictions"]}
    assert {p: preds[p]["pred"] for p in expected} == expected
    assert all(len(preds[p]["top"]) == 3 for p in expected)
    assert [p for p in preds if preds[p]["error"]] == [str(folder / "more" / "broken.jpg")]

    result = _invoke("predict", "--model", run.id, "--workspace", ws.root, "-k", "1", "-o", "-", folder)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["path", "pred", "prob", "class_1", "prob_1", "error"] and len(rows) == 5

    result = _invoke("predict", "--model", run.id, "--workspace", ws.root, "-o", tmp_path / "no" / "x.csv", folder)
    assert result.exit_code == 2 and "cannot write" in result.stderr

    (tmp_path / "empty").mkdir()
    result = _invoke("predict", "--model", run.id, "--workspace", ws.root, tmp_path / "empty")
    assert result.exit_code == 2 and "no images found" in result.stderr


def test_predict_with_a_zero_shot_run(tmp_path, tiny_model):
    from vitrine.train.classification.zero_shot import make_zero_shot

    ws, ds = saved_dataset(tmp_path)
    run = make_zero_shot(ws, ds, embedding_model=TINY, run_id="colours-zs")
    image = tmp_path / "x.png"
    Image.new("RGB", (16, 16), COLOURS["green"]).save(image)
    result = _invoke("predict", "--model", run.id, "--workspace", ws.root, "--json", image)
    assert result.exit_code == 0, result.output
    (pred,) = json.loads(result.stdout)["predictions"]
    assert pred["pred"] == "green" and abs(sum(t["prob"] for t in pred["top"]) - 1) < 1e-6


def test_predict_unknown_or_damaged_run(tmp_path):
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    result = cli.run("predict", "--model", "no-such-run", "--workspace", tmp_path, image)
    assert result.returncode == 2, cli.describe(result)
    assert "no run 'no-such-run'" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "run.json").write_text("{not json")
    result = cli.run("predict", "--model", "r", "--workspace", tmp_path, image)
    assert result.returncode == 2 and "damaged" in result.stderr and "Traceback" not in result.stderr
