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


def test_lists_are_sorted_and_paged(served):
    client, name = served
    url = f"/api/v1/projects/{name}/outliers"
    whole = client.get(url, params={"k": 3}).json()
    assert whole["total"] == whole["images"] == len(whole["outliers"]) and whole["sort"] == "score"
    assert whole["offset"] == 0 and whole["limit"] is None
    page = client.get(url, params={"k": 3, "offset": 5, "limit": 4}).json()
    assert page["total"] == whole["total"] and (page["offset"], page["limit"]) == (5, 4)
    assert page["outliers"] == whole["outliers"][5:9]
    by_name = client.get(url, params={"k": 3, "sort": "name", "limit": 1000}).json()["outliers"]
    assert [o["path"] for o in by_name] == sorted(o["path"] for o in whole["outliers"])
    top = client.get(url, params={"k": 3, "top": 5, "sort": "name"}).json()
    assert top["total"] == 5 and {o["path"] for o in top["outliers"]} == {o["path"] for o in whole["outliers"][:5]}
    past = client.get(url, params={"k": 3, "offset": 10_000}).json()
    assert past["outliers"] == [] and past["total"] == whole["total"]

    dups = f"/api/v1/projects/{name}/duplicates"  # the vectors alone: several groups to sort and page
    loose = client.get(dups, params={"pixels": False, "threshold": 0.4}).json()
    sizes = [len(g["others"]) for g in loose["groups"]]
    assert loose["total"] == len(sizes) >= 2 and sizes == sorted(sizes, reverse=True)
    named = client.get(dups, params={"pixels": False, "threshold": 0.4, "sort": "name"}).json()["groups"]
    assert [g["keep"]["path"] for g in named] == sorted(g["keep"]["path"] for g in loose["groups"])
    closest = client.get(dups, params={"pixels": False, "threshold": 0.4, "sort": "similarity"}).json()["groups"]
    least = [min(m["similarity"] for m in g["others"]) for g in closest]
    assert least == sorted(least, reverse=True)
    second = client.get(dups, params={"pixels": False, "threshold": 0.4, "limit": 1, "offset": 1}).json()
    assert second["groups"] == loose["groups"][1:2]


@pytest.mark.parametrize(
    "query, words",
    [
        ("duplicates?sort=score", "sort"),
        ("outliers?sort=size", "sort"),
        ("outliers?limit=0", "limit"),
        ("outliers?offset=-1", "offset"),
        ("duplicates?limit=10001", "limit"),
    ],
)
def test_bad_sort_or_page_is_a_422(served, query, words):
    client, name = served
    r = client.get(f"/api/v1/projects/{name}/{query}")
    assert r.status_code == 422 and words in r.text, r.text


def test_a_kept_list_is_computed_again_when_the_collection_changes(tmp_path, indexed_demo):
    """The lists are kept between pages; indexing new images makes them new."""
    import vitrine

    root = tmp_path / "root"
    shutil.copytree(indexed_demo, root / indexed_demo.name)
    with TestClient(create_app(root), raise_server_exceptions=False) as client:
        url = f"/api/v1/projects/{indexed_demo.name}/duplicates"
        before = client.get(url).json()
        assert not any(g["keep"]["path"] == "animaux/chat.jpg" for g in before["groups"])
        assert client.get(url).json() == before  # kept
        images = root / indexed_demo.name / "images"
        with Image.open(images / "animaux" / "chat.jpg") as im:
            im.convert("RGB").resize((im.width // 2, im.height // 2)).save(images / "chat-petit.jpg")
        vitrine.open_project(root / indexed_demo.name).index()
        after = client.get(url).json()
        assert after["images"] == before["images"] + 1
        assert any(g["keep"]["path"] == "animaux/chat.jpg" for g in after["groups"])


def test_a_dataset_list_follows_the_dataset_and_pages(tmp_path):
    """A dataset's lists (on the tiny colour embedder of the linear-probe tests: the numbers test
    the code path) are paged like a project's and computed again when its labels change."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from curate_helpers import shared, tiny_registered

    from vitrine.data.dataset import Sample

    with tiny_registered():
        ws, ds = shared.saved_dataset(tmp_path)
        with TestClient(create_app(ws.root), raise_server_exceptions=False) as client:
            url = "/api/v1/datasets/colours/label-errors"
            params = {"model": shared.TINY, "k": 3}
            assert client.get(url, params=params).json()["total"] == 0  # solid colours: every label agrees
            first = ds.samples[0]
            ds.samples[0] = Sample(first.path, "blue" if first.label != "blue" else "red", first.split)
            ds.save(ws.dataset_dir("colours"))  # one label changed: a new list
            errors = client.get(url, params={**params, "limit": 1}).json()
            assert errors["total"] == 1 and errors["errors"][0]["path"] == first.path
            assert errors["errors"][0]["suggested"] == first.label
            out = client.get("/api/v1/datasets/colours/outliers", params={**params, "limit": 5, "sort": "name"}).json()
            assert (
                out["total"] == len(ds.samples)
                and [o["path"] for o in out["outliers"]] == sorted(s.path for s in ds.samples)[:5]
            )
