"""The torch hub as a weights source: its checkpoint cache and downloads into it.

torchvision's weights (and any plain URL) are kept in ``$TORCH_HOME/hub/checkpoints`` under the
URL's file name. The cache is found without importing torch when torch is not imported yet, so
listing models stays cheap.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def torch_hub_dir() -> Path:
    """torch.hub.get_dir(), without importing torch when it is not imported yet."""
    if "torch" in sys.modules:
        import torch

        return Path(torch.hub.get_dir())
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch"
    )
    return Path(os.path.expanduser(home)) / "hub"


def torch_checkpoints_dir() -> Path:
    return torch_hub_dir() / "checkpoints"


def torch_cached_file(url: str) -> Path | None:
    path = torch_checkpoints_dir() / os.path.basename(url)
    return path if path.is_file() else None


def hash_prefix(url: str) -> str | None:
    """The hash prefix torchvision puts in its file names (``...-7f5810bc.pth``), or None."""
    from torch.hub import HASH_REGEX

    found = HASH_REGEX.search(os.path.basename(url))
    return found.group(1) if found else None


def download_torch_file(url: str, sha256: str | None = None) -> Path:
    """Download ``url`` into the torch hub cache with torch's progress bar, checking the file's
    SHA-256 against ``sha256`` (a prefix is enough; default: the one in the file name). Raises
    whatever torch raises (network errors, hash mismatch, disk full...)."""
    from torch.hub import download_url_to_file

    folder = torch_checkpoints_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / os.path.basename(url)
    download_url_to_file(url, str(dst), sha256 or hash_prefix(url), progress=True)
    return dst
