"""Helpers for the end-to-end UI tests: a demo project, servers in threads, a path-prefix proxy,
and headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

# Where each skimage.data photo goes in the demo project (relative to images/).
DEMO_IMAGES = {
    "animals/cat.jpg": "chelsea",
    "animals/cheval été.jpg": "horse",  # a space and an accent: URLs must be encoded
    "objects/coffee.jpg": "coffee",
    "objects/rocket.jpg": "rocket",
    "objects/camera.jpg": "camera",
    "people/astronaut.jpg": "astronaut",
}
DEMO_BROKEN = "objects/broken.jpg"  # not an image: shows up as a failure with its reason
DEMO_ONTOLOGY = {"Chat": "a cat", "Café": "a cup of coffee", "Fusée": "a rocket launch"}


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def playwright_expect():
    """Playwright's ``expect``, for a UI test module to call at import: the module is skipped when
    Chromium or Playwright is missing, except on CI (``CI`` set), where a missing one fails."""
    in_ci = bool(os.environ.get("CI"))
    if chromium_path() is None and not in_ci:
        pytest.skip("Chromium is not installed: UI tests skipped", allow_module_level=True)
    try:
        from playwright.sync_api import expect
    except ImportError:
        if in_ci:
            raise
        pytest.skip("playwright (Python) is not installed: UI tests skipped", allow_module_level=True)
    return expect


def demo_photo(name: str) -> Image.Image:
    from skimage import data

    arr = getattr(data, name)()
    if arr.dtype == bool:  # horse is a binary silhouette
        arr = np.where(arr, 255, 0).astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def build_demo_project(root: Path) -> Path:
    """``<root>/demo`` with a few real photos in subfolders, a broken file and an ontology."""
    project = root / "demo"
    for rel, name in DEMO_IMAGES.items():
        path = project / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        demo_photo(name).save(path, quality=90)
    (project / "images" / DEMO_BROKEN).write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG " * 16)
    onto = project / "ontology"
    onto.mkdir(parents=True, exist_ok=True)
    lines = [f'"{k}": "{v}"' for k, v in DEMO_ONTOLOGY.items()]
    (onto / "demo_ontology.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return project


class ServerThread:
    """An ASGI app served by uvicorn in a daemon thread on 127.0.0.1 and a free port."""

    def __init__(self, app, health_path: str = "/"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.health_path = health_path
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="auto")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name=f"uvicorn-{self.port}", daemon=True
        )

    def start(self, timeout: float = 30.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise RuntimeError(f"server on port {self.port} stopped during start-up")
            if self.server.started:
                try:
                    if httpx.get(self.url + self.health_path, timeout=2).status_code < 500:
                        return self
                except httpx.HTTPError as exc:
                    last_error = exc
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server on port {self.port} did not answer {self.health_path}: {last_error}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
    "host",
}


def make_prefix_proxy(backend: str, prefix: str) -> tuple[Starlette, list[str]]:
    """A reverse proxy like jupyter-server-proxy: ``<prefix>/<rest>`` goes to ``<backend>/<rest>``
    with the prefix stripped. Anything outside the prefix gets a 404 and is recorded in the
    returned list (so a test can say which request escaped the prefix)."""
    prefix = "/" + prefix.strip("/")
    escaped: list[str] = []
    holder: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_app):
        async with httpx.AsyncClient(base_url=backend, timeout=60) as client:
            holder["client"] = client
            yield

    async def forward(request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        path = raw.decode("latin-1")
        if path != prefix and not path.startswith(prefix + "/"):
            escaped.append(path)
            return PlainTextResponse(f"{path} is outside the proxy prefix {prefix}", status_code=404)
        rest = path[len(prefix) :] or "/"
        query = request.scope.get("query_string", b"").decode("latin-1")
        url = rest + (f"?{query}" if query else "")
        headers = [
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "accept-encoding"
        ]
        headers.append(("x-forwarded-prefix", prefix))
        upstream = await holder["client"].request(request.method, url, headers=headers, content=await request.body())
        out_headers = {
            k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"
        }
        return Response(upstream.content, status_code=upstream.status_code, headers=out_headers)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    app = Starlette(routes=[Route("/{anything:path}", forward, methods=methods)], lifespan=lifespan)
    return app, escaped
