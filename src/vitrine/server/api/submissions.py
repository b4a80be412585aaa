"""The group leaderboard: hidden splits, annotations, and submissions scored by the server.

A dataset's owner hides a split (``PUT /api/v1/datasets/{name}/board``); from then on the members
it is shared with train on the other splits, see the hidden one only as image ids
(``GET .../submission``, ``GET .../submission/images/{id}``), get 404 for its annotations on every
route (``GET .../annotations?split=test`` here, and the dataset routes, which show members a view
without it), and score themselves by submitting predictions (``POST .../submissions``): a CSV of
image → class, or COCO results for a detection dataset. The server scores them with the code that
scores every run (:mod:`vitrine.evaluate.submission`) and keeps each as a run owned by its
submitter, on the dataset's leaderboard. A submission never changes the dataset.

Works for both kinds of workspace dataset: classification (``dataset.json``) and detection folders.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path as PathLib
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from vitrine.core.errors import NotFound
from vitrine.core.jsonio import jsonable
from vitrine.data.board import HIDEABLE_SPLITS, check_hideable, read_board, set_group, set_hidden
from vitrine.evaluate.submission import image_of, listing, load_target, score_submission, submissions
from vitrine.runs.leaderboard import run_row
from vitrine.server.api.responses import CSV, IMAGE, errors
from vitrine.server.deps import StateDep, WorkspaceDep, board_runs, read_upload
from vitrine.server.security import claim, hide_paths, may

router = APIRouter(prefix="/api/v1", tags=["submissions"])

Name = Annotated[str, Path(description="a workspace dataset (classification or a detection folder)")]
Split = Annotated[str, Query(pattern="^(train|val|test)$", description="train, val or test")]


def _sees_hidden(name: str) -> bool:
    """The dataset's owner and admins see hidden splits; the members it is shared with do not."""
    return may("dataset", name, "manage")


class BoardUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden: list[str] | None = Field(
        None, max_length=3, description=f"the splits to hide from members: some of {', '.join(HIDEABLE_SPLITS)}"
    )
    group: bool | None = Field(None, description="every run on the dataset shown on its board to all its readers")


@router.get("/datasets/{name}/board", responses=errors(404))
def board_settings(name: Name, ws: WorkspaceDep):
    """The dataset's board settings: its task and hidden splits, and whether the caller sees them."""
    board = read_board(ws, name)
    return {**board.to_dict(), "sees_hidden": _sees_hidden(name)}


@router.put("/datasets/{name}/board", responses=errors(400, 404), openapi_extra={"x-vitrine-action": "manage"})
def update_board(name: Name, body: BoardUpdate, ws: WorkspaceDep):
    """The owner's (or an admin's) board settings: ``{"hidden": ["test"]}`` hides the test split from
    members (``[]`` shows it again); ``{"group": true}`` makes the leaderboard the group's. Fields
    left out keep their value."""
    for split in body.hidden or ():
        check_hideable(split)
    board = read_board(ws, name)
    if body.hidden is not None:
        for split in HIDEABLE_SPLITS:
            if (split in body.hidden) != board.is_hidden(split):
                board = set_hidden(ws, name, split, split in body.hidden)
    if body.group is not None and body.group != board.group:
        board = set_group(ws, name, body.group)
    return {**board.to_dict(), "sees_hidden": True}


@router.get(
    "/datasets/{name}/annotations",
    response_class=Response,
    responses={**CSV, 200: {"description": "CSV (classification) or COCO JSON (detection)"}, **errors(404)},
)
def annotations(name: Name, ws: WorkspaceDep, split: Split | None = None):
    """The dataset's annotations (all splits the caller may see, or one): a CSV ``path,label,split``
    for a classification dataset, a COCO instances file for a detection dataset. A hidden split's
    annotations are 404 for members, as if it did not exist."""
    board = read_board(ws, name)
    hidden = () if _sees_hidden(name) else board.hidden  # the splits this caller may not see
    if split in hidden:
        raise NotFound(f"no annotations of split {split!r} in dataset {name!r}", hint="that split is hidden")
    shown = [split] if split is not None else [s for s in ("train", "val", "test", "") if s not in hidden]
    if board.task == "classify":
        from vitrine.data.importers import load_dataset

        ds = load_dataset(ws, name)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["path", "label", "split"])
        for s in ds.samples:
            if s.split in shown:
                writer.writerow([s.path, s.label, s.split])
        return Response(buf.getvalue(), media_type="text/csv", headers=_attachment(f"{name}-annotations.csv"))
    return Response(
        json.dumps(_coco(ws, name, shown)), media_type="application/json", headers=_attachment(f"{name}.json")
    )


def _coco(ws, name: str, splits: list[str]) -> dict:
    import tempfile
    from pathlib import Path as FsPath

    from vitrine.data.detection.coco import to_coco
    from vitrine.data.detection.model import DetectionDataset
    from vitrine.data.detection.resolve import resolve_dataset

    ds, _, _ = resolve_dataset(str(ws.dataset_dir(name)), name)
    images = [im for im in ds.images if (im.split or "") in splits]
    keep = {im.id for im in images}
    annotations = [a for a in ds.annotations if a.image_id in keep]
    part = DetectionDataset(images=images, categories=list(ds.categories), annotations=annotations, root=ds.root)
    with tempfile.TemporaryDirectory() as tmp:
        out = FsPath(tmp) / "instances.json"
        to_coco(part, out)
        return json.loads(out.read_text())


def _attachment(filename: str) -> dict:
    return {"content-disposition": f'attachment; filename="{filename}"'}


@router.get("/datasets/{name}/submission", responses=errors(404))
def submission_listing(name: Name, ws: WorkspaceDep, split: Split = "test"):
    """What to submit for ``split``: its image ids (no labels; paths only for the owner), the class
    or category names, the file format and an example."""
    return hide_paths(jsonable(listing(load_target(ws, name, split), show_paths=_sees_hidden(name))))


ZIP = {200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
             "description": "A ZIP of the split's images, each named by its id."}}  # fmt: skip


@router.get("/datasets/{name}/submission/images.zip", response_class=FileResponse, responses={**ZIP, **errors(404)})
def submission_images_zip(name: Name, ws: WorkspaceDep, split: Split = "test"):
    """Every image of ``split`` in one ZIP, each named ``<id><suffix>`` (what to predict on), with
    ``images.json``: the listing (ids, classes or categories, format)."""
    import os
    import tempfile
    import zipfile

    from starlette.background import BackgroundTask

    target = load_target(ws, name, split)
    fd, tmp = tempfile.mkstemp(prefix="vitrine-submission-", suffix=".zip")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:  # images are compressed already
            for key, item in target.by_id.items():
                path = target.image_path(item)
                if path.is_file():
                    zf.write(path, f"{key}{path.suffix.lower()}")
            zf.writestr("images.json", json.dumps(jsonable(listing(target)), indent=1))
    except BaseException:
        os.unlink(tmp)
        raise
    return FileResponse(tmp, media_type="application/zip", filename=f"{name}-{split}-images.zip",
                        background=BackgroundTask(os.unlink, tmp))  # fmt: skip


@router.get("/datasets/{name}/submission/images/{image_id}", response_class=FileResponse, responses=IMAGE)
def submission_image(name: Name, image_id: str, ws: WorkspaceDep, split: Split = "test"):
    """One image of ``split`` by the id the listing gives."""
    return FileResponse(image_of(load_target(ws, name, split), image_id))


MODEL_SUFFIXES = (".onnx", ".pt", ".pth")  # detectors submitted as a model file, run by the server


@router.post(
    "/datasets/{name}/submissions",
    status_code=201,
    responses={202: {"description": "a model file: the job that scores it"}, **errors(400, 404, 413, 422)},
    openapi_extra={"x-vitrine-action": "use"},
)
async def submit(
    name: Name,
    st: StateDep,
    file: Annotated[
        UploadFile,
        File(description="a CSV (image,class), COCO results (JSON or JSON Lines), or a detector (.onnx, .pt)"),
    ],
    label: Annotated[str | None, Form(max_length=100, description="the name it has on the board")] = None,
    split: Annotated[str, Form(pattern="^(train|val|test)$")] = "test",
):
    """Score a submission on ``split`` (default test) and keep it as a run the caller owns.

    Predictions (a CSV for a classification dataset, COCO results for a detection one) are scored
    at once: 201 with the run's leaderboard row; a file that does not fit: 422 listing every
    problem with its line. A detector as a model file (a YOLO exported to ONNX, or a torchvision
    checkpoint whose classes are the dataset's categories in id order) is run by the server on
    the split in a background job: 202 with the job (follow it with GET
    /api/v1/jobs/{job_id}); the run appears on the board when it is scored."""
    from vitrine.core.workspace import Workspace

    data = await read_upload(file, st.settings.max_upload_bytes)
    ws = Workspace(st.settings.root)
    filename = file.filename or "submission"
    if filename.lower().endswith(MODEL_SUFFIXES):
        job = await run_in_threadpool(_submit_model, st, ws, name, data, filename, split, label)
        return JSONResponse(jsonable(job.to_dict()), status_code=202)
    sees = _sees_hidden(name)

    def score():
        return score_submission(ws, name, data, filename, split=split, label=label, allow_paths=sees)

    run = await run_in_threadpool(score)
    claim("run", run.id)
    return hide_paths(jsonable(run_row(run)))


def _submit_model(st, ws, name: str, data: bytes, filename: str, split: str, label: str | None):
    """Check the model file (it loads, its classes map to the dataset's), keep it in the new run's
    folder and submit the job that scores it."""
    import shutil

    from vitrine.core.atomic import atomic_write_bytes
    from vitrine.core.errors import VitrineError
    from vitrine.evaluate.detection import normalize_name
    from vitrine.predict.detector import load_detector
    from vitrine.runs import new_run_id
    from vitrine.tasks.score_submission import SCORE_SUBMISSION_JOB

    target = load_target(ws, name, split)
    if target.task != "detect":
        raise VitrineError(
            f"dataset {name!r} is a classification dataset: submit predictions (a CSV of image,class)",
            hint="or train a classifier on it here: every run is scored on its test split",
        )
    run_id = new_run_id("submission", name)
    directory = ws.run_dir(run_id)
    model = directory / ("model" + PathLib(filename).suffix.lower())
    directory.mkdir(parents=True)
    try:
        atomic_write_bytes(model, data)
        try:
            detector = load_detector(str(model), categories=target.gt.categories)
        except VitrineError as exc:
            raise VitrineError(f"{filename}: {exc.message}", hint=exc.hint) from None
        classes = {normalize_name(c) for c in getattr(detector, "classes", {}).values()}
        categories = [c.name for c in target.gt.categories]
        if classes and not classes & {normalize_name(c) for c in categories}:
            raise VitrineError(
                f"{filename}: none of the model's classes is a category of dataset {name!r}",
                hint=f"the dataset's categories: {', '.join(categories)}; name the model's classes after them",
            )
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    params = {"dataset": name, "split": split, "run_id": run_id, "model": model.name,
              "label": label or PathLib(filename).stem}  # fmt: skip
    return st.jobs.submit(SCORE_SUBMISSION_JOB, f"run:{run_id}", params)


@router.get("/datasets/{name}/submissions", responses=errors(404))
def list_submissions(name: Name, ws: WorkspaceDep):
    """The submissions to this dataset the caller may read, newest first, with their scores."""
    found = submissions(board_runs(ws, name), name)
    return hide_paths(jsonable([run_row(r) for r in found]))
