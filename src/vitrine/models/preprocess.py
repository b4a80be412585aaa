"""Model inputs whose memory is bounded by construction, whatever the image's shape.

Every vitrine image model prepares an image the ImageNet way: resize so that the *shorter* side
is S (224 to 256 pixels), keeping the aspect ratio, then take the centre square. The resize
alone is the danger: a legal 1 x 65000 PNG (a few hundred bytes) becomes 224 x 14.5 million
pixels, ~13 GB, before the crop throws nearly all of it away.

:func:`limit_aspect` crops the image to its centre with an aspect ratio of at most
:data:`MAX_ASPECT` first. The centre crop that follows only ever keeps the central square, which
lies inside that region, so the model sees the same pixels (up to sub-pixel rounding of the
resize) while the resize's output is at most S x (MAX_ASPECT x S) pixels. Cropping is a view of
the decoded image: it costs nothing.

:data:`DECODE_MIN_SIDE` is the shorter side an image needs to keep when it is decoded for a model
(``open_image(..., min_side=DECODE_MIN_SIDE)``): twice the largest input side of the models here,
so a reduced-scale decode loses nothing the model's own antialiased resize would keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_ASPECT = 3.0
DECODE_MIN_SIDE = 512

__all__ = ["DECODE_MIN_SIDE", "MAX_ASPECT", "RESAMPLE", "ArrayTransform", "bounded", "limit_aspect"]


def limit_aspect(image: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """The centre of ``image`` cropped to a width:height (or height:width) of at most ``max_aspect``."""
    if max_aspect < 1:
        raise ValueError("max_aspect must be at least 1")
    w, h = image.size
    if w > h * max_aspect:
        new_w = max(1, round(h * max_aspect))
        left = (w - new_w) // 2
        return image.crop((left, 0, left + new_w, h))
    if h > w * max_aspect:
        new_h = max(1, round(w * max_aspect))
        top = (h - new_h) // 2
        return image.crop((0, top, w, top + new_h))
    return image


def bounded(transform):
    """``transform`` (a resize-shorter-side + centre-crop pipeline) applied after :func:`limit_aspect`."""

    def apply(image: Image.Image):
        return transform(limit_aspect(image))

    return apply


RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class ArrayTransform:
    """Resize (shorter side to ``resize``, or to exactly ``resize_to``), centre crop, scale to 0..1,
    normalise: torchvision's ``Resize``/``CenterCrop``/``ToTensor``/``Normalize`` on a PIL image, step
    for step, returning a float32 (3, H, W) array. The aspect ratio is bounded first, as every vitrine
    model does (:func:`~vitrine.models.preprocess.limit_aspect`)."""

    resize: int | None
    crop: tuple[int, int]  # (height, width)
    resample: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_to: tuple[int, int] | None = None  # (height, width)
    max_aspect: float = MAX_ASPECT

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.normalize(self.pixels(image))

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The resized and cropped image before normalisation: uint8 (H, W, 3), a quarter of the
        bytes, for a model that normalises inside its own graph."""
        image = limit_aspect(image, self.max_aspect)
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(self._resize_and_crop(image))

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) pixels -> float32 (3, H, W): (x / 255 - mean) / std."""
        # one multiply-add per value, written straight in (C, H, W) order
        pixels = pixels.transpose(2, 0, 1)
        scale, shift = self.scale_shift()
        out = np.empty(pixels.shape, dtype=np.float32)
        np.multiply(pixels, scale[:, None, None], out=out, casting="unsafe")
        out += shift[:, None, None]
        return out

    def scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """The normalisation as x * scale + shift per channel (float32, shape (3,)): 1/255/std and
        -mean/std. A model that normalises in its own graph uses the same numbers."""
        std = np.asarray(self.std, dtype=np.float32)
        return np.float32(1 / 255) / std, -np.asarray(self.mean, dtype=np.float32) / std

    def _resize_and_crop(self, image: Image.Image) -> Image.Image:
        """Resize, then centre crop; when the crop lies inside the resized image (every photo),
        only the kept region is resampled: Pillow's ``box`` places each output pixel's filter
        exactly where the full resize would have, so the pixels are the same (a value may differ
        by one level in about one in ten thousand, from float rounding) for about half the work."""
        size = self._resized_size(image)
        if size is None:
            return self._center_crop(image)
        (new_w, new_h), (ch, cw) = size, self.crop
        if cw > new_w or ch > new_h:
            return self._center_crop(image.resize(size, self.resample))
        top, left = _crop_origin(new_h, ch), _crop_origin(new_w, cw)
        sx, sy = image.width / new_w, image.height / new_h
        box = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
        return image.resize((cw, ch), self.resample, box=box)

    def _resized_size(self, image: Image.Image) -> tuple[int, int] | None:
        """(width, height) after the resize step; None when it leaves the image as it is."""
        w, h = image.size
        if self.resize_to is not None:
            new_h, new_w = self.resize_to
            return (new_w, new_h)
        if self.resize is None:
            return None
        short, long = (w, h) if w <= h else (h, w)
        if short == self.resize:
            return None
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_short, new_long) if w <= h else (new_long, new_short)

    def _center_crop(self, image: Image.Image) -> Image.Image:
        ch, cw = self.crop
        w, h = image.size
        if cw > w or ch > h:  # torchvision pads with zeros first
            padded = Image.new("RGB", (max(w, cw), max(h, ch)))
            padded.paste(image, ((max(w, cw) - w) // 2, (max(h, ch) - h) // 2))
            image, (w, h) = padded, padded.size
        top, left = _crop_origin(h, ch), _crop_origin(w, cw)
        return image.crop((left, top, left + cw, top + ch))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(3, H, W): what ``__call__`` returns."""
        return (3, *self.crop)

    @property
    def pixels_shape(self) -> tuple[int, int, int]:
        """(H, W, 3): what :meth:`pixels` returns."""
        return (*self.crop, 3)


def _crop_origin(size: int, crop: int) -> int:
    """Where torchvision's ``CenterCrop`` starts along a side of ``size`` pixels."""
    return int(round((size - crop) / 2.0))
