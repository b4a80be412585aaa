"""The map routes: the job started and followed through the jobs API, the points as columns, the
colours, a query's place, the cache seen through the job's result, and bad input as a precise 4xx
(ownership is checked by test_authorization.py)."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vitrine.collection.layout import init_project
from vitrine.server.app import create_app

FAST = {"n_neighbors": 5, "n_epochs": 30}


@pytest.fixture(scope="module")
def served(tmp_path_factory, indexed_demo):
    root = tmp_path_factory.mktemp("map-api")
    shutil.copytree(indexed_demo, root / indexed_demo.name)
    init_project(root / "neuf", {"Chat": "a cat"})
    with TestClient(create_app(root), raise_server_exceptions=False) as client:
        yield client, indexed_demo.name, root / indexed_demo.name


def wait(client, job: dict, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/api/v1/jobs/{job['id']}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"map job still {job['state']}")


@pytest.mark.slow  # UMAP's first compile in the process (about 10 s)
def test_the_map_job_points_colours_and_query(served):
    client, name, project_dir = served
    before = client.get(f"/api/v1/projects/{name}/map").json()
    assert before["ready"] is False and before["model"] == "offline-concepts" and before["space"] == "visual"
    assert client.get(f"/api/v1/projects/{name}/map/points").status_code == 409
    r = client.post(f"/api/v1/projects/{name}/map", json=FAST)
    assert r.status_code == 202, r.text
    job = wait(client, r.json())
    assert job["kind"] == "map" and job["state"] == "done", job
    assert job["result"]["computed"] is True and job["result"]["points"] == 20
    state = client.get(f"/api/v1/projects/{name}/map").json()
    assert state["ready"] and state["job"]["id"] == job["id"] and state["map"]["params"]["n_neighbors"] == 5
    # the project page's job box shows indexing and tagging only: the map job has its own target
    assert client.get(f"/api/v1/projects/{name}").json()["job"] is None

    again = wait(client, client.post(f"/api/v1/projects/{name}/map", json=FAST).json())
    assert again["result"]["computed"] is False  # cached: nothing recomputed

    r = client.get(f"/api/v1/projects/{name}/map/points")
    assert r.status_code == 200
    pts = r.json()
    assert {"x", "y", "id", "path", "folder", "folders", "note", "total", "points"} <= set(pts)
    assert len(pts["x"]) == len(pts["path"]) == len(pts["folder"]) == 20 and pts["note"] is None
    assert all(pts["folders"][c] == p.split("/")[0] for c, p in zip(pts["folder"], pts["path"], strict=True))
    assert len(r.content) < 4000  # columns of short numbers: a few bytes per point plus its path

    colours = client.get(f"/api/v1/projects/{name}/map/colors", params={"by": "cluster", "clusters": 4}).json()
    assert colours["by"] == "cluster" and len(colours["codes"]) == 20 and len(colours["categories"]) == 4
    tags = client.get(f"/api/v1/projects/{name}/map/colors", params={"by": "tag"}).json()
    assert tags["categories"] == ["(no tag)"]

    placed = client.get(f"/api/v1/projects/{name}/map/query", params={"q": "a cat", "k": 3}).json()
    assert placed["neighbours"][0]["path"] == "animaux/chat.jpg" and placed["x"] is not None

    # the catalog changes (a new image, re-indexed): the map is stale, its points a 409 that says why
    with Image.open(project_dir / "images" / "animaux" / "chat.jpg") as im:
        im.convert("RGB").rotate(90, expand=True).save(project_dir / "images" / "chat-tourné.jpg")
    index_job = wait(client, client.post(f"/api/v1/projects/{name}/index").json(), timeout=300)
    assert index_job["state"] == "done", index_job
    state = client.get(f"/api/v1/projects/{name}/map").json()
    assert state["stale"] and not state["ready"]
    r = client.get(f"/api/v1/projects/{name}/map/points")
    assert r.status_code == 409 and "before the catalog last changed" in r.json()["error"]["message"]
    job = wait(client, client.post(f"/api/v1/projects/{name}/map", json=FAST).json())
    assert job["result"]["computed"] is True and job["result"]["points"] == 21


@pytest.mark.parametrize(
    "method, url, body, status, words",
    [
        ("POST", "/api/v1/projects/{name}/map", {"n_neighbors": 1}, 422, "n_neighbors"),
        ("POST", "/api/v1/projects/{name}/map", {"min_dist": 2}, 422, "min_dist"),
        ("POST", "/api/v1/projects/{name}/map", {"max_points": 3}, 422, "max_points"),
        ("POST", "/api/v1/projects/{name}/map", {"model": "nada"}, 400, "unknown model 'nada'"),
        ("POST", "/api/v1/projects/{name}/map", {"model": "clip-vit-b-32"}, 409, "not 'clip-vit-b-32'"),
        ("POST", "/api/v1/projects/neuf/map", {}, 404, "has not been indexed yet"),
        ("GET", "/api/v1/projects/neuf/map", None, 404, "has not been indexed yet"),
        ("GET", "/api/v1/projects/nulle/map/points", None, 404, "nulle"),
        ("GET", "/api/v1/projects/{name}/map/colors?by=size", None, 422, "by"),
        ("GET", "/api/v1/projects/{name}/map/colors?by=cluster&clusters=1", None, 422, "clusters"),
        ("GET", "/api/v1/projects/{name}/map/query", None, 422, "q"),
        ("GET", "/api/v1/projects/{name}/map/query?q=cat&k=0", None, 422, "k"),
    ],
)
def test_bad_input(served, method, url, body, status, words):
    client, name, _ = served
    kwargs = {"content": json.dumps(body), "headers": {"content-type": "application/json"}} if body is not None else {}
    r = client.request(method, url.format(name=name), **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in json.dumps(error)


def test_big_answers_are_sent_gzip_compressed():
    """The points of a big map compress about 5 times: sent gzip-compressed to clients that accept it."""
    import gzip

    from starlette.requests import Request

    from vitrine.server.api.maps import _json

    def request(accept: str) -> Request:
        return Request({"type": "http", "method": "GET", "headers": [(b"accept-encoding", accept.encode())]})

    data = {"x": [round(i / 7, 3) for i in range(2000)], "path": [f"dossier/été-{i}.jpg" for i in range(2000)]}
    zipped = _json(request("gzip, deflate"), data)
    assert zipped.headers["content-encoding"] == "gzip" and zipped.media_type == "application/json"
    assert json.loads(gzip.decompress(zipped.body)) == data
    assert len(zipped.body) * 3 < len(json.dumps(data))
    plain = _json(request("identity"), data)
    assert "content-encoding" not in plain.headers and json.loads(plain.body) == data
    assert "content-encoding" not in _json(request("gzip"), {"x": [1]}).headers  # small: not worth it


@pytest.mark.slow
def test_a_reader_starts_the_map_job_and_it_is_theirs(tmp_path, indexed_demo):
    """Multi-user: bob may read alice's public project, so he may map it (like searching it); the
    job is bob's, and alice does not see it. The map itself is the project's: alice reads it."""
    from argon2 import profiles

    from vitrine.auth import passwords

    passwords.use_profile(profiles.CHEAPEST)
    try:
        shutil.copytree(indexed_demo, tmp_path / "album")
        app = create_app(tmp_path, multi_user=True, database_url=f"sqlite:///{tmp_path / 'server.db'}")
        store = app.state.auth.store
        users = {n: store.add_user(n, f"{n}-password") for n in ("alice", "bob")}
        assert store.claim("project", "album", users["alice"].id, visibility="public")
        tokens = {n: store.create_token(n, "tests")[1] for n in users}
        with TestClient(app, raise_server_exceptions=False) as client:
            as_ = {n: {"authorization": f"Bearer {t}"} for n, t in tokens.items()}
            r = client.post("/api/v1/projects/album/map", json=FAST, headers=as_["bob"])
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            deadline = time.time() + 120
            while client.get(f"/api/v1/jobs/{job_id}", headers=as_["bob"]).json()["state"] in ("queued", "running"):
                assert time.time() < deadline
                time.sleep(0.1)
            assert client.get(f"/api/v1/jobs/{job_id}", headers=as_["bob"]).json()["state"] == "done"
            assert client.get(f"/api/v1/jobs/{job_id}", headers=as_["alice"]).status_code == 404
            assert client.get("/api/v1/projects/album/map", headers=as_["alice"]).json()["job"] is None
            assert client.get("/api/v1/projects/album/map", headers=as_["bob"]).json()["job"]["id"] == job_id
            points = client.get("/api/v1/projects/album/map/points", headers=as_["alice"])
            assert points.status_code == 200 and len(points.json()["path"]) == 20
        app.state.vitrine.close()
    finally:
        passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)
