"""An instance-segmentation dataset that exists offline: Fashion-MNIST items placed on photos.

Each scene is a random crop of a sample photo shipped with scikit-image or scikit-learn
(softened: blurred, partly greyed and darkened, so the items stay visible), on which 1 to 4 real
Fashion-MNIST items (Debian's ``dataset-fashion-mnist``) are pasted at random scales and
positions, grey or tinted with a random colour. Masks are exact: an item's mask is its pixels
above a threshold, holes filled, main connected part kept; later items occlude earlier ones,
whose visible masks and boxes are recomputed, and an item left with less than ``min_visible`` of
its area is removed from the scene (it is not drawn, so nothing visible is unlabelled).

Train and val scenes take items from the Fashion-MNIST train file (val: the items whose index is
a multiple of 6, train: the others), test scenes from the test file: no item appears in two
splits. Every scene draws from its own seeded generator: the same arguments give byte-identical
images and annotation files.

Layout written under ``out_dir``::

    images/<split>/<split>_00000.png
    annotations/instances_<split>.json      COCO, polygons (or RLE with masks="rle"); file names
                                            relative to images/<split>/, as in COCO 2017
    yolo/data.yaml, yolo/images/<split>/, yolo/labels/<split>/   YOLO segmentation
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from vitrine.core.errors import VitrineError
from vitrine.data.detection.geometry import mask_bbox, mask_to_polygons, mask_to_rle
from vitrine.data.detection.model import Annotation, Category, DetectionDataset, ImageRecord
from vitrine.data.fashion_mnist import DEFAULT_SOURCE, FASHION_MNIST_CLASSES, FASHION_MNIST_FOLDERS, read_fashion_mnist

__all__ = ["BACKGROUNDS", "generate_scenes", "render_scene"]

SPLITS = ("train", "val", "test")
BACKGROUNDS = (
    "skimage:astronaut",
    "skimage:coffee",
    "skimage:rocket",
    "skimage:chelsea",
    "skimage:camera",
    "skimage:immunohistochemistry",
    "sklearn:china.jpg",
    "sklearn:flower.jpg",
)
ITEM_THRESHOLD = 0.1  # item pixels above 10% of full intensity belong to its mask
MIN_PIXELS = 16  # smallest visible area kept, in pixels


@lru_cache(maxsize=2)
def _items(source: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return read_fashion_mnist(source)


@lru_cache(maxsize=1)
def _backgrounds() -> tuple[np.ndarray, ...]:
    """The sample photos as float32 RGB arrays in [0, 1] (they ship inside the packages: offline)."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    out = []
    for name in BACKGROUNDS:
        kind, _, what = name.partition(":")
        arr = getattr(skimage.data, what)() if kind == "skimage" else load_sample_image(what)
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        out.append(np.ascontiguousarray(arr[..., :3], dtype=np.float32) / 255.0)
    return tuple(out)


def _resolve_classes(classes: Sequence[str | int] | None) -> list[int]:
    if classes is None:
        return list(range(len(FASHION_MNIST_CLASSES)))
    lookup = {}
    for i, (name, folder) in enumerate(zip(FASHION_MNIST_CLASSES, FASHION_MNIST_FOLDERS, strict=True)):
        lookup[name.lower()] = lookup[folder.lower()] = lookup[str(i)] = i
    chosen = []
    for c in classes:
        key = str(c).strip().lower()
        if key not in lookup:
            raise VitrineError(
                f"unknown Fashion-MNIST class {c!r}",
                hint="choose among: " + ", ".join(FASHION_MNIST_CLASSES) + " (or their indexes 0-9)",
            )
        if lookup[key] not in chosen:
            chosen.append(lookup[key])
    if not chosen:
        raise VitrineError("no class chosen", hint="leave classes out to use all 10")
    return sorted(chosen)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    photos = _backgrounds()
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(h, w))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = cv2.resize(photo[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
    crop = cv2.GaussianBlur(crop, (0, 0), sigmaX=max(0.5, size / 128))
    grey = crop.mean(axis=2, keepdims=True)
    return (0.5 * crop + 0.5 * grey) * rng.uniform(0.35, 0.6)  # softened and darker than the items


def _item_mask(item: np.ndarray) -> np.ndarray:
    mask = ndimage.binary_fill_holes(item > ITEM_THRESHOLD)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    main = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == main


def render_scene(
    rng: np.random.Generator,
    images: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    *,
    size: int = 128,
    objects: tuple[int, int] = (1, 4),
    scale: tuple[float, float] = (0.25, 0.6),
    min_visible: float = 0.35,
    tint: float = 0.8,
) -> tuple[np.ndarray, list[dict]]:
    """One scene: ``(RGB uint8 image, objects)``, each object ``{"label", "index", "mask"}`` (visible
    mask, bool ``size x size``), bottom to top. ``pool`` holds the item indexes to draw from."""
    canvas = _background(rng, size)
    placed = []
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        index = int(pool[int(rng.integers(len(pool)))])
        side = max(8, min(size, int(round(rng.uniform(*scale) * size))))
        item = cv2.resize(images[index].astype(np.float32) / 255.0, (side, side), interpolation=cv2.INTER_LINEAR)
        item = np.clip(item, 0.0, 1.0)
        mask = _item_mask(item)
        x, y = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
        if rng.random() < tint:
            colour = rng.uniform(0.35, 1.0, 3).astype(np.float32)
        else:
            colour = np.full(3, rng.uniform(0.75, 1.0), np.float32)
        full = np.zeros((size, size), bool)
        full[y : y + side, x : x + side] = mask
        if full.sum() < MIN_PIXELS:
            continue
        look = (0.25 + 0.75 * item)[..., None] * colour
        placed.append({"label": int(labels[index]), "index": index, "full": full, "box": (x, y, side), "look": look})

    alive = list(range(len(placed)))
    while True:  # drop the topmost over-occluded item until every item left is visible enough
        covered = np.zeros((size, size), bool)
        visible = {}
        for j in reversed(alive):
            visible[j] = placed[j]["full"] & ~covered
            covered |= placed[j]["full"]
        failing = [j for j in alive if visible[j].sum() < max(MIN_PIXELS, min_visible * placed[j]["full"].sum())]
        if not failing:
            break
        alive.remove(max(failing))

    out = []
    for j in alive:
        p = placed[j]
        x, y, side = p["box"]
        region = canvas[y : y + side, x : x + side]
        m = p["full"][y : y + side, x : x + side]
        region[m] = p["look"][m]
        out.append({"label": p["label"], "index": p["index"], "mask": visible[j]})
    return np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8), out


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)  # fast; zlib output is deterministic
    return buf.getvalue()


def _split_layout(ds: DetectionDataset, split: str) -> DetectionDataset:
    """One split as the COCO tools lay it out (COCO 2017, datumaro, supervision): file names
    relative to ``images/<split>/``, the folder that ``annotations/instances_<split>.json`` pairs with."""
    part = ds.split(split)
    part.root = ds.root / split
    part.images = [replace(im, file_name=im.file_name.removeprefix(f"{split}/")) for im in part.images]
    return part


def generate_scenes(
    out_dir: str | os.PathLike,
    n_train: int = 200,
    n_val: int = 50,
    n_test: int = 50,
    image_size: int = 128,
    objects: tuple[int, int] = (1, 4),
    scale: tuple[float, float] = (0.25, 0.6),
    classes: Sequence[str | int] | None = None,
    seed: int = 0,
    source: str | os.PathLike = DEFAULT_SOURCE,
    *,
    min_visible: float = 0.35,
    tint: float = 0.8,
    masks: str = "polygons",
    yolo: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> DetectionDataset:
    """Generate scenes into ``out_dir`` (new or empty) and return them as a :class:`DetectionDataset`.

    ``objects``: (min, max) items per scene before occlusion; ``scale``: (min, max) item side as a
    fraction of ``image_size``; ``classes``: Fashion-MNIST class names (or indexes) to use, all 10
    by default, with category ids 1..k in Fashion-MNIST order; ``min_visible``: the fraction of
    an item that must stay visible; ``tint``: probability that an item is coloured rather than
    grey; ``masks``: ``"polygons"`` or ``"rle"`` in the COCO files; ``yolo``: also write the YOLO
    segmentation tree (images hard-linked). ``progress(done, total)`` is called after each scene.
    Each annotation's ``attributes`` hold the item's origin (``source_split``, ``source_index``)."""
    counts = {"train": n_train, "val": n_val, "test": n_test}
    for split, n in counts.items():
        if not isinstance(n, int) or n < 0:
            raise VitrineError(f"number of {split} scenes must be 0 or more, not {n!r}")
    if not 16 <= image_size <= 4096:
        raise VitrineError(f"image_size {image_size} out of range", hint="choose a side between 16 and 4096 pixels")
    lo, hi = objects
    if not 1 <= lo <= hi <= 50:
        raise VitrineError(f"objects must be (min, max) with 1 <= min <= max <= 50, not {objects!r}")
    if not 0 < scale[0] <= scale[1] <= 1:
        raise VitrineError(f"scale must be (min, max) fractions of the image side in (0, 1], not {scale!r}")
    if not 0 <= min_visible < 1:
        raise VitrineError(f"min_visible must be in [0, 1), not {min_visible!r}")
    if masks not in ("polygons", "rle"):
        raise VitrineError(f"unknown masks format {masks!r}", hint="choose polygons or rle")
    chosen = _resolve_classes(classes)
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VitrineError(f"{out} exists and is not an empty folder", hint="choose a new output folder")

    data = _items(str(Path(source).expanduser()))
    category_of = {c: k + 1 for k, c in enumerate(chosen)}
    ds = DetectionDataset(
        categories=[Category(category_of[c], FASHION_MNIST_CLASSES[c], "fashion") for c in chosen],
        root=out / "images",
    )
    total, done = sum(counts.values()), 0
    for split_no, split in enumerate(SPLITS):
        if not counts[split]:
            continue
        source_split = "test" if split == "test" else "train"
        images, labels = data[source_split]
        index = np.arange(len(labels))
        if split != "test":
            index = index[(index % 6 == 0) == (split == "val")]
        pool = index[np.isin(labels[index], chosen)]
        if pool.size == 0:
            raise VitrineError(f"no Fashion-MNIST {source_split} item of the chosen classes")
        folder = out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(counts[split]):
            rng = np.random.default_rng([seed, split_no, i])
            image, objs = render_scene(
                rng, images, labels, pool, size=image_size, objects=objects, scale=scale,
                min_visible=min_visible, tint=tint,
            )  # fmt: skip
            name = f"{split}/{split}_{i:05d}.png"
            (out / "images" / name).write_bytes(_png(image))
            image_id = len(ds.images) + 1
            ds.images.append(ImageRecord(image_id, name, image_size, image_size, split))
            for obj in objs:
                mask = obj["mask"]
                seg = mask_to_polygons(mask) if masks == "polygons" else mask_to_rle(mask)
                ds.annotations.append(
                    Annotation(
                        id=len(ds.annotations) + 1,
                        image_id=image_id,
                        category_id=category_of[obj["label"]],
                        bbox=mask_bbox(mask),
                        segmentation=seg,
                        area=float(mask.sum()),
                        attributes={"source_split": source_split, "source_index": obj["index"]},
                    )
                )
            done += 1
            if progress is not None:
                progress(done, total)

    from vitrine.data.detection.coco import to_coco

    for split in SPLITS:
        if counts[split]:
            to_coco(_split_layout(ds, split), out / "annotations" / f"instances_{split}.json")
    if yolo:
        from vitrine.data.detection.yolo import to_yolo

        to_yolo(ds, out / "yolo", task="segment", images="link")
    return ds
