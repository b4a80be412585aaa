"""Small file helpers shared by the writers: atomic writes, image links, image sizes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from vitrine.errors import ImageError, VitrineError


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, fsync and rename (never half-written)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
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
