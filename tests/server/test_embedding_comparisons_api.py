"""The embedding-comparison API end to end on a tiny dataset with a tiny random-weight model: the
job, its runs on the leaderboard, a member's view without the hidden split, and bad input as a
precise 4xx or 503 before any job exists (ownership: test_authorization.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from argon2 import profiles
from fastapi.testclient import TestClient
from PIL import Image

from vitrine.auth import passwords
from vitrine.server.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_submissions_api import make_workspace, wait_for_job  # noqa: E402

TINY = "timm:test_vit?weights=random"


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    passwords.use_profile(profiles.CHEAPEST)
    make_workspace(tmp_path)
    from vitrine.collection.layout import init_project

    paths = init_project(tmp_path / "proj", keywords={"red": "a red square"})
    (paths.images_dir / "red").mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 0, 0)).save(paths.images_dir / "red" / "a.png")
    app = create_app(tmp_path, multi_user=True, database_url=f"sqlite:///{tmp_path / 'server.db'}")
    store = app.state.auth.store
    users = {n: store.add_user(n, f"{n}-password", role="member") for n in ("alice", "bob")}
    store.claim("dataset", "fm", users["alice"].id)
    store.share("dataset", "fm", "bob")
    store.claim("project", "proj", users["alice"].id)
    clients = {n: TestClient(app, headers={"authorization": f"Bearer {store.create_token(n, 't')[1]}"}) for n in users}
    r = clients["alice"].put("/api/v1/datasets/fm/board", json={"hidden": ["test"], "group": True})
    assert r.status_code == 200, r.text
    yield app, clients
    app.state.vitrine.close()
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


def test_a_comparison_job_records_runs_on_the_board(world):
    app, clients = world
    r = clients["alice"].post("/api/v1/datasets/fm/embedding-comparisons", json={"models": [TINY], "k": 3})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["board"] == "fm" and len(body["run_ids"]) == 1 and body["job"]["kind"] == "compare-embeddings"
    job = wait_for_job(clients["alice"], body["job"]["id"], timeout=120)
    assert job["state"] == "done", job
    (entry,) = job["result"]["models"]
    assert entry["run_id"] == body["run_ids"][0] and entry["random_weights"] is True
    assert job["result"]["images"] == 8  # the owner sees every split

    board = clients["alice"].get("/api/v1/leaderboards/fm", params={"task": "embedding"}).json()
    (group,) = board["groups"]
    assert group["primary_metric"] == "knn10_accuracy" and group["rows"][0]["id"] == entry["run_id"]
    run = clients["alice"].get(f"/api/v1/runs/{entry['run_id']}").json()["record"]
    assert run["kind"] == "embedding" and run["note"] == "random weights: speed only"

    # bob, a member, compares on his view: the hidden test split is left out, and the run is his
    r = clients["bob"].post("/api/v1/datasets/fm/embedding-comparisons", json={"models": [TINY], "k": 3})
    assert r.status_code == 202, r.text
    job = wait_for_job(clients["bob"], r.json()["job"]["id"], timeout=120)
    assert job["state"] == "done", job
    assert job["params"]["exclude_splits"] == ["test"]
    assert job["result"]["images"] == 4 and job["result"]["hidden_splits_left_out"] == ["test"]
    assert clients["bob"].get(f"/api/v1/runs/{r.json()['run_ids'][0]}").status_code == 200


@pytest.mark.parametrize(
    "url, body, status, words",
    [
        ("/api/v1/datasets/fm/embedding-comparisons", {"models": ["nada"]}, 400, "unknown model 'nada'"),
        ("/api/v1/datasets/fm/embedding-comparisons", {"models": []}, 422, "models"),
        ("/api/v1/datasets/fm/embedding-comparisons", {"models": [TINY], "k": 0}, 422, "k"),
        ("/api/v1/datasets/fm/embedding-comparisons", {"models": [TINY], "limit": 1}, 422, "limit"),
        ("/api/v1/datasets/fm/embedding-comparisons", {"models": ["efficientnet-b0"]}, 400, "not an embedding model"),
        ("/api/v1/datasets/fm/embedding-comparisons", {"models": ["timm:resnet18"]}, 503, "cannot load on this server"),
        ("/api/v1/datasets/nulle/embedding-comparisons", {"models": [TINY]}, 404, "nulle"),
        ("/api/v1/projects/proj/embedding-comparisons", {"models": [TINY]}, 400, "at least 2 classes"),
    ],
)
def test_bad_input_is_refused_before_a_job_exists(world, url, body, status, words):
    app, clients = world
    before = len(app.state.vitrine.jobs.list())
    r = clients["alice"].post(url, json=body)
    assert r.status_code == status, r.text
    assert words in r.text
    assert len(app.state.vitrine.jobs.list()) == before
