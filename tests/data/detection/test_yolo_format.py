"""YOLO reader and writer: detect and segment labels, data.yaml, broken lines and files."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from vitrine.core.errors import VitrineError
from vitrine.data.detection.yolo import from_yolo, to_yolo


def _tree(tmp_path, names=("cat", "dog"), lines: str = "", size=(40, 20)):
    root = tmp_path / "y"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", size).save(root / "images" / "train" / "a.png")
    Image.new("RGB", size).save(root / "images" / "train" / "b.jpg")
    (root / "labels" / "train" / "a.txt").write_text(lines)
    (root / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train", "val": "images/train", "names": list(names)})
    )
    return root


def test_write_detect_and_segment(tmp_path, handmade):
    problems = to_yolo(handmade, tmp_path / "det", task="detect")
    assert [p.message for p in problems] == ["1 crowd annotation(s) left out (YOLO has no crowd)"]
    data = yaml.safe_load((tmp_path / "det" / "data.yaml").read_text())
    assert data == {"train": "images/train", "val": "images/val", "nc": 2, "names": {0: "cat", 1: "dog"}}
    assert (tmp_path / "det" / "images" / "train" / "a.png").samefile(handmade.root / "a.png")  # hard link
    lines = (tmp_path / "det" / "labels" / "train" / "a.txt").read_text().splitlines()
    # box (4.5, 6.25, 20, 10.5) in 64x48: centre (14.5, 11.5)
    assert lines[0] == "0 0.2265625 0.23958333 0.3125 0.21875"
    assert lines[1].split()[0] == "1"
    assert (tmp_path / "det" / "labels" / "val" / "sub" / "b.txt").is_file()

    problems = to_yolo(handmade, tmp_path / "seg", task="segment", images="copy")
    assert "1 object(s) without a mask written as their box rectangle" in [p.message for p in problems]
    seg = (tmp_path / "seg" / "labels" / "train" / "a.txt").read_text().splitlines()
    assert seg[0] == "0 0.0703125 0.13020833 0.3828125 0.13020833 0.3828125 0.34895833 0.0703125 0.34895833"
    assert len(seg[1].split()) % 2 == 1 and len(seg[1].split()) >= 7
    assert not (tmp_path / "seg" / "images" / "train" / "a.png").samefile(handmade.root / "a.png")  # a copy

    back = from_yolo(tmp_path / "seg")
    assert not back.problems
    assert [im.split for im in back.images] == ["train", "val"]
    assert [(im.file_name, im.width, im.height) for im in back.images] == [
        ("images/train/a.png", 64, 48),
        ("images/val/sub/b.png", 50, 40),
    ]
    assert len(back.annotations) == 3


def test_read_without_yaml(tmp_path):
    root = tmp_path / "flat"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (10, 10)).save(root / "images" / "x.png")
    (root / "labels" / "x.txt").write_text("2 0.5 0.5 0.2 0.2\n")
    ds = from_yolo(root)
    assert ds.category_names() == ["0", "1", "2"] and ds.images[0].split is None
    assert ds.annotations[0].bbox == pytest.approx((4, 4, 2, 2))
    assert "classes named by index" in ds.problems[0].message
    (root / "classes.txt").write_text("a\nb\nc\n")
    assert from_yolo(root).category_names() == ["a", "b", "c"] and not from_yolo(root).problems


def test_bad_lines_are_skipped_with_file_and_line(tmp_path):
    lines = "\n".join(
        [
            "0 0.5 0.5 0.5 0.5",  # 1 fine
            "1 0.5 0.5 0.5",  # 2 too few fields
            "0 0.5 0.5 0.5 0.5 0.9",  # 3 six fields
            "x 0.5 0.5 0.5 0.5",  # 4 not a number
            "2 0.5 0.5 0.5 0.5",  # 5 class out of range
            "0 0.1 0.1",  # 6 polygon of one point
            "1 0.9 0.5 0.4 0.5",  # 7 extends outside: clipped
            "1 0.5 0.5 0 0.5",  # 8 no width
            "1.5 0.5 0.5 0.5 0.5",  # 9 class not an integer
            "",
            "1 0.1 0.1 0.9 0.1 0.5 0.9",  # 11 a triangle
            "0 nan 0.5 0.5 0.5",  # 12 nan
            "0 20 10 8 6",  # 13 pixels instead of fractions
        ]
    )
    root = _tree(tmp_path, lines=lines)
    ds = from_yolo(root / "data.yaml")
    assert [a.category_id for a in ds.annotations] == [1, 2, 2]
    assert ds.annotations[1].bbox == pytest.approx((28, 5, 12, 10))  # clipped at x=40
    assert ds.annotations[2].segmentation == [pytest.approx([4, 2, 36, 2, 20, 18])]
    label = str(root / "labels" / "train" / "a.txt")
    got = {p.where: p.message for p in ds.problems if p.file == label}
    assert set(got) == {f"line {n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 12, 13)}
    assert got["line 13"].startswith("coordinate 20 is far outside 0..1 (YOLO coordinates are fractions")
    assert got["line 2"].startswith("4 fields: expected 5 (class cx cy w h) or an odd number of 7 or more")
    assert got["line 3"].startswith("6 fields")
    assert got["line 4"] == "'x' is not a number: line skipped"
    assert got["line 5"] == "class 2 is out of range (data.yaml names 0..1): line skipped"
    assert got["line 6"] == "polygon with 1 point(s), at least 3 needed: line skipped"
    assert got["line 7"] == "box (28, 5, 16, 10) extends outside the 40x20 image: clipped to (28, 5, 12, 10)"
    assert "no width or height" in got["line 8"]
    assert got["line 9"].startswith("class 1.5 is out of range")
    assert "nan" in got["line 12"]
    # images/train given for train and val (as a single-split export must, for Ultralytics): train
    assert len(ds.images) == 2 and {im.split for im in ds.images} == {"train"}


def test_bad_data_yaml(tmp_path):
    root = _tree(tmp_path)
    (root / "data.yaml").write_text("train: images/train\nnames: [cat, dog\n")
    with pytest.raises(VitrineError, match=r"data\.yaml: not valid YAML at line 3, column 1"):
        from_yolo(root)
    (root / "data.yaml").write_text("train: images/train\n")
    with pytest.raises(VitrineError, match="no 'names'"):
        from_yolo(root)
    (root / "data.yaml").write_text("train: images/nowhere\nnames: [a]\n")
    with pytest.raises(VitrineError, match="no train/val/test image folder found"):
        from_yolo(root)
    (root / "data.yaml").write_text("names: {0: a, 2: b}\ntrain: images/train\n")
    with pytest.raises(VitrineError, match="without gaps"):
        from_yolo(root)
    (root / "data.yaml").write_text("- just\n- a list\n")
    with pytest.raises(VitrineError, match="expected a mapping"):
        from_yolo(root)


def test_unreadable_image_and_label(tmp_path):
    root = _tree(tmp_path, lines="0 0.5 0.5 0.5 0.5\n")
    (root / "images" / "train" / "broken.png").write_bytes(b"not an image")
    (root / "labels" / "train" / "b.txt").write_bytes(b"\xff\xfe\x00binary")
    ds = from_yolo(root)
    assert [im.file_name for im in ds.images] == ["images/train/a.png"]
    messages = [str(p) for p in ds.problems]
    assert any("broken.png" in m and "skipped" in m for m in messages)
    assert any("b.txt: file: cannot be read as text" in m for m in messages)


def test_precision_on_large_images(tmp_path, handmade):
    """Normalised coordinates keep 1e-3 px on a 6400 px image (8 decimals)."""
    rng = np.random.default_rng(1)
    for im in handmade.images:
        im.width, im.height = im.width * 100, im.height * 100
    for a in handmade.annotations:
        a.bbox = tuple(float(v) for v in rng.uniform(0.123, 1000.0, 4))
        a.segmentation, a.iscrowd = None, 0
    to_yolo(handmade, tmp_path / "big", images="none")
    assert not (tmp_path / "big" / "images").exists()
    im = handmade.images[0]
    rows = [line.split() for line in (tmp_path / "big" / "labels" / "train" / "a.txt").read_text().splitlines()]
    for row, a in zip(rows, [a for a in handmade.annotations if a.image_id == im.id], strict=True):
        cx, cy, w, h = (float(v) for v in row[1:])
        box = ((cx - w / 2) * im.width, (cy - h / 2) * im.height, w * im.width, h * im.height)
        assert np.allclose(box, a.bbox, atol=1e-3)


def test_roboflow_layout(tmp_path):
    root = tmp_path / "rf"
    for split in ("train", "valid"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        Image.new("RGB", (10, 10)).save(root / split / "images" / f"{split}.jpg")
        (root / split / "labels" / f"{split}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['thing']\n")
    ds = from_yolo(root / "data.yaml")
    assert not ds.problems
    assert [(im.file_name, im.split) for im in ds.images] == [
        ("train/images/train.jpg", "train"),
        ("valid/images/valid.jpg", "val"),
    ]
    assert len(ds.annotations) == 2
