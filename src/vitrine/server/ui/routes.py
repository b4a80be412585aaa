"""HTML routes of the web UI and its static files.

The pages are thin shells: the server renders the frame (project name, links, where the API is)
and each page's own script (``static/<page>.js``, with the helpers of ``static/common.js``) fills
them from ``/api/v1``. Every URL is built from ``base``, the request's
``root_path``, so that the UI works unchanged behind a proxy that mounts it under a prefix.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from vitrine.core.errors import NotFound, VitrineError
from vitrine.server.deps import board_runs, state, workspace
from vitrine.server.templates import base_of, make_templates, plotly_version, quote_segment

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"


def static_file(path: str) -> Path:
    """A file of the static folder; anything else (missing, a folder, outside) is a 404."""
    target = (STATIC_DIR / path).resolve()
    if not path or not target.is_relative_to(STATIC_DIR) or not target.is_file():
        raise NotFound(f"no static file {path!r}")
    return target


_PLOTLY_GZ: dict[Path, tuple[float, bytes]] = {}  # plotly.min.js -> (mtime, its gzip), made once


def _gzipped(path: Path) -> bytes:
    import gzip

    mtime = path.stat().st_mtime
    cached = _PLOTLY_GZ.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, gzip.compress(path.read_bytes(), compresslevel=6, mtime=0))
        _PLOTLY_GZ[path] = cached
    return cached[1]


def plotly_js_response(request: Request) -> Response:
    """plotly.min.js from the installed package: gzip-compressed for clients that accept it, and
    cached for a year when asked for under its versioned URL (else revalidated daily)."""
    from vitrine.server.api.classification import plotly_js_path

    path = plotly_js_path()
    versioned = request.query_params.get("v") == plotly_version()
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable" if versioned else "public, max-age=86400",
        "Vary": "Accept-Encoding",
    }
    media_type = "text/javascript; charset=utf-8"
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        return Response(_gzipped(path), media_type=media_type, headers=headers)
    return FileResponse(path, media_type=media_type, headers=headers)


def _project_summaries(request: Request) -> list[dict]:
    from vitrine.server.security import visible

    st = state(request)
    out = []
    for name in visible("project", sorted(st.project_dirs())):
        try:
            status = st.project(name).status()
            out.append(
                {
                    "name": name,
                    "model": status["model"],
                    "files": status["files"],
                    "failed": status["failed"],
                    "folders": len(status["folders"]),
                    "error": None,
                }
            )
        except VitrineError as exc:
            out.append(
                {"name": name, "model": None, "files": None, "failed": None, "folders": None, "error": exc.to_dict()}
            )
    return out


def mount_ui(app: FastAPI) -> None:
    templates = make_templates()
    app.state.ui_templates = templates

    # Plotly for the classification charts, from the installed plotly package (no CDN). Declared
    # before the static route, which would otherwise answer (404) for this path.
    # Compressed once (4.8 MB -> about 1.4 MB with gzip) and cached by browsers for a year: its URL
    # carries the versions (``plotly_v``), so an upgrade is a new URL.
    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js(request: Request):
        return plotly_js_response(request)

    # A route rather than ``app.mount(StaticFiles)``: a mounted app resolves files from
    # scope["path"] minus scope["root_path"], which breaks when a proxy strips the prefix but the
    # app still carries a root_path (FastAPI(root_path=...)); routes match either way.
    @app.get("/static/{path:path}", name="static", include_in_schema=False)
    def static(path: str):
        return FileResponse(static_file(path), headers={"Cache-Control": "no-cache"})

    def render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
        context.setdefault("page", template.removesuffix(".html"))
        context["base"] = base_of(request)
        return templates.TemplateResponse(request, template, context, status_code=status_code)

    def error_page(request: Request, exc: VitrineError, title: str) -> HTMLResponse:
        status = exc.status
        return render(
            request, "error.html", status_code=status, page="error", title=title, error=exc.to_dict(), status=status
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request):
        st = state(request)
        try:
            projects = _project_summaries(request)
        except VitrineError as exc:
            return error_page(request, exc, "vitrine")
        return render(request, "index.html", projects=projects, root=st.settings.root.name)

    def project_shell(request: Request, name: str, template: str, **context):
        """A collection's page whose data its script reads from the API: the collection must exist."""
        try:
            state(request).project(name)
        except VitrineError as exc:
            return error_page(request, exc, name)
        return render(request, template, name=name, **context)

    def dataset_shell(request: Request, name: str, template: str, **context):
        """A dataset's page whose data its script reads from the API: the dataset must exist."""
        ws = workspace(state(request))
        if name not in ws.dataset_names():
            return error_page(request, NotFound(f"no dataset {name!r}"), name)
        return render(request, template, name=name, **context)

    @app.get("/p/{name}", response_class=HTMLResponse, include_in_schema=False)
    def project_page(request: Request, name: str):
        return project_shell(request, name, "project.html")

    @app.get("/p/{name}/curate", response_class=HTMLResponse, include_in_schema=False)
    def project_curate_page(request: Request, name: str):
        """Near duplicates and outliers of a collection (curate.js reads them from the API)."""
        return project_shell(request, name, "curate.html", page="project", scope="project")

    @app.get("/p/{name}/map", response_class=HTMLResponse, include_in_schema=False)
    def map_page(request: Request, name: str):
        """The 2-D map of the collection (UMAP, drawn with Plotly's WebGL scatter)."""
        return project_shell(request, name, "map.html", scope="project")

    @app.get("/p/{name}/image/{path:path}", response_class=HTMLResponse, include_in_schema=False)
    def image_page(request: Request, name: str, path: str):
        try:
            project = state(request).project(name)
            project.image_path(path)  # an image that is not in the collection is a 404, not a broken picture
        except VitrineError as exc:
            if isinstance(exc, NotFound) and not exc.hint:
                exc.hint = f"it may have been moved or removed since the last indexing: see the collection {name}"
            return error_page(request, exc, path)
        return render(request, "image.html", name=name, path=path)

    # ---------------------------------------------------------------- classification
    @app.get("/datasets", response_class=HTMLResponse, include_in_schema=False)
    def datasets_page(request: Request):
        st = state(request)
        try:
            datasets = _dataset_summaries(request)
        except VitrineError as exc:
            return error_page(request, exc, "Datasets")
        from vitrine.server.security import runtime_of

        # the folder to import into (`-w`): the server lists only its own workspace's datasets; its
        # absolute path is shown to the local user only, never in multi-user mode
        folder = None if runtime_of(request).multi_user else str(st.settings.root)
        return render(request, "datasets.html", datasets=datasets, root=st.settings.root.name, workspace=folder)

    @app.get("/datasets/{name}", response_class=HTMLResponse, include_in_schema=False)
    def dataset_page(request: Request, name: str):
        return dataset_shell(request, name, "dataset.html")

    @app.get("/datasets/{name}/curate", response_class=HTMLResponse, include_in_schema=False)
    def dataset_curate_page(request: Request, name: str):
        """Near duplicates, outliers and label errors of a classification dataset."""
        return dataset_shell(request, name, "curate.html", page="dataset", scope="dataset")

    @app.get("/datasets/{name}/map", response_class=HTMLResponse, include_in_schema=False)
    def dataset_map_page(request: Request, name: str):
        """The 2-D map of a classification dataset, coloured by label or split (map.js, as a project's)."""
        return dataset_shell(request, name, "map.html", page="dataset", scope="dataset")

    @app.get("/leaderboards/{board}", response_class=HTMLResponse, include_in_schema=False)
    def leaderboard_page(request: Request, board: str):
        """The leaderboard of a dataset: a dataset of the workspace, or one that runs were scored on
        (an imported detector evaluated on a COCO file has no dataset folder). The page shows what
        GET /api/v1/leaderboards/{board} answers the caller, nothing more."""
        ws = workspace(state(request))
        try:
            board_runs(ws, board)
        except VitrineError as exc:
            return error_page(request, exc, board)
        is_dataset = board in ws.dataset_names()
        try:
            is_folder = ws.dataset_dir(board).is_dir()  # a detection dataset: a folder of datasets/
        except VitrineError:  # a board named by a file (an imported detector's COCO file)
            is_folder = False
        return render(
            request,
            "leaderboard.html",
            dataset=board,
            is_dataset=is_dataset,
            # the sweep form: its task by default, and whether the caller may train on the dataset
            board_task="classify" if is_dataset else "detect" if is_folder else "",
            can_sweep=_may_use("dataset", board),
        )

    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    def runs_page(request: Request):
        return render(request, "runs.html", dataset=request.query_params.get("dataset") or "")

    def run_page(request: Request, run_id: str, focus: str) -> HTMLResponse:
        from vitrine.runs import Run

        ws = workspace(state(request))
        if run_id not in ws.run_ids():
            return error_page(request, NotFound(f"no run {run_id!r}"), run_id)
        try:
            record = Run.load(ws, run_id).record
        except VitrineError as exc:
            return error_page(request, exc, run_id)
        if focus == "run" and record.get("kind") in ("detection", "segmentation"):  # a detector has its own page
            return RedirectResponse(f"{base_of(request)}/detection/runs/{quote_segment(run_id)}", status_code=303)
        return render(
            request, "predict.html", page="run", run_id=run_id, dataset=record.get("dataset") or "", focus=focus
        )

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_details_page(request: Request, run_id: str):
        return run_page(request, run_id, "run")

    @app.get("/runs/{run_id}/predict", response_class=HTMLResponse, include_in_schema=False)
    def predict_page(request: Request, run_id: str):
        return run_page(request, run_id, "predict")

    # ---------------------------------------------------------------- detection
    @app.get("/detection/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def detection_run_page(request: Request, run_id: str):
        from vitrine.runs import Run

        ws = workspace(state(request))
        job_id = request.query_params.get("job_id") or ""
        try:
            exists = run_id in ws.run_ids()
            record = Run.load(ws, run_id).record if exists else {}
        except VitrineError as exc:
            return error_page(request, exc, run_id)
        if not exists and not job_id:  # a run whose job has not started yet is followed through its job
            return error_page(request, NotFound(f"no run {run_id!r}", hint="see the runs at /runs"), run_id)
        return render(
            request,
            "detection_run.html",
            page="run",
            run_id=run_id,
            job_id=job_id,
            dataset=record.get("dataset") or "",
        )

    @app.get("/account", response_class=HTMLResponse, include_in_schema=False)
    def account_page(request: Request):
        """The signed-in user's account: storage and quota, API tokens, sharing (multi-user mode)."""
        from vitrine.server.security import principal_of, runtime_of

        principal = principal_of(request)
        multi = runtime_of(request).multi_user and principal is not None and principal.id is not None
        return render(request, "account.html", user=principal if multi else None)

    @app.get("/models", response_class=HTMLResponse, include_in_schema=False)
    def models_page(request: Request):
        """The models by task and, for embedding models, the CPU runtime measured here (models.js
        reads GET /api/v1/models)."""
        return render(request, "models.html")

    @app.get("/detect", response_class=HTMLResponse, include_in_schema=False)
    def detect_page(request: Request):
        q = request.query_params
        return render(request, "detect.html", model=q.get("model") or "", project=q.get("project") or "")


def _may_use(kind: str, key: str) -> bool:
    """Whether the caller may use the object (train on a dataset): the policy's answer, asked
    without raising. Single-user mode: always."""
    from vitrine.server.security import require

    try:
        require(kind, key, "use")
    except VitrineError:
        return False
    return True


def _dataset_summaries(request: Request) -> list[dict]:
    from vitrine.server.api.classification import cache, dataset_row
    from vitrine.server.security import visible

    ws = workspace(state(request))
    return [dataset_row(ws, name, cache(request)) for name in visible("dataset", ws.dataset_names())]
