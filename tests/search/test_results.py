"""Search results users expect: a score cut-off, sorting the kept hits, and exporting chosen
results as CSV or as a new classification dataset, through the Python API, the CLI and the REST API.
The demo project is indexed with offline-concepts: real photos, so "a cat" finds the cat first."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vitrine.core.errors import NotFound, VitrineError
from vitrine.data.importers import load_dataset
from vitrine.project import Project
from vitrine.search.engine import cut
from vitrine.search.query import Query
from vitrine.server.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cli_helpers as cli  # noqa: E402


# ------------------------------------------------------------------------------ the query
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_score": 1.5}, "min_score 1.5 is out of range"),
        ({"min_score": -1.01}, "min_score -1.01 is out of range"),
        ({"within": -0.1}, "within -0.1 is out of range"),
        ({"within": 3}, "within 3 is out of range"),
        ({"sort": "size"}, "unknown sort 'size'"),
    ],
)
def test_bad_cutoffs_and_sorts_are_refused(fields, message):
    with pytest.raises(VitrineError, match=message):
        Query(text="a cat", **fields)


def test_cut_keeps_the_prefix_above_both_cutoffs():
    ranked = [(1, 0.9), (2, 0.85), (3, 0.5), (4, 0.2)]
    assert cut(ranked, None, None) == ranked
    assert cut(ranked, 0.5, None) == ranked[:3]  # a score equal to the cut-off passes
    assert cut(ranked, None, 0.1) == ranked[:2]  # within 0.1 of the best (0.9)
    assert cut(ranked, 0.3, 0.5) == ranked[:3]  # the stricter of the two
    assert cut(ranked, 0.95, None) == []
    assert cut([], 0.5, 0.1) == []


# ------------------------------------------------------------------------------ the engine
def test_min_score_stops_the_ranking_where_matches_stop(indexed_demo):
    p = Project(indexed_demo)
    everything = p.query(Query(text="a cat", k=50)).hits
    assert len(everything) == 20  # without a cut-off the whole collection comes back, ranked
    threshold = (everything[0].score + everything[1].score) / 2
    kept = p.query(Query(text="a cat", k=50, min_score=threshold))
    assert [h.path for h in kept.hits] == ["animaux/chat.jpg"]
    assert kept.query["min_score"] == threshold and kept.has_more is False
    # a page after the cut-off is empty, and says there is nothing more
    assert p.query(Query(text="a cat", k=1, offset=1, min_score=threshold)).hits == []
    exactly = p.query(Query(text="a cat", k=50, min_score=everything[2].score))
    assert [h.path for h in exactly.hits] == [h.path for h in everything[:3]]
    relative = p.query(Query(text="a cat", k=50, within=everything[0].score - everything[3].score))
    assert [h.path for h in relative.hits] == [h.path for h in everything[:4]]
    # has_more counts only the hits above the cut-off
    paged = p.query(Query(text="a cat", k=2, min_score=everything[2].score))
    assert len(paged.hits) == 2 and paged.has_more is True
    assert p.query(Query(text="a cat", k=3, min_score=everything[2].score)).has_more is False


def test_sort_reorders_the_kept_hits(indexed_demo, tmp_path):
    project_dir = tmp_path / indexed_demo.name
    shutil.copytree(indexed_demo, project_dir)
    p = Project(project_dir)
    top = [h.path for h in p.query(Query(text="a cat", k=4)).hits]
    # give the four best hits known dates: the third best is the newest
    for age, rel in zip((3, 2, 0, 1), top, strict=True):
        stamp = 1_700_000_000 - age * 86_400
        os.utime(project_dir / "images" / rel, (stamp, stamp))
    p.index()  # the scan records the new dates; the contents are unchanged, so nothing is embedded
    by_score = p.query(Query(text="a cat", k=4)).hits
    assert [h.path for h in by_score] == top
    assert all(h.size == (project_dir / "images" / h.path).stat().st_size for h in by_score)
    by_name = p.query(Query(text="a cat", k=4, sort="name"))
    assert [h.path for h in by_name.hits] == sorted(top) and by_name.query["sort"] == "name"
    by_date = p.query(Query(text="a cat", k=4, sort="date")).hits
    assert [h.path for h in by_date] == [top[2], top[3], top[1], top[0]]
    assert by_date[0].mtime == pytest.approx(1_700_000_000)
    # sorting applies after the cut-off: the same hits, another order
    cut_by_name = p.query(Query(text="a cat", k=50, min_score=by_score[1].score, sort="name")).hits
    assert [h.path for h in cut_by_name] == sorted(top[:2])


# ------------------------------------------------------------------------------ export (Python API)
def test_export_csv_and_dataset(indexed_demo, tmp_path):
    p = Project(indexed_demo)
    hits = p.query(Query(text="a cat", k=3)).hits
    paths = [h.path for h in hits]
    buf = io.StringIO()
    assert p.export_results_csv(buf, paths, {h.path: h.score for h in hits}) == 3
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["path"] for r in rows] == paths
    assert [float(r["score"]) for r in rows] == [h.score for h in hits]
    first = rows[0]
    assert first["folder"] == "animaux"
    assert int(first["size_bytes"]) == (indexed_demo / "images" / paths[0]).stat().st_size
    assert first["modified"].endswith("+00:00") and len(first["sha256"]) == 64
    assert int(first["width"]) > 0 and int(first["height"]) > 0

    dataset = p.export_results_dataset(paths, "cats", "a cat", workspace=tmp_path)
    loaded = load_dataset(tmp_path, "cats")
    assert [s.path for s in loaded.samples] == paths and loaded.classes == ["a cat"]
    assert loaded.root == (indexed_demo / "images").resolve() or loaded.root == indexed_demo / "images"
    assert all(loaded.path_of(s).is_file() for s in loaded.samples)  # the images stay in the project
    assert loaded.source["kind"] == "search-results" and dataset.name == "cats"
    assert not (tmp_path / "datasets" / "cats" / "images").exists()  # nothing was copied
    with pytest.raises(VitrineError, match="dataset 'cats' already exists"):
        p.export_results_dataset(paths, "cats", "a cat", workspace=tmp_path)


@pytest.mark.parametrize(
    ("paths", "error", "message"),
    [
        ([], VitrineError, "no images selected"),
        (["../ontology/demo-photos_ontology.txt"], NotFound, "not an image of project"),
        (["/etc/passwd"], NotFound, "'/etc/passwd'"),
        (["animaux/chat.jpg", "animaux/licorne.jpg"], NotFound, "'animaux/licorne.jpg'"),
    ],
)
def test_export_refuses_what_is_not_the_projects(indexed_demo, tmp_path, paths, error, message):
    p = Project(indexed_demo)
    with pytest.raises(error, match=message):
        p.export_results_csv(io.StringIO(), paths)
    with pytest.raises(error, match=message):
        p.export_results_dataset(paths, "x", "a cat", workspace=tmp_path)
    assert not (tmp_path / "datasets").exists()


def test_dataset_name_and_label_are_checked(indexed_demo, tmp_path):
    p = Project(indexed_demo)
    with pytest.raises(VitrineError, match="invalid dataset name '../up'"):
        p.export_results_dataset(["animaux/chat.jpg"], "../up", "a cat", workspace=tmp_path)
    with pytest.raises(VitrineError, match="invalid label"):
        p.export_results_dataset(["animaux/chat.jpg"], "ok", "  ", workspace=tmp_path)


# ------------------------------------------------------------------------------ the REST API
@pytest.fixture(scope="module")
def api(indexed_demo, tmp_path_factory):
    """An app whose workspace is a copy of the indexed demo's parent (so datasets land in a
    throwaway folder) and the project's URL."""
    root = tmp_path_factory.mktemp("results-api")
    shutil.copytree(indexed_demo, root / indexed_demo.name)
    with TestClient(create_app(root), raise_server_exceptions=False) as client:
        yield client, f"/api/v1/projects/{indexed_demo.name}", root


def test_api_search_cutoff_and_sort(api):
    client, base, root = api
    everything = client.get(f"{base}/search", params={"q": "a cat", "k": 50}).json()["hits"]
    assert {"size", "mtime"} <= set(everything[0])
    kept = client.get(f"{base}/search", params={"q": "a cat", "k": 50, "min_score": everything[2]["score"]})
    assert kept.status_code == 200, kept.text
    assert [h["path"] for h in kept.json()["hits"]] == [h["path"] for h in everything[:3]]
    named = client.get(f"{base}/search", params={"q": "a cat", "k": 3, "sort": "name"}).json()
    assert [h["path"] for h in named["hits"]] == sorted(h["path"] for h in everything[:3])
    for bad in ({"min_score": 2}, {"min_score": "high"}, {"within": -1}, {"sort": "size"}):
        response = client.get(f"{base}/search", params={"q": "a cat"} | bad)
        assert response.status_code == 422, (bad, response.text)
    # the upload search takes the same options, as form fields
    cat = root / base.rsplit("/", 1)[1] / "images" / "animaux" / "chat.jpg"
    image = {"file": ("q.jpg", cat.read_bytes(), "image/jpeg")}
    for bad in ({"min_score": "2"}, {"within": "-1"}, {"sort": "size"}):
        response = client.post(f"{base}/search/image", files=image, data=bad)
        assert response.status_code == 422, (bad, response.text)
    like = client.post(f"{base}/search/image", files=image, data={"min_score": "0.99", "sort": "name"})
    assert like.status_code == 200, like.text
    assert [h["path"] for h in like.json()["hits"]] == ["animaux/chat.jpg"]


def test_api_export(api):
    client, base, root = api
    paths = ["animaux/chat.jpg", "animaux/cheval.png"]
    response = client.post(f"{base}/export", json={"paths": paths, "scores": {"animaux/chat.jpg": 0.7}})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["path"], r["score"]) for r in rows] == [(paths[0], "0.700000"), (paths[1], "")]

    made = client.post(
        f"{base}/export", json={"paths": paths, "format": "dataset", "dataset_name": "picked", "label": "animals"}
    )
    assert made.status_code == 200, made.text
    assert made.json() == {"dataset": "picked", "samples": 2, "classes": ["animals"]}
    assert [s.path for s in load_dataset(root, "picked").samples] == paths
    listed = client.get("/api/v1/datasets").json()
    assert "picked" in json.dumps(listed)

    cases = [
        ({"paths": paths, "format": "dataset", "dataset_name": "picked", "label": "x"}, 400, "already exists"),
        ({"paths": paths, "format": "dataset", "label": "x"}, 400, "needs dataset_name and label"),
        ({"paths": paths, "format": "dataset", "dataset_name": "../x", "label": "x"}, 400, "invalid dataset name"),
        ({"paths": ["../../etc/passwd"]}, 404, "not an image of project"),
        ({"paths": ["nope.jpg"], "format": "dataset", "dataset_name": "n", "label": "x"}, 404, "'nope.jpg'"),
        ({"paths": []}, 422, ""),
        ({"paths": paths, "format": "zip"}, 422, ""),
    ]
    for body, status, words in cases:
        response = client.post(f"{base}/export", json=body)
        assert response.status_code == status, (body, response.text)
        assert words in response.text, (body, response.text)
    assert not (root / "datasets" / "n").exists()


# ------------------------------------------------------------------------------ the CLI
@pytest.mark.slow
def test_cli_cutoff_sort_and_export(indexed_demo, tmp_path):
    p = Project(indexed_demo)
    everything = p.query(Query(text="a cat", k=50)).hits
    out_csv = tmp_path / "hits.csv"
    ws = tmp_path / "ws"
    args = ["search", indexed_demo, "a cat", "--json", "-k", "50", "--min-score", everything[2].score]
    kept, named, bad = cli.run_many(
        [*args, "--csv", out_csv, "--to-dataset", "cats", "--workspace", ws],
        ("search", indexed_demo, "a cat", "--json", "-k", "3", "--sort", "name"),
        ("search", indexed_demo, "a cat", "--min-score", "1.5"),
    )
    assert kept.returncode == 0, cli.describe(kept)
    want = [h.path for h in everything[:3]]
    assert [h["path"] for h in json.loads(kept.stdout)] == want
    assert [r["path"] for r in csv.DictReader(out_csv.open(encoding="utf-8"))] == want
    dataset = load_dataset(ws, "cats")
    assert [s.path for s in dataset.samples] == want and dataset.classes == ["a cat"]
    assert "saved 3 images as dataset 'cats'" in cli.flat(kept.stderr)
    assert named.returncode == 0, cli.describe(named)
    assert [h["path"] for h in json.loads(named.stdout)] == sorted(want)
    assert bad.returncode == 2 and "Invalid value for '--min-score'" in cli.flat(bad.stderr), cli.describe(bad)
    stats = cli.run_many(("data", "stats", "cats", "--workspace", ws, "--json"))[0]  # vitrine data reads it
    assert stats.returncode == 0, cli.describe(stats)
    assert json.loads(stats.stdout)["height"]["n"] == 3  # it measured the three images in the project
