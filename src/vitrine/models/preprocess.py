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

from PIL import Image

MAX_ASPECT = 3.0
DECODE_MIN_SIDE = 512

__all__ = ["DECODE_MIN_SIDE", "MAX_ASPECT", "bounded", "limit_aspect"]


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
