"""An annotated detection / instance-segmentation dataset, in memory, format-neutral.

Every reader (``from_coco``, ``from_yolo``, ``from_cvat``, ``from_voc``) returns a
:class:`DetectionDataset`; every writer (``to_coco``, ...) takes one. Conventions follow COCO,
because that is what the evaluation (pycocotools) consumes:

- ``bbox`` is ``(x, y, w, h)`` in pixels, origin at the top-left corner of the image;
- ``segmentation`` is ``None`` (a box only), a list of polygons ``[[x1, y1, x2, y2, ...], ...]``
  in pixels, or an RLE dict ``{"size": [h, w], "counts": ...}`` (pycocotools' compressed form:
  ``counts`` a str);
- image and category ids are positive ints, unique within the dataset;
- ``file_name`` is relative to ``DetectionDataset.root`` (the images folder), with ``/``
  separators.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Category:
    id: int
    name: str
    supercategory: str = ""


@dataclass
class ImageRecord:
    id: int
    file_name: str  # relative to the dataset root, "/" separated
    width: int
    height: int
    split: str | None = None  # "train" | "val" | "test" | None (unsplit)


@dataclass
class Annotation:
    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]  # x, y, w, h in pixels
    segmentation: list[list[float]] | dict | None = None  # polygons or RLE; None: box only
    iscrowd: int = 0
    area: float | None = None  # mask area when there is a mask, else box area (COCO's rule)
    attributes: dict = field(default_factory=dict)  # format-specific extras (CVAT attributes, VOC difficult, ...)


@dataclass
class Problem:
    """Something wrong in an annotation file that was skipped or repaired, with where it is."""

    file: str
    where: str  # "line 12", "<image id=3> / <polygon> 2", "annotations[5]", ...
    message: str  # what is wrong and what was done (skipped, clipped) or what to do

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.message}"


@dataclass
class DetectionDataset:
    images: list[ImageRecord] = field(default_factory=list)
    categories: list[Category] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    root: Path | None = None  # the folder that file_names are relative to
    problems: list[Problem] = field(default_factory=list)

    @property
    def has_masks(self) -> bool:
        return any(a.segmentation is not None for a in self.annotations)

    def category_names(self) -> list[str]:
        return [c.name for c in sorted(self.categories, key=lambda c: c.id)]

    def annotations_by_image(self) -> dict[int, list[Annotation]]:
        out: dict[int, list[Annotation]] = {im.id: [] for im in self.images}
        for a in self.annotations:
            out.setdefault(a.image_id, []).append(a)
        return out

    def split(self, name: str) -> DetectionDataset:
        """The images of one split (and their annotations), sharing categories and root."""
        images = [im for im in self.images if im.split == name]
        ids = {im.id for im in images}
        return DetectionDataset(
            images=images,
            categories=list(self.categories),
            annotations=[a for a in self.annotations if a.image_id in ids],
            root=self.root,
        )
