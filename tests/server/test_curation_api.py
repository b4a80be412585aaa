"""The duplicates, outliers and label-errors routes: the CLI's lists over HTTP, and bad input as a
precise 4xx (ownership is checked by test_authorization.py, hidden splits by test_submissions_api.py)."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vitrine.collection.layout import init_project
from vitrine.server.app import create_app


@pytest.fixture(scope="module")
def served(tmp_path_factory, indexed_demo) -> tuple[TestClient, str]:
    """The indexed demo with a half-size copy of the cat, served from the folder of projects, next
    to a project that was never indexed."""
    root = tmp_path_factory.mktemp("curation-api")
    project = root / indexed_demo.name
    shutil.copytree(indexed_demo, project)
    with Image.open(project / "images" / "animaux" / "chat.jpg") as im:
        im.convert("RGB").resize((im.width // 2, im.height // 2)).save(project / "images" / "chat-petit.jpg")
    import vitrine

    vitrine.open_project(project).index()
    init_project(root / "neuf", {"Chat": "a cat"})
    with TestClient(create_app(root), raise_server_exceptions=False) as client:
        yield client, indexed_demo.name


def test_project_duplicates_and_outliers(served):
    client, name = served
    r = client.get(f"/api/v1/projects/{name}/duplicates")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["threshold"] == 0.75 and body["space"] == "visual"
    (group,) = [g for g in body["groups"] if g["keep"]["path"] == "animaux/chat.jpg"]
    assert group["keep_rule"] == "resolution" and [m["path"] for m in group["others"]] == ["chat-petit.jpg"]
    strict = client.get(f"/api/v1/projects/{name}/duplicates", params={"threshold": 0.999}).json()
    assert strict["groups"] == []
    out = client.get(f"/api/v1/projects/{name}/outliers", params={"k": 2, "top": 3}).json()
    assert out["k"] == 2 and len(out["outliers"]) == 3
    assert [o["score"] for o in out["outliers"]] == sorted((o["score"] for o in out["outliers"]), reverse=True)


@pytest.mark.parametrize(
    "url, status, words",
    [
        ("/api/v1/projects/{name}/duplicates?threshold=1.5", 422, "threshold"),
        ("/api/v1/projects/{name}/duplicates?threshold=0", 422, "threshold"),
        ("/api/v1/projects/{name}/outliers?k=0", 422, "k"),
        ("/api/v1/projects/{name}/duplicates?model=nada", 400, "unknown model 'nada'"),
        ("/api/v1/projects/{name}/outliers?model=clip-vit-b-32", 409, "not 'clip-vit-b-32'"),
        ("/api/v1/projects/neuf/duplicates", 404, "has not been indexed yet"),
        ("/api/v1/projects/nulle/outliers", 404, "nulle"),
        ("/api/v1/datasets/nulle/label-errors", 404, "no dataset 'nulle'"),
    ],
)
def test_bad_input_is_a_precise_4xx(served, url, status, words):
    client, name = served
    r = client.get(url.format(name=name))
    assert r.status_code == status, r.text
    assert words in r.text


def test_dataset_routes_refuse_a_bad_model_before_any_work(tmp_path):
    from vitrine.core.workspace import Workspace
    from vitrine.data.dataset import ClassificationDataset, Sample

    images = tmp_path / "imgs"
    (images / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8), (9, 9, 9)).save(images / "a" / "0.png")
    ClassificationDataset("ds", images, [Sample("a/0.png", "a", "train")]).save(Workspace(tmp_path).dataset_dir("ds"))
    with TestClient(create_app(tmp_path), raise_server_exceptions=False) as client:
        for route in ("label-errors", "duplicates", "outliers"):
            r = client.get(f"/api/v1/datasets/ds/{route}", params={"model": "nada"})
            assert r.status_code == 400 and "unknown model 'nada'" in r.text, (route, r.text)
        assert not (Workspace(tmp_path).dataset_dir("ds") / "embeddings").exists()
        r = client.get("/api/v1/datasets/ds/label-errors", params={"k": 0})
        assert r.status_code == 422


def test_openapi_lists_the_routes(served):
    client, _ = served
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/projects/{name}/duplicates",
        "/api/v1/projects/{name}/outliers",
        "/api/v1/datasets/{name}/label-errors",
        "/api/v1/datasets/{name}/duplicates",
        "/api/v1/datasets/{name}/outliers",
    ):
        responses = paths[path]["get"]["responses"]
        assert {"200", "404", "422", "503"} <= set(responses), path
