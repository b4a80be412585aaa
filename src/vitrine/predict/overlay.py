"""Draw detections on an image: translucent coloured masks, boxes and ``"label 0.93"`` tags.

Each class keeps its colour everywhere (derived from its name, so the same class has the same
colour in every image, page and run). Line widths and font size follow the image size, so the
overlay stays readable on a 200 px thumbnail and on a 4000 px photo.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vitrine.models.detectors.base import Detections

# 20 saturated, well-separated colours (Tableau 10 without its grey, then more of the same strength):
# light tints and greys would vanish on photos
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (0, 100, 0),
    (160, 82, 45),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
    (120, 40, 220),
    (0, 200, 83),
    (255, 0, 110),
    (0, 150, 255),
    (255, 200, 0),
    (150, 0, 200),
    (0, 170, 150),
    (230, 80, 0),
    (110, 150, 0),
    (190, 0, 40),
    (60, 60, 200),
)


def class_color(label: str) -> tuple[int, int, int]:
    """The colour of a class, stable across images and processes (a CRC of its name)."""
    return PALETTE[zlib.crc32(str(label).encode("utf-8")) % len(PALETTE)]


def _text_color(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _selected(detections: Detections, classes: Iterable[str | int] | None) -> np.ndarray:
    n = len(detections)
    if classes is None:
        return np.ones(n, dtype=bool)
    wanted = {str(c) for c in classes}
    return np.array(
        [
            lab in wanted or str(int(cid)) in wanted
            for lab, cid in zip(detections.labels, detections.class_ids, strict=True)
        ],
        dtype=bool,
    ).reshape(n)


def draw_overlay(
    image: Image.Image,
    detections: Detections,
    classes: Iterable[str | int] | None = None,
    alpha: float = 0.45,
    show_boxes: bool = True,
    show_labels: bool = True,
) -> Image.Image:
    """A new RGB image: ``image`` with ``detections`` drawn on it.

    ``classes``: the class names (or ids) to show; None shows all. ``alpha``: mask opacity (0..1).
    Masks and boxes are scaled when the detections were made on an image of another size.
    """
    base = image.convert("RGB") if image.mode != "RGB" else image.copy()
    width, height = base.size
    keep = _selected(detections, classes)
    order = np.flatnonzero(keep)[::-1]  # lowest score first: the best detection ends up on top
    alpha = float(min(max(alpha, 0.0), 1.0))
    sx = width / max(1, detections.width)
    sy = height / max(1, detections.height)

    if detections.masks is not None and len(order) and alpha > 0:
        arr = np.asarray(base, dtype=np.float32).copy()
        for i in order:
            mask = _mask_at(detections.masks[i], width, height)
            if not mask.any():
                continue
            colour = np.array(class_color(detections.labels[i]), dtype=np.float32)
            arr[mask] = arr[mask] * (1.0 - alpha) + colour * alpha
        base = Image.fromarray(arr.round().clip(0, 255).astype(np.uint8))
        _draw_mask_outlines(base, detections, order, width, height)

    if not (show_boxes or show_labels) or not len(order):
        return base
    draw = ImageDraw.Draw(base)
    short = min(width, height)
    line = max(2, round(short / 200))
    font = _font(max(9, min(48, round(short / 28))))
    for i in order:
        x1, y1, x2, y2 = (float(v) for v in detections.boxes[i])
        x1, x2 = x1 * sx, x2 * sx
        y1, y2 = y1 * sy, y2 * sy
        colour = class_color(detections.labels[i])
        if show_boxes:
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=line)
        if show_labels:
            text = f"{detections.labels[i]} {float(detections.scores[i]):.2f}"
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            tw, th = right - left, bottom - top
            pad = max(1, line)
            tx = min(max(0.0, x1), max(0.0, width - tw - 2 * pad))
            ty = y1 - th - 2 * pad  # above the box, or inside it when there is no room
            if ty < 0:
                ty = min(max(0.0, y1), max(0.0, height - th - 2 * pad))
            draw.rectangle([tx, ty, tx + tw + 2 * pad, ty + th + 2 * pad], fill=colour)
            draw.text((tx + pad - left, ty + pad - top), text, fill=_text_color(colour), font=font)
    return base


def _mask_at(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """``mask`` at the size of the image drawn on (nearest neighbour when the sizes differ)."""
    if mask.shape == (height, width):
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)) > 127


def _draw_mask_outlines(img: Image.Image, detections: Detections, order, width: int, height: int) -> None:
    """A thin solid outline around each mask, so that touching instances stay distinguishable."""
    import cv2

    arr = np.asarray(img).copy()
    thickness = max(1, round(min(width, height) / 400))
    for i in order:
        mask = _mask_at(detections.masks[i], width, height)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if contours:
            cv2.drawContours(arr, contours, -1, class_color(detections.labels[i]), thickness)
    img.paste(Image.fromarray(arr))
