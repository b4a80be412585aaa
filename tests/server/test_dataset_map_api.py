"""The routes of a dataset's 2-D map: the job started and followed, the points and colours as
columns, bad input as a precise 4xx, and a member of a dataset with a hidden split who gets a map
of the other splits only, cached apart (ownership of the routes: test_authorization.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from argon2 import profiles
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curate_helpers import CLASSES, make_pets  # noqa: E402

from vitrine.auth import passwords  # noqa: E402
from vitrine.server.app import create_app  # noqa: E402

FAST = {"n_neighbors": 3, "n_epochs": 20}
URL = "/api/v1/datasets/pets/map"


def wait(client, job: dict, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/api/v1/jobs/{job['id']}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"map job still {job['state']}")


@pytest.fixture
def members(tmp_path):
    """pets is alice's, its test split hidden, shared with bob."""
    passwords.use_profile(profiles.CHEAPEST)
    make_pets(tmp_path)
    app = create_app(tmp_path, multi_user=True, database_url=f"sqlite:///{tmp_path / 'server.db'}")
    store = app.state.auth.store
    users = {n: store.add_user(n, f"{n}-password", role="member") for n in ("alice", "bob")}
    store.claim("dataset", "pets", users["alice"].id)
    store.share("dataset", "pets", "bob")
    clients = {n: TestClient(app, headers={"authorization": f"Bearer {store.create_token(n, 't')[1]}"}) for n in users}
    r = clients["alice"].put("/api/v1/datasets/pets/board", json={"hidden": ["test"], "group": True})
    assert r.status_code == 200, r.text
    yield clients
    app.state.vitrine.close()
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


@pytest.mark.slow  # UMAP's first compile in the process (about 10 s) and two maps
def test_the_owner_maps_everything_a_member_never_the_hidden_split(members):
    alice, bob = members["alice"], members["bob"]
    n = 6 * len(CLASSES)
    assert alice.get(URL).json()["ready"] is False
    r = alice.get(f"{URL}/points")
    assert r.status_code == 409 and "no map of 'offline-concepts' yet" in r.json()["error"]["message"]
    r = alice.post(URL, json=FAST)
    assert r.status_code == 202, r.text
    job = wait(alice, r.json())
    assert job["state"] == "done" and job["kind"] == "map", job
    assert job["result"]["computed"] and job["result"]["points"] == n and job["result"]["dataset"] == "pets"
    state = alice.get(URL).json()
    assert state["ready"] and state["job"]["id"] == job["id"] and state["map"]["params"]["n_neighbors"] == 3
    again = wait(alice, alice.post(URL, json=FAST).json())
    assert again["result"]["computed"] is False

    pts = alice.get(f"{URL}/points").json()
    assert {"x", "y", "id", "path", "label", "labels", "split", "splits", "points", "total"} <= set(pts)
    assert len(pts["x"]) == len(pts["path"]) == len(pts["label"]) == n and pts["splits"] == ["test", "train"]
    assert all(p.startswith(pts["labels"][c] + "/") for c, p in zip(pts["label"], pts["path"], strict=True))
    colours = alice.get(f"{URL}/colors", params={"by": "split"}).json()
    assert colours["categories"] == ["test", "train"] and colours["counts"] == [4 * len(CLASSES), 2 * len(CLASSES)]
    clusters = alice.get(f"{URL}/colors", params={"by": "cluster", "clusters": 3}).json()
    assert len(clusters["codes"]) == n and len(clusters["categories"]) == 3

    # bob's view has no test split: alice's map is not his; his own maps the train images only
    mine = bob.get(URL).json()
    assert mine["ready"] is False and mine["job"] is None and mine["map"] is None
    assert bob.get(f"{URL}/points").status_code == 409
    job = wait(bob, bob.post(URL, json=FAST).json())
    assert job["state"] == "done" and job["result"]["points"] == job["result"]["total"] == 2 * len(CLASSES), job
    r = bob.get(f"{URL}/points")
    assert r.status_code == 200 and "test-" not in r.text and "test" not in r.json()["splits"]
    assert bob.get(f"{URL}/colors", params={"by": "split"}).json()["categories"] == ["train"]
    assert alice.get(URL).json()["job"]["id"] != job["id"]  # each sees their own job
    assert len(alice.get(f"{URL}/points").json()["path"]) == n  # and the owner's map is unchanged


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "words"),
    [
        ("GET", "/api/v1/datasets/nope/map", None, 404, "nope"),
        ("GET", f"{URL}?model=no-such", None, 400, "no-such"),
        ("GET", f"{URL}/colors?by=folder", None, 422, "by"),
        ("GET", f"{URL}/colors?by=cluster&clusters=1", None, 422, "clusters"),
        ("POST", URL, {"n_neighbors": 1}, 422, "n_neighbors"),
        ("POST", URL, {"model": "ssd-mobilenet-v2-coco"}, 400, "not an embedding model"),
        ("GET", f"{URL}/points", None, 409, "no map"),
    ],
)
def test_bad_input_is_a_precise_4xx(members, method, url, body, status, words):
    r = members["alice"].request(method, url, json=body)
    assert r.status_code == status and words in r.text, r.text
