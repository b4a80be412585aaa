"""A workspace dataset as a group's board: which of its splits are hidden, and how hidden images are
named without giving their labels away.

A dataset of the workspace (a classification dataset, ``datasets/<name>/dataset.json``, or a
detection dataset folder, ``datasets/<name>/`` holding COCO, YOLO, CVAT or VOC annotations) may have
a ``board.json`` beside its files, written by its owner:

    {"hidden": ["test"], "group": true, "secret": "<64 hex digits>", "updated_at": 1733400000.0}

``group`` makes the dataset's leaderboard the group's: everyone who may read the dataset sees
every run scored on it there (trained or submitted, whoever owns it), not only the runs they may
read themselves. ``hidden`` lists the splits whose annotations only the owner (and admins) may see: members train
on the others, and score themselves on a hidden split by submitting predictions (see
:mod:`vitrine.evaluate.submission`), never by reading its labels. ``secret`` keys the names the
images of a split are given to members (:func:`image_token`): an image-folder dataset's paths hold
the class (``test/Sneaker/0042.png``), so members see ``img-3f9a...`` instead, which nobody can
derive from a guessed path without the secret. Nothing here changes the dataset's own files.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path

from vitrine.core.atomic import atomic_write_json
from vitrine.core.errors import NotFound, VitrineError
from vitrine.core.jsonio import read_json
from vitrine.core.workspace import Workspace

BOARD_FILE = "board.json"
HIDEABLE_SPLITS = ("val", "test")
TOKEN_PREFIX = "img-"
TOKEN_HEX = 20


@dataclass(frozen=True)
class Board:
    """The board settings of one dataset."""

    dataset: str
    task: str  # "classify" (dataset.json) or "detect" (an annotation folder)
    hidden: tuple[str, ...] = ()
    secret: str = ""
    group: bool = False

    def is_hidden(self, split: str | None) -> bool:
        return split is not None and split in self.hidden

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "task": self.task, "hidden": list(self.hidden), "group": self.group}


def dataset_task(workspace: Workspace, name: str) -> str:
    """``classify`` for a classification dataset, ``detect`` for a detection dataset folder; NotFound
    for a name that is neither."""
    directory = workspace.dataset_dir(name)  # refuses names that are not plain folder names
    if (directory / "dataset.json").is_file():
        return "classify"
    if directory.is_dir():
        return "detect"
    raise NotFound(f"no dataset {name!r} in the workspace", hint="list them with `vitrine data list`")


def read_board(workspace: Workspace, name: str) -> Board:
    """The board settings of dataset ``name`` (none hidden when it has no board.json)."""
    task = dataset_task(workspace, name)
    doc = read_json(workspace.dataset_dir(name) / BOARD_FILE) or {}
    hidden = doc.get("hidden") if isinstance(doc.get("hidden"), list) else []
    secret = doc.get("secret") if isinstance(doc.get("secret"), str) else ""
    return Board(name, task, tuple(s for s in HIDEABLE_SPLITS if s in hidden), secret, doc.get("group") is True)


def _write(workspace: Workspace, board: Board) -> Board:
    atomic_write_json(
        workspace.dataset_dir(board.dataset) / BOARD_FILE,
        {"hidden": list(board.hidden), "group": board.group, "secret": board.secret, "updated_at": time.time()},
    )
    return board


def check_hideable(split: str) -> str:
    """``split`` when it may be hidden; a VitrineError naming the splits that may, otherwise."""
    if split not in HIDEABLE_SPLITS:
        raise VitrineError(
            f"cannot hide split {split!r}", hint=f"hide one of {', '.join(HIDEABLE_SPLITS)}: members train on train"
        )
    return split


def set_hidden(workspace: Workspace, name: str, split: str, hidden: bool = True) -> Board:
    """Hide ``split`` of dataset ``name`` from members (or show it again with ``hidden=False``)."""
    check_hideable(split)
    board = read_board(workspace, name)
    splits = set(board.hidden) | {split} if hidden else set(board.hidden) - {split}
    hidden_splits = tuple(s for s in HIDEABLE_SPLITS if s in splits)
    return _write(workspace, replace(board, hidden=hidden_splits, secret=board.secret or _new_secret()))


def set_group(workspace: Workspace, name: str, group: bool = True) -> Board:
    """Make the dataset's leaderboard the group's (every run on it shown to its readers), or not."""
    board = read_board(workspace, name)
    return _write(workspace, replace(board, group=bool(group), secret=board.secret or _new_secret()))


def with_secret(workspace: Workspace, board: Board) -> Board:
    """``board`` with its secret, made and saved the first time one is needed."""
    if board.secret:
        return board
    return _write(workspace, replace(board, secret=_new_secret()))


def _new_secret() -> str:
    return secrets.token_hex(32)


def image_token(board: Board, key: str | int) -> str:
    """The name members see for the image ``key`` (a sample path or a detection image id)."""
    if not board.secret:
        raise VitrineError(f"dataset {board.dataset!r} has no board secret yet")  # a programming error
    digest = hmac.new(bytes.fromhex(board.secret), str(key).encode("utf-8"), hashlib.sha256).hexdigest()
    return TOKEN_PREFIX + digest[:TOKEN_HEX]


def board_file(workspace: Workspace, name: str) -> Path:
    return workspace.dataset_dir(name) / BOARD_FILE


__all__ = [
    "BOARD_FILE",
    "HIDEABLE_SPLITS",
    "Board",
    "board_file",
    "check_hideable",
    "dataset_task",
    "image_token",
    "read_board",
    "set_group",
    "set_hidden",
    "with_secret",
]
