"""REST API, version 1. Thin: every route calls the core (vitrine.project) and returns JSON."""

from __future__ import annotations

import io
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from vitrine.core.errors import VitrineError
from vitrine.models import registry
from vitrine.search.engine import MAX_RESULTS, normalize_folder
from vitrine.search.query import Filters
from vitrine.search.query import Query as SearchQuery
from vitrine.server.api.responses import CSV, IMAGE, JPEG, MAX_INT, CSVResponse, errors
from vitrine.server.deps import ProjectDep, StateDep, read_upload
from vitrine.server.security import hide_paths, visible
from vitrine.tasks.index import INDEX_JOB
from vitrine.tasks.tag import TAG_JOB

router = APIRouter(prefix="/api/v1")


K = Annotated[int, Query(ge=1, le=200, description="results per page")]
MinScore = Annotated[
    float | None, Query(ge=-1.0, le=1.0, description="keep hits whose score (cosine, -1..1) is at least this")
]
Within = Annotated[float | None, Query(ge=0.0, le=2.0, description="keep hits at most this far below the best")]
SortBy = Annotated[
    Literal["score", "name", "date"], Query(description="order of the hits kept: score, name, or date (newest)")
]
Offset = Annotated[int, Query(ge=0, le=MAX_RESULTS, description="results to skip (pagination)")]


@router.get("/health")
def health():
    return {"status": "ok"}


@router.get("/models")
def models():
    """The models, each with the CPU runtime measured for it on this machine (``runtime_choice``:
    ``vitrine models --bench`` or a large index run; null when none was measured)."""
    from vitrine.embed.runtime_choice import saved_choices

    rows = [spec.describe(probe_hub=False) for spec in registry.list_models()]
    for row in rows:
        saved = saved_choices(row["name"]) if row["task"] == "embedding" else []
        row["runtime_choice"] = saved[0] if saved else None
    return rows


@router.get("/projects")
def list_projects(st: StateDep):
    out = []
    for name in visible("project", sorted(st.project_dirs())):
        try:
            status = st.project(name).status()
            out.append({"name": name, "model": status["model"], "files": status["files"]})
        except VitrineError as exc:
            out.append({"name": name, "error": exc.to_dict()})
    return out


@router.get("/projects/{name}")
def project_status(p: ProjectDep, st: StateDep):
    status = p.status()
    jobs = st.jobs.list(target=p.name)
    mine = set(visible("job", [j.id for j in jobs]))  # another user's private job stays theirs
    job = next((j for j in jobs if j.id in mine), None)
    status["job"] = job.to_dict() if job else None
    return hide_paths(status)


@router.get("/projects/{name}/check")
def project_check(p: ProjectDep):
    return hide_paths(p.check().to_dict())


@router.get("/projects/{name}/ontology")
def ontology(p: ProjectDep):
    onto = p.ontology
    return hide_paths(
        {
            "file": onto.source,
            "entries": [{"keyword": e.keyword, "description": e.description, "line": e.line} for e in onto.entries],
            "problems": [
                {"line": pr.line, "text": pr.text, "message": pr.message, "severity": pr.severity}
                for pr in onto.problems
            ],
        }
    )


def _csv_response(write, filename: str) -> Response:
    buf = io.StringIO()
    write(buf)
    return Response(
        buf.getvalue().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/projects/{name}/ontology.csv", response_class=CSVResponse, responses=CSV)
def ontology_csv(p: ProjectDep):
    from vitrine.collection.ontology import ontology_to_csv

    return _csv_response(lambda fp: ontology_to_csv(p.ontology, fp), f"{p.name}_ontology.csv")


@router.get("/projects/{name}/catalog.csv", response_class=CSVResponse, responses=CSV)
def catalog_csv(p: ProjectDep):
    return _csv_response(p.export_catalog_csv, f"{p.name}_catalog.csv")


@router.post("/projects/{name}/index", status_code=202, responses=errors(503))
def start_index(p: ProjectDep, st: StateDep, model: Annotated[str | None, Form()] = None):
    if model is not None:
        registry.get(model)  # 400 now rather than a failed job later
    return st.jobs.submit(INDEX_JOB, p.name, {"project": p.name, "model": model}).to_dict()


@router.post("/projects/{name}/tag", status_code=202, responses=errors(503))
def start_tag(
    p: ProjectDep,
    st: StateDep,
    model: Annotated[str | None, Form(description="detection model or detection run id")] = None,
    threshold: Annotated[float, Form(ge=0.0, le=1.0, description="keep boxes scoring at least this")] = 0.5,
):
    from vitrine.predict.detector import is_model_file, load_detector
    from vitrine.tagging import DEFAULT_TAG_MODEL

    model = (model or "").strip() or DEFAULT_TAG_MODEL
    if is_model_file(model):  # a path on the server: never loaded for a request
        raise VitrineError(f"model {model!r} is a file path", hint="a registry detector or a detection run id")
    load_detector(model, workspace=st.settings.root)  # 400 now (unknown name, weights missing), not a failed job
    return st.jobs.submit(TAG_JOB, p.name, {"project": p.name, "model": model, "threshold": threshold}).to_dict()


@router.get("/projects/{name}/tags")
def list_tags(p: ProjectDep, model: Annotated[str | None, Query(description="only this tagging model's tags")] = None):
    counts = p.tags(model=model)
    return {
        "tags": [{"label": label, "count": n} for label, n in counts.items()],
        "tagging": p.tagging_status(),
    }


@router.get("/projects/{name}/tags/{label}")
def images_with_tag(
    p: ProjectDep,
    label: str,
    model: Annotated[str | None, Query(description="only this tagging model's tags")] = None,
    folder: str | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
):
    return p.images_with_tag(label, model=model, folder=folder, offset=offset, limit=limit).to_dict()


@router.get("/jobs")
def list_jobs(st: StateDep, project: str | None = None):
    found = st.jobs.list(target=project)
    mine = set(visible("job", [j.id for j in found]))
    return [hide_paths(j.to_dict()) for j in found if j.id in mine]


@router.get("/jobs/{job_id}")
def get_job(job_id: str, st: StateDep):
    return hide_paths(st.jobs.get(job_id).to_dict())


@router.post("/jobs/{job_id}/cancel", responses=errors(409))
def cancel_job(job_id: str, st: StateDep):
    return st.jobs.cancel(job_id).to_dict()


@router.get("/projects/{name}/search", responses=errors(409, 503))
def search(
    p: ProjectDep,
    q: Annotated[str | None, Query(description="free text")] = None,
    keyword: Annotated[str | None, Query(description="an ontology keyword")] = None,
    similar: Annotated[str | None, Query(description="path of a collection image (relative to images/)")] = None,
    k: K = 20,
    offset: Offset = 0,
    folder: Annotated[
        str | None, Query(description="restrict to one subfolder of images/ ('/' for files directly in images/)")
    ] = None,
    model: str | None = None,
    tag: Annotated[
        list[str] | None, Query(description="keep images with this detector tag (repeat: all of them)")
    ] = None,
    tag_model: Annotated[str | None, Query(description="only tags from this tagging model")] = None,
    min_score: MinScore = None,
    within: Within = None,
    sort: SortBy = "score",
):
    query = SearchQuery.one_of(
        "of q (text), keyword, or similar (an image path)",
        text=q,
        keyword=keyword,
        similar=similar,
        model=model,
        k=k,
        offset=offset,
        folder=folder,
        tags=tag,
        tag_model=tag_model,
        min_score=min_score,
        within=within,
        sort=sort,
    )
    if model is not None:
        registry.get(model)  # an unknown name is a 400, not a model mismatch
    return p.query(query).to_dict()


@router.post("/projects/{name}/search/image", responses=errors(409, 503))
async def search_by_upload(
    p: ProjectDep,
    st: StateDep,
    file: Annotated[UploadFile, File(description="an example image")],
    k: Annotated[int, Form(ge=1, le=200)] = 20,
    offset: Annotated[int, Form(ge=0, le=MAX_RESULTS)] = 0,
    folder: Annotated[str | None, Form()] = None,
    model: Annotated[str | None, Form()] = None,
    tag: Annotated[list[str] | None, Form(description="keep images with this detector tag (repeatable)")] = None,
    tag_model: Annotated[str | None, Form()] = None,
    min_score: Annotated[float | None, Form(ge=-1.0, le=1.0)] = None,
    within: Annotated[float | None, Form(ge=0.0, le=2.0)] = None,
    sort: Annotated[Literal["score", "name", "date"], Form()] = "score",
):
    if model is not None:
        registry.get(model)  # an unknown name is a 400, not a model mismatch
    data = await read_upload(file, st.settings.max_upload_bytes)
    from starlette.concurrency import run_in_threadpool

    query = SearchQuery(
        image=data,
        model=model,
        k=k,
        offset=offset,
        filters=Filters(folder=folder or None, tags=tag or (), tag_model=tag_model),
        min_score=min_score,
        within=within,
        sort=sort,
    )
    result = await run_in_threadpool(p.query, query)
    out = result.to_dict()
    out["query"]["image"] = file.filename or "upload"
    return out


class ExportBody(BaseModel):
    """Chosen search results to export: as CSV, or as a new classification dataset."""

    paths: list[str] = Field(min_length=1, max_length=10_000, description="images, relative to images/")
    format: Literal["csv", "dataset"] = "csv"
    scores: dict[str, float] | None = Field(None, description="each path's search score (CSV column)")
    dataset_name: str | None = Field(None, description="the new dataset's name (format dataset)")
    label: str | None = Field(None, description="the class of its images, e.g. the query (format dataset)")


@router.post(
    "/projects/{name}/export",
    responses={
        200: {
            "description": "format csv: the CSV file (UTF-8); format dataset: the new dataset's name, size and class",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        },
        **errors(400, 404, 413),
    },
    openapi_extra={"x-vitrine-action": "use"},  # reading a project is enough to export from it
)
def export_results(p: ProjectDep, st: StateDep, body: ExportBody):
    if body.format == "csv":
        scores = body.scores or {}
        return _csv_response(lambda fp: p.export_results_csv(fp, body.paths, scores), f"{p.name}_results.csv")
    if not body.dataset_name or not body.label:
        raise VitrineError(
            "a dataset export needs dataset_name and label", hint="e.g. dataset_name 'cats', label 'a cat'"
        )
    from vitrine.core.workspace import check_name
    from vitrine.data.importers import dataset_exists
    from vitrine.server.security import claim, current

    check_name(body.dataset_name, "dataset name")
    if dataset_exists(st.settings.root, body.dataset_name):
        raise VitrineError(f"dataset {body.dataset_name!r} already exists", hint="choose another name")
    p.selected_files(body.paths)  # 404 for a path outside the project, before the quota and the write
    auth = current()
    owner = auth.principal.name if auth is not None and auth.principal.id is not None else None
    if owner is not None and auth.runtime.store is not None:  # a new dataset counts toward its owner's storage
        from vitrine.auth import quota

        quota.service_for(auth.runtime.store.engine, auth.runtime.root).enforce(owner, "a new dataset")
    dataset = p.export_results_dataset(body.paths, body.dataset_name, body.label, workspace=st.settings.root)
    claim("dataset", body.dataset_name)
    return hide_paths({"dataset": dataset.name, "samples": len(dataset.samples), "classes": dataset.classes})


@router.get("/projects/{name}/images")
def list_images(
    p: ProjectDep,
    folder: str | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
):
    total, rows = p.catalog.list_files(folder=normalize_folder(folder), offset=offset, limit=limit)
    return {"total": total, "offset": offset, "limit": limit, "images": rows}


@router.get("/projects/{name}/meta/{path:path}")
def image_meta(p: ProjectDep, path: str):
    return p.image_info(path)


@router.get("/projects/{name}/files/{path:path}", response_class=FileResponse, responses=IMAGE)
def image_file(p: ProjectDep, path: str):
    return FileResponse(p.image_path(path))


@router.get("/projects/{name}/thumbs/{path:path}", response_class=FileResponse, responses=JPEG)
def image_thumb(p: ProjectDep, path: str, size: Annotated[int, Query(ge=32, le=1024)] = 320):
    return FileResponse(
        p.thumbnail(path, size=size), media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"}
    )
