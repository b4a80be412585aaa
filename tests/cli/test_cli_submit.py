"""``vitrine board`` and ``vitrine submit`` on a real image folder: hide the test split, hand out its
image ids, score submissions (by id or, for the owner, by path), precise errors, the board."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cli_helpers as cli  # noqa: E402


def test_board_and_submit_from_the_command_line(tmp_path):
    folder = tmp_path / "clothes"
    for split in ("train", "test"):
        for c, label in enumerate(("Coat", "Sneaker")):
            for i in range(3):
                (folder / split / label).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (10, 10), (200 * c, 20 * i, 0)).save(folder / split / label / f"{i}.png")
    ws = tmp_path / "ws"
    env = {"VITRINE_HOME": str(ws)}

    import subprocess

    def vitrine(*args):
        return subprocess.run([*cli.vitrine_command(), *args], env=cli.cli_env(**env), capture_output=True,
                              text=True, encoding="utf-8", timeout=120)  # fmt: skip

    assert vitrine("data", "import", "imagefolder", str(folder), "--name", "clothes").returncode == 0
    r = vitrine("board", "clothes", "--hide", "test", "--group", "--images", str(tmp_path / "ids.json"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"dataset": "clothes", "task": "classify", "hidden": ["test"], "group": True}
    ids = json.loads((tmp_path / "ids.json").read_text())
    assert len(ids["images"]) == 6 and "path" not in ids["images"][0] and "Coat" not in json.dumps(ids["images"])
    # a submission by id: every image called Coat (half right)
    sub = tmp_path / "coats.csv"
    sub.write_text("image,class\n" + "".join(f"{im['id']},coat\n" for im in ids["images"]))
    r = vitrine("submit", "clothes", str(sub), "--label", "all coats", "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["primary"] == 0.5 and row["arch"] == "all coats" and row["split"] == "test"
    # the owner may name images by path
    paths = tmp_path / "paths.csv"
    paths.write_text("path,label\n" + "".join(f"test/{c}/{i}.png,{c}\n" for c in ("Coat", "Sneaker") for i in range(3)))
    assert vitrine("submit", "clothes", str(paths)).returncode == 0
    board = json.loads(vitrine("leaderboard", "clothes", "--json").stdout)
    assert [(r["arch"], r["primary"]) for r in board["groups"][0]["rows"]] == [("paths", 1.0), ("all coats", 0.5)]
    # a bad file: exit 2, every problem with its line, nothing recorded
    bad = tmp_path / "bad.csv"
    bad.write_text(f"image,class\n{ids['images'][0]['id']},Boot\n")
    r = vitrine("submit", "clothes", str(bad))
    assert r.returncode == 2
    assert "line 2: class 'Boot' is not one of the dataset's classes" in r.stderr
    assert "5 of 6 images" not in r.stderr  # missing rows are reported once the rows themselves are right
    assert len(json.loads(vitrine("leaderboard", "clothes", "--json").stdout)["groups"][0]["rows"]) == 2
