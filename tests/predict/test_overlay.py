"""The overlay: coloured translucent masks where the masks are, boxes, tags, class filter, stable colours."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vitrine.models.detectors.base import Detections
from vitrine.predict.overlay import PALETTE, class_color, draw_overlay


def make_detections(width=200, height=150):
    """A cat and a dog, at the same place relative to the image whatever its size."""
    k = width / 200
    cat = [round(v * k) for v in (20, 30, 100, 90)]
    dog = [round(v * k) for v in (120, 60, 190, 140)]
    masks = np.zeros((2, height, width), dtype=bool)
    for i, (x1, y1, x2, y2) in enumerate((cat, dog)):
        masks[i, y1:y2, x1:x2] = True
    return Detections(
        boxes=np.array([cat, dog], dtype=np.float32),
        scores=np.array([0.93, 0.71], dtype=np.float32),
        class_ids=np.array([17, 18], dtype=np.int64),
        labels=["cat", "dog"],
        width=width,
        height=height,
        masks=masks,
        model="hand-made",
    )


def grey(width=200, height=150, value=128):
    return Image.new("RGB", (width, height), (value, value, value))


def chroma(arr):
    """How far from grey each pixel is (0 on the grey background)."""
    a = arr.astype(int)
    return a.max(axis=2) - a.min(axis=2)


def test_masks_are_coloured_where_the_mask_is():
    det = make_detections()
    out = draw_overlay(grey(), det, show_boxes=False, show_labels=False)
    assert out.size == (200, 150) and out.mode == "RGB"
    arr = np.asarray(out)
    c = chroma(arr)
    inner_cat = arr[40:80, 30:90]  # well inside the cat mask (away from its outline)
    assert (chroma(inner_cat) > 20).all()
    # the blend: 0.55 * grey + 0.45 * the class colour
    expected = np.round(128 * 0.55 + np.array(class_color("cat")) * 0.45)
    assert np.abs(inner_cat.reshape(-1, 3) - expected).max() <= 1
    assert (chroma(arr[70:130, 130:180]) > 20).all()  # inside the dog
    outside = np.ones((150, 200), dtype=bool)
    outside[28:92, 18:102] = False
    outside[58:142, 118:192] = False
    assert (c[outside] == 0).all()  # nothing drawn outside the masks (and their outlines)


def test_boxes_labels_and_class_filter():
    det = make_detections()
    full = np.asarray(draw_overlay(grey(), det, alpha=0.0))  # boxes and tags only
    assert chroma(full)[30:90, 20].max() > 20  # left edge of the cat's box
    assert chroma(full)[50:80, 40:80].max() == 0  # inside the box, below the tag: untouched
    tag = full[10:30, 20:70]  # the "cat 0.93" tag sits above the box
    assert chroma(tag).max() > 20
    only_dog = np.asarray(draw_overlay(grey(), det, classes=["dog"]))
    assert chroma(only_dog)[30:90, 20:100].max() == 0  # the cat is hidden
    assert chroma(only_dog)[70:130, 130:180].min() > 20
    by_id = np.asarray(draw_overlay(grey(), det, classes=[18]))
    assert np.array_equal(by_id, only_dog)
    nothing = np.asarray(draw_overlay(grey(), det, classes=[]))
    assert chroma(nothing).max() == 0


def test_colours_are_stable_and_distinct():
    assert class_color("cat") == class_color("cat")
    assert class_color("cat") in PALETTE
    assert len(set(PALETTE)) == len(PALETTE)
    assert min(max(c) - min(c) for c in PALETTE) >= 90  # saturated: visible on grey at alpha 0.45
    assert class_color("cat") != class_color("dog")


def test_small_and_large_images_and_scaled_detections():
    det = make_detections()
    small = draw_overlay(grey(50, 38), det)  # detections made on a 200x150 image, drawn on a thumbnail
    assert small.size == (50, 38)
    assert chroma(np.asarray(small))[12:20, 8:22].min() > 20  # the cat mask, scaled down
    big = draw_overlay(grey(2000, 1500), make_detections(2000, 1500))
    arr = np.asarray(big)
    assert chroma(arr)[400:800, 300:900].min() > 20
    # line width grows with the image: the box edge (x = 200) is several pixels wide on a large image
    edge = chroma(np.asarray(draw_overlay(grey(2000, 1500), make_detections(2000, 1500), alpha=0)))[500:550, 180:220]
    assert 5 <= (edge > 20).all(axis=0).sum() <= 12
    edge_small = chroma(np.asarray(draw_overlay(grey(), make_detections(), alpha=0)))[50:55, 15:25]
    assert 1 <= (edge_small > 20).all(axis=0).sum() <= 3
    gray_input = draw_overlay(Image.new("L", (200, 150), 128), det)
    assert gray_input.mode == "RGB"
    no_dets = draw_overlay(grey(), make_detections().above(0.99))
    assert chroma(np.asarray(no_dets)).max() == 0
