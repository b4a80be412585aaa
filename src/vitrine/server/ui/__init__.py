"""The web UI: server-rendered pages (Jinja2) and a small vanilla-JS client of the REST API.

No front-end build step and nothing fetched from a CDN: it works offline. Every URL the pages make
carries the app's ``root_path``, so the UI also works behind a reverse proxy with a path prefix
(e.g. JupyterLab's server proxy under ``/proxy/8000/``).
"""

from vitrine.server.ui.routes import mount_ui

__all__ = ["mount_ui"]
