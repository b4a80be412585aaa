"""Finding the image files of a project, safely and fast (``os.scandir``).

Rules:

* only files whose suffix is in :data:`SUPPORTED_SUFFIXES` (any case) are considered; other files
  are ignored silently, and so are hidden files and folders (name starting with ``.``);
* a symlink (to a file or a folder) whose target lies inside ``images/`` is followed; one pointing
  elsewhere, a broken one and a loop are reported as :class:`SkippedFile` with the reason (a dangling link
  only when its name has a supported suffix or no suffix at all, i.e. it could have been an image
  or a folder); a folder
  reached through a symlink is walked at most once, and never when it is one of the folders being
  walked (a loop);
* zero-byte files are *skipped* with the reason ``"empty file (0 bytes)"`` (the same words as the
  decoder): they are usually copies in progress or failed downloads, and all of them would share
  one content hash;
* anything that is not a regular file (pipe, socket, device) is skipped with a reason: reading it
  could block forever;
* a folder that cannot be listed (permissions) is reported as a SkippedFile, never raised;
* names that are not valid UTF-8 are skipped (their relpath is shown with U+FFFD in place of the
  bad bytes): rename them.

Both lists are sorted by ``relpath``, so the result is deterministic.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from vitrine.collection.imageio import SUPPORTED_SUFFIXES
from vitrine.core.errors import LayoutError

__all__ = ["FoundFile", "SkippedFile", "iter_images", "walk_images"]


@dataclass(frozen=True)
class FoundFile:
    relpath: str  # POSIX path relative to images/, e.g. "drawings/plan 1.jpg"
    path: Path
    folder: str  # first component of relpath ("" for files directly in images/)
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class SkippedFile:
    relpath: str
    reason: str


def _is_supported(name: str) -> bool:
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in SUPPORTED_SUFFIXES


def _printable(name: str) -> str:
    """``name`` with undecodable bytes (surrogate escapes) shown as U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _valid_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _inside(root: str, target: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


_SUFFIXES = SUPPORTED_SUFFIXES
# Building 100k Path objects dominates the walk on Python 3.11 (full re-parse of every path);
# pathlib's own child constructor skips the parsing. Names from scandir never contain a separator.
_make_child = getattr(Path, "_make_child_relpath", None) or Path.joinpath
_Dir = tuple[str, Path, str, str, frozenset[tuple[int, int]]]  # path, Path, prefix, folder, ancestors


def _resolve_link(entry: os.DirEntry, name: str, shown: str, root_real: str):
    """For a symlink entry: (target stat, is_dir), a SkippedFile, or None (ignore silently)."""
    # a dangling link is reported when it could have been an image or a folder
    report = _is_supported(name) or "." not in name
    try:
        target = os.path.realpath(entry.path, strict=True)
    except FileNotFoundError:
        if not report:
            return None
        return SkippedFile(shown, f"broken symlink (target: {_printable(os.readlink(entry.path))})")
    except (OSError, RuntimeError) as exc:  # RuntimeError: loops, on some Python versions
        if not report:
            return None
        if isinstance(exc, RuntimeError) or exc.errno == errno.ELOOP:
            return SkippedFile(shown, "symlink loop (the link points back to itself)")
        return SkippedFile(shown, f"unreadable symlink: {exc.strerror or exc}")
    st = os.stat(target)
    is_dir = stat.S_ISDIR(st.st_mode)
    if not (is_dir or _is_supported(name)):
        return None  # a link to some other kind of file: ignored like the file itself would be
    if not _inside(root_real, target):
        return SkippedFile(shown, f"symlink points outside the project (target: {_printable(target)})")
    return st, is_dir


def iter_images(images_dir: str | os.PathLike):
    """Yield :class:`FoundFile` and :class:`SkippedFile` in walk order (each folder sorted by name).

    A generator, so that a caller that only needs to know whether there is *any* image can stop
    early. :func:`walk_images` collects and sorts everything.
    """
    images_dir = Path(images_dir)
    try:
        root_real = os.path.realpath(images_dir, strict=True)
    except OSError:
        raise LayoutError(
            f"images folder not found: {images_dir}",
            hint="put the images in <project>/images/<subfolder>/",
        ) from None
    if not os.path.isdir(root_real):
        raise LayoutError(f"not a folder: {images_dir}", hint="images/ must be a folder of image files")
    root_st = os.stat(root_real)
    followed: set[tuple[int, int]] = set()  # folders already entered through a symlink
    stack: list[_Dir] = [(str(images_dir), images_dir, "", "", frozenset({(root_st.st_dev, root_st.st_ino)}))]
    S_ISREG = stat.S_ISREG
    while stack:
        dir_path, dir_obj, prefix, folder, ancestors = stack.pop()
        try:
            with os.scandir(dir_path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            yield SkippedFile(_printable(prefix.rstrip("/")) or ".", "permission denied: cannot list this folder")
            continue
        except OSError as exc:
            yield SkippedFile(_printable(prefix.rstrip("/")) or ".", f"cannot list this folder: {exc.strerror or exc}")
            continue
        subdirs: list[_Dir] = []
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue
            try:
                is_link = entry.is_symlink()
                if is_link:
                    shown = _printable(prefix + name)
                    resolved = _resolve_link(entry, name, shown, root_real)
                    if resolved is None:
                        continue
                    if isinstance(resolved, SkippedFile):
                        yield resolved
                        continue
                    st, is_dir = resolved
                else:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if not is_dir:
                        dot = name.rfind(".")
                        if dot <= 0 or name[dot:].lower() not in _SUFFIXES:
                            continue
                    st = entry.stat(follow_symlinks=False)

                if is_dir:
                    shown = _printable(prefix + name)
                    key = (st.st_dev, st.st_ino)
                    if key in ancestors:
                        yield SkippedFile(shown, "symlink loop (the link points to a folder that contains it)")
                        continue
                    if is_link:
                        if key in followed:
                            yield SkippedFile(shown, "symlink to a folder already walked through another link")
                            continue
                        followed.add(key)
                    if not (name.isascii() or _valid_utf8(name)):
                        yield SkippedFile(shown, "folder name is not valid UTF-8: rename it")
                        continue
                    subdirs.append(
                        (
                            entry.path,
                            _make_child(dir_obj, name),
                            prefix + name + "/",
                            folder or name,
                            ancestors | {key},
                        )
                    )
                    continue

                if not (name.isascii() or _valid_utf8(name)):
                    yield SkippedFile(_printable(prefix + name), "file name is not valid UTF-8: rename it")
                    continue
                if not S_ISREG(st.st_mode):
                    yield SkippedFile(prefix + name, "not a regular file (pipe, socket or device)")
                    continue
                if st.st_size == 0:
                    yield SkippedFile(prefix + name, "empty file (0 bytes)")
                    continue
                yield FoundFile(prefix + name, _make_child(dir_obj, name), folder, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                continue  # deleted while we were looking: simply not there
            except PermissionError:
                yield SkippedFile(_printable(prefix + name), "permission denied")
            except OSError as exc:
                yield SkippedFile(_printable(prefix + name), f"cannot read: {exc.strerror or exc}")
        # depth-first, in name order
        stack.extend(reversed(subdirs))


def walk_images(images_dir: str | os.PathLike) -> tuple[list[FoundFile], list[SkippedFile]]:
    """All supported image files under ``images_dir``, and the ones skipped with a reason.

    Raises :class:`~vitrine.core.errors.LayoutError` when ``images_dir`` itself is missing.
    """
    found: list[FoundFile] = []
    skipped: list[SkippedFile] = []
    add_found, add_skipped = found.append, skipped.append
    for item in iter_images(images_dir):
        if type(item) is FoundFile:
            add_found(item)
        else:
            add_skipped(item)
    found.sort(key=lambda f: f.relpath)
    skipped.sort(key=lambda s: s.relpath)
    return found, skipped
