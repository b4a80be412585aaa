"""A -> B -> A keeps every annotation, for every pair of formats (masks where both hold masks)."""

from __future__ import annotations

import pytest
from det_helpers import assert_same_annotations

from vitrine.data.detection.coco import from_coco
from vitrine.data.detection.convert import detect_format, read_any, write_any

# name: (format, YOLO task, file name or folder, holds masks)
KINDS = {
    "coco": ("coco", None, "ann.json", True),
    "yolo-seg": ("yolo", "segment", "yolo", True),
    "yolo-det": ("yolo", "detect", "yolo", False),
    "cvat": ("cvat", None, "ann.xml", True),
    "voc": ("voc", None, "voc", False),
}


def _write(ds, kind, folder):
    fmt, task, name, _ = KINDS[kind]
    folder.mkdir(parents=True, exist_ok=True)
    write_any(ds, folder / name, fmt, task=task)
    return folder / name


def _read(kind, path, images_root):
    ds = read_any(path, images_root=images_root if KINDS[kind][0] in ("coco", "cvat") else None)
    assert detect_format(path) == KINDS[kind][0]
    assert not ds.problems, ds.problems[:3]
    return ds


@pytest.fixture(scope="module")
def source(scenes):
    ds = from_coco(scenes.root.parent / "annotations" / "instances_train.json")
    assert len(ds.annotations) >= 12
    return ds


@pytest.mark.parametrize(("a", "b"), [(a, b) for a in KINDS for b in KINDS if a != b])
def test_a_to_b_to_a(tmp_path, source, a, b):
    a0 = _read(a, _write(source, a, tmp_path / "a0"), source.root)
    b1 = _read(b, _write(a0, b, tmp_path / "b1"), a0.root)
    a2 = _read(a, _write(b1, a, tmp_path / "a2"), b1.root)
    masks = KINDS[a][3] and KINDS[b][3]
    assert_same_annotations(a0, a2, box_tol=1e-3, masks=masks, min_iou=0.99)
    assert a2.category_names() == source.category_names()
    if masks:
        assert all(x.segmentation is not None for x in a2.annotations)


def test_handmade_coco_cvat_coco(tmp_path, handmade):
    """Polygons in two parts, RLE with a hole and crowd regions survive COCO -> CVAT -> COCO."""
    write_any(handmade, tmp_path / "a.xml", "cvat")
    cvat = read_any(tmp_path / "a.xml", images_root=handmade.root)
    write_any(cvat, tmp_path / "b.json", "coco")
    back = read_any(tmp_path / "b.json", images_root=handmade.root)
    assert_same_annotations(handmade, back, min_iou=1.0)
    assert sorted(a.iscrowd for a in back.annotations) == [0, 0, 0, 1]
