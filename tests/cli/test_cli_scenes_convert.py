"""``vitrine data scenes`` and ``vitrine data convert`` through Typer's test runner."""

from __future__ import annotations

import json

from pycocotools.coco import COCO
from typer.testing import CliRunner

from vitrine.cli import app


def run(*args, code: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    out = f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.exit_code == code, out
    assert result.exception is None or isinstance(result.exception, SystemExit), out
    assert "Traceback" not in result.stdout + result.stderr, out
    return result


def test_scenes_then_convert(tmp_path, fmnist_available):
    out = tmp_path / "scenes"
    r = run("data", "scenes", out, "--train", 4, "--val", 2, "--test", 2, "--size", 64, "--seed", 5, "--json")
    info = json.loads(r.stdout)
    assert info["images"] == {"train": 4, "val": 2, "test": 2}
    assert sum(info["objects"].values()) >= 8
    coco = COCO(info["coco"]["val"])
    assert len(coco.getImgIds()) == 2 and len(coco.getAnnIds()) == info["objects"]["val"]

    r = run("data", "convert", out / "annotations" / "instances_train.json", tmp_path / "y", "--to", "yolo", "--json")
    conv = json.loads(r.stdout)
    assert conv["images"] == 4 and conv["annotations"] == info["objects"]["train"]
    assert conv["read_problems"] == conv["write_problems"] == []
    assert (tmp_path / "y" / "data.yaml").is_file()

    r = run("data", "convert", tmp_path / "y", tmp_path / "v", "--to", "voc")
    assert f"converted 4 images, {info['objects']['train']} annotations, 10 classes to voc" in " ".join(
        r.stdout.split()
    )
    assert "mask(s) not representable in VOC (boxes only): boxes kept" in r.stdout
    r = run("data", "convert", tmp_path / "v", tmp_path / "c.xml", "--from", "voc", "--to", "cvat")
    assert (tmp_path / "c.xml").read_text().count("<box ") == info["objects"]["train"]


def test_bad_input_exits_2_with_a_message(tmp_path, fmnist_available):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "images": [}\n')
    r = run("data", "convert", bad, tmp_path / "o.xml", "--to", "cvat", code=2)
    assert "bad.json: not valid JSON" in r.stderr and "line 2" in r.stderr
    r = run("data", "convert", bad, tmp_path / "o", "--to", "parquet", code=2)
    assert "unknown output format 'parquet'" in r.stderr
    (tmp_path / "notes.txt").write_text("hello")
    r = run("data", "convert", tmp_path / "notes.txt", tmp_path / "o.json", code=2)
    assert "cannot tell the annotation format" in r.stderr
    r = run("data", "scenes", tmp_path / "s", "--classes", "Hat", code=2)
    assert "unknown Fashion-MNIST class 'Hat'" in r.stderr
