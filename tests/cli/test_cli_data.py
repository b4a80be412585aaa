"""``vitrine data ...`` through Typer's test runner (in process, fast)."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vitrine.cli import app


def img(path: Path, value: int, size=(6, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def run(*args, code: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    out = f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.exit_code == code, out
    assert result.exception is None or isinstance(result.exception, SystemExit), out
    assert "Traceback" not in result.stdout + result.stderr, out
    return result


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "pets"
    for s, split in enumerate(("train", "test")):
        for k, label in enumerate(("cat", "dog")):
            for i in range(5):  # every image different
                img(root / split / label / f"{i}.png", value=100 * s + 50 * k + i, size=(6 + i, 4))
    return root


def test_import_imagefolder_list_and_stats(tmp_path, tree):
    ws = tmp_path / "ws"
    shutil.copyfile(tree / "train/cat/0.png", tree / "test/dog/leak.png")  # same file in train and test
    r = run("data", "import", "imagefolder", tree, "--name", "pets", "--workspace", ws, "--val", "0.2", "--json")
    data = json.loads(r.stdout)
    assert data["samples"] == 21 and data["classes"] == ["cat", "dog"]
    assert data["splits"] == {"train": 8, "val": 2, "test": 11}  # val: 20% of the given train
    assert data["counts"]["test"] == {"cat": 5, "dog": 6}
    assert data["skipped"] == []
    assert (ws / "datasets" / "pets" / "dataset.json").is_file()

    r = run("data", "import", "imagefolder", tree, "--name", "pets", "--workspace", ws, code=2)
    assert "already exists" in r.stderr

    r = run("data", "import", "imagefolder", tree, "-n", "pets", "-w", ws, "--no-keep-split", "--overwrite")
    assert "dataset pets: 21 images, 2 classes" in " ".join(r.stdout.split())

    listing = json.loads(run("data", "list", "--workspace", ws, "--json").stdout)
    assert [(d["name"], d["samples"], d["classes"]) for d in listing] == [("pets", 21, 2)]
    assert "pets" in run("data", "list", "--workspace", ws).stdout

    st = json.loads(run("data", "stats", "pets", "--workspace", ws, "--json").stdout)
    assert st["total"] == 21 and "per_image" not in st
    assert len(st["leakage"]) == 1 and sorted(st["leakage"][0]["paths"]) == ["test/dog/leak.png", "train/cat/0.png"]
    assert st["width"]["min"] == 6 and st["width"]["max"] == 10
    human = run("data", "stats", "pets", "--workspace", ws).stdout
    flat = " ".join(human.split())
    assert "leakage: 1 group(s)" in flat and "cached" in flat
    assert "images per class" in flat and "aspect w/h" in flat

    r = run("data", "stats", "nothing", "--workspace", ws, code=2)
    assert "no dataset 'nothing'" in r.stderr


def test_import_csv_reports_bad_rows_and_exits_0(tmp_path):
    base = tmp_path / "shop"
    img(base / "a.png", 1)
    img(base / "b.png", 2)
    img(base / "c.png", 3)
    (base / "bad.png").write_bytes(b"not an image at all")
    (base / "labels.csv").write_text(
        "image;category\n"
        "a.png;Home >> Curtains >> Door\n"
        "gone.png;Home >> Curtains\n"
        "b.png;Home >> Rugs\n"
        "bad.png;Home >> Rugs\n"
        "c.png;\n",
        encoding="utf-8",
    )
    ws = tmp_path / "ws"
    args = ["data", "import", "csv", base / "labels.csv", "--name", "shop", "--image-column", "image"]
    args += ["--label-column", "category", "--depth", "2", "--workspace", ws]
    data = json.loads(run(*args, "--json").stdout)
    assert data["classes"] == ["Home >> Curtains", "Home >> Rugs"]
    assert data["samples"] == 2
    assert [(p["row"], p["source"]) for p in data["skipped"]] == [
        (3, "labels.csv"),
        (5, "labels.csv"),
        (6, "labels.csv"),
    ]
    assert "file not found" in data["skipped"][0]["message"]
    assert "empty label" in data["skipped"][2]["message"]

    human = run(*args, "--overwrite").stdout
    flat = " ".join(human.split())
    assert "3 skipped" in flat
    assert "labels.csv:3: gone.png: file not found" in flat and "labels.csv:6:" in flat


def test_import_errors_exit_2_without_traceback(tmp_path):
    ws = tmp_path / "ws"
    r = run("data", "import", "csv", tmp_path / "missing.csv", "--name", "x", "--image-column", "p",
            "--label-column", "l", "--workspace", ws, code=2)  # fmt: skip
    assert "CSV file not found" in r.stderr
    (tmp_path / "l.csv").write_text("path,label\n", encoding="utf-8")
    r = run("data", "import", "csv", tmp_path / "l.csv", "--name", "x", "--image-column", "img",
            "--label-column", "label", "--workspace", ws, code=2)  # fmt: skip
    assert "no column 'img'" in r.stderr and "'path', 'label'" in r.stderr
    r = run("data", "import", "imagefolder", tmp_path / "nope", "--name", "x", "--workspace", ws, code=2)
    assert "not found" in r.stderr
    r = run("data", "import", "imagefolder", tmp_path, "--name", "bad/name", "--workspace", ws, code=2)
    assert "invalid dataset name" in r.stderr
    assert "no dataset" in run("data", "list", "--workspace", ws).stdout


def test_import_collection(tmp_path):
    project = tmp_path / "archive"
    for label in ("bridges", "churches"):
        for i in range(5):
            img(project / "images" / label / f"{i}.png", value=10 * i + len(label))
    img(project / "images" / "loose.png", 99)
    data = json.loads(
        run(
            "data",
            "import",
            "collection",
            project,
            "--name",
            "archive",
            "--workspace",
            tmp_path / "ws",
            "--val",
            "0.2",
            "--test",
            "0.2",
            "--json",
        ).stdout  # fmt: skip
    )
    assert data["classes"] == ["bridges", "churches"] and data["samples"] == 10
    assert data["splits"] == {"train": 6, "val": 2, "test": 2}
    assert [p["source"] for p in data["skipped"]] == ["loose.png"]


def _fake_idx(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem, n in (("train", 30), ("t10k", 10)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28))), ("labels-idx1", np.arange(n) % 10)):
            head = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            (folder / f"{stem}-{kind}-ubyte.gz").write_bytes(gzip.compress(head + array.astype(np.uint8).tobytes()))
    return folder


def test_fashion_mnist_command(tmp_path):
    source = _fake_idx(tmp_path / "idx")
    out = tmp_path / "fm"
    data = json.loads(run("data", "fashion-mnist", out, "--source", source, "--train-per-class", "2", "--json").stdout)
    assert data["images"] == 20 + 10 and data["layout"] == "imagefolder"
    human = run("data", "fashion-mnist", tmp_path / "fm-csv", "--source", source, "--layout", "csv").stdout
    assert "vitrine data import csv" in human and (tmp_path / "fm-csv" / "labels.csv").is_file()
    r = run("data", "fashion-mnist", out, "--source", source, code=2)  # not empty
    assert "not an empty folder" in r.stderr
    r = run("data", "fashion-mnist", tmp_path / "x", "--source", source, "--layout", "zip", code=2)
    assert "unknown layout" in r.stderr
