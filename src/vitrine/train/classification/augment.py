"""Image transforms for fine-tuning: evaluation, and three training augmentation levels.

Every transform takes a decoded RGB image, either a PIL image or a ``uint8`` tensor ``(3, H, W)``
(what the in-memory cache of decoded images holds), and returns a normalised ``float32`` tensor
``(3, size, size)``.

``none``
    the evaluation transform: resize the shorter side to ``size``, centre crop.
``light`` (default)
    as ``none``, then a random translation (crop with reflect padding of 1/8 of the size) and a
    horizontal flip. Cheap, safe for most photos and small objects.
``strong``
    random resized crop (35-100 % of the area), flip, TrivialAugment, random erasing. For longer
    runs on larger datasets.

Horizontal flips assume that the classes do not depend on left and right (not true for text or
some symbols: use ``none`` there).
"""

from __future__ import annotations

AUGMENTS = ("none", "light", "strong")


def _interpolation(name: str):
    from torchvision.transforms import InterpolationMode

    return {
        "bilinear": InterpolationMode.BILINEAR,
        "bicubic": InterpolationMode.BICUBIC,
        "nearest": InterpolationMode.NEAREST,
    }.get(str(name), InterpolationMode.BILINEAR)


def _tail(data_config: dict) -> list:
    import torch
    from torchvision.transforms import v2

    return [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(data_config["mean"]), std=list(data_config["std"])),
    ]


def limit_aspect_tensor(image):
    """The centre of an image tensor ``(..., H, W)`` with an aspect ratio of at most
    ``MAX_ASPECT`` (a view, no copy): the shorter-side resize that follows then stays bounded
    (a 1 x 65000 image would otherwise become image_size x 14.5 million pixels)."""
    from vitrine.models.preprocess import MAX_ASPECT

    h, w = image.shape[-2:]
    if w > h * MAX_ASPECT:
        new_w = max(1, round(h * MAX_ASPECT))
        left = (w - new_w) // 2
        return image[..., :, left : left + new_w]
    if h > w * MAX_ASPECT:
        new_h = max(1, round(w * MAX_ASPECT))
        top = (h - new_h) // 2
        return image[..., top : top + new_h, :]
    return image


def eval_transform(image_size: int, data_config: dict):
    """Resize (shorter side) to ``image_size``, centre crop, normalise."""
    from torchvision.transforms import v2

    interp = _interpolation(data_config.get("interpolation", "bilinear"))
    return v2.Compose(
        [
            v2.ToImage(),
            limit_aspect_tensor,
            v2.Resize(image_size, interpolation=interp, antialias=True),
            v2.CenterCrop(image_size),
            *_tail(data_config),
        ]
    )


def train_transform(image_size: int, data_config: dict, augment: str = "light"):
    from torchvision.transforms import v2

    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    if augment == "none":
        return eval_transform(image_size, data_config)
    interp = _interpolation(data_config.get("interpolation", "bilinear"))
    if augment == "light":
        pad = max(1, image_size // 8)
        return v2.Compose(
            [
                v2.ToImage(),
                limit_aspect_tensor,
                v2.Resize(image_size, interpolation=interp, antialias=True),
                v2.CenterCrop(image_size),
                v2.RandomCrop(image_size, padding=pad, padding_mode="reflect"),
                v2.RandomHorizontalFlip(),
                *_tail(data_config),
            ]
        )
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(image_size, scale=(0.35, 1.0), interpolation=interp, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.TrivialAugmentWide(interpolation=interp),
            *_tail(data_config),
            v2.RandomErasing(p=0.25, value=0),
        ]
    )
