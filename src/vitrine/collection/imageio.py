"""Decoding images safely: every bad file becomes an :class:`~vitrine.core.errors.ImageError`.

``open_image`` is called from a pool of decode threads, on files nobody has vetted (scans,
downloads, files renamed by hand). It:

* checks the file size, then reads only the header and checks the pixel count *before* any pixel
  is decoded (decompression-bomb guard, ``VITRINE_MAX_PIXELS``);
* only lets Pillow parse the formats vitrine supports (JPEG, PNG, WebP, TIFF, BMP, GIF), so a file
  named ``.jpg`` can never reach an exotic parser (or Ghostscript, for EPS);
* fully decodes the first frame, refusing truncated data (``ImageFile.LOAD_TRUNCATED_IMAGES`` must
  stay False), applies the EXIF orientation, and converts to RGB (transparency composited on white,
  16-bit and float data scaled to 8 bits);
* turns every Pillow/zlib/struct error into ``ImageError`` with a reason an archivist can act on.
  The reason is also on the exception as ``.reason`` (without the file name), and the file as
  ``.path``.

Memory is bounded by construction, not by catching ``MemoryError``:

* a caller that only needs a small picture (a model input, a thumbnail) passes ``min_side``: a
  JPEG is then decoded at reduced scale by its DCT (Pillow's ``draft``, 1/2 to 1/8), and any other
  format is box-reduced by a whole factor right after decoding, before the colour conversion,
  keeping both sides at least ``min_side``;
* full-size decodes share one pixel budget (``VITRINE_DECODE_BUDGET_PIXELS``, default 100 million,
  i.e. one image at the pixel limit at a time): a decode waits until the pixels it needs are free,
  so eight simultaneous uploads of a 9000 x 9000 PNG decode one or two at a time instead of all at
  once. An image larger than the whole budget waits for the budget to be empty.

Pillow's own bomb check (``Image.MAX_IMAGE_PIXELS``, a process-wide setting, 89M pixels by default)
is kept as a second net: vitrine raises it (never lowers it) to at least its own limit, under a
lock, so that images vitrine accepts are not refused by Pillow; its warning is silenced while the
header is read, under the same lock, so that decode threads never interleave their
``warnings.catch_warnings`` blocks.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from vitrine.core.allocator import give_back
from vitrine.core.errors import ImageError, VitrineError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "decode_budget_pixels",
    "image_info",
    "make_thumbnail",
    "max_file_bytes",
    "max_pixels",
    "open_image",
    "open_image_bytes",
    "open_image_with_info",
]

SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"})
# Pillow format names the suffixes above may contain (content decides, not the name). MPO (the
# multi-picture JPEG of phones) has no opener of its own: the JPEG one returns it.
_WANTED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
_formats: tuple[str, ...] | None = None
_MULTI_FRAME_FORMATS = {"GIF", "TIFF", "MPO", "WEBP"}

DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
DEFAULT_DECODE_BUDGET_PIXELS = 100_000_000

_OPEN_LOCK = threading.Lock()

# EXIF orientation -> transpose operation (as ImageOps.exif_transpose does).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Errors Pillow (and the codecs under it) raise on bad data.
_DATA_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    struct.error,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    ZeroDivisionError,
    zlib.error,
    RuntimeError,
    AttributeError,
)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    try:
        value = int(float(raw)) if any(c in raw for c in ".eE") else int(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise VitrineError(
            f"{name} must be a positive whole number, got {os.environ.get(name)!r}",
            hint=f"unset it to use the default ({default})",
        )
    return value


def max_pixels() -> int:
    """Largest width*height accepted (env ``VITRINE_MAX_PIXELS``, default 100 million)."""
    return _env_int("VITRINE_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def max_file_bytes() -> int:
    """Largest image file accepted in bytes (env ``VITRINE_MAX_FILE_BYTES``, default 256 MiB)."""
    return _env_int("VITRINE_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES)


def decode_budget_pixels() -> int:
    """Pixels that may be decoded at once, all threads together (env
    ``VITRINE_DECODE_BUDGET_PIXELS``, default 100 million)."""
    return _env_int("VITRINE_DECODE_BUDGET_PIXELS", DEFAULT_DECODE_BUDGET_PIXELS)


class _PixelBudget:
    """A weighted semaphore over decoded pixels, shared by every decode of the process."""

    def __init__(self):
        self._cond = threading.Condition()
        self.in_use = 0
        self.peak = 0  # the most pixels ever decoding at once (for tests and measurements)

    def acquire(self, pixels: int) -> int:
        with self._cond:
            budget = decode_budget_pixels()
            take = min(pixels, budget)  # a single image larger than the budget runs alone
            while self.in_use and self.in_use + take > budget:
                self._cond.wait()
            self.in_use += take
            self.peak = max(self.peak, self.in_use)
            return take

    def release(self, taken: int) -> None:
        with self._cond:
            self.in_use -= taken
            self._cond.notify_all()


_BUDGET = _PixelBudget()

# After a decode of at least this many pixels, freed memory is handed back to the system: glibc
# keeps what a thread frees in that thread's arena, so eight decode threads that each once held a
# 9000 x 9000 image would otherwise keep ~2 GB between them for the life of the process.
_TRIM_PIXELS = 8_000_000


def _fail(name: str, reason: str, hint: str | None = None, path: str | None = None) -> ImageError:
    err = ImageError(f"{name}: {reason}", hint=hint)
    err.reason = reason  # type: ignore[attr-defined]
    err.path = path  # type: ignore[attr-defined]
    return err


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _too_large_reason(desc: str, limit: int) -> str:
    return (
        f"image too large: {desc} pixels exceeds the limit of {limit} (decompression-bomb guard; "
        "raise VITRINE_MAX_PIXELS if this is legitimate)"
    )


def _bomb_reason(exc: BaseException, limit: int) -> str:
    m = re.search(r"\((\d+) pixels\)", str(exc))
    return _too_large_reason(m.group(1) if m else "more than the allowed number of", limit)


_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


def _magic_format(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return None


def _sniff(head: bytes) -> str:
    """A hint about what a non-image file is, from its first bytes."""
    h = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if h.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in h[:512]:
        return "; it is an HTML page, perhaps a web page saved under an image name"
    if h.startswith(b"<?xml") or h.startswith(b"<svg"):
        return "; it is XML or SVG, which is not supported"
    if h.startswith(b"%!ps"):
        return "; it is PostScript/EPS, which is not supported"
    if h.startswith(b"%pdf"):
        return "; it is a PDF"
    if h.startswith(b"pk\x03\x04"):
        return "; it is a ZIP archive"
    if h and all(32 <= b < 127 or b in (9, 10, 13) or b >= 0x80 for b in head[:512]):
        try:
            head[:512].decode("utf-8")
            return "; it contains text"
        except UnicodeDecodeError:
            pass
    return ""


def _ensure_pil_limit(limit: int) -> None:
    # Called with _OPEN_LOCK held. Only ever raises Pillow's limit (never disables it).
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < limit:
        Image.MAX_IMAGE_PIXELS = limit


def _allowed_formats() -> tuple[str, ...]:
    # Called with _OPEN_LOCK held. Formats this Pillow build can open (WebP may be missing).
    global _formats
    if _formats is None:
        Image.init()
        _formats = tuple(f for f in _WANTED_FORMATS if f in Image.OPEN)
    return _formats


def _open_header(fp, name: str, limit: int, path: str | None) -> Image.Image:
    """Image.open (header only) with the bomb guard; raises ImageError."""
    with _OPEN_LOCK:
        _ensure_pil_limit(limit)
        formats = _allowed_formats()
        with warnings.catch_warnings():
            # Pillow's bomb warning (vitrine checks the size itself, just below) and its metadata
            # warnings are noise for users; ignoring them here also keeps a "-W error" run from
            # turning them into exceptions.
            warnings.simplefilter("ignore")
            try:
                return Image.open(fp, formats=formats)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise _fail(name, _bomb_reason(exc, limit), path=path) from None
            except Image.UnidentifiedImageError:
                try:
                    fp.seek(0)
                    head = fp.read(1024)
                except (OSError, ValueError):
                    head = b""
                fmt = _magic_format(head)
                if fmt is not None:  # the right signature, but the header cannot be read
                    raise _fail(
                        name,
                        f"truncated or corrupt image data: the file starts like a {fmt} image but "
                        "its header cannot be read",
                        path=path,
                    ) from None
                raise _fail(
                    name,
                    "not an image (unrecognised format" + _sniff(head) + ")",
                    hint="supported formats: " + ", ".join(sorted(SUPPORTED_SUFFIXES)),
                    path=path,
                ) from None
            except EOFError:
                raise _fail(name, "truncated or corrupt image data: no image frame in the file", path=path) from None
            except MemoryError:
                raise _fail(name, "not enough memory to read the image header", path=path) from None
            except _DATA_ERRORS as exc:
                raise _fail(name, f"truncated or corrupt image data: {_describe(exc)}", path=path) from None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_size(im: Image.Image, name: str, limit: int, path: str | None) -> None:
    w, h = im.size
    if w <= 0 or h <= 0:
        raise _fail(name, f"truncated or corrupt image data: image has no pixels ({w} x {h})", path=path)
    if w * h > limit:
        raise _fail(name, _too_large_reason(f"{w} x {h}", limit), path=path)


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if value in _ORIENTATION else 1
    except Exception:  # a broken EXIF block must not make a good image unreadable
        return 1


def _scale_to_uint8(a: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    if a.dtype.kind == "f" or a.size == 0:
        a = np.nan_to_num(a.astype(np.float64))
        lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
        if hi <= lo:
            return np.zeros(a.shape, np.uint8)
        return ((a - lo) * (255.0 / (hi - lo))).clip(0, 255).astype(np.uint8)
    a = a.astype(np.int64)
    lo, hi = int(a.min(initial=0)), int(a.max(initial=0))
    if lo < 0 or hi > 65535:
        if hi <= lo:
            return np.zeros(a.shape, np.uint8)
        return ((a - lo) * 255 // (hi - lo)).astype(np.uint8)
    if sixteen_bit or hi > 255:
        return (a >> 8).astype(np.uint8)
    return a.astype(np.uint8)


def _on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB (may return ``im`` itself when it already is RGB)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _on_white(im.convert("RGBA"))
    if mode == "P":
        if "transparency" in im.info or im.palette is not None and im.palette.mode == "RGBA":
            return _on_white(im.convert("RGBA"))
        return im.convert("RGB")
    if mode in ("1", "L", "CMYK", "YCbCr", "RGBX", "HSV"):
        return im.convert("RGB")
    if mode.startswith("I") or mode == "F":
        gray = _scale_to_uint8(np.asarray(im), mode.startswith("I;16"))
        if gray.ndim != 2:
            raise ValueError(f"unexpected array shape {gray.shape} for mode {mode}")
        return Image.fromarray(gray).convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError:
        raise ValueError(f"unsupported image mode {mode!r}") from None


def _reduce(im: Image.Image, min_side: int) -> Image.Image:
    """``im`` shrunk by the largest whole factor that keeps both sides >= ``min_side`` (box
    filter, in the image's own mode where Pillow can; palette and 1-bit images go to RGB/L first)."""
    factor = min(im.size) // min_side
    if factor < 2:
        return im
    if im.mode == "P":
        im = _to_rgb(im)
    elif im.mode == "1":
        im = im.convert("L")
    try:
        return im.reduce(factor)
    except ValueError:  # a mode reduce() does not take (16-bit): convert to RGB, then reduce
        return _to_rgb(im).reduce(factor)


def _decode(
    fp, name: str, limit: int, path: str | None, min_side: int | None = None, info: dict | None = None
) -> Image.Image:
    """The decoded RGB image; ``info``, when given, receives what :func:`image_info` would say of
    the file (read from the header this decode opened anyway)."""
    im = _open_header(fp, name, limit, path)
    _check_size(im, name, limit, path)
    width, height, fmt, mode = im.width, im.height, im.format, im.mode  # before any reduced-scale decode
    if getattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False):
        # Somebody switched Pillow to "decode what you can": truncation would go unnoticed.
        raise _fail(name, "cannot check for truncated data: ImageFile.LOAD_TRUNCATED_IMAGES is set", path=path)
    taken, result = 0, None
    try:
        if min_side and im.format in ("JPEG", "MPO"):
            im.draft(im.mode, (min_side, min_side))  # DCT scaling: both sides stay >= min_side
        taken = _BUDGET.acquire(im.size[0] * im.size[1])
        im.load()  # first frame only
        orientation = _orientation(im)
        if info is not None:
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            info.update(width=width, height=height, format=fmt, mode=mode, orientation=orientation)
        if min_side:
            im = _reduce(im, min_side)
        rgb = _to_rgb(im)
        if rgb is im and im.format in _MULTI_FRAME_FORMATS:
            rgb = im.copy()  # detach from the (multi-frame) file
        method = _ORIENTATION.get(orientation)
        if method is not None:
            rgb = rgb.transpose(method)
        if rgb.mode != "RGB":
            raise ValueError(f"unsupported image mode {rgb.mode!r}")
        result = rgb
        return rgb
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _fail(name, _bomb_reason(exc, limit), path=path) from None
    except MemoryError:
        raise _fail(name, "not enough memory to decode the image", path=path) from None
    except ValueError as exc:
        if "unsupported image mode" in str(exc):
            raise _fail(name, str(exc), path=path) from None
        raise _fail(name, f"truncated or corrupt image data: {_describe(exc)}", path=path) from None
    except _DATA_ERRORS as exc:
        raise _fail(name, f"truncated or corrupt image data: {_describe(exc)}", path=path) from None
    except Warning as exc:  # only when warnings are turned into errors (python -W error)
        raise _fail(name, f"cannot decode the image: {_describe(exc)}", path=path) from None
    finally:
        if taken:
            if im is not result:
                im.close()  # the full-size pixels go before the budget is given back
            _BUDGET.release(taken)
            full_size_freed = result is None or result.width * result.height < taken
            if taken >= _TRIM_PIXELS and full_size_freed:
                give_back()


def _stat_checks(path: Path, name: str) -> os.stat_result:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _fail(name, "file not found", path=str(path)) from None
    except PermissionError:
        raise _fail(name, "permission denied", path=str(path)) from None
    except OSError as exc:
        raise _fail(name, f"cannot read the file: {exc.strerror or exc}", path=str(path)) from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(name, "this is a folder, not an image file", path=str(path))
    if not stat.S_ISREG(st.st_mode):
        raise _fail(name, "not a regular file (device, pipe or socket)", path=str(path))
    if st.st_size == 0:
        raise _fail(name, "empty file (0 bytes)", path=str(path))
    limit = max_file_bytes()
    if st.st_size > limit:
        raise _fail(
            name,
            f"file too large: {_mib(st.st_size)} exceeds the limit of {_mib(limit)}",
            hint="raise VITRINE_MAX_FILE_BYTES if this is legitimate",
            path=str(path),
        )
    return st


def open_image(path: str | os.PathLike, *, max_pixels: int | None = None, min_side: int | None = None) -> Image.Image:
    """Decode ``path`` to a fully loaded RGB image (EXIF orientation applied); raise ImageError.

    ``min_side``: the caller needs no more than this many pixels on the shorter side (a model
    input, a thumbnail); the image may then be decoded at reduced scale, never below it."""
    return _open_path(path, max_pixels, min_side, None)


def open_image_with_info(
    path: str | os.PathLike, *, max_pixels: int | None = None, min_side: int | None = None
) -> tuple[Image.Image, dict]:
    """:func:`open_image` and what :func:`image_info` says of the file (its own size and format,
    whatever scale it was decoded at), from one opening of the file."""
    info: dict = {}
    image = _open_path(path, max_pixels, min_side, info)
    return image, info


def _open_path(path, max_pixels: int | None, min_side: int | None, info: dict | None) -> Image.Image:
    path = Path(path)
    name = path.name
    limit = _pixel_limit(max_pixels)
    _stat_checks(path, name)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        reason = (
            "permission denied"
            if isinstance(exc, PermissionError)
            else (f"cannot read the file: {exc.strerror or exc}")
        )
        raise _fail(name, reason, path=str(path)) from None
    with f:
        try:
            return _decode(f, name, limit, str(path), _min_side(min_side), info)
        except ImageError:
            raise
        except OSError as exc:  # I/O error from the disk itself
            raise _fail(name, f"cannot read the file: {_describe(exc)}", path=str(path)) from None


def open_image_bytes(
    data: bytes, *, name: str = "upload", max_pixels: int | None = None, min_side: int | None = None
) -> Image.Image:
    """Same as :func:`open_image`, for uploaded bytes."""
    limit = _pixel_limit(max_pixels)
    if not data:
        raise _fail(name, "empty file (0 bytes)")
    cap = max_file_bytes()
    if len(data) > cap:
        raise _fail(
            name,
            f"file too large: {_mib(len(data))} exceeds the limit of {_mib(cap)}",
            hint="raise VITRINE_MAX_FILE_BYTES if this is legitimate",
        )
    return _decode(io.BytesIO(data), name, limit, None, _min_side(min_side))


def _min_side(value: int | None) -> int | None:
    if value is None:
        return None
    if value < 1:
        raise ValueError("min_side must be at least 1")
    return int(value)


def _pixel_limit(value: int | None) -> int:
    if value is None:
        return max_pixels()
    if value <= 0:
        raise ValueError("max_pixels must be positive")
    return int(value)


def image_info(path: str | os.PathLike) -> dict:
    """Header-only facts: width and height *as displayed* (EXIF orientation applied), format,
    mode, and the EXIF ``orientation`` (1 when none). Raises ImageError like :func:`open_image`
    for non-images and images over the pixel limit, but never decodes pixels."""
    path = Path(path)
    name = path.name
    _stat_checks(path, name)
    limit = max_pixels()
    with open(path, "rb") as f:
        im = _open_header(f, name, limit, str(path))
        _check_size(im, name, limit, str(path))  # same verdict as open_image on a bomb
        w, h = im.size
        orientation = 1
        if im.format != "PNG" or "exif" in im.info:  # PNG's getexif() would decode the pixels
            orientation = _orientation(im)
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        return {"width": w, "height": h, "format": im.format, "mode": im.mode, "orientation": orientation}


def make_thumbnail(image: Image.Image, size: int = 320) -> bytes:
    """JPEG bytes (quality 85) of ``image`` scaled so its longest side is at most ``size``."""
    if size < 1:
        raise ValueError("thumbnail size must be at least 1")
    im = _to_rgb(image)
    w, h = im.size
    if max(w, h) > size:
        scale = size / max(w, h)
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
        im = im.resize(new, Image.Resampling.BICUBIC, reducing_gap=2.0)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85, optimize=True)
    return buf.getvalue()
