"""``vitrine compare-embeddings`` on a small dataset with a tiny random-weight model, run as a user
runs it: the table, --json, the runs on the leaderboard, and the errors (exit 2, no traceback)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cli_helpers as cli  # noqa: E402

TINY = "timm:test_vit?weights=random"


def _dataset(ws: Path) -> None:
    root = ws.parent / "images"
    rng = np.random.default_rng(0)
    samples = []
    for label, colour in (("red", (220, 30, 30)), ("green", (30, 200, 40))):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i, split in enumerate(("train", "train", "val", "test")):
            pixels = np.clip(np.array(colour) + rng.integers(-20, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
            samples.append(Sample(f"{label}/{i}.png", label, split))
    ClassificationDataset(name="tiny", root=root, samples=samples).save(Workspace(ws).dataset_dir("tiny"))


@pytest.mark.slow  # three CLI processes, each importing torch and timm
def test_compare_embeddings_table_json_and_board(tmp_path):
    ws = tmp_path / "ws"
    _dataset(ws)
    result = cli.run("compare-embeddings", "tiny", "--models", TINY, "--k", "3", "-w", ws)
    assert result.returncode == 0, cli.describe(result)
    text = cli.flat(result.stdout)
    assert "1 embedding model(s) on 8 images of dataset 'tiny' (2 classes)" in text
    assert "random weights: speed only" in text and "kNN@10" in text and "B/vector" in text
    assert "vitrine leaderboard tiny --task embedding" in text

    result = cli.run("compare-embeddings", "tiny", "--models", TINY, "--limit", "4", "--no-record", "--json", "-w", ws)
    assert result.returncode == 0, cli.describe(result)
    data = json.loads(result.stdout)
    assert data["images"] == 4 and data["limit"] == 4 and "run_id" not in data["models"][0]
    assert data["models"][0]["scores"]["dim"] == 64

    board = cli.run("leaderboard", "tiny", "--task", "embedding", "--json", "-w", ws)
    assert board.returncode == 0, cli.describe(board)
    (group,) = json.loads(board.stdout)["groups"]
    assert group["task"] == "embedding" and group["runs"] == 1  # the --no-record run is not there
    assert group["rows"][0]["model"] == TINY and group["rows"][0]["random_weights"] is True


def _one_folder_project(tmp_path: Path) -> Path:
    """A project whose images are all in one folder: one label, nothing to compare."""
    from vitrine.collection.layout import init_project

    paths = init_project(tmp_path / "proj")
    (paths.images_dir / "red").mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 0, 0)).save(paths.images_dir / "red" / "a.png")
    return paths.project_dir


def test_compare_embeddings_errors(tmp_path):
    ws = tmp_path / "ws"
    _dataset(ws)
    for args, said in (
        (("tiny", "--models", "no-such-model"), "unknown model 'no-such-model'"),
        (("nope", "--models", TINY), "no dataset 'nope'"),
        (("tiny", "--models", TINY, "--k", "0"), "k must be an integer from 1 to 1000"),
        (("tiny", "--models", "timm:resnet18"), "model 'timm:resnet18': its weights (timm/resnet18.a1_in1k)"),
        ((str(_one_folder_project(tmp_path)), "--models", TINY), "has 1 label(s) among the images compared"),
    ):
        result = cli.run("compare-embeddings", *args, "-w", ws)
        assert result.returncode == 2, cli.describe(result)
        assert said in cli.flat(result.stderr) and "Traceback" not in result.stderr
