"""Test helper: folders of hostile and of valid-but-tricky image files.

``make_hostile_corpus`` returns ``{relpath: expected reason substring}``; the reason comes either
from ``walk_images`` (a SkippedFile: symlinks, empty files, pipes, bad names) or from
``open_image`` (an ImageError). ``make_good_corpus`` returns the relpaths of files that must
decode; ``GOOD_EXPECTED`` gives the size (and sometimes a pixel colour) each must decode to.
Everything is generated (small, fast); real photos come from scikit-image when it is installed.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# reason substrings (kept here so that tests and corpus agree)
TRUNCATED = "truncated or corrupt image data"
NOT_IMAGE = "not an image (unrecognised format"
EMPTY = "empty file (0 bytes)"
TOO_LARGE = "image too large"
OUTSIDE = "symlink points outside the project"
BROKEN = "broken symlink"
LOOP = "symlink loop"
NOT_REGULAR = "not a regular file"
BAD_NAME = "not valid UTF-8"


def photo(size: tuple[int, int] = (128, 96)) -> Image.Image:
    """A real photo (scikit-image's astronaut) when available, else a synthetic one."""
    try:
        from skimage import data  # type: ignore[import-not-found]

        im = Image.fromarray(data.astronaut())
    except Exception:  # scikit-image missing: smooth gradients plus noise, compresses like a photo
        h, w = 256, 256
        y, x = np.mgrid[0:h, 0:w]
        rng = np.random.default_rng(0)
        arr = np.stack([x, y, (x + y) // 2], axis=-1).astype(np.float64)
        arr += rng.normal(0, 12, arr.shape)
        im = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    return im.resize(size, Image.Resampling.BILINEAR)


def jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=kw.pop("quality", 90), **kw)
    return buf.getvalue()


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def forged_png(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header claims ``width`` x ``height`` (grey, 8 bits)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4, 9)  # only 4 rows of data
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def corrupt_png() -> bytes:
    """A real PNG whose IDAT data has its first bytes flipped (bad zlib stream, CRC fixed up)."""
    data = bytearray(png_bytes(photo((96, 64))))
    pos = data.index(b"IDAT")
    length = struct.unpack(">I", data[pos - 4 : pos])[0]
    start = pos + 4
    for i in range(start, start + 16):
        data[i] ^= 0xFF
    # recompute the CRC so that only the compressed stream is bad
    crc = zlib.crc32(bytes(data[pos : start + length])) & 0xFFFFFFFF
    data[start + length : start + length + 4] = struct.pack(">I", crc)
    return bytes(data)


def _symlink(target: str | Path, link: Path) -> bool:
    try:
        os.symlink(target, link)
        return True
    except (OSError, NotImplementedError):  # e.g. no symlink privilege on Windows
        return False


def make_hostile_corpus(images_dir: Path, outside_dir: Path) -> dict[str, str]:
    """Write bad files into ``images_dir/hostile/``; return ``{relpath: expected reason substring}``."""
    images_dir = Path(images_dir)
    outside_dir = Path(outside_dir)
    hostile = images_dir / "hostile"
    hostile.mkdir(parents=True, exist_ok=True)
    outside_dir.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    def put(name: str, data: bytes, reason: str) -> None:
        (hostile / name).write_bytes(data)
        expected[f"hostile/{name}"] = reason

    good_jpeg = jpeg_bytes(photo((256, 256)))
    put("truncated.jpg", good_jpeg[: len(good_jpeg) // 2], TRUNCATED)
    put("corrupt.png", corrupt_png(), TRUNCATED)
    put("header_only.png", png_bytes(photo((32, 32))).split(b"IDAT")[0][:-4], TRUNCATED)
    put("empty.jpg", b"", EMPTY)
    put("text.png", b"Ceci n'est pas une image.\n", NOT_IMAGE)
    put(
        "page.jpg",
        b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Not found</body></html>\n",
        NOT_IMAGE,
    )
    # An EPS file: Pillow would hand it to Ghostscript if all formats were allowed.
    put("postscript.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", NOT_IMAGE)
    put("bomb.png", forged_png(30000, 30000), TOO_LARGE)  # beyond twice Pillow's own limit
    put("bomb_medium.png", forged_png(12000, 12000), TOO_LARGE)  # over vitrine's limit only
    # GIF: header and screen descriptor, then straight to the trailer: no frame at all
    put("noframes.gif", b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0) + b";", TRUNCATED)
    put("shifted.bmp", b"BM" + bytes(60), TRUNCATED)  # a BMP signature, then zeros
    put("garbage.gif", b"GIF89a" + bytes(range(256)) * 4, TRUNCATED)

    (outside_dir / "outside.jpg").write_bytes(jpeg_bytes(photo((64, 48))))
    (outside_dir / "photos").mkdir(exist_ok=True)
    (outside_dir / "photos" / "a.jpg").write_bytes(jpeg_bytes(photo((64, 48))))
    links = {
        "outside_link.jpg": (outside_dir / "outside.jpg", OUTSIDE),
        "outside_dir": (outside_dir / "photos", OUTSIDE),
        "broken_link.jpg": (hostile / "does-not-exist.jpg", BROKEN),
        "loop": (Path("."), LOOP),  # a folder link to its own parent
        "self_loop.jpg": (Path("self_loop.jpg"), LOOP),
    }
    for name, (target, reason) in links.items():
        if _symlink(target, hostile / name):
            expected[f"hostile/{name}"] = reason

    if hasattr(os, "mkfifo"):
        try:
            os.mkfifo(hostile / "pipe.jpg")
            expected["hostile/pipe.jpg"] = NOT_REGULAR
        except OSError:
            pass
    if os.name == "posix":
        try:  # a Latin-1 file name, as copied from an old Windows share
            raw = os.fsencode(hostile) + b"/photo-\xe9t\xe9.jpg"
            with open(raw, "wb") as fh:
                fh.write(jpeg_bytes(photo((32, 32))))
            expected["hostile/photo-\ufffdt\ufffd.jpg"] = BAD_NAME
        except OSError:
            pass
    return expected


# relpath -> (width, height) after decoding, plus optional checks of pixel colours
GOOD_EXPECTED: dict[str, dict] = {
    "good/animated.gif": {"size": (64, 48), "pixel": ((32, 24), (255, 0, 0))},
    "good/cmyk.jpg": {"size": (80, 60)},
    "good/sixteen_bit.png": {"size": (256, 32), "mode_in_file": "I;16"},
    "good/palette_transparent.png": {"size": (40, 40), "pixel": ((0, 0), (255, 255, 255))},
    "good/grey_alpha.png": {"size": (40, 30), "pixel": ((0, 0), (255, 255, 255))},
    "good/pages.tif": {"size": (60, 40)},
    "good/plain.bmp": {"size": (50, 30)},
    "good/photo.webp": {"size": (96, 64)},
    "good/rotated.jpg": {"size": (20, 40)},  # stored 40x20, EXIF orientation 6
    "good/UPPER.JPG": {"size": (64, 48)},
    "good/église été.jpg": {"size": (64, 48)},
    "good/really_a_png.jpg": {"size": (30, 20)},  # wrong extension: content decides
    "good/grey.jpg": {"size": (33, 17)},
    "loose.png": {"size": (16, 16)},  # directly in images/
}


def make_good_corpus(images_dir: Path) -> list[str]:
    """Write valid but tricky images under ``images_dir/good/``; return their relpaths."""
    images_dir = Path(images_dir)
    good = images_dir / "good"
    good.mkdir(parents=True, exist_ok=True)

    frames = [Image.new("P", (64, 48), 0) for _ in range(3)]
    for i, frame in enumerate(frames):
        frame.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0, 0, 0] * 253)
        frame.paste(i, (0, 0, 64, 48))
    frames[0].save(good / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)

    photo((80, 60)).convert("CMYK").save(good / "cmyk.jpg", "JPEG", quality=90)

    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (32, 1))
    Image.fromarray(ramp).save(good / "sixteen_bit.png")  # mode I;16

    pal = Image.new("P", (40, 40), 1)
    pal.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    pal.paste(0, (0, 0, 10, 10))  # index 0 (black) is transparent -> white
    pal.save(good / "palette_transparent.png", transparency=0)

    la = Image.new("LA", (40, 30), (0, 255))
    la.paste((0, 0), (0, 0, 10, 10))  # fully transparent black corner -> white
    la.save(good / "grey_alpha.png")

    first = photo((60, 40))
    second = photo((30, 20))
    first.save(good / "pages.tif", save_all=True, append_images=[second])

    photo((50, 30)).save(good / "plain.bmp")
    photo((96, 64)).save(good / "photo.webp", quality=80)

    exif = Image.Exif()
    exif[0x0112] = 6
    photo((40, 20)).save(good / "rotated.jpg", "JPEG", exif=exif.tobytes())

    photo((64, 48)).save(good / "UPPER.JPG", "JPEG")
    photo((64, 48)).save(good / "église été.jpg", "JPEG")
    photo((30, 20)).save(good / "really_a_png.jpg", "PNG")
    photo((33, 17)).convert("L").save(good / "grey.jpg", "JPEG")
    photo((16, 16)).save(images_dir / "loose.png")
    return sorted(GOOD_EXPECTED)
