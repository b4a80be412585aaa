"""COCO reader and writer: every annotation kind, and every kind of broken file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from det_helpers import assert_same_annotations, mask_of
from PIL import Image
from pycocotools.coco import COCO

from vitrine.core.errors import NotFound, VitrineError
from vitrine.data.detection.coco import from_coco, split_from_name, to_coco
from vitrine.data.detection.geometry import mask_to_rle


def _write(path, doc) -> str:
    path.write_text(json.dumps(doc, indent=1))
    return str(path)


def _doc(**extra):
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 5, "name": "dog"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 8], "iscrowd": 0}],
    }
    doc.update(extra)
    return doc


def test_write_read_every_kind(tmp_path, handmade):
    to_coco(handmade, tmp_path / "instances_train.json")
    back = from_coco(tmp_path / "instances_train.json", images_root=handmade.root)
    assert not back.problems
    assert_same_annotations(handmade, back, box_tol=1e-9, min_iou=1.0)
    got = {a.id: a for a in back.annotations}
    assert got[1].segmentation is None and got[1].attributes == {"difficult": 1} and got[1].area == 210.0
    assert isinstance(got[2].segmentation, list) and len(got[2].segmentation) == 2
    assert isinstance(got[3].segmentation, dict) and isinstance(got[3].segmentation["counts"], str)
    assert got[4].iscrowd == 1
    assert [im.split for im in back.images] == ["train", "val"]  # kept per image
    assert [(c.id, c.name, c.supercategory) for c in back.categories] == [(3, "cat", "animal"), (7, "dog", "animal")]
    # pycocotools reads what we wrote, masks included
    coco = COCO(str(tmp_path / "instances_train.json"))
    for a in handmade.annotations:
        if a.segmentation is not None:
            assert np.array_equal(coco.annToMask(coco.anns[a.id]).astype(bool), mask_of(handmade, a))


def test_masks_options(tmp_path, handmade):
    to_coco(handmade, tmp_path / "p.json", masks="polygons")
    to_coco(handmade, tmp_path / "r.json", masks="rle")
    p = json.loads((tmp_path / "p.json").read_text())
    r = json.loads((tmp_path / "r.json").read_text())
    assert all(isinstance(a["segmentation"], list) for a in p["annotations"])
    assert all(isinstance(a["segmentation"], dict) for a in r["annotations"] if a["segmentation"])
    for f in ("p.json", "r.json"):
        assert_same_annotations(handmade, from_coco(tmp_path / f, images_root=handmade.root), min_iou=1.0)
    with pytest.raises(VitrineError, match="unknown masks option"):
        to_coco(handmade, tmp_path / "x.json", masks="bitmap")


def test_uncompressed_rle_and_flat_polygon(tmp_path):
    m = np.zeros((30, 40), np.uint8)
    m[5:15, 10:30] = 1
    flat = m.flatten(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 10], "iscrowd": 1,
         "segmentation": {"size": [30, 40], "counts": np.diff(bounds).tolist()}},
        {"id": 2, "image_id": 1, "category_id": 5, "segmentation": [2, 2, 12, 2, 12, 12]},  # no bbox: derived
    ]  # fmt: skip
    ds = from_coco(_write(tmp_path / "c.json", _doc(annotations=anns)))
    assert not ds.problems
    a, b = ds.annotations
    assert a.segmentation == mask_to_rle(m) and a.area == 200 and a.iscrowd == 1
    assert b.segmentation == [[2, 2, 12, 2, 12, 12]] and b.bbox == (2, 2, 10, 10) and b.area == pytest.approx(50, abs=6)


def test_split_from_name_and_images_root(tmp_path):
    assert split_from_name("instances_val2017.json") == "val"
    assert split_from_name("train.json") == "train"
    assert split_from_name("annotations.json") is None
    (tmp_path / "images" / "test").mkdir(parents=True)
    (tmp_path / "images" / "test" / "a.png").write_bytes(b"")
    (tmp_path / "annotations").mkdir()
    ds = from_coco(_write(tmp_path / "annotations" / "instances_test.json", _doc()))
    assert ds.root == tmp_path / "images" / "test"
    assert ds.images[0].split == "test"


def test_image_sizes_from_files(tmp_path):
    Image.new("RGB", (33, 21)).save(tmp_path / "a.png")
    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "gone.png", "width": 0}]
    ds = from_coco(_write(tmp_path / "c.json", _doc(images=images, annotations=[])), images_root=tmp_path)
    assert [(im.id, im.width, im.height) for im in ds.images] == [(1, 33, 21)]
    assert ds.problems[0].where == "images[1] (id 2)"
    assert ds.problems[0].message.startswith("no width/height and image not found")


def test_broken_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [\n  {"id": 1,\n  "file_name": "a.png" "width": 3}\n]}')
    with pytest.raises(VitrineError, match=r"bad\.json: not valid JSON: Expecting ',' delimiter at line 3, column 24"):
        from_coco(bad)
    with pytest.raises(VitrineError, match="missing key 'categories' at the top level"):
        from_coco(_write(tmp_path / "nocat.json", {"images": []}))
    with pytest.raises(VitrineError, match="looks like a detection results file"):
        from_coco(_write(tmp_path / "results.json", [{"image_id": 1}]))
    with pytest.raises(VitrineError, match="'annotations' is a dict, not a list"):
        from_coco(_write(tmp_path / "d.json", _doc(annotations={})))
    with pytest.raises(NotFound, match="COCO file not found"):
        from_coco(tmp_path / "nope.json")


def test_bad_entries_are_skipped_or_clipped(tmp_path):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 8]},  # fine
        {"id": 2, "image_id": 9, "category_id": 1, "bbox": [1, 2, 10, 8]},  # unknown image
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [1, 2, 10, 8]},  # unknown category
        {"id": 4, "image_id": 1, "category_id": 5, "bbox": [30, 20, 20, 20]},  # outside: clipped
        {"id": 5, "image_id": 1, "category_id": 5, "bbox": [50, 2, 10, 8]},  # entirely outside: skipped
        {"id": 6, "image_id": 1, "category_id": 5, "bbox": [3, 2, 0, 8]},  # no width
        {"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "segmentation": [[1, 1, 5, 5]]},
        {"id": 8, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
         "segmentation": {"size": [9, 9], "counts": "1"}},  # RLE of another size
        {"id": 9, "image_id": 1, "category_id": 1, "bbox": "1 1 5 5"},  # not a list, no mask
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
         "segmentation": {"size": [30, 40], "counts": "PP0o"}},  # corrupt RLE string
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 0,
         "segmentation": [[1, 1, 3, 3, 5, 5]]},  # a polygon of no area
        "nonsense",
    ]  # fmt: skip
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}, {"id": 1, "file_name": "b.png"}]
    ds = from_coco(_write(tmp_path / "c.json", _doc(annotations=anns, images=images)))
    assert sorted(a.id for a in ds.annotations) == [1, 4, 7, 8, 10, 11]
    got = {a.id: a for a in ds.annotations}
    assert got[4].bbox == (30, 20, 10, 10)
    assert got[7].segmentation is None and got[8].segmentation is None  # masks dropped, boxes kept
    text = "\n".join(str(p) for p in ds.problems)
    assert all(p.file == str(tmp_path / "c.json") for p in ds.problems)
    for expected in (
        "images[1] (id 1): image id 1 used twice: this one skipped",
        "annotations[1] (id 2): image_id 9 is not a listed image: skipped",
        "annotations[2] (id 3): category_id 2 is not a listed category: skipped",
        "annotations[3] (id 4): box (30, 20, 20, 20) extends outside the 40x30 image: clipped to (30, 20, 10, 10)",
        "annotations[4] (id 5): box (50, 2, 10, 8) lies outside the image (40x30): skipped",
        "annotations[5] (id 6): box (3, 2, 0, 8) has no width or height (40x30): skipped",
        "annotations[6] (id 7): polygon 1 has 2 point(s), at least 3 are needed: dropped",
        "annotations[7] (id 8): RLE mask size 9x9 (h x w) is not the image's 30x40: mask dropped, box kept",
        "annotations[8] (id 9): bbox '1 1 5 5' is not 4 numbers: derived from the mask",
        "annotations[11]: a str, not an object: skipped",
        "annotations[10] (id 11): mask covers no pixel: mask dropped, box kept",
        "annotations[9] (id 10): RLE mask is malformed (the RLE string ends in the middle of a number): mask dropped",
    ):
        assert expected in text, text
