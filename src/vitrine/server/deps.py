"""What routes take from a request, as FastAPI dependencies: the app state, the workspace, a
project by name, a run by id; and an upload read within the server's limit.

Routes (``api/``, ``ui/``) import these; this module imports no route, so dependencies flow one
way (``app.py`` alone assembles). Caches that belong to one group of routes (datasets and
classifiers, fine-tuned detectors) stay with those routes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, UploadFile

from vitrine.core.errors import NotFound, PayloadTooLarge, VitrineError
from vitrine.core.workspace import Workspace, check_name
from vitrine.project import Project
from vitrine.runs import DETECTION_RUN_KINDS, Run
from vitrine.server.state import AppState


def state(request: Request) -> AppState:
    return request.app.state.vitrine


StateDep = Annotated[AppState, Depends(state)]


def workspace(st: StateDep) -> Workspace:
    return Workspace(st.settings.root)


WorkspaceDep = Annotated[Workspace, Depends(workspace)]


def project(name: str, st: StateDep) -> Project:
    return st.project(name)


ProjectDep = Annotated[Project, Depends(project)]


def _unknown_run(run_id: str) -> NotFound:
    return NotFound(f"no run {run_id!r}", hint="see the runs with GET /api/v1/runs (or `vitrine runs`)")


def load_run(run_id: str, ws: WorkspaceDep) -> Run:
    if run_id not in ws.run_ids():  # also refuses ids that are not folder names
        raise _unknown_run(run_id)
    return Run.load(ws, run_id)


RunDep = Annotated[Run, Depends(load_run)]


def load_detection_run(run_id: str, ws: WorkspaceDep) -> Run:
    if run_id not in ws.run_ids():  # also refuses ids that are not folder names
        raise NotFound(f"no run {run_id!r}", hint="see the detection runs with GET /api/v1/detection/runs")
    run = Run.load(ws, run_id)
    if run.record.get("kind") not in DETECTION_RUN_KINDS:
        raise VitrineError(
            f"run {run_id!r} is a {run.record.get('kind')} run, not a detection run",
            hint="its page is /runs/" + run_id,
        )
    return run


DetectionRunDep = Annotated[Run, Depends(load_detection_run)]


def human_size(n: int) -> str:
    """``n`` bytes for a message: "512 bytes", "48.8 KiB", "20 MiB"."""
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The uploaded file's bytes; over ``limit`` bytes it is refused (413) without reading the rest."""
    chunks, size = [], 0
    while chunk := await upload.read(1 << 20):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"upload {upload.filename!r} is larger than the limit of {human_size(limit)}",
                hint="send a smaller file, or raise VITRINE_MAX_UPLOAD_BYTES on the server",
            )
        chunks.append(chunk)
    if not size:
        raise VitrineError(f"upload {upload.filename!r} is empty")
    return b"".join(chunks)


def board_runs(ws: Workspace, name: str) -> list[Run]:
    """The runs of board ``name`` the caller may see. A board is a workspace dataset (then the
    caller must be allowed to read it: 404 or 403 otherwise) or just the dataset name runs were
    scored on (an imported detector evaluated on a COCO file): then the board exists for the
    caller only through the runs they may read, and names nothing else.

    On a dataset made a group board (:mod:`vitrine.data.board`), its readers see every run scored
    on it; elsewhere, the runs they may read (their own, shared with them, public)."""
    from vitrine.data.board import read_board
    from vitrine.runs import list_runs
    from vitrine.server.security import require, visible

    check_name(name, "dataset name")
    is_dataset = ws.dataset_dir(name).is_dir()
    if is_dataset:
        require("dataset", name)
    found = [r for r in list_runs(ws) if r.record.get("dataset") == name]
    if is_dataset and read_board(ws, name).group:
        return found
    mine = set(visible("run", [r.id for r in found]))
    runs = [r for r in found if r.id in mine]
    if not runs and not is_dataset:
        raise NotFound(
            f"no dataset {name!r}",
            hint="see GET /api/v1/datasets; a board lists the runs scored on one dataset",
        )
    return runs
