"""``vitrine board`` and ``vitrine submit``: a dataset as a group's board, and predictions scored on it.

vitrine board DATASET [--hide test] [--show test] [--group/--no-group] [--images FILE] [--json]
vitrine submit DATASET FILE [--split test] [--label NAME] [--json]

``board`` shows or changes the dataset's board settings (:mod:`vitrine.data.board`): a hidden split
is one members of a multi-user server never see (they submit predictions for it instead); a group
board shows every run on the dataset to everyone who may read it. ``--images FILE`` writes what
members are given to make a submission: the split's image ids, the classes or categories, the
format. ``submit`` scores a CSV (classification: image,class) or COCO results (detection: JSON or
JSON Lines) on a split with the evaluation every run gets, and keeps it as a run on the
leaderboard (``vitrine leaderboard DATASET``). On the command line you are the workspace's owner:
images may be named by their path as well as by id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vitrine.cli._console import JsonOpt, emit_json, err, guard, out
from vitrine.cli._runs import WorkspaceOpt, workspace_of

SplitOpt = Annotated[str, typer.Option("--split", help="the split scored (train, val or test)")]


def board(
    dataset: Annotated[str, typer.Argument(help="a workspace dataset (classification, or a detection folder)")],
    hide: Annotated[list[str] | None, typer.Option("--hide", help="hide this split from members (val, test)")] = None,
    show: Annotated[list[str] | None, typer.Option("--show", help="show this split to members again")] = None,
    group: Annotated[
        bool | None, typer.Option("--group/--no-group", help="every run on the dataset shown to all its readers")
    ] = None,
    images: Annotated[
        Path | None, typer.Option("--images", help="write the hidden split's image ids and format to this JSON file")
    ] = None,
    split: SplitOpt = "test",
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
):
    """Show or change DATASET's board: hidden splits and the group board."""
    from vitrine.core.atomic import atomic_write_json
    from vitrine.core.jsonio import jsonable
    from vitrine.data.board import read_board, set_group, set_hidden
    from vitrine.evaluate.submission import listing, load_target

    with guard():
        ws = workspace_of(workspace)
        current = read_board(ws, dataset)
        for name in hide or ():
            current = set_hidden(ws, dataset, name, True)
        for name in show or ():
            current = set_hidden(ws, dataset, name, False)
        if group is not None:
            current = set_group(ws, dataset, group)
        if images is not None:
            shown = listing(load_target(ws, dataset, split))  # what members get: ids, no paths
            atomic_write_json(images, jsonable(shown))
            err.print(f"wrote {len(shown['images'])} image id(s) of the {split} split to {images}", highlight=False)
    if as_json:
        emit_json(current.to_dict())
        return
    hidden = ", ".join(current.hidden) or "none"
    out.print(
        f"[bold]{dataset}[/] ({current.task}): hidden splits: {hidden}; group board: {'yes' if current.group else 'no'}"
    )


def submit(
    dataset: Annotated[str, typer.Argument(help="the workspace dataset the predictions are for")],
    file: Annotated[Path, typer.Argument(help="a CSV (image,class) or COCO results (.json / .jsonl)")],
    split: SplitOpt = "test",
    label: Annotated[str | None, typer.Option("--label", help="its name on the board (default: the file's)")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
):
    """Score FILE on DATASET's split and put it on the leaderboard."""
    from vitrine.core.errors import NotFound
    from vitrine.core.jsonio import jsonable
    from vitrine.evaluate.submission import score_submission
    from vitrine.runs.leaderboard import run_row
    from vitrine.runs.summary import PRIMARY

    with guard():
        ws = workspace_of(workspace)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise NotFound(f"cannot read {file}: {exc.strerror or exc}") from None
        run = score_submission(ws, dataset, data, file.name, split=split, label=label, allow_paths=True)
    row = run_row(run)
    if as_json:
        emit_json(jsonable(row))
        return
    metric = PRIMARY.get(row.get("task"), "score")
    value = row.get("primary")
    shown = "-" if value is None else f"{value:.4f}"
    out.print(f"{run.id}: {metric} {shown} on the {split} split of {dataset}", highlight=False)
    err.print(f"see it ranked: vitrine leaderboard {dataset}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``board`` and ``submit`` to the ``vitrine`` app."""
    app.command("board")(board)
    app.command("submit")(submit)
