"""The sweeps API: a sweep submitted over HTTP runs as a background job (its Ray driver a child
process) to done; it can be cancelled; bad requests are 4xx with the engine's message; a member
never sees another member's sweep. Real Ray Tune, random-initialised models on 32 px images:
these tests check the machinery, never quality."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
from argon2 import profiles
from fastapi.testclient import TestClient

from vitrine.auth import passwords
from vitrine.core.workspace import Workspace
from vitrine.server.app import create_app

_spec = importlib.util.spec_from_file_location(
    "sweep_datasets", Path(__file__).resolve().parents[1] / "experiments" / "conftest.py"
)
_datasets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_datasets)
make_colours = _datasets.make_colours  # the sweep tests' dataset: three classes of colour patches, 32 px

TINY = {"pretrained": False, "batch_size": 8, "early_stopping_patience": None, "cache_mb": 64}


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    make_colours(tmp_path / "images").save(Workspace(root).dataset_dir("colours"))
    return root


def _wait(client: TestClient, sweep_id: str, states: tuple[str, ...], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/sweeps/{sweep_id}").json()
        if body["job"] and body["job"]["state"] in states:
            return body
        time.sleep(0.5)
    raise AssertionError(f"sweep {sweep_id} job not in {states} after {timeout} s: {body}")


@pytest.mark.slow
def test_a_sweep_submitted_over_http_runs_to_done(tmp_path):
    root = _root(tmp_path)
    with TestClient(create_app(root), raise_server_exceptions=False) as client:
        r = client.post(
            "/api/v1/sweeps",
            json={
                "task": "classify",
                "dataset": "colours",
                "grid": {"image_size": [32, 40]},
                "base": {**TINY, "epochs": 1},
                "cpus_per_trial": 1,
                "name": "api",
            },
        )
        assert r.status_code == 202, r.text
        assert r.json()["sweep_id"] == "api" and r.json()["trials"] == 2 and r.json()["job"]["kind"] == "sweep"
        body = _wait(client, "api", ("done", "failed", "cancelled"))
        assert body["job"]["state"] == "done", body
        assert body["state"] == "done" and body["counts"]["done"] == 2
        assert body["best"]["metric"] == max(t["metric"] for t in body["trials"])
        assert {t["run_id"] for t in body["trials"]} <= {r["id"] for r in client.get("/api/v1/runs").json()}
        listed = client.get("/api/v1/sweeps").json()
        assert [s["id"] for s in listed] == ["api"] and listed[0]["counts"]["done"] == 2
        job = client.get(f"/api/v1/jobs/{r.json()['job']['id']}").json()
        assert job["done"] == job["total"] == 2 and "2/2 trials finished" in job["message"]
        assert job["result"]["best"]["run_id"] in {"api-t000", "api-t001"}
        # ended: nothing to cancel
        r = client.post("/api/v1/sweeps/api/cancel")
        assert r.status_code == 409 and "nothing to cancel" in r.json()["error"]["message"]


@pytest.mark.slow
def test_cancelling_a_sweep_over_http_stops_its_trials(tmp_path):
    root = _root(tmp_path)
    with TestClient(create_app(root), raise_server_exceptions=False) as client:
        r = client.post(
            "/api/v1/sweeps",
            json={
                "task": "classify",
                "dataset": "colours",
                "grid": {"lr": [0.003, 0.01]},
                "base": {**TINY, "epochs": 40},
                "cpus_per_trial": 2,
                "name": "stop",
            },
        )
        assert r.status_code == 202, r.text
        run = root / "runs" / "stop-t000" / "run.json"
        deadline = time.monotonic() + 240
        while not (run.is_file() and (json.loads(run.read_text()).get("progress") or {}).get("epoch", 0) >= 1):
            assert time.monotonic() < deadline, "the first trial never trained an epoch"
            time.sleep(0.3)
        r = client.post("/api/v1/sweeps/stop/cancel")
        assert r.status_code == 200 and r.json()["cancel_requested"] is True
        body = _wait(client, "stop", ("done", "failed", "cancelled"))
        assert body["job"]["state"] == "cancelled" and body["state"] == "cancelled", body
        assert body["trials"][0]["state"] == "cancelled"
        assert json.loads(run.read_text())["state"] == "cancelled"
        assert json.loads(run.read_text())["progress"]["epoch"] < 40


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"task": "classify", "dataset": "colours", "grid": {"nosuch": [1, 2]}}, 400, "unknown option 'nosuch'"),
        ({"task": "classify", "dataset": "colours", "grid": {"image_size": ["big"]}}, 400, "not an integer"),
        ({"task": "classify", "dataset": "colours", "random": {"lr": "gauss:1"}}, 400, "cannot read the distribution"),
        ({"task": "classify", "dataset": "nothing-here"}, 404, "no dataset 'nothing-here'"),
        ({"task": "detect", "dataset": "nothing-here"}, 404, "no dataset folder"),
        ({"task": "classify", "dataset": "colours", "name": "a/b"}, 400, "sweep name"),
        ({"task": "segment", "dataset": "colours"}, 422, ""),
        ({"task": "classify", "dataset": "colours", "epochs": 3}, 422, ""),
        # a file on the server is the command line's to name, never a request's
        ({"task": "classify", "dataset": "colours", "base": {"weights": "/etc/passwd"}}, 400, "cannot be set through"),
        ({"task": "detect", "dataset": "colours", "grid": {"weights": ["a.pt", "b.pt"]}}, 400, "weights cannot be set"),
    ],
)
def test_bad_sweeps_are_4xx_with_the_engines_message(tmp_path, body, status, words):
    with TestClient(create_app(_root(tmp_path)), raise_server_exceptions=False) as client:
        r = client.post("/api/v1/sweeps", json=body)
        assert r.status_code == status, r.text
        if words:
            assert words in r.json()["error"]["message"]
        assert client.get("/api/v1/sweeps").json() == []  # nothing made
        assert client.get("/api/v1/sweeps/nothing").status_code == 404


def test_the_options_a_sweep_may_range_over(tmp_path):
    """What the leaderboard page's sweep form offers: every option of each trainer's config, typed,
    with its default and, where the config checks a list, its choices; never a server path."""
    from vitrine.models.detectors.torchvision_family import ARCHS
    from vitrine.train.classification.config import FinetuneConfig
    from vitrine.train.detection.config import DetectionConfig

    with TestClient(create_app(_root(tmp_path)), raise_server_exceptions=False) as client:
        r = client.get("/api/v1/sweep-options")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"classify", "detect"}
    for task, cls in (("classify", FinetuneConfig), ("detect", DetectionConfig)):
        names = [o["name"] for o in body[task]]
        assert "weights" not in names
        assert set(names) == set(cls.__dataclass_fields__) - {"weights"}
    classify = {o["name"]: o for o in body["classify"]}
    assert classify["image_size"] == {"name": "image_size", "type": "int", "optional": False, "default": 224}
    assert classify["max_minutes"]["type"] == "float" and classify["max_minutes"]["optional"] is True
    assert "efficientnet-lite0" in classify["backbone"]["choices"]
    detect = {o["name"]: o for o in body["detect"]}
    assert detect["arch"]["choices"] == list(ARCHS) and detect["arch"]["default"] == "maskrcnn"
    assert detect["aspect_ratios"]["type"] == "list of float" and detect["aspect_ratios"]["default"] == [0.5, 1.0, 2.0]


def test_the_list_names_the_board_each_sweeps_trials_land_on(tmp_path):
    """A detection sweep's runs go by the name of their annotation path (its dataset folder, or a
    COCO file's stem): the list says so, for the leaderboard page to show the sweeps of its board."""
    from vitrine.experiments.sweep import Sweep, SweepSpec

    root = _root(tmp_path)
    folder = root / "datasets" / "scenes"
    (folder / "annotations").mkdir(parents=True)
    (folder / "annotations" / "instances.json").write_text("{}")
    (folder / "labels.json").write_text("{}")
    ws = Workspace(root)
    made = {
        "in-folder": str(folder),
        "in-annotations": str(folder / "annotations" / "instances.json"),
        "a-coco-file": str(folder / "labels.json"),
    }
    for name, path in made.items():
        Sweep.create(ws, SweepSpec.build("detect", path, grid={"arch": ["fasterrcnn", "fcos"]}, name=name))
    Sweep.create(ws, SweepSpec.build("classify", "colours", grid={"lr": [0.01, 0.1]}, name="classes"))
    with TestClient(create_app(root), raise_server_exceptions=False) as client:
        listed = {s["id"]: s for s in client.get("/api/v1/sweeps").json()}
    boards = {k: v["board"] for k, v in listed.items()}
    assert boards == {"in-folder": "scenes", "in-annotations": "scenes", "a-coco-file": "labels", "classes": "colours"}


def test_a_member_cannot_see_another_members_sweep(tmp_path):
    """alice's sweep (made through the API, its job replaced by one that never starts Ray) is hers:
    bob neither lists, reads nor cancels it; the admin does."""
    from vitrine.jobs import register_kind
    from vitrine.jobs.kinds import get_kind

    passwords.use_profile(profiles.CHEAPEST)
    saved = get_kind("sweep")
    register_kind("sweep", _noop, description="no-op (authorization test)")
    try:
        app = create_app(_root(tmp_path), multi_user=True)
        store = app.state.auth.store
        for name in ("root", "alice", "bob"):
            store.add_user(name, f"{name}-password", role="admin" if name == "root" else "member")
        tokens = {n: store.create_token(n, "tests")[1] for n in ("root", "alice", "bob")}
        with TestClient(app, raise_server_exceptions=False) as client:

            def call(who, method, url, **kw):
                return client.request(method, url, headers={"authorization": f"Bearer {tokens[who]}"}, **kw)

            r = call(
                "alice",
                "POST",
                "/api/v1/sweeps",
                json={"task": "classify", "dataset": "colours", "grid": {"lr": [0.01, 0.1]}, "name": "alices"},
            )
            # the dataset was found on disk (the admins'): alice may not use it
            assert r.status_code == 404, r.text
            store.claim("dataset", "colours", store.user("alice").id)
            r = call(
                "alice",
                "POST",
                "/api/v1/sweeps",
                json={"task": "classify", "dataset": "colours", "grid": {"lr": [0.01, 0.1]}, "name": "alices"},
            )
            assert r.status_code == 202, r.text
            assert store.access("sweep", "alices").owner == "alice"
            assert store.access("run", "alices-t000").owner == "alice"
            assert store.access("job", r.json()["job"]["id"]).owner == "alice"
            assert call("alice", "GET", "/api/v1/sweeps/alices").json()["owner"] == "alice"
            assert [s["id"] for s in call("alice", "GET", "/api/v1/sweeps").json()] == ["alices"]
            assert call("bob", "GET", "/api/v1/sweeps").json() == []
            for method, url in (("GET", "/api/v1/sweeps/alices"), ("POST", "/api/v1/sweeps/alices/cancel")):
                r = call("bob", method, url)
                assert r.status_code == 404 and r.json()["error"]["message"] == "no sweep 'alices'", r.text
            assert call("root", "GET", "/api/v1/sweeps/alices").status_code == 200
            store.set_access("sweep", "alices", visibility="public")
            assert call("bob", "GET", "/api/v1/sweeps/alices").status_code == 200
            assert call("bob", "POST", "/api/v1/sweeps/alices/cancel").status_code == 403  # read, not change
        app.state.vitrine.close()
    finally:
        register_kind("sweep", saved.handler, resumable=saved.resumable, concurrency=saved.concurrency)
        passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


def _noop(ctx, params: dict) -> dict:
    return {"ok": True}
