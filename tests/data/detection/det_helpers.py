"""Helpers shared by the annotation-format tests (compare two datasets object by object)."""

from __future__ import annotations

import numpy as np

from vitrine.data.detection.geometry import segmentation_to_mask
from vitrine.data.detection.model import Annotation, DetectionDataset


def mask_of(ds: DetectionDataset, ann: Annotation) -> np.ndarray:
    im = next(i for i in ds.images if i.id == ann.image_id)
    return segmentation_to_mask(ann.segmentation, im.height, im.width).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def assert_same_annotations(
    a: DetectionDataset, b: DetectionDataset, *, box_tol: float = 1e-3, masks: bool = True, min_iou: float = 0.99
) -> None:
    """Same images (matched by base name: formats lay images out differently), and per image the
    same objects: class name, box within ``box_tol`` px, and (``masks``) mask IoU of at least ``min_iou``."""
    names_a = {c.id: c.name for c in a.categories}
    names_b = {c.id: c.name for c in b.categories}
    img_a = {im.file_name.rsplit("/", 1)[-1]: im for im in a.images}
    img_b = {im.file_name.rsplit("/", 1)[-1]: im for im in b.images}
    assert len(img_a) == len(a.images) and len(img_b) == len(b.images)
    assert sorted(img_a) == sorted(img_b)
    by_a, by_b = a.annotations_by_image(), b.annotations_by_image()
    total = 0
    for name, im in img_a.items():
        other = img_b[name]
        assert (im.width, im.height) == (other.width, other.height)

        def key(ds_names, ann):
            return (ds_names[ann.category_id], *(round(v, 1) for v in ann.bbox))

        left = sorted(by_a[im.id], key=lambda x: key(names_a, x))
        right = sorted(by_b[other.id], key=lambda x: key(names_b, x))
        assert len(left) == len(right), name
        for x, y in zip(left, right, strict=True):
            total += 1
            assert names_a[x.category_id] == names_b[y.category_id]
            assert np.allclose(x.bbox, y.bbox, atol=box_tol), (name, x.bbox, y.bbox)
            if masks and x.segmentation is not None:
                assert y.segmentation is not None
                assert iou(mask_of(a, x), mask_of(b, y)) >= min_iou
    assert total == len(a.annotations) == len(b.annotations)
