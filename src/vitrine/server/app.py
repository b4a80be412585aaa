"""The FastAPI application: REST API under /api/v1 and the web UI, in one process.

Works behind a reverse proxy with a path prefix (e.g. JupyterLab's server proxy): pass
``root_path`` and every link the UI makes carries it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vitrine import __version__
from vitrine.errors import PayloadTooLarge, VitrineError
from vitrine.server.api.v1 import error_response
from vitrine.server.api.v1 import router as api_router
from vitrine.server.state import AppState, Settings

log = logging.getLogger("vitrine.server")


def create_app(root: str | Path, root_path: str = "", data_dir: str | Path | None = None,
               max_upload_bytes: int | None = None) -> FastAPI:
    settings = Settings(root=Path(root).resolve(), root_path=root_path.rstrip("/"),
                        data_dir=Path(data_dir) if data_dir else None)
    if max_upload_bytes is not None:
        settings.max_upload_bytes = max_upload_bytes
    app = FastAPI(
        title="vitrine",
        version=__version__,
        description="Search, classify and detect over image collections.",
        root_path=settings.root_path,
    )
    app.state.vitrine = AppState(settings)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        limit = settings.max_upload_bytes + 64 * 1024  # multipart framing
        if length and length.isdigit() and int(length) > limit:
            return error_response(PayloadTooLarge(
                f"request body of {int(length)} bytes is over the limit of {settings.max_upload_bytes} bytes",
                hint="send a smaller image, or raise VITRINE_MAX_UPLOAD_BYTES on the server"))
        return await call_next(request)

    @app.exception_handler(VitrineError)
    async def vitrine_error(_request: Request, exc: VitrineError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError):
        details = [
            {"where": ".".join(str(x) for x in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        text = "; ".join(f"{d['where']}: {d['message']}" for d in details)
        return JSONResponse(
            {"error": {"code": "invalid_request", "message": f"invalid request: {text}", "hint": None,
                       "details": details}},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": {"code": "http_error", "message": str(exc.detail), "hint": None}},
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception):
        log.exception("unexpected error")
        return JSONResponse(
            {"error": {"code": "internal", "message": f"internal error: {type(exc).__name__}", "hint": None}},
            status_code=500,
        )

    app.include_router(api_router)
    from vitrine.server.ui.routes import mount_ui

    mount_ui(app)
    return app
