"""The API docs page works offline: Swagger UI is served from an installed package, not a CDN."""

import re

from fastapi.testclient import TestClient

from vitrine.server.app import create_app


def test_docs_page_loads_its_assets_locally(tmp_path):
    (tmp_path / "p" / "images").mkdir(parents=True)
    client = TestClient(create_app(tmp_path, root_path="/proxy/8000"))
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?['"]([^'"]+)['"]""", page.text)
    urls = [a or b for a, b in urls]
    assert urls, page.text
    assert all(u.startswith("/proxy/8000/") for u in urls), urls  # nothing from another host
    for url in urls:
        response = client.get(url.removeprefix("/proxy/8000"))
        assert response.status_code == 200, url
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")
    # only the files the page needs are served from the package folder
    assert client.get("/docs-assets/index.html").status_code == 404
    assert client.get("/docs-assets/..%2F__init__.py").status_code == 404
