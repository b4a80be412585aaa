"""Fixtures for the annotation formats: a small generated scenes dataset (built once per session)
and a hand-made dataset with every kind of annotation (box only, polygons, RLE, crowd)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrine.data.detection.geometry import mask_to_rle, segmentation_to_mask
from vitrine.data.detection.model import Annotation, Category, DetectionDataset, ImageRecord
from vitrine.data.fashion_mnist import DEFAULT_SOURCE


@pytest.fixture(scope="session")
def fmnist_available() -> None:
    if not Path(DEFAULT_SOURCE, "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")


@pytest.fixture(scope="session")
def scenes(tmp_path_factory, fmnist_available) -> DetectionDataset:
    """12 train, 4 val, 4 test scenes of 96 px (seed 7), written as COCO and YOLO."""
    from vitrine.data.detection.scenes import generate_scenes

    out = tmp_path_factory.mktemp("scenes") / "s"
    return generate_scenes(out, n_train=12, n_val=4, n_test=4, image_size=96, seed=7)


@pytest.fixture
def handmade(tmp_path) -> DetectionDataset:
    """Two images (64x48, 50x40), sparse category ids, a box-only object, polygons (two parts),
    an RLE mask and a crowd region."""
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / "sub" / "b.png")
    blob = np.zeros((40, 50), np.uint8)
    blob[10:30, 5:20] = 1
    blob[15:20, 10:14] = 0  # a hole
    crowd = np.zeros((40, 50), np.uint8)
    crowd[30:38, 30:48] = 1
    anns = [
        Annotation(1, 1, 3, (4.5, 6.25, 20.0, 10.5), None, 0, 210.0, {"difficult": 1}),
        Annotation(2, 1, 7, (30.0, 10.0, 25.0, 30.0), [[30, 10, 45, 10, 45, 25, 30, 25], [50, 30, 55, 40, 50, 40]]),
        Annotation(3, 2, 3, (5.0, 10.0, 15.0, 20.0), mask_to_rle(blob)),
        Annotation(4, 2, 7, (30.0, 30.0, 18.0, 8.0), mask_to_rle(crowd), iscrowd=1),
    ]
    images = [ImageRecord(1, "a.png", 64, 48, "train"), ImageRecord(2, "sub/b.png", 50, 40, "val")]
    for a in anns:
        if a.segmentation is not None:
            im = images[a.image_id - 1]
            a.area = float(segmentation_to_mask(a.segmentation, im.height, im.width).sum())
        else:
            a.area = a.bbox[2] * a.bbox[3]
    return DetectionDataset(images, [Category(3, "cat", "animal"), Category(7, "dog", "animal")], anns, root)
