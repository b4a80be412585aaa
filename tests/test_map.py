"""The 2-D map of a real project (the demo, indexed with offline-concepts): computed from the
model's image space, cached, stale once an image is added and re-indexed, computed again; the
``map`` job's handler; a text query placed among its nearest images."""

from __future__ import annotations

import shutil
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import vitrine
from vitrine.core.errors import NotFound
from vitrine.search import map2d
from vitrine.search.map2d import MapNotReady, MapParams
from vitrine.tasks.map2d import map_target, run_map_job

FAST = MapParams(n_neighbors=5, n_epochs=30)


@pytest.fixture
def project(tmp_path, indexed_demo):
    project_dir = tmp_path / indexed_demo.name
    shutil.copytree(indexed_demo, project_dir)
    p = vitrine.open_project(project_dir)
    yield p
    p.close()


@pytest.mark.slow  # UMAP's first compile in the process (about 10 s) and a re-index
def test_computed_cached_then_stale_after_a_new_image(project, monkeypatch):
    calls = []
    real = map2d.embed_2d
    monkeypatch.setattr(map2d, "embed_2d", lambda v, p: calls.append(len(v)) or real(v, p))
    state = project.map_state()
    assert state["model"] == "offline-concepts" and state["space"] == "visual"
    assert not state["ready"] and not state["stale"] and state["map"] is None
    with pytest.raises(MapNotReady, match="no map of 'offline-concepts' yet"):
        project.map_points()
    first = project.map2d(params=FAST)
    n = 20
    assert first["computed"] and first["points"] == first["total"] == n and calls == [n]
    assert (project.paths.data_dir / "maps").is_dir()
    again = project.map2d(params=FAST)
    assert again["computed"] is False and calls == [n]  # the second call does not run UMAP
    assert project.map_state()["ready"]
    pts = project.map_points()
    assert len(pts["path"]) == n and "animaux/chat.jpg" in pts["path"]
    assert pts["folders"] == sorted({p.split("/")[0] for p in pts["path"]})

    # a new image, re-indexed: the generation moves on, the map is stale and computed again
    generation = project.catalog.generation("offline-concepts")
    with Image.open(project.paths.images_dir / "animaux" / "chat.jpg") as im:
        im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(project.paths.images_dir / "chat-miroir.jpg")
    project.index()
    assert project.catalog.generation("offline-concepts") > generation
    state = project.map_state()
    assert state["stale"] and not state["ready"] and state["map"]["generation"] == generation
    with pytest.raises(MapNotReady, match="before the catalog last changed"):
        project.map_points()
    third = project.map2d(params=FAST)
    assert third["computed"] and third["points"] == n + 1 and len(calls) == 2
    assert "chat-miroir.jpg" in project.map_points()["path"]


def test_the_map_job_and_a_text_query(project, monkeypatch):
    monkeypatch.setenv("VITRINE_HOME", str(project.paths.project_dir.parent))
    progress = []
    ctx = SimpleNamespace(  # what the handler reads of its JobContext, outside a server
        services=None, cancel_event=threading.Event(), progress=lambda stage, done=0, total=0: progress.append(stage)
    )
    result = run_map_job(ctx, {"project": project.name, "model": None, "umap": {"n_neighbors": 5, "n_epochs": 30}})
    assert result["computed"] and result["kind"] == "map" and result["points"] == 20
    assert progress[0] == "read" and "umap" in progress
    assert map_target(project.name, "offline-concepts") == f"{project.name}/map/offline-concepts"
    placed = project.map_query("a cat", k=3)
    assert placed["space"] == "concepts"  # searched in the text space, placed on the image map
    assert placed["neighbours"][0]["path"] == "animaux/chat.jpg"
    pts = project.map_points()
    row = pts["path"].index("animaux/chat.jpg")
    assert placed["neighbours"][0]["x"] == pts["x"][row]
    xs = [nb["x"] for nb in placed["neighbours"]]
    assert min(xs) - 1e-3 <= placed["x"] <= max(xs) + 1e-3  # among its neighbours
    colours = project.map_colors("cluster", clusters=3)
    assert len(colours["codes"]) == 20 and sum(colours["counts"]) == 20
    assert np.isfinite(pts["x"]).all()


def test_a_project_not_indexed(fresh_demo):
    p = vitrine.open_project(fresh_demo)
    with pytest.raises(NotFound, match="has not been indexed yet"):
        p.map_state()
    with pytest.raises(NotFound, match="has not been indexed yet"):
        p.map2d()
    p.close()
