"""Small file helpers shared by the writers: writing a file atomically, image links, image sizes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from vitrine.core.atomic import atomic_write_text
from vitrine.core.errors import ImageError, VitrineError


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with the one atomic writer (never half-written), making its folder;
    a failure becomes an error naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as exc:
        raise VitrineError(f"cannot write {path}: {exc.strerror or exc}") from None


def place_image(src: Path, dst: Path, mode: str = "link") -> None:
    """Put an image at ``dst``: ``link`` (hard link, copy when linking is impossible), ``copy``, or ``none``."""
    if mode == "none":
        return
    if mode not in ("link", "copy"):
        raise VitrineError(f"unknown images mode {mode!r}", hint="choose link, copy or none")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise VitrineError(
            f"image not found: {src}",
            hint="give the folder the image names are relative to (--images-root, images_root=), or write labels only "
            "(--images none)",
        )
    try:
        if dst.exists() and os.path.samefile(src, dst):
            return
    except OSError:
        pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    if mode == "link":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image header only (the pixels are not decoded)."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise ImageError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from None
