"""REST API v1: every endpoint, its happy path and its bad input, against the demo project.

Every response any test gets goes through a hook that fails the test on a 5xx and on an error
body without ``error.message``: bad input must always be a 4xx the user can read.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import re
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vitrine.demo import ONTOLOGY
from vitrine.server.api.v1 import router as v1_router
from vitrine.server.app import create_app

API = "/api/v1"
NAME = "demo-photos"  # the demo project's folder name
P = f"{API}/projects/{NAME}"
FOLDERS = {"animaux": 2, "documents": 2, "espace": 4, "lieux": 2, "objets": 5, "science": 2, "textures": 3}
ROUTES = {
    "/api/v1/health": {"get"},
    "/api/v1/models": {"get"},
    "/api/v1/projects": {"get"},
    "/api/v1/projects/{name}": {"get"},
    "/api/v1/projects/{name}/check": {"get"},
    "/api/v1/projects/{name}/ontology": {"get"},
    "/api/v1/projects/{name}/ontology.csv": {"get"},
    "/api/v1/projects/{name}/catalog.csv": {"get"},
    "/api/v1/projects/{name}/index": {"post"},
    "/api/v1/jobs": {"get"},
    "/api/v1/jobs/{job_id}": {"get"},
    "/api/v1/jobs/{job_id}/cancel": {"post"},
    "/api/v1/projects/{name}/search": {"get"},
    "/api/v1/projects/{name}/search/image": {"post"},
    "/api/v1/projects/{name}/export": {"post"},  # checked in tests/search/test_results.py
    "/api/v1/projects/{name}/images": {"get"},
    "/api/v1/projects/{name}/meta/{path}": {"get"},
    "/api/v1/projects/{name}/files/{path}": {"get"},
    "/api/v1/projects/{name}/thumbs/{path}": {"get"},
    # detector tags: checked in tests/test_tagging.py
    "/api/v1/projects/{name}/tag": {"post"},
    "/api/v1/projects/{name}/tags": {"get"},
    "/api/v1/projects/{name}/tags/{label}": {"get"},
}
SECRET = b"TOP SECRET: never served\n"


# --------------------------------------------------------------------------------------- helpers


def _never_5xx(response: httpx.Response) -> None:
    response.read()
    assert response.status_code < 500, f"{response.request.url}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.text[:300]
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"].strip(), response.text[:300]


def make_client(root: Path, **kwargs) -> TestClient:
    client = TestClient(create_app(root, **kwargs), raise_server_exceptions=False)
    client.event_hooks = {"request": [], "response": [_never_5xx]}
    return client


def error_of(response: httpx.Response, status: int, code: str | None = None, *words: str) -> dict:
    """The error body of a response that must have ``status``; checks code and message words."""
    assert response.status_code == status, f"{response.status_code}: {response.text[:300]}"
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "hint"}
    if code is not None:
        assert error["code"] == code, error
    for word in words:
        assert word in error["message"], (word, error)
    return error


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_files(project_dir: Path) -> dict[str, Path]:
    images = project_dir / "images"
    return {p.relative_to(images).as_posix(): p for p in sorted(images.rglob("*")) if p.is_file()}


def wait_for(client: TestClient, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"{API}/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {timeout} s: {job}"
        time.sleep(0.1)


def multipart(name: str, data: bytes, boundary: str = "vitrine-test-boundary") -> tuple[bytes, str]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def _raw_request(
    app, path: str, method: str = "GET", headers: list | None = None, chunks: list[bytes] | None = None
) -> tuple[int, bytes, int]:
    """Send a request to the ASGI app exactly as given: the path untouched (HTTP clients remove
    its ``..`` segments; a raw client, or a proxy, need not), the body in ``chunks`` as a stream.
    Returns (status, body, number of chunks the app read)."""
    pending = list(chunks or [b""])
    read = 0
    messages = []

    async def receive():
        nonlocal read
        if not pending:
            await asyncio.sleep(3600)  # a client that sent everything waits for the answer
        read += 1
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=60)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, body, read


# -------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def client(indexed_demo) -> TestClient:
    """Served from the folder of projects."""
    with make_client(indexed_demo.parent) as c:
        yield c


@pytest.fixture(scope="module")
def project_client(indexed_demo) -> TestClient:
    """Served from the project folder itself."""
    with make_client(indexed_demo) as c:
        yield c


@pytest.fixture(params=["root", "project"])
def any_client(request, client, project_client) -> TestClient:
    return client if request.param == "root" else project_client


@pytest.fixture(scope="module")
def small_client(indexed_demo) -> TestClient:
    """Uploads limited to 50 000 bytes."""
    with make_client(indexed_demo.parent, max_upload_bytes=50_000) as c:
        yield c


@pytest.fixture
def indexed_copy(tmp_path, indexed_demo) -> Path:
    """A private copy of the indexed project (catalog and index included), free to change."""
    project_dir = tmp_path / "projects" / indexed_demo.name
    shutil.copytree(indexed_demo, project_dir)
    return project_dir


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside every project, with files nobody may read through the API."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(SECRET)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "secret.jpg")
    return folder


# -------------------------------------------------------------------------------- service info


def test_health(client):
    r = client.get(f"{API}/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_models_are_listed_without_network(client, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("GET /models must not use the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    r = client.get(f"{API}/models")
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()}
    assert {"offline-concepts", "clip-vit-b-32"} <= set(models)
    offline = models["offline-concepts"]
    assert offline["available"] is True
    assert offline["task"] == "embedding"
    clip = models["clip-vit-b-32"]
    assert isinstance(clip["available"], bool)
    assert clip["weights_source"] == "hub"
    for m in models.values():
        assert m["summary"] and m["license"] and isinstance(m["languages"], list)


def test_openapi_lists_every_api_route(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    # the classification routes are listed and checked in test_classification_api.py
    # (and the detection routes in test_detection_api.py)
    from vitrine.server.api.classification import router as classification_router
    from vitrine.server.api.detection import router as detection_router

    theirs = {route.path.replace("{path:path}", "{path}") for route in classification_router.routes}
    theirs |= {route.path for route in detection_router.routes}
    from vitrine.server.api.auth import router as auth_router  # accounts: tests/server/test_authorization.py

    theirs |= {route.path for route in auth_router.routes}
    from vitrine.server.api.leaderboards import router as leaderboards_router  # test_leaderboards_api.py
    from vitrine.server.api.submissions import router as submissions_router  # test_submissions_api.py
    from vitrine.server.api.sweeps import router as sweeps_router  # test_sweeps_api.py

    theirs |= {route.path for route in leaderboards_router.routes} | {route.path for route in sweeps_router.routes}
    theirs |= {route.path for route in submissions_router.routes}
    from vitrine.server.api.curation import router as curation_router  # test_curation_api.py

    theirs |= {route.path for route in curation_router.routes}
    from vitrine.server.api.embeddings import router as embeddings_router  # test_embedding_comparisons_api.py

    theirs |= {route.path for route in embeddings_router.routes}
    from vitrine.server.api.dataset_maps import router as dataset_maps_router  # test_dataset_map_api.py
    from vitrine.server.api.detection_errors import router as detection_errors_router  # test_detection_errors_api.py
    from vitrine.server.api.maps import router as maps_router  # test_map_api.py
    from vitrine.server.api.run_predictions import router as run_predictions_router  # test_run_predictions_api.py

    for router in (dataset_maps_router, detection_errors_router, maps_router, run_predictions_router):
        theirs |= {route.path for route in router.routes}
    api_paths = {
        p: {m for m in ops if m != "parameters"} for p, ops in paths.items() if p.startswith(API) and p not in theirs
    }
    assert api_paths == ROUTES
    # and nothing the router declares is missing from the list above
    declared = {route.path.replace("{path:path}", "{path}") for route in v1_router.routes}
    assert declared == set(ROUTES)


def test_unknown_route_and_method_answer_json(client):
    error_of(client.get(f"{API}/nothing-here"), 404, "http_error")
    error_of(client.delete(f"{API}/health"), 405, "http_error")


# ------------------------------------------------------------------------------------ projects


def test_projects_list(any_client):
    r = any_client.get(f"{API}/projects")
    assert r.status_code == 200
    assert r.json() == [{"name": NAME, "model": "offline-concepts", "files": 20}]


def test_project_status(any_client, indexed_demo):
    r = any_client.get(P)
    assert r.status_code == 200
    status = r.json()
    assert status["name"] == NAME
    assert status["files"] == 20
    assert status["failed"] == 0
    assert status["model"] == "offline-concepts"
    assert status["indexed_models"] == {"offline-concepts": 20}
    assert status["folders"] == FOLDERS
    assert status["ontology"]["entries"] == len(ONTOLOGY)
    assert status["ontology"]["problems"] == 0
    assert status["last_index"]["embedded"] == 20
    assert Path(status["project_dir"]).resolve() == indexed_demo.resolve()


def test_project_check(any_client):
    r = any_client.get(f"{P}/check")
    assert r.status_code == 200
    report = r.json()
    assert report["ok"] is True
    assert report["layout"] == []
    assert report["ontology"]["entries"] == len(ONTOLOGY)
    assert report["ontology"]["problems"] == []
    assert report["ontology"]["file"].endswith(f"{NAME}_ontology.txt")


def test_check_reports_a_broken_ontology(fresh_demo):
    onto = fresh_demo / "ontology" / f"{NAME}_ontology.txt"
    onto.write_text('"Église": "une église"\n\u201cCroix\u201d: "une croix"\n', encoding="utf-8")
    with make_client(fresh_demo.parent) as c:
        report = c.get(f"{P}/check").json()
        assert report["ok"] is False
        [problem] = report["ontology"]["problems"]
        assert problem["line"] == 2
        assert "quotes" in problem["message"]
        listing = c.get(f"{P}/ontology").json()
        assert listing["entries"] == [{"keyword": "Église", "description": "une église", "line": 1}]
        assert listing["problems"][0]["line"] == 2
        assert "Croix" in listing["problems"][0]["text"]


def test_ontology(any_client, indexed_demo):
    r = any_client.get(f"{P}/ontology")
    assert r.status_code == 200
    body = r.json()
    assert body["problems"] == []
    lines = (indexed_demo / "ontology" / f"{NAME}_ontology.txt").read_text(encoding="utf-8").splitlines()
    entries = body["entries"]
    assert [e["keyword"] for e in entries] == list(ONTOLOGY)
    for e in entries:
        assert e["description"] == ONTOLOGY[e["keyword"]]
        assert lines[e["line"] - 1].startswith(f'"{e["keyword"]}"')  # the line number is the file's
    by_keyword = {e["keyword"]: e for e in entries}
    assert by_keyword["Fusée"]["description"] == "a rocket launch"
    assert by_keyword["Pièces de monnaie"]["description"] == "coins"


def test_ontology_csv(any_client):
    r = any_client.get(f"{P}/ontology.csv")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert f'filename="{NAME}_ontology.csv"' in r.headers["content-disposition"]
    assert "Fusée".encode() in r.content  # UTF-8 on the wire
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8"))))
    assert rows[0] == ["keyword", "description", "line"]
    expected = [
        [e["keyword"], e["description"], str(e["line"])] for e in any_client.get(f"{P}/ontology").json()["entries"]
    ]
    assert rows[1:] == expected
    assert ["Fusée", "a rocket launch", "3"] in rows


def test_catalog_csv(any_client, indexed_demo):
    r = any_client.get(f"{P}/catalog.csv")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert f'filename="{NAME}_catalog.csv"' in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8"))))
    assert rows[0] == ["path", "folder", "size_bytes", "sha256", "width", "height", "error"]
    files = image_files(indexed_demo)
    body = rows[1:]
    assert len(body) == 20
    assert [row[0] for row in body] == sorted(files)
    for path, folder, size, sha, width, height, error in body:
        assert re.fullmatch(r"[0-9a-f]{64}", sha)
        assert sha == sha256_of(files[path])
        assert folder == path.split("/")[0]
        assert int(size) == files[path].stat().st_size
        with Image.open(files[path]) as im:
            assert (int(width), int(height)) == im.size
        assert error == ""
    assert "espace/fusée.jpg" in [row[0] for row in body]


def test_unknown_project_is_404_everywhere(any_client):
    for method, url in [
        ("get", f"{API}/projects/nope"),
        ("get", f"{API}/projects/nope/check"),
        ("get", f"{API}/projects/nope/ontology"),
        ("get", f"{API}/projects/nope/ontology.csv"),
        ("get", f"{API}/projects/nope/catalog.csv"),
        ("get", f"{API}/projects/nope/search?q=a+cat"),
        ("get", f"{API}/projects/nope/images"),
        ("get", f"{API}/projects/nope/meta/animaux/chat.jpg"),
        ("get", f"{API}/projects/nope/files/animaux/chat.jpg"),
        ("get", f"{API}/projects/nope/thumbs/animaux/chat.jpg"),
        ("post", f"{API}/projects/nope/index"),
        ("get", f"{API}/projects/%2e%2e/files/animaux/chat.jpg"),
    ]:
        error = error_of(getattr(any_client, method)(url), 404, "not_found", "no project")
        assert NAME in error["hint"], url  # the known projects are listed
    r = any_client.post(f"{API}/projects/nope/search/image", files={"file": ("a.jpg", b"x", "image/jpeg")})
    error_of(r, 404, "not_found", "no project 'nope'")


def test_missing_root_folder_is_a_clear_error(tmp_path):
    with make_client(tmp_path / "not-there") as c:
        error_of(c.get(f"{API}/projects"), 400, "bad_layout", "folder not found")
        error_of(c.get(P), 400, "bad_layout", "folder not found")


# -------------------------------------------------------------------------------------- search


def test_search_text(any_client):
    r = any_client.get(f"{P}/search", params={"q": "a cat", "k": 5})
    assert r.status_code == 200
    result = r.json()
    assert result["query"] == {"kind": "text", "text": "a cat"}
    assert result["model"] == "offline-concepts"
    assert result["offset"] == 0 and result["limit"] == 5 and result["has_more"] is True
    hits = result["hits"]
    assert len(hits) == 5
    assert hits[0]["path"] == "animaux/chat.jpg"
    assert hits[0]["folder"] == "animaux"
    assert (hits[0]["width"], hits[0]["height"]) == (451, 300)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert len({h["path"] for h in hits}) == 5


@pytest.mark.parametrize("keyword", ["Chat", "chat", " Chat "])
def test_search_keyword(client, keyword):
    r = client.get(f"{P}/search", params={"keyword": keyword, "k": 3})
    assert r.status_code == 200
    result = r.json()
    assert result["query"]["kind"] == "keyword"
    assert result["query"]["keyword"] == "Chat"
    assert result["query"]["description"] == "a cat"
    assert result["hits"][0]["path"] == "animaux/chat.jpg"


@pytest.mark.parametrize("keyword", ["Fusée", "Fuse\u0301e", "FUSÉE"])  # NFC, NFD, other case
def test_search_keyword_with_accents(client, keyword):
    result = client.get(f"{P}/search", params={"keyword": keyword, "k": 3}).json()
    assert result["query"]["keyword"] == "Fusée"
    assert result["query"]["description"] == "a rocket launch"
    assert result["hits"][0]["path"] == "espace/fusée.jpg"


def test_search_similar_excludes_the_image_itself(any_client):
    r = any_client.get(f"{P}/search", params={"similar": "animaux/chat.jpg", "k": 50})
    assert r.status_code == 200
    result = r.json()
    assert result["query"] == {"kind": "image", "image": "animaux/chat.jpg"}
    paths = [h["path"] for h in result["hits"]]
    assert "animaux/chat.jpg" not in paths
    assert len(paths) == 19 and len(set(paths)) == 19
    assert result["has_more"] is False


def test_search_similar_accented_path(client):
    result = client.get(f"{P}/search", params={"similar": "espace/fusée.jpg", "k": 3}).json()
    assert result["query"]["image"] == "espace/fusée.jpg"
    assert "espace/fusée.jpg" not in [h["path"] for h in result["hits"]]


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_search_folder_filter(client, folder):
    result = client.get(f"{P}/search", params={"q": "a cat", "folder": folder, "k": 50}).json()
    hits = result["hits"]
    assert len(hits) == FOLDERS[folder]
    assert all(h["folder"] == folder and h["path"].startswith(folder + "/") for h in hits)
    assert result["has_more"] is False


def test_search_unknown_folder_finds_nothing(client):
    result = client.get(f"{P}/search", params={"q": "a cat", "folder": "nope"}).json()
    assert result["hits"] == [] and result["has_more"] is False


def test_search_pagination(any_client):
    everything = any_client.get(f"{P}/search", params={"q": "a cat", "k": 20}).json()
    assert len(everything["hits"]) == 20 and everything["has_more"] is False
    pages = []
    for offset in (0, 6, 12, 18):
        page = any_client.get(f"{P}/search", params={"q": "a cat", "k": 6, "offset": offset}).json()
        assert page["offset"] == offset and page["limit"] == 6
        assert page["has_more"] is (offset + 6 < 20)
        pages.append([h["path"] for h in page["hits"]])
    assert [len(p) for p in pages] == [6, 6, 6, 2]
    flat = [path for page in pages for path in page]
    assert len(set(flat)) == 20  # disjoint pages that cover everything
    assert flat == [h["path"] for h in everything["hits"]]  # in the same order as one big page
    beyond = any_client.get(f"{P}/search", params={"q": "a cat", "k": 5, "offset": 20}).json()
    assert beyond["hits"] == [] and beyond["has_more"] is False


def test_search_model_mismatch_is_409(client):
    r = client.get(f"{P}/search", params={"q": "a cat", "model": "clip-vit-b-32"})
    error = error_of(r, 409, "model_mismatch", "offline-concepts", "clip-vit-b-32", "cannot be compared")
    assert error["hint"]
    r = client.get(f"{P}/search", params={"similar": "animaux/chat.jpg", "model": "clip-vit-b-32"})
    error_of(r, 409, "model_mismatch")


def test_search_with_the_index_model_by_name(client):
    r = client.get(f"{P}/search", params={"q": "a cat", "model": "offline-concepts", "k": 1})
    assert r.status_code == 200
    assert r.json()["hits"][0]["path"] == "animaux/chat.jpg"


def test_search_unknown_model_is_400(client):
    r = client.get(f"{P}/search", params={"q": "a cat", "model": "no-such-model"})
    error = error_of(r, 400, "model_unavailable", "unknown model 'no-such-model'")
    assert "offline-concepts" in error["hint"]


def test_search_unknown_keyword_lists_the_keywords(client):
    r = client.get(f"{P}/search", params={"keyword": "Licorne"})
    error = error_of(r, 404, "not_found", "unknown keyword 'Licorne'")
    for keyword in ONTOLOGY:
        assert keyword in error["hint"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"k": 5},
        {"q": "a cat", "keyword": "Chat"},
        {"q": "a cat", "similar": "animaux/chat.jpg"},
        {"keyword": "Chat", "similar": "animaux/chat.jpg"},
        {"q": "a cat", "keyword": "Chat", "similar": "animaux/chat.jpg"},
    ],
)
def test_search_needs_exactly_one_query(client, params):
    error_of(client.get(f"{P}/search", params=params), 400, "bad_request", "exactly one of")


@pytest.mark.parametrize(
    "params, where",
    [
        ({"k": 0}, "query.k"),
        ({"k": 201}, "query.k"),
        ({"k": "ten"}, "query.k"),
        ({"offset": -1}, "query.offset"),
        ({"offset": 1001}, "query.offset"),
    ],
)
def test_search_numbers_out_of_range_are_422(client, params, where):
    r = client.get(f"{P}/search", params={"q": "a cat", **params})
    error = error_of(r, 422, "invalid_request", where)
    assert error["details"][0]["where"] == where
    assert error["details"][0]["message"]


@pytest.mark.parametrize("q", ["", "   "])
def test_search_empty_text_is_400(client, q):
    error_of(client.get(f"{P}/search", params={"q": q}), 400, "bad_request", "empty")


@pytest.mark.parametrize("path", ["nope.jpg", "animaux/nope.jpg", "../animaux/chat.jpg", "/etc/passwd", "animaux"])
def test_search_similar_unknown_image_is_404(client, path):
    error_of(client.get(f"{P}/search", params={"similar": path}), 404, "not_found", "no image")


def test_search_before_indexing_is_404(fresh_demo):
    with make_client(fresh_demo.parent) as c:
        status = c.get(P).json()
        assert status["model"] is None and status["files"] == 0 and status["job"] is None
        error_of(c.get(f"{P}/search", params={"q": "a cat"}), 404, "not_found", "not been indexed")
        r = c.post(f"{P}/search/image", files={"file": ("chat.jpg", b"x", "image/jpeg")})
        error_of(r, 404, "not_found", "not been indexed")
        assert c.get(f"{P}/images").json()["total"] == 0


# ------------------------------------------------------------------------------- upload search


def test_upload_search(any_client, indexed_demo):
    data = (indexed_demo / "images" / "animaux" / "chat.jpg").read_bytes()
    r = any_client.post(f"{P}/search/image", files={"file": ("ma photo.jpg", data, "image/jpeg")}, data={"k": "4"})
    assert r.status_code == 200
    result = r.json()
    assert result["query"] == {"kind": "image", "image": "ma photo.jpg"}
    assert result["limit"] == 4 and len(result["hits"]) == 4 and result["has_more"] is True
    assert result["hits"][0]["path"] == "animaux/chat.jpg"
    assert result["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_upload_search_with_folder_and_offset(client, indexed_demo):
    data = (indexed_demo / "images" / "animaux" / "chat.jpg").read_bytes()
    files = {"file": ("chat.jpg", data, "image/jpeg")}
    result = client.post(f"{P}/search/image", files=files, data={"folder": "espace", "k": "10"}).json()
    assert [h["folder"] for h in result["hits"]] == ["espace"] * 4
    second = client.post(f"{P}/search/image", files=files, data={"k": "1", "offset": "1"}).json()
    assert second["offset"] == 1 and second["hits"][0]["path"] != "animaux/chat.jpg"


def test_upload_png_works(client, indexed_demo):
    data = (indexed_demo / "images" / "animaux" / "cheval.png").read_bytes()
    result = client.post(f"{P}/search/image", files={"file": ("cheval.png", data, "image/png")}).json()
    assert result["hits"][0]["path"] == "animaux/cheval.png"


@pytest.mark.parametrize(
    "name, make, words",
    [
        ("truncated.jpg", lambda jpeg: jpeg[:2000], "truncated or corrupt"),
        ("garbage.jpg", lambda jpeg: jpeg[:3] + b"\x00" * 500, "corrupt"),
        ("notes.txt", lambda jpeg: b"Des notes, pas une image.\n" * 20, "not an image"),
        ("page.jpg", lambda jpeg: b"<!DOCTYPE html><html><body>hello</body></html>", "HTML"),
    ],
)
def test_upload_not_an_image_is_400(client, indexed_demo, name, make, words):
    jpeg = (indexed_demo / "images" / "animaux" / "chat.jpg").read_bytes()
    r = client.post(f"{P}/search/image", files={"file": (name, make(jpeg), "image/jpeg")})
    error_of(r, 400, "bad_image", words)


def test_upload_empty_is_400(client):
    r = client.post(f"{P}/search/image", files={"file": ("vide.jpg", b"", "image/jpeg")})
    error_of(r, 400, "bad_request", "'vide.jpg' is empty")


def test_upload_without_file_is_422(client):
    error_of(client.post(f"{P}/search/image", data={"k": "3"}), 422, "invalid_request", "body.file")


@pytest.mark.parametrize("form", [{"k": "0"}, {"k": "500"}, {"offset": "-3"}, {"k": "many"}])
def test_upload_bad_numbers_are_422(client, indexed_demo, form):
    data = (indexed_demo / "images" / "animaux" / "chat.jpg").read_bytes()
    r = client.post(f"{P}/search/image", files={"file": ("chat.jpg", data, "image/jpeg")}, data=form)
    error_of(r, 422, "invalid_request", "body.")


def test_upload_model_checks(client, indexed_demo):
    data = (indexed_demo / "images" / "animaux" / "chat.jpg").read_bytes()
    files = {"file": ("chat.jpg", data, "image/jpeg")}
    error_of(client.post(f"{P}/search/image", files=files, data={"model": "clip-vit-b-32"}), 409, "model_mismatch")
    error_of(client.post(f"{P}/search/image", files=files, data={"model": "nope"}), 400, "model_unavailable")


def test_upload_under_a_small_limit_still_works(small_client, indexed_demo):
    data = (indexed_demo / "images" / "animaux" / "chat.jpg").read_bytes()
    assert len(data) < 50_000
    r = small_client.post(f"{P}/search/image", files={"file": ("chat.jpg", data, "image/jpeg")})
    assert r.status_code == 200
    assert r.json()["hits"][0]["path"] == "animaux/chat.jpg"


def test_upload_too_large_declared_is_413(small_client):
    r = small_client.post(f"{P}/search/image", files={"file": ("big.jpg", b"\xff" * 200_000, "image/jpeg")})
    assert int(r.request.headers["content-length"]) > 200_000
    error = error_of(r, 413, "payload_too_large", "over the limit", "48.8 KiB")
    assert "VITRINE_MAX_UPLOAD_BYTES" in error["hint"]


def test_upload_over_the_limit_but_under_the_framing_allowance_is_413(small_client):
    r = small_client.post(f"{P}/search/image", files={"file": ("big.jpg", b"\xff" * 60_000, "image/jpeg")})
    error_of(r, 413, "payload_too_large", "'big.jpg' is larger than the limit of 48.8 KiB")


def test_upload_too_large_streamed_is_413_without_reading_it_all(small_client):
    """No Content-Length (chunked transfer): the server stops reading once over the limit."""
    body, content_type = multipart("big.jpg", b"\xff" * 1_000_000)
    chunks = [body[i : i + 10_000] for i in range(0, len(body), 10_000)]
    headers = [(b"content-type", content_type.encode()), (b"transfer-encoding", b"chunked")]
    status, answer, read = asyncio.run(_raw_request(small_client.app, f"{P}/search/image", "POST", headers, chunks))
    assert status == 413, answer
    error = json.loads(answer)["error"]
    assert error["code"] == "payload_too_large" and "over the limit of 48.8 KiB" in error["message"]
    assert read < len(chunks) // 4, f"{read} of {len(chunks)} chunks read: the server should stop early"


def test_upload_streamed_under_the_limit_works(small_client, indexed_demo):
    body, content_type = multipart("chat.jpg", (indexed_demo / "images/animaux/chat.jpg").read_bytes())
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    headers = [(b"content-type", content_type.encode()), (b"transfer-encoding", b"chunked")]
    status, answer, read = asyncio.run(_raw_request(small_client.app, f"{P}/search/image", "POST", headers, chunks))
    assert status == 200, answer
    assert json.loads(answer)["hits"][0]["path"] == "animaux/chat.jpg"
    assert read == len(chunks)


# -------------------------------------------------------------------------------------- images


def test_images_list(any_client, indexed_demo):
    r = any_client.get(f"{P}/images")
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 20 and body["offset"] == 0 and body["limit"] == 100
    files = image_files(indexed_demo)
    assert [row["relpath"] for row in body["images"]] == sorted(files)
    row = next(row for row in body["images"] if row["relpath"] == "espace/fusée.jpg")
    assert row["folder"] == "espace"
    assert row["sha256"] == sha256_of(files["espace/fusée.jpg"])
    assert row["size"] == files["espace/fusée.jpg"].stat().st_size
    assert row["error"] is None


def test_images_pagination(client):
    pages = []
    for offset in (0, 7, 14, 21):
        body = client.get(f"{P}/images", params={"offset": offset, "limit": 7}).json()
        assert body["total"] == 20 and body["offset"] == offset and body["limit"] == 7
        pages.append([row["relpath"] for row in body["images"]])
    assert [len(p) for p in pages] == [7, 7, 6, 0]
    flat = [p for page in pages for p in page]
    assert len(set(flat)) == 20 and flat == sorted(flat)


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_images_folder_filter(client, folder):
    body = client.get(f"{P}/images", params={"folder": folder}).json()
    assert body["total"] == FOLDERS[folder]
    assert len(body["images"]) == FOLDERS[folder]
    assert all(row["folder"] == folder for row in body["images"])


def test_images_unknown_folder_is_empty(client):
    assert client.get(f"{P}/images", params={"folder": "nope"}).json() == {
        "total": 0,
        "offset": 0,
        "limit": 100,
        "images": [],
    }


@pytest.mark.parametrize("params", [{"offset": -1}, {"limit": 0}, {"limit": 501}, {"limit": "all"}])
def test_images_bad_numbers_are_422(client, params):
    error_of(client.get(f"{P}/images", params=params), 422, "invalid_request")


@pytest.mark.parametrize("relpath", ["animaux/chat.jpg", "espace/fusée.jpg", "objets/pièces.png"])
def test_meta(any_client, indexed_demo, relpath):
    r = any_client.get(f"{P}/meta/{quote(relpath)}")
    assert r.status_code == 200
    meta = r.json()
    path = indexed_demo / "images" / relpath
    assert meta["relpath"] == relpath
    assert meta["folder"] == relpath.split("/")[0]
    assert meta["sha256"] == sha256_of(path)
    assert meta["size"] == path.stat().st_size
    with Image.open(path) as im:
        assert (meta["width"], meta["height"]) == im.size
    assert meta["error"] is None
    assert meta["duplicates"] == []


def test_meta_and_search_list_duplicates(indexed_copy):
    import vitrine

    images = indexed_copy / "images"
    shutil.copyfile(images / "animaux" / "chat.jpg", images / "lieux" / "chat-copie.jpg")
    report = vitrine.open_project(indexed_copy).index()
    assert report.embedded == 0 and report.files == 21  # same content: nothing to embed
    with make_client(indexed_copy.parent) as c:
        assert c.get(f"{P}/meta/animaux/chat.jpg").json()["duplicates"] == ["lieux/chat-copie.jpg"]
        assert c.get(f"{P}/meta/lieux/chat-copie.jpg").json()["duplicates"] == ["animaux/chat.jpg"]
        hit = c.get(f"{P}/search", params={"q": "a cat", "k": 1}).json()["hits"][0]
        assert (hit["path"], hit["duplicates"]) == ("animaux/chat.jpg", ["lieux/chat-copie.jpg"])
        in_lieux = c.get(f"{P}/search", params={"q": "a cat", "k": 1, "folder": "lieux"}).json()["hits"][0]
        assert in_lieux["path"] == "lieux/chat-copie.jpg"  # the copy inside the chosen folder comes first
        listing = c.get(f"{P}/images", params={"folder": "lieux"}).json()
        assert listing["total"] == 3


@pytest.mark.parametrize(
    "relpath, content_type",
    [
        ("animaux/chat.jpg", "image/jpeg"),
        ("animaux/cheval.png", "image/png"),
        ("espace/fusée.jpg", "image/jpeg"),
    ],
)
def test_files(any_client, indexed_demo, relpath, content_type):
    r = any_client.get(f"{P}/files/{quote(relpath)}")
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type
    assert r.content == (indexed_demo / "images" / relpath).read_bytes()


@pytest.mark.parametrize("size", [32, 64, 320, 1024])
def test_thumbs(any_client, indexed_demo, size):
    r = any_client.get(f"{P}/thumbs/espace/{quote('fusée.jpg')}", params={"size": size})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert "max-age" in r.headers["cache-control"]
    assert r.content[:3] == b"\xff\xd8\xff"
    with (
        Image.open(io.BytesIO(r.content)) as thumb,
        Image.open(indexed_demo / "images/espace/fusée.jpg") as orig,
    ):
        assert thumb.format == "JPEG"
        assert max(thumb.size) == min(size, max(orig.size))  # never enlarged
        ratio_orig, ratio_thumb = orig.width / orig.height, thumb.width / thumb.height
        assert ratio_thumb == pytest.approx(ratio_orig, rel=0.05)


def test_thumb_default_size(client):
    r = client.get(f"{P}/thumbs/science/{quote('rétine.jpg')}")  # 1411 x 1411
    with Image.open(io.BytesIO(r.content)) as thumb:
        assert thumb.size == (320, 320)


@pytest.mark.parametrize("size", [0, 31, 1025, "big"])
def test_thumbs_bad_size_is_422(client, size):
    error_of(
        client.get(f"{P}/thumbs/animaux/chat.jpg", params={"size": size}),
        422,
        "invalid_request",
        "query.size",
    )


@pytest.mark.parametrize("kind", ["meta", "files", "thumbs"])
@pytest.mark.parametrize("relpath", ["animaux/nope.jpg", "nope.jpg", "animaux", "", "espace/fuse\u0301e.jpeg"])
def test_unknown_image_is_404(any_client, kind, relpath):
    error_of(any_client.get(f"{P}/{kind}/{quote(relpath)}"), 404, "not_found")


# ---------------------------------------------------------------------- path traversal & links

TRAVERSALS = [
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "animaux/%2e%2e/%2e%2e/ontology/demo-photos_ontology.txt",
    "%2e%2e/ontology/demo-photos_ontology.txt",
    "..%2f..%2fontology%2fdemo-photos_ontology.txt",
    "%2e%2e%5c%2e%2e%5contology%5cdemo-photos_ontology.txt",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "//etc/passwd",
    "C:%5CWindows%5Cwin.ini",
    "animaux/chat.jpg%00.png",
    ".vitrine/catalog.db",
    "%2e%2e/.vitrine/catalog.db",
]


def _assert_nothing_leaked(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.request.url, response.status_code)
    body = response.content
    assert b"root:" not in body
    assert b'"a rocket launch"' not in body  # the ontology file's contents
    assert b"SQLite format" not in body
    assert SECRET not in body


@pytest.mark.parametrize("kind", ["meta", "files", "thumbs"])
@pytest.mark.parametrize("relpath", TRAVERSALS)
def test_path_traversal_is_refused(any_client, indexed_demo, kind, relpath):
    _assert_nothing_leaked(any_client.get(f"{P}/{kind}/{relpath}"))


@pytest.mark.parametrize("relpath", TRAVERSALS)
def test_similar_search_with_traversal_is_refused(client, indexed_demo, relpath):
    _assert_nothing_leaked(client.get(f"{P}/search", params={"similar": relpath}))


@pytest.mark.parametrize(
    "path",
    [
        f"{P}/files/../../../../../../etc/passwd",
        f"{P}/files/animaux/../../ontology/{NAME}_ontology.txt",
        f"{P}/thumbs/animaux/../../ontology/{NAME}_ontology.txt",
        f"{P}/meta/../ontology/{NAME}_ontology.txt",
        f"{API}/projects/../../../../etc/passwd",
        f"{API}/projects/../files/animaux/chat.jpg",
    ],
)
def test_literal_dot_dot_in_the_raw_path_is_refused(client, path):
    status, body, _ = asyncio.run(_raw_request(client.app, path))
    assert 400 <= status < 500, (path, status, body[:200])
    assert b"root:" not in body and b'"a rocket launch"' not in body
    assert b'"message"' in body


def test_symlinks_leading_outside_are_refused(fresh_demo, outside):
    images = fresh_demo / "images"
    (images / "animaux" / "evil.jpg").symlink_to(outside / "secret.jpg")
    (images / "animaux" / "evil.txt.jpg").symlink_to(outside / "secret.txt")
    (images / "fuite").symlink_to(outside, target_is_directory=True)
    with make_client(fresh_demo.parent) as c:
        for url in [
            f"{P}/files/animaux/evil.jpg",
            f"{P}/files/animaux/evil.txt.jpg",
            f"{P}/thumbs/animaux/evil.jpg",
            f"{P}/files/fuite/secret.jpg",
            f"{P}/files/fuite/secret.txt",
            f"{P}/thumbs/fuite/secret.jpg",
            f"{P}/meta/fuite/secret.jpg",
        ]:
            r = c.get(url)
            _assert_nothing_leaked(r)
            assert r.content != (outside / "secret.jpg").read_bytes()
        error_of(c.get(f"{P}/files/animaux/evil.jpg"), 400, "bad_request", "outside the project")


def test_catalogued_image_swapped_for_an_outside_link_is_refused(indexed_copy, outside):
    chat = indexed_copy / "images" / "animaux" / "chat.jpg"
    chat.unlink()
    chat.symlink_to(outside / "secret.txt")
    texte = indexed_copy / "images" / "documents" / "texte.png"
    texte.unlink()
    texte.symlink_to(outside / "secret.jpg")
    with make_client(indexed_copy.parent) as c:
        for url in [
            f"{P}/files/animaux/chat.jpg",
            f"{P}/thumbs/animaux/chat.jpg",
            f"{P}/files/documents/texte.png",
            f"{P}/thumbs/documents/texte.png?size=64",
        ]:
            r = c.get(url)
            _assert_nothing_leaked(r)
            error_of(r, 400, "bad_request", "outside the project")
        # an image that was not touched is still served
        assert c.get(f"{P}/files/animaux/cheval.png").status_code == 200


def test_symlink_inside_the_project_is_served(indexed_copy):
    import vitrine

    images = indexed_copy / "images"
    (images / "lieux" / "minou.jpg").symlink_to(images / "animaux" / "chat.jpg")
    with make_client(indexed_copy.parent) as c:
        error_of(c.get(f"{P}/files/lieux/minou.jpg"), 404, "not_found")  # not catalogued yet
        report = vitrine.open_project(indexed_copy).index()
        assert report.embedded == 0 and report.files == 21 and report.failed == []
        r = c.get(f"{P}/files/lieux/minou.jpg")
        assert r.status_code == 200
        assert r.content == (images / "animaux" / "chat.jpg").read_bytes()
        assert c.get(f"{P}/thumbs/lieux/minou.jpg").status_code == 200


# ---------------------------------------------------------------------------------------- jobs


def test_index_job(fresh_demo):
    with make_client(fresh_demo.parent) as c:
        assert c.get(f"{API}/jobs").json() == []
        r = c.post(f"{P}/index", data={"model": "offline-concepts"})
        assert r.status_code == 202
        job = r.json()
        assert re.fullmatch(r"[0-9a-f]{12}", job["id"])
        assert (job["kind"], job["target"]) == ("index", NAME)
        assert job["state"] in ("queued", "running", "done")
        first = wait_for(c, job["id"])
        assert first["state"] == "done", first
        assert first["error"] is None
        result = first["result"]
        assert result["model"] == "offline-concepts"
        assert result["embedded"] == 20 and result["files"] == 20 and result["unchanged"] == 0
        assert result["failed"] == [] and result["removed"] == 0
        assert first["finished_at"] >= first["started_at"] >= first["created_at"]

        status = c.get(P).json()
        assert status["files"] == 20 and status["model"] == "offline-concepts"
        assert status["folders"] == FOLDERS
        assert status["job"]["id"] == job["id"] and status["job"]["state"] == "done"
        assert c.get(f"{P}/search", params={"q": "a cat", "k": 1}).json()["hits"][0]["path"] == "animaux/chat.jpg"

        r = c.post(f"{P}/index")  # no model: the one the project was indexed with
        assert r.status_code == 202
        again = wait_for(c, r.json()["id"])
        assert again["id"] != job["id"]
        assert again["state"] == "done", again
        assert again["result"]["model"] == "offline-concepts"
        assert again["result"]["embedded"] == 0
        assert again["result"]["unchanged"] == 20

        jobs = c.get(f"{API}/jobs").json()
        assert [j["id"] for j in jobs] == [again["id"], job["id"]]  # newest first
        assert [j["id"] for j in c.get(f"{API}/jobs", params={"project": NAME}).json()] == [
            again["id"],
            job["id"],
        ]
        assert c.get(f"{API}/jobs", params={"project": "other"}).json() == []

        r = c.post(f"{API}/jobs/{job['id']}/cancel")  # finished: harmless
        assert r.status_code == 200
        assert r.json()["state"] == "done" and r.json()["result"]["embedded"] == 20
        assert c.get(f"{API}/jobs/{job['id']}").json()["state"] == "done"


def test_cancel_a_running_job(fresh_demo):
    with make_client(fresh_demo.parent) as c:
        job = c.post(f"{P}/index", data={"model": "offline-concepts"}).json()
        r = c.post(f"{API}/jobs/{job['id']}/cancel")
        assert r.status_code == 200 and r.json()["id"] == job["id"]
        final = wait_for(c, job["id"])
        assert final["state"] in ("cancelled", "done"), final  # it may have finished first
        if final["state"] == "cancelled":
            assert "cancelled" in final["message"]
            assert final["result"] is None


def test_index_twice_at_once_follows_the_running_job(fresh_demo):
    with make_client(fresh_demo.parent) as c:
        first = c.post(f"{P}/index", data={"model": "offline-concepts"}).json()
        second = c.post(f"{P}/index", data={"model": "offline-concepts"}).json()
        if second["id"] != first["id"]:  # the first one had already finished
            assert c.get(f"{API}/jobs/{first['id']}").json()["state"] == "done"
        for job_id in {first["id"], second["id"]}:
            assert wait_for(c, job_id)["state"] == "done"


def test_index_unknown_model_is_400_and_starts_nothing(fresh_demo):
    with make_client(fresh_demo.parent) as c:
        error = error_of(
            c.post(f"{P}/index", data={"model": "no-such-model"}),
            400,
            "model_unavailable",
            "unknown model 'no-such-model'",
        )
        assert "offline-concepts" in error["hint"]
        assert c.get(f"{API}/jobs").json() == []
        assert c.get(P).json()["job"] is None


def test_unknown_job_is_404(client):
    error_of(client.get(f"{API}/jobs/0123456789ab"), 404, "not_found", "no job")
    error_of(client.post(f"{API}/jobs/0123456789ab/cancel"), 404, "not_found", "no job")
    error_of(client.post(f"{API}/jobs/%2e%2e/cancel"), 404, "not_found")


# ------------------------------------------------------------------------------ hardening (issue 10)
def _integers(node, where: str = ""):
    """Every integer schema in an OpenAPI document, with where it is."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            yield where, node
        for key, value in node.items():
            yield from _integers(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _integers(value, f"{where}/{i}")


def test_every_integer_parameter_is_bounded(client):
    found = list(_integers(client.get("/openapi.json").json()))
    assert len(found) > 10
    unbounded = [w for w, s in found if "maximum" not in s and "exclusiveMaximum" not in s]
    unbounded += [w for w, s in found if "minimum" not in s and "exclusiveMinimum" not in s]
    assert unbounded == []


def test_an_offset_past_any_integer_is_a_422_not_a_500(client):
    huge = "1138" + "0" * 40
    for url in (f"{API}/projects/{NAME}/images?offset={huge}", f"{API}/projects/{NAME}/tags/cat?offset={huge}"):
        error_of(client.get(url), 422, "invalid_request", "offset")


@pytest.mark.parametrize(
    "url",
    ["/static/x%00", "/static/a%00b.css", f"{API}/projects/{NAME}%00", f"{API}/jobs/a%0Ab", f"{API}/projects?x=%00"],
)
def test_nul_and_control_characters_in_urls_are_a_400(client, url):
    error_of(client.get(url), 400, None, "control character")


def test_openapi_documents_what_the_api_answers(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    error = {"$ref": "#/components/schemas/ErrorBody"}
    assert set(schema["components"]["schemas"]["ErrorDetail"]["properties"]) >= {"code", "message", "hint"}
    status = paths[f"{API}/projects/{{name}}"]["get"]["responses"]
    assert status["404"]["content"]["application/json"]["schema"] == error
    assert status["422"]["content"]["application/json"]["schema"] == error  # the app's body, not FastAPI's
    for csv_route in ("/projects/{name}/ontology.csv", "/projects/{name}/catalog.csv", "/runs/{run_id}/per_class.csv"):
        assert list(paths[API + csv_route]["get"]["responses"]["200"]["content"]) == ["text/csv"], csv_route
    logout = paths[f"{API}/logout"]["post"]["responses"]
    assert "204" in logout and "200" not in logout
    assert "409" in paths[f"{API}/projects/{{name}}/search"]["get"]["responses"]
    assert "413" in paths[f"{API}/projects/{{name}}/search/image"]["post"]["responses"]
    # every operation documents at least one error besides 422
    bare = [
        (m, p)
        for p, item in paths.items()
        for m, op in item.items()
        if not set(op["responses"]) - {"200", "201", "202", "204", "422"}
    ]
    assert bare == [(m, p) for m, p in bare if p == f"{API}/health"]


def test_tag_looks_up_detection_runs_in_the_served_root(tmp_path, indexed_demo, monkeypatch):
    """A run id given to POST /projects/{name}/tag (and its job) is a run of the served root, not
    of the server's working directory."""
    from vitrine.core.atomic import atomic_write_json
    from vitrine.core.errors import ModelError
    from vitrine.core.workspace import Workspace
    from vitrine.tasks.tag import run_tag_job

    root = tmp_path / "root"
    shutil.copytree(indexed_demo, root / NAME)
    run_dir = Workspace(root).run_dir("a-classifier")
    run_dir.mkdir(parents=True)
    atomic_write_json(run_dir / "run.json", {"id": "a-classifier", "kind": "linear-probe", "state": "done"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("VITRINE_HOME", raising=False)
    client = make_client(root)
    # found in the root: refused as the classifier it is, not as an unknown name
    error_of(client.post(f"{API}/projects/{NAME}/tag", data={"model": "a-classifier"}), 400, None, "not a detector")
    # a model file on the server (an ONNX YOLO, a torchvision checkpoint) is never loaded for a request
    (root / "model.pt").write_bytes(b"weights")
    for path in (str(root / "model.pt"), "model.onnx", "x.PTH"):
        error_of(client.post(f"{API}/projects/{NAME}/tag", data={"model": path}), 400, None, "is a file path")

    class Ctx:
        services = client.app.state.vitrine
        cancel_event = None

        def progress(self, *a, **k):
            pass

    with pytest.raises(ModelError, match="not a detector"):
        run_tag_job(Ctx(), {"project": NAME, "model": "a-classifier", "threshold": 0.5})
