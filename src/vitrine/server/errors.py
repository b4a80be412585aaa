"""How errors are answered: JSON for the API, files and the schema; an HTML error page with the
right status for the pages of the UI (a person's browser). The app's exception handlers and the
security layer's refusals (404 for what a user may not see, 403) all answer through here."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse

from vitrine.core.errors import VitrineError
from vitrine.server.templates import base_of, make_templates


def error_response(exc: VitrineError) -> JSONResponse:
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status)


# what answers JSON whatever goes wrong: the API, its schema and docs assets, and the static files
_NOT_PAGES = ("/api/", "/static/", "/docs-assets/", "/openapi.json")


def is_page_request(request: Request) -> bool:
    """Whether ``request`` is for a page of the UI (a person's browser), which gets an HTML error
    page, rather than for the API or a file, which gets JSON: decided by the path alone."""
    path = request.scope.get("path") or "/"
    base = base_of(request)
    if base and path.startswith(base + "/"):
        path = path[len(base) :]
    return request.method in ("GET", "HEAD") and not path.startswith(_NOT_PAGES)


_ERROR_TITLES = {404: "Page not found", 403: "Not allowed", 405: "Not allowed", 503: "Unavailable"}


def html_error_response(request: Request, status: int, message: str, hint: str | None = None) -> HTMLResponse:
    """The UI's error page, answered with ``status`` (never a 200 for a page that does not exist)."""
    if status == 404 and not hint:
        hint = "check the address, or start again from the list of collections"
    title = _ERROR_TITLES.get(status, "Something went wrong" if status >= 500 else "Cannot show this page")
    templates = getattr(request.app.state, "ui_templates", None) or make_templates()
    context = {"page": "error", "base": base_of(request), "title": title, "status": status}
    context["error"] = {"message": message, "hint": hint}
    return templates.TemplateResponse(request, "error.html", context, status_code=status)


def page_error(request: Request, exc: VitrineError):
    """A refusal of the security layer (not yours to see: 404; not yours to change: 403): the error
    page for a page of the UI, JSON for everything else."""
    from vitrine.server.security import route_path

    path = route_path(request.scope)
    if request.method in ("GET", "HEAD") and not path.startswith("/api/") and path != "/openapi.json":
        return make_templates().TemplateResponse(
            request,
            "error.html",
            {"page": "error", "base": base_of(request), "title": "vitrine", "error": exc.to_dict()},
            status_code=exc.status,
        )
    return error_response(exc)
