"""A detection run's errors, image by image (the errors view of the run page): each image's true
positives, false positives with their kind and missed objects at an IoU and a score threshold the
caller picks, most errors first, and the run's scored images themselves.

The matching is :func:`vitrine.evaluate.detection_errors.detection_errors`, on the predictions the
run kept (:func:`vitrine.evaluate.run_errors.load_run_errors`). The images are the dataset's: the
caller must be allowed to read the run and its dataset, and a member never gets the images or
labels of a dataset's hidden split through a run scored on it (:mod:`vitrine.data.board`): only
the dataset's owner and admins do. A trained run evaluated before runs kept their predictions is
evaluated again by ``POST .../evaluate`` (a job), as ``vitrine eval RUN`` does.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from vitrine.core.errors import VitrineError
from vitrine.core.jsonio import jsonable
from vitrine.core.workspace import Workspace
from vitrine.evaluate.detection_errors import IOU_RANGE, resolve_category
from vitrine.evaluate.run_errors import RunErrors, load_run_errors
from vitrine.runs import Run
from vitrine.server.api.responses import IMAGE, MAX_INT, errors
from vitrine.server.deps import DetectionRunDep, StateDep
from vitrine.server.state import Recent, per_app

router = APIRouter(prefix="/api/v1", tags=["detection"])

LOADED_KEPT = 4  # runs whose ground truth and predictions stay loaded (least recently used dropped first)
MAX_LIMIT = 200
REPORTS_KEPT = 8  # computed errors kept (one per run and thresholds: a slider's last positions, pages)


class HiddenSplit(VitrineError):
    """The run was scored on a split its dataset's board hides from the caller."""

    status = 403
    code = "hidden_split"


class BadParameter(VitrineError):
    """A query parameter the run cannot take (a class it does not have, an IoU type it was not evaluated on)."""

    status = 422
    code = "invalid_request"


class _Loaded:
    """Runs' ground truth and predictions, kept per app until their files change, and the last
    errors computed from them (so that paging through one query does not match it again)."""

    def __init__(self):
        self.runs = Recent(LOADED_KEPT)
        self.reports = Recent(REPORTS_KEPT)

    def report(self, errs: RunErrors, **options) -> dict:
        key = (errs.run_id, errs.loaded_at, *sorted(options.items()))
        return self.reports.get(key, lambda: errs.errors(**options))

    @staticmethod
    def stamp(run: Run) -> tuple:
        out = []
        for name in ("run.json", "predictions.json.gz", "submission.json", "detection_metrics.json"):
            try:
                st = (run.dir / name).stat()
                out.append((name, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((name,))
        return tuple(out)

    def get(self, ws: Workspace, run: Run) -> RunErrors:
        # keyed by the files' stamp too: a run evaluated again is loaded afresh (its old entry ages out)
        return self.runs.get((run.id, self.stamp(run)), lambda: load_run_errors(ws, run))


def _loaded(request: Request) -> _Loaded:
    """This app's loaded runs (each app has its own workspace)."""
    return per_app(request.app.state, "detection_errors", _Loaded)


def _check_access(ws: Workspace, errs: RunErrors) -> None:
    """The images are the dataset's: reading them needs the dataset, and a hidden split's owner."""
    from vitrine.core.workspace import check_name
    from vitrine.data.board import read_board
    from vitrine.server.security import may, require

    name = errs.dataset
    try:
        check_name(name, "dataset name")
    except VitrineError:
        return  # a name that is no workspace dataset (e.g. a file's name): nothing of a board to hide
    if not ws.dataset_dir(name).is_dir():
        return
    require("dataset", name)
    board = read_board(ws, name)
    if not board.hidden or may("dataset", name, "manage"):
        return
    hidden = sorted({im.split for im in errs.gt.images if board.is_hidden(im.split)})
    if hidden:
        raise HiddenSplit(
            f"run {errs.run_id!r} was scored on the hidden {', '.join(hidden)} split of dataset {name!r}: "
            "its images and labels are not shown to you",
            hint="the dataset's leaderboard shows the run's scores; only the dataset's owner browses a hidden split",
        )


def _load(request: Request, st, run: Run) -> RunErrors:
    ws = Workspace(st.settings.root)
    errs = _loaded(request).get(ws, run)
    _check_access(ws, errs)
    return errs


IoU = Annotated[
    float,
    Query(ge=IOU_RANGE[0], le=IOU_RANGE[1], description=f"IoU threshold of a match ({IOU_RANGE[0]}..{IOU_RANGE[1]})"),
]
Score = Annotated[float, Query(ge=0.0, le=1.0, description="count predictions scoring at least this (0..1)")]
Category = Annotated[str | None, Query(max_length=200, description="one class only: its name or category id")]
IouType = Annotated[Literal["bbox", "segm"], Query(description="match boxes (bbox) or masks (segm, segmentation runs)")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"images per page (1..{MAX_LIMIT})")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT, description="images to skip (paging)")]


@router.get("/detection/runs/{run_id}/errors", responses=errors(403, 409))
async def detection_run_errors(
    request: Request,
    run: DetectionRunDep,
    st: StateDep,
    iou: IoU = 0.5,
    score: Score = 0.5,
    category: Category = None,
    iou_type: IouType = "bbox",
    limit: Limit = 24,
    offset: Offset = 0,
    masks: Annotated[bool, Query(description="each box's mask as a COCO RLE (with iou_type=segm)")] = False,
):
    """The run's errors image by image at IoU ≥ ``iou`` and score ≥ ``score``: a page of its scored
    images, most errors (FP + FN) first, each with its counts and boxes (``kind`` tp / fp / fn, a
    false positive's ``fp_kind``: duplicate, class, localisation or background; boxes as [x, y, w,
    h] in pixels; with ``masks=true`` and ``iou_type=segm``, each box's mask as a COCO RLE), and the
    counts over all of them (equal to the report's at the same thresholds).
    A run evaluated before runs kept their predictions answers 409 saying how to evaluate it again."""

    def work() -> dict:
        errs = _load(request, st, run)
        if iou_type not in errs.iou_types:
            raise BadParameter(
                f"run {run.id!r} was evaluated on {' and '.join(errs.iou_types)} only, not {iou_type}",
                hint=f"iou_type: {', '.join(errs.iou_types)}",
            )
        if masks and iou_type != "segm":
            raise BadParameter("masks come with the matching by masks", hint="ask for iou_type=segm with masks=true")
        try:
            resolve_category(errs.gt, category)
        except VitrineError as exc:
            raise BadParameter(exc.message, hint=exc.hint) from None
        report = dict(
            _loaded(request).report(
                errs, iou_threshold=iou, score_threshold=score, category=category, iou_type=iou_type, masks=masks
            )
        )
        images = report.pop("images")
        return {
            "run": run.id,
            "dataset": errs.dataset,
            "split": errs.split,
            "iou_types": errs.iou_types,
            "notes": errs.notes,
            "total": len(images),
            "offset": offset,
            "limit": limit,
            **report,
            "images": images[offset : offset + limit],
        }

    return jsonable(await run_in_threadpool(work))


@router.get(
    "/detection/runs/{run_id}/images/{image_id}", response_class=FileResponse, responses={**IMAGE, **errors(403, 409)}
)
async def detection_run_image(
    request: Request,
    run: DetectionRunDep,
    st: StateDep,
    image_id: Annotated[int, Path(ge=0, le=MAX_INT, description="an image id of the run's scored images")],
):
    """One of the images the run was scored on (the file as it is in the dataset)."""

    def work():
        return _load(request, st, run).image_path(image_id)

    path = await run_in_threadpool(work)
    return FileResponse(path, headers={"Cache-Control": "private, max-age=300"})


@router.post("/detection/runs/{run_id}/evaluate", status_code=202, responses=errors(400, 409))
def evaluate_detection_run_again(run: DetectionRunDep, st: StateDep):
    """Evaluate a trained detection run again, in a background job (``evaluate-run``), on the
    split it was evaluated on: its report is rewritten and its predictions kept, which gives a run
    evaluated before runs kept them its errors view. Follow the job with GET /api/v1/jobs/{job_id}.
    Imported detectors and submissions have no model here to run (400), an unfinished run has
    nothing to evaluate yet (409)."""
    from vitrine.evaluate.run_errors import check_reevaluable
    from vitrine.tasks.evaluate_run import EVALUATE_RUN_JOB

    check_reevaluable(run)
    job = st.jobs.submit(EVALUATE_RUN_JOB, f"run:{run.id}", {"run": run.id})
    return jsonable({**job.to_dict(), "run_id": run.id})
