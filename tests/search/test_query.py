"""One search Query, checked in one place: what it refuses (with the messages users see), and the
same Query giving the same hits through the Python API, the command line and the REST API."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vitrine.core.errors import VitrineError
from vitrine.project import Project
from vitrine.search.query import Filters, Query, normalize_tags
from vitrine.server.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cli_helpers as cli  # noqa: E402


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "give exactly one of text, keyword, similar"),
        ({"text": "a cat", "keyword": "Chat"}, "give exactly one of text, keyword, similar"),
        ({"similar": "a.jpg", "image": b"..."}, "give exactly one of text, keyword, similar"),
        ({"text": "   "}, "the search text is empty"),
        ({"text": ""}, "the search text is empty"),
        ({"text": "a cat", "k": 0}, "bad page: offset 0, k 0"),
        ({"text": "a cat", "offset": -1}, "bad page: offset -1, k 20"),
    ],
)
def test_a_bad_query_is_refused(fields, message):
    with pytest.raises(VitrineError, match=message):
        Query(**fields)


def test_one_of_says_it_in_the_callers_words():
    with pytest.raises(VitrineError, match="^give exactly one query: TEXT, --keyword K, or --image PATH$"):
        Query.one_of("query: TEXT, --keyword K, or --image PATH")
    with pytest.raises(VitrineError, match="^give exactly one of q \\(text\\), keyword, or similar"):
        Query.one_of("of q (text), keyword, or similar (an image path)", text="a cat", similar="a.jpg")
    with pytest.raises(VitrineError, match="the search text is empty"):
        Query.one_of("query", text=" ")


def test_a_query_is_a_value():
    q = Query.one_of("query", text="  a cat ", k=5, offset=2, folder="animaux", tags=["Cat", " cat", ""], tag_model="m")
    assert q.kind == "text" and q.text == "a cat"
    assert q.filters == Filters(folder="animaux", tags=("cat",), tag_model="m")
    assert q == Query(text="a cat", k=5, offset=2, filters=Filters("animaux", ("CAT",), "m"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.k = 10  # type: ignore[misc]
    assert Query(keyword="Chat").kind == "keyword"
    assert Query(similar="animaux/cat.jpg").kind == "similar"
    assert Query(image=b"\xff\xd8").kind == "image"
    assert Filters(tags="Dog").tags == ("dog",)
    assert normalize_tags(None) == [] and normalize_tags(["A", "a", " b "]) == ["a", "b"]


# ------------------------------------------------------------------------------ one query, three doors
QUERIES = [
    Query(text="a cat", k=4, offset=1),
    Query(keyword="Fusée", k=3, filters=Filters(folder="espace")),
]


def _cli_args(project_dir: Path, q: Query) -> list:
    args = ["search", project_dir, "--json", "-k", q.k, "--offset", q.offset]
    if q.filters.folder is not None:
        args += ["--folder", q.filters.folder]
    return [*args, q.text] if q.text is not None else [*args, "--keyword", q.keyword]


def _api_params(q: Query) -> dict:
    params = {"k": q.k, "offset": q.offset}
    if q.filters.folder is not None:
        params["folder"] = q.filters.folder
    return params | ({"q": q.text} if q.text is not None else {"keyword": q.keyword})


def test_one_query_gives_the_same_hits_everywhere(indexed_demo):
    project = Project(indexed_demo)
    expected = [[(h.path, h.score) for h in project.query(q).hits] for q in QUERIES]
    assert all(expected), expected
    assert expected[0][0][0] != project.query(dataclasses.replace(QUERIES[0], offset=0)).hits[0].path

    client = TestClient(create_app(indexed_demo.parent), raise_server_exceptions=False)
    for q, want in zip(QUERIES, expected, strict=True):
        response = client.get(f"/api/v1/projects/{indexed_demo.name}/search", params=_api_params(q))
        assert response.status_code == 200, response.text
        assert [(h["path"], h["score"]) for h in response.json()["hits"]] == want

    for result, want in zip(cli.run_many(*(_cli_args(indexed_demo, q) for q in QUERIES)), expected, strict=True):
        assert result.returncode == 0, cli.describe(result)
        assert [(h["path"], h["score"]) for h in json.loads(result.stdout)] == want
