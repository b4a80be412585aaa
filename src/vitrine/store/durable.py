"""What makes a write survive a crash once the file itself is fsynced and renamed into place: the
folder's entry synced too. One helper for every atomic writer (catalog indexes, checkpoints,
published artifacts)."""

from __future__ import annotations

import os


def fsync_dir(directory: str | os.PathLike) -> None:
    """fsync a folder, so that a rename into it is durable; best effort where folders cannot be
    opened (Windows) or synced."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
