"""The FastAPI application: REST API under /api/v1 and the web UI, in one process.

Works behind a reverse proxy with a path prefix (e.g. JupyterLab's server proxy): pass
``root_path`` and every link the UI makes carries it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vitrine import __version__
from vitrine.auth.policy import Forbidden, Hidden
from vitrine.core.errors import PayloadTooLarge, VitrineError
from vitrine.server.api.auth import router as auth_router
from vitrine.server.api.auth import ui_router as auth_ui_router
from vitrine.server.api.classification import router as classification_router
from vitrine.server.api.curation import router as curation_router
from vitrine.server.api.dataset_maps import router as dataset_maps_router
from vitrine.server.api.detection import router as detection_router
from vitrine.server.api.detection_errors import router as detection_errors_router
from vitrine.server.api.embeddings import router as embeddings_router
from vitrine.server.api.leaderboards import router as leaderboards_router
from vitrine.server.api.maps import router as maps_router
from vitrine.server.api.responses import document_common
from vitrine.server.api.run_predictions import router as run_predictions_router
from vitrine.server.api.submissions import router as submissions_router
from vitrine.server.api.sweeps import router as sweeps_router
from vitrine.server.api.v1 import router as api_router
from vitrine.server.deps import human_size
from vitrine.server.errors import error_response, html_error_response, is_page_request, page_error
from vitrine.server.security import install_security
from vitrine.server.state import AppState, Settings

log = logging.getLogger("vitrine.server")

FRAMING_BYTES = 64 * 1024  # allowance for multipart headers and boundaries


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over ``max_upload_bytes`` (plus multipart framing) with a 413 JSON body:
    at once when Content-Length says so, else as soon as a streamed (chunked) body goes over the
    limit, without reading (and spooling to disk) the rest of it."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.settings = settings

    def _error(self, size: str) -> JSONResponse:
        return error_response(
            PayloadTooLarge(
                f"request body of {size} is over the limit of {human_size(self.settings.max_upload_bytes)}",
                hint="send a smaller file, or raise VITRINE_MAX_UPLOAD_BYTES on the server",
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_upload_bytes + FRAMING_BYTES
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await self._error(f"{int(length)} bytes")(scope, receive, send)
            return
        received, over, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, over
            if over:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # whatever the app made of the aborted read, the answer is the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await self._error(f"at least {received} bytes")(scope, receive, send)


class RootPath:
    """Give every request the configured path prefix as its ``root_path`` (unless the ASGI server
    already set one, e.g. ``uvicorn --root-path``), so the UI builds prefixed links. Starlette
    routes both a proxy that strips the prefix and one that keeps it."""

    def __init__(self, app: ASGIApp, root_path: str):
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not scope.get("root_path"):
            scope = dict(scope, root_path=self.root_path)
        await self.app(scope, receive, send)


class CleanPaths:
    """Refuse a path holding a NUL byte or another control character (``/static/x%00``), or a query
    string holding a NUL byte, with a 400 JSON body, before any route, mount, file lookup or
    database query sees it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"")
            where = None
            if any(ord(c) < 32 or ord(c) == 127 for c in scope.get("path", "")):
                where = "path"
            elif b"\0" in query or b"%00" in query:
                where = "query string"
            if where:
                problem = VitrineError(
                    f"the URL's {where} holds a control character (e.g. a NUL byte)",
                    hint="remove it from the URL: no file, object name or search holds one",
                )
                await error_response(problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI from the swagger-ui-bundle package instead of a CDN: /docs works offline."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import FileResponse
    from swagger_ui_bundle import swagger_ui_path

    assets = Path(swagger_ui_path)
    allowed = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request):
        base = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{base}/openapi.json",
            title="vitrine API",
            swagger_js_url=f"{base}/docs-assets/swagger-ui-bundle.js",
            swagger_css_url=f"{base}/docs-assets/swagger-ui.css",
            swagger_favicon_url=f"{base}/docs-assets/favicon-32x32.png",
        )

    @app.get("/docs-assets/{name}", include_in_schema=False)
    def docs_asset(name: str):
        if name not in allowed:
            raise StarletteHTTPException(404, f"no docs asset {name!r}")
        return FileResponse(assets / name, headers={"Cache-Control": "max-age=86400"})


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    app.state.vitrine.close()  # running jobs stop; resumable ones resume at the next start


def create_app(
    root: str | Path,
    root_path: str = "",
    data_dir: str | Path | None = None,
    max_upload_bytes: int | None = None,
    database_url: str | None = None,
    multi_user: bool | None = None,
) -> FastAPI:
    settings = Settings(
        root=Path(root).resolve(),
        root_path=root_path.rstrip("/"),
        data_dir=Path(data_dir) if data_dir else None,
        database_url=database_url,
    )
    if max_upload_bytes is not None:
        settings.max_upload_bytes = max_upload_bytes
    if multi_user is not None:
        settings.multi_user = multi_user
    app = FastAPI(
        title="vitrine",
        version=__version__,
        description="Search, classify and detect over image collections.",
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.vitrine = AppState(settings)

    app.add_middleware(BodyLimit, settings=settings)
    # accounts and the one authorization layer: before the routes (its dependency applies to them)
    install_security(app)
    app.add_exception_handler(Hidden, page_error)  # what a user may not see: 404, as if absent
    app.add_exception_handler(Forbidden, page_error)  # what a user may read but not change: 403
    app.include_router(auth_router)  # accounts: /api/v1/me, tokens, access...
    app.include_router(auth_ui_router)  # ... and the login and account pages
    if settings.root_path:
        app.add_middleware(RootPath, root_path=settings.root_path)
    app.add_middleware(CleanPaths)  # outermost: before the login check and the static files
    document_common(app)
    _offline_docs(app)

    # pages of the UI answer errors with an HTML page and the right status; the API with JSON
    @app.exception_handler(VitrineError)
    async def vitrine_error(request: Request, exc: VitrineError):
        if is_page_request(request):
            return html_error_response(request, exc.status, exc.message, exc.hint)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError):
        details = [
            {"where": ".".join(str(x) for x in e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()
        ]
        text = "; ".join(f"{d['where']}: {d['message']}" for d in details)
        return JSONResponse(
            {
                "error": {
                    "code": "invalid_request",
                    "message": f"invalid request: {text}",
                    "hint": None,
                    "details": details,
                }
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if is_page_request(request) and exc.status_code >= 400:
            message = f"no page at {request.url.path}" if exc.status_code == 404 else str(exc.detail)
            return html_error_response(request, exc.status_code, message)
        return JSONResponse(
            {"error": {"code": "http_error", "message": str(exc.detail), "hint": None}}, status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error")
        if is_page_request(request):
            return html_error_response(
                request, 500, f"internal error: {type(exc).__name__}", "the server log has the details; try again"
            )
        return JSONResponse(
            {"error": {"code": "internal", "message": f"internal error: {type(exc).__name__}", "hint": None}},
            status_code=500,
        )

    app.include_router(api_router)
    app.include_router(classification_router)
    app.include_router(curation_router)  # duplicates, outliers, label errors
    app.include_router(run_predictions_router)  # a classification run's images per confusion cell
    app.include_router(maps_router)  # the 2-D map of a project
    app.include_router(dataset_maps_router)  # the 2-D map of a classification dataset
    app.include_router(detection_router)
    app.include_router(detection_errors_router)  # a detection run's errors, image by image
    app.include_router(embeddings_router)  # embedding comparisons (compare-embeddings jobs)
    app.include_router(leaderboards_router)
    app.include_router(sweeps_router)  # /api/v1/sweeps
    app.include_router(submissions_router)  # hidden splits, annotations, submissions
    from vitrine.server.ui.routes import mount_ui

    mount_ui(app)
    import vitrine.tasks  # noqa: F401  (registers every job kind, before the jobs left by a stopped server resume)
    from vitrine.jobs.kinds import load_job_modules

    load_job_modules()  # job kinds of plugins (VITRINE_JOB_MODULES), before the jobs left by a stopped server resume
    app.state.vitrine.start()
    return app
