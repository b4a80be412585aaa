"""The offline scenes generator: reproducible, exact masks and boxes, no item shared by splits."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from det_helpers import iou, mask_of
from PIL import Image
from pycocotools.coco import COCO

from vitrine.core.errors import NotFound, VitrineError
from vitrine.data.detection.coco import from_coco
from vitrine.data.detection.geometry import mask_bbox
from vitrine.data.detection.scenes import generate_scenes
from vitrine.data.detection.yolo import from_yolo


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_counts(scenes):
    out = scenes.root.parent
    assert [len(scenes.split(s).images) for s in ("train", "val", "test")] == [12, 4, 4]
    assert scenes.category_names()[0] == "T-shirt/top" and len(scenes.categories) == 10
    for im in scenes.images:
        assert (out / "images" / im.file_name).is_file()
        assert im.file_name.startswith(f"{im.split}/")
        assert Image.open(out / "images" / im.file_name).size == (96, 96)
    for split in ("train", "val", "test"):
        assert (out / "annotations" / f"instances_{split}.json").is_file()
        assert (out / "yolo" / "images" / split).is_dir() and (out / "yolo" / "labels" / split).is_dir()
    assert 1 <= min(len(v) for v in scenes.annotations_by_image().values())
    assert max(len(v) for v in scenes.annotations_by_image().values()) <= 4


def test_same_seed_same_bytes(tmp_path, scenes):
    a = generate_scenes(tmp_path / "a", n_train=5, n_val=2, n_test=2, image_size=64, seed=3, yolo=True)
    generate_scenes(tmp_path / "b", n_train=5, n_val=2, n_test=2, image_size=64, seed=3, yolo=True)
    generate_scenes(tmp_path / "c", n_train=5, n_val=2, n_test=2, image_size=64, seed=4, yolo=False)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert fa == fb
    assert len(fa) == 9 + 3 + 1 + 9 + 9  # images, COCO files, data.yaml, YOLO images and labels
    assert fa["images/train/train_00000.png"] != fc["images/train/train_00000.png"]
    assert len(a.annotations) >= 9


def test_masks_match_boxes_and_do_not_overlap(scenes):
    ious = []
    for im in scenes.images:
        anns = scenes.annotations_by_image()[im.id]
        union = np.zeros((im.height, im.width), int)
        for a in anns:
            m = mask_of(scenes, a)
            assert mask_bbox(m) == pytest.approx(a.bbox)
            assert abs(m.sum() - a.area) <= 0.02 * a.area + 2  # polygon fill vs pixel count
            union += m
        assert union.max() <= 1  # visible masks: occluded pixels belong to the item on top
    # the polygons in the COCO file fill back the pixel masks
    out = scenes.root.parent
    coco = COCO(str(out / "annotations" / "instances_train.json"))
    assert len(coco.getAnnIds()) == len(scenes.split("train").annotations)
    for a in scenes.split("train").annotations:
        ious.append(iou(coco.annToMask(coco.anns[a.id]).astype(bool), mask_of(scenes, a)))
        assert coco.anns[a.id]["area"] == a.area
    assert min(ious) == pytest.approx(1.0)


def test_items_look_like_their_masks(scenes):
    """Pixels inside the top item's mask differ from the background just outside its box."""
    out = scenes.root.parent
    contrasts = []
    for im in scenes.images:
        pixels = np.asarray(Image.open(out / "images" / im.file_name), dtype=np.float32)
        top = scenes.annotations_by_image()[im.id][-1]
        m = mask_of(scenes, top)
        contrasts.append(abs(pixels[m].mean() - pixels[~m].mean()))
    assert np.median(contrasts) > 15


def test_no_item_in_two_splits(scenes):
    origin = {s: {a.attributes["source_index"] for a in scenes.split(s).annotations} for s in ("train", "val", "test")}
    assert {a.attributes["source_split"] for a in scenes.split("test").annotations} == {"test"}
    assert {a.attributes["source_split"] for a in scenes.split("val").annotations} == {"train"}
    assert not origin["train"] & origin["val"]
    assert all(i % 6 == 0 for i in origin["val"]) and all(i % 6 for i in origin["train"])


def test_written_files_read_back(scenes):
    out = scenes.root.parent
    coco = from_coco(out / "annotations" / "instances_val.json")
    # COCO's layout (COCO 2017, datumaro, supervision): names relative to images/<split>/
    assert coco.root == out / "images" / "val"
    assert [im.file_name for im in coco.images] == [im.file_name[4:] for im in scenes.split("val").images]
    assert all((coco.root / im.file_name).is_file() for im in coco.images)
    assert {im.split for im in coco.images} == {"val"} and not coco.problems
    assert len(coco.annotations) == len(scenes.split("val").annotations)
    yolo = from_yolo(out / "yolo")
    assert not yolo.problems
    assert len(yolo.images) == 20 and len(yolo.annotations) == len(scenes.annotations)
    assert yolo.category_names() == scenes.category_names()


def test_classes_subset_and_rle(tmp_path, fmnist_available):
    ds = generate_scenes(
        tmp_path / "s", n_train=6, n_val=0, n_test=2, image_size=64, classes=["Trouser", "Bag"], masks="rle", seed=1
    )
    assert ds.category_names() == ["Trouser", "Bag"]
    assert {c.id for c in ds.categories} == {1, 2}
    assert not (tmp_path / "s" / "annotations" / "instances_val.json").exists()
    data = json.loads((tmp_path / "s" / "annotations" / "instances_train.json").read_text())
    assert all(isinstance(a["segmentation"], dict) for a in data["annotations"])
    coco = COCO(str(tmp_path / "s" / "annotations" / "instances_train.json"))
    for a in data["annotations"]:
        assert coco.annToMask(a).sum() == a["area"]


def test_bad_arguments(tmp_path, fmnist_available):
    with pytest.raises(VitrineError, match="unknown Fashion-MNIST class 'Hat'"):
        generate_scenes(tmp_path / "x", classes=["Hat"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(VitrineError, match="not an empty folder"):
        generate_scenes(tmp_path / "full", n_train=1)
    with pytest.raises(NotFound, match="Fashion-MNIST folder not found") as exc:
        generate_scenes(tmp_path / "y", n_train=1, source=tmp_path / "nowhere")
    assert "dataset-fashion-mnist" in exc.value.hint
    with pytest.raises(VitrineError, match="objects"):
        generate_scenes(tmp_path / "z", objects=(3, 1))


@pytest.mark.slow
def test_speed_200_scenes(tmp_path, scenes):
    t0 = time.perf_counter()
    ds = generate_scenes(tmp_path / "s", n_train=200, n_val=0, n_test=0, image_size=128, seed=0)
    elapsed = time.perf_counter() - t0
    print(f"200 scenes at 128 px: {elapsed:.2f} s, {len(ds.annotations)} objects")
    assert len(ds.images) == 200
    assert elapsed < 30  # a few seconds on an idle core; generous for a loaded CI machine
