"""``GET /api/v1/leaderboards/{dataset}``: the board of one dataset, per split fingerprint, with the
runs each member may read (their own, shared with them, public) and each run's owner."""

from __future__ import annotations

import pytest
from argon2 import profiles
from fastapi.testclient import TestClient

from vitrine.auth import passwords
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.runs import Run
from vitrine.server.app import create_app

FP_A, FP_B = "sha256:aaaaaaaaaaaaaaaa", "sha256:bbbbbbbbbbbbbbbb"


def fabricate(ws: Workspace, run_id: str, accuracy: float, latency: float, fingerprint: str = FP_A) -> None:
    test = {"split": "test", "accuracy": accuracy, "fingerprint": fingerprint}
    metrics = {"test": test, "speed": {"latency_ms": latency, "images_per_second": 100.0}}
    run = Run.create(ws, "finetune", "shapes", "efficientnet-lite0", {"image_size": 64}, run_id=run_id)
    run.update(state="done", metrics=metrics)


@pytest.fixture
def server(tmp_path):
    passwords.use_profile(profiles.CHEAPEST)
    ws = Workspace(tmp_path)
    ClassificationDataset(name="shapes", root=tmp_path, samples=[Sample("a.png", "a", "test")]).save(
        ws.dataset_dir("shapes")
    )
    ClassificationDataset(name="empty", root=tmp_path, samples=[Sample("a.png", "a", "test")]).save(
        ws.dataset_dir("empty")
    )
    for run_id, acc, ms, fp in (
        ("alice-private", 0.9, 10.0, FP_A),
        ("alice-shared", 0.8, 5.0, FP_A),
        ("alice-public", 0.7, 20.0, FP_B),
        ("bob-own", 0.6, 1.0, FP_A),
    ):
        fabricate(ws, run_id, acc, ms, fp)
    app = create_app(tmp_path, multi_user=True, database_url=f"sqlite:///{tmp_path / 'server.db'}")
    store = app.state.auth.store
    users = {
        n: store.add_user(n, f"{n}-password", role="admin" if n == "root" else "member")
        for n in ("root", "alice", "bob")
    }
    for run_id in ("alice-private", "alice-shared", "alice-public"):
        store.claim("run", run_id, users["alice"].id)
    store.claim("run", "bob-own", users["bob"].id)
    store.share("run", "alice-shared", "bob")
    store.set_access("run", "alice-public", visibility="public")
    for name in ("shapes", "empty"):
        store.claim("dataset", name, users["alice"].id)
        store.set_access("dataset", name, visibility="public")
    clients = {
        n: TestClient(app, headers={"authorization": f"Bearer {store.create_token(n, 'tests')[1]}"}) for n in users
    }
    yield clients
    app.state.vitrine.close()
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


def ranked(body: dict) -> list[list[str]]:
    return [[row["id"] for row in group["rows"]] for group in body["groups"]]


def test_a_member_sees_their_own_runs_and_those_shared_with_them(server):
    r = server["bob"].get("/api/v1/leaderboards/shapes")
    assert r.status_code == 200, r.text
    body = r.json()
    assert ranked(body) == [["alice-shared", "bob-own"], ["alice-public"]]  # never ranked across fingerprints
    assert "alice-private" not in r.text
    assert body["primary_metric"] == "accuracy" and "never against each other" in body["note"]
    first = body["groups"][0]
    assert first["fingerprint"] == FP_A and first["primary_metric"] == "accuracy"
    assert [(row["rank"], row["pareto"], row["owner"]) for row in first["rows"]] == [
        (1, True, "alice"),
        (2, True, "bob"),
    ]

    everything = server["alice"].get("/api/v1/leaderboards/shapes", params={"sort": "latency_ms"}).json()
    assert ranked(everything) == [["alice-shared", "alice-private"], ["alice-public"]]  # bob's own is his
    assert ranked(server["root"].get("/api/v1/leaderboards/shapes").json())[0] == [
        "alice-private",
        "alice-shared",
        "bob-own",
    ]
    rows = server["root"].get("/api/v1/leaderboards/shapes").json()["groups"][0]["rows"]
    assert {row["id"]: row["pareto"] for row in rows} == {"alice-private": True, "alice-shared": True, "bob-own": True}


def test_leaderboard_answers_4xx_for_what_a_user_can_send(server):
    client = server["bob"]
    assert client.get("/api/v1/leaderboards/empty").json()["groups"] == []  # exists, no runs: empty board
    missing = client.get("/api/v1/leaderboards/nothing-here")
    assert missing.status_code == 404
    admin_missing = server["root"].get("/api/v1/leaderboards/nothing-here")
    assert admin_missing.status_code == 404 and "no dataset" in admin_missing.json()["error"]["message"]
    bad_sort = client.get("/api/v1/leaderboards/shapes", params={"sort": "bogus"})
    assert bad_sort.status_code == 400 and "accuracy" in bad_sort.json()["error"]["hint"]
    assert client.get("/api/v1/leaderboards/shapes", params={"task": "segment"}).status_code == 422
    assert client.get("/api/v1/leaderboards/shapes", params={"task": "detect"}).json()["groups"] == []
    assert TestClient(client.app).get("/api/v1/leaderboards/shapes").status_code == 401


def test_a_board_of_runs_only_exists_for_who_may_read_its_runs(server, tmp_path):
    """A dataset name with no workspace dataset (an imported detector scored on a COCO file): a
    member sees its board through the runs they may read, and a 404 (no hint of the others' runs)
    when they may read none; a private workspace dataset stays hidden, runs or not."""
    ws = Workspace(tmp_path)
    app_store = server["root"].app.state.auth.store
    for run_id, owner in (("coco-alice", "alice"), ("coco-bob", "bob")):
        run = Run.create(ws, "detection", "coco-only", "yolo.onnx", {}, run_id=run_id, extra={"task": "detection"})
        metrics = {"test": {"split": "test", "bbox_map50": 0.5, "fingerprint": FP_A}, "speed": {"latency_ms": 3.0}}
        run.update(state="done", metrics=metrics)
        app_store.claim("run", run_id, app_store.user(owner).id)
    assert ranked(server["bob"].get("/api/v1/leaderboards/coco-only").json()) == [["coco-bob"]]
    assert ranked(server["alice"].get("/api/v1/leaderboards/coco-only").json()) == [["coco-alice"]]
    assert len(ranked(server["root"].get("/api/v1/leaderboards/coco-only").json())[0]) == 2
    app_store.set_access("dataset", "empty", visibility="private")
    hidden = server["bob"].get("/api/v1/leaderboards/empty")
    assert hidden.status_code == 404 and "no dataset" in hidden.json()["error"]["message"]
    page = server["bob"].get("/leaderboards/coco-only")
    assert page.status_code == 200 and "coco-only" in page.text
    assert server["bob"].get("/leaderboards/no-such-board").status_code == 404
