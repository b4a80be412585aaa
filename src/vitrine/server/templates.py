"""The templates of the web UI's pages, and the helpers they use: the path prefix the app is served
under, URL quoting, the versioned Plotly URL. Imported by the pages, the account routes and the
error pages; it imports only the security layer (every page knows its user)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import Request
from fastapi.templating import Jinja2Templates

from vitrine import __version__

TEMPLATES_DIR = Path(__file__).resolve().parent / "ui" / "templates"


def quote_segment(value: object) -> str:
    """Percent-encode one URL path segment (slashes included)."""
    return quote(str(value), safe="")


def quote_path(value: object) -> str:
    """Percent-encode a relative path, keeping its slashes."""
    return quote(str(value), safe="/")


def base_of(request: Request) -> str:
    """The path prefix the app is served under ('' when at the root), without a trailing slash."""
    return (request.scope.get("root_path") or "").rstrip("/")


def make_templates() -> Jinja2Templates:
    from vitrine.server.security import template_context

    # every page knows the signed-in user and the session's CSRF token (multi-user mode)
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR), context_processors=[template_context])
    templates.env.filters["qs"] = quote_segment
    templates.env.filters["qp"] = quote_path
    templates.env.globals["version"] = __version__
    templates.env.globals["plotly_v"] = plotly_version()
    return templates


def plotly_version() -> str:
    """What the Plotly bundle's URL carries (``?v=``): vitrine's version and plotly's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{__version__}-{version('plotly')}"
    except PackageNotFoundError:
        return __version__
