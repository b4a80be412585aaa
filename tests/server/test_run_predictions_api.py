"""GET /api/v1/runs/{id}/predictions: the images of one confusion-matrix cell with their predicted
probabilities, sorted and paged; bad input as a precise 4xx; a run evaluated before predictions
were kept; and a dataset's hidden split, which members never see through a run's predictions
(ownership of the route itself is in test_authorization.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from argon2 import profiles
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curate_helpers import CLASSES, evaluate_by_hand, make_pets, shared  # noqa: E402

from vitrine.auth import passwords  # noqa: E402
from vitrine.core.workspace import Workspace  # noqa: E402
from vitrine.runs import Run  # noqa: E402
from vitrine.server.app import create_app  # noqa: E402

tiny_model = shared.tiny_model  # the fixture: a small deterministic colour embedder


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("predictions-api")
    make_pets(root)
    evaluate_by_hand(root)
    ws = Workspace(root)
    old = Run.create(ws, "linear-probe", "pets", "offline-concepts", {}, run_id="old-probe")
    old.update(state="done", classes=CLASSES, metrics={"test": {"accuracy": 0.5}})
    (old.dir / "metrics.json").write_text('{"split": "val"}')
    Run.create(ws, "detection", "pets", "ssd", {}, run_id="a-detector").update(state="done")
    with TestClient(create_app(root), raise_server_exceptions=False) as c:
        yield c


def test_one_cell_with_its_probabilities(client):
    r = client.get("/api/v1/runs/probe-pets/predictions", params={"true": "cat", "predicted": "dog"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["split"] == "test" and body["dataset"] == "pets" and body["classes"] == CLASSES
    assert body["total"] == 2 and body["sort"] == "confidence" and (body["offset"], body["limit"]) == (0, 50)
    first, second = body["images"]
    assert first == {
        "path": "cat/test-2.png",
        "true": "cat",
        "predicted": "dog",
        "p_true": 0.15,
        "p_predicted": 0.7,
        "top": [
            {"label": "dog", "probability": 0.7},
            {"label": "cat", "probability": 0.15},
            {"label": "owl", "probability": 0.15},
        ],
    }
    assert second["path"] == "cat/test-3.png" and second["p_predicted"] == 0.55
    # the cell's size is the confusion matrix's count
    matrix = client.get("/api/v1/runs/probe-pets").json()["metrics"]["confusion_matrix"]
    for i, true in enumerate(CLASSES):
        for j, predicted in enumerate(CLASSES):
            got = client.get("/api/v1/runs/probe-pets/predictions", params={"true": true, "predicted": predicted})
            assert got.json()["total"] == matrix[i][j], (true, predicted)


def test_rows_columns_sorting_and_paging(client):
    url = "/api/v1/runs/probe-pets/predictions"
    everything = client.get(url).json()
    assert everything["total"] == 12 and len(everything["images"]) == 12
    column = client.get(url, params={"predicted": "dog"}).json()
    assert column["total"] == 5 and {im["true"] for im in column["images"]} == {"cat", "dog"}
    probs = [im["p_predicted"] for im in column["images"]]
    assert probs == sorted(probs, reverse=True)
    by_name = client.get(url, params={"true": "owl", "sort": "name"}).json()["images"]
    assert [im["path"] for im in by_name] == [f"owl/test-{i}.png" for i in range(4)]
    least = client.get(url, params={"sort": "p_true", "limit": 3}).json()["images"]
    assert [im["path"] for im in least] == ["cat/test-2.png", "dog/test-3.png", "cat/test-3.png"]  # .15 .175 .225
    page = client.get(url, params={"sort": "name", "offset": 10, "limit": 5}).json()
    assert page["total"] == 12 and [im["path"] for im in page["images"]] == ["owl/test-2.png", "owl/test-3.png"]


@pytest.mark.parametrize(
    "url, status, words",
    [
        ("/api/v1/runs/probe-pets/predictions?true=zebra", 400, "true='zebra' is not a class of run 'probe-pets'"),
        ("/api/v1/runs/probe-pets/predictions?predicted=", 422, "predicted"),
        ("/api/v1/runs/probe-pets/predictions?sort=size", 422, "sort"),
        ("/api/v1/runs/probe-pets/predictions?limit=0", 422, "limit"),
        ("/api/v1/runs/probe-pets/predictions?limit=501", 422, "limit"),
        ("/api/v1/runs/probe-pets/predictions?offset=-1", 422, "offset"),
        ("/api/v1/runs/nope/predictions", 404, "no run 'nope'"),
        ("/api/v1/runs/a-detector/predictions", 400, "is a detection run"),
    ],
)
def test_bad_input_is_a_precise_4xx(client, url, status, words):
    r = client.get(url)
    assert r.status_code == status, r.text
    assert words in r.text


def test_a_run_evaluated_before_predictions_were_kept(client):
    r = client.get("/api/v1/runs/old-probe/predictions")
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "no_predictions" and "evaluated before they were kept" in error["message"]
    assert error["hint"] == (
        "evaluate it again: `vitrine eval old-probe --split val` (or POST /api/v1/runs/old-probe/evaluate)"
    )


def wait_job(client, job_id: str, timeout: float = 60.0) -> dict:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job['state']}")


def test_evaluating_again_keeps_the_predictions(tmp_path, tiny_model):
    """A real linear probe (a tiny colour embedder: the numbers test the code path) whose
    predictions.csv is removed, as for a run evaluated before they were kept; the evaluate job
    writes it again."""
    from vitrine.train.classification.linear_probe import train_linear_probe

    ws, _ = shared.saved_dataset(tmp_path)
    run = train_linear_probe(ws, "colours", embedding_model=shared.TINY, run_id="colours-probe")
    (run.dir / "predictions.csv").unlink()
    with TestClient(create_app(ws.root), raise_server_exceptions=False) as client:
        assert client.get("/api/v1/runs/colours-probe/predictions").json()["error"]["code"] == "no_predictions"
        r = client.post("/api/v1/runs/colours-probe/evaluate", json={})
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["id"])
        assert job["state"] == "done", job
        assert job["kind"] == "evaluate-run" and job["result"]["split"] == "test" and job["result"]["n"] == 9
        cell = client.get("/api/v1/runs/colours-probe/predictions", params={"true": "red", "predicted": "red"}).json()
        assert cell["total"] == 3 and cell["split"] == "test"
        # on the val split this time: the page then browses that split
        job = wait_job(client, client.post("/api/v1/runs/colours-probe/evaluate", json={"split": "val"}).json()["id"])
        assert job["state"] == "done" and client.get("/api/v1/runs/colours-probe/predictions").json()["split"] == "val"
        for body, status, words in (
            ({"split": "nope"}, 422, "split"),
            ({"split": "train", "extra": 1}, 202, ""),  # unknown fields are ignored, as elsewhere
        ):
            r = client.post("/api/v1/runs/colours-probe/evaluate", json=body)
            assert r.status_code == status and words in r.text, r.text
            if status == 202:
                wait_job(client, r.json()["id"])


def test_evaluate_refuses_what_it_cannot_do(client):
    for url, body, status, words in (
        ("/api/v1/runs/a-detector/evaluate", {}, 400, "only a trained classifier is evaluated again"),
        ("/api/v1/runs/probe-pets/evaluate", {"split": "val"}, 400, "dataset 'pets' has no 'val' samples"),
        ("/api/v1/runs/nope/evaluate", {}, 404, "no run 'nope'"),
    ):
        r = client.post(url, json=body)
        assert r.status_code == status and words in r.text, (url, r.text)


# ------------------------------------------------------------------------------ hidden splits
@pytest.fixture
def members(tmp_path):
    """pets is alice's with its test split hidden, shared with bob; bob's run is scored on the
    hidden test split, alice's on every split (``all``)."""
    passwords.use_profile(profiles.CHEAPEST)
    make_pets(tmp_path)
    evaluate_by_hand(tmp_path, "bob-probe")
    evaluate_by_hand(tmp_path, "alice-test")
    evaluate_by_hand(tmp_path, "alice-all", split="all")
    evaluate_by_hand(tmp_path, "alice-private", split="train")  # hers alone, on the group board
    app = create_app(tmp_path, multi_user=True, database_url=f"sqlite:///{tmp_path / 'server.db'}")
    store = app.state.auth.store
    users = {n: store.add_user(n, f"{n}-password", role="member") for n in ("alice", "bob", "carol")}
    store.claim("dataset", "pets", users["alice"].id)
    store.share("dataset", "pets", "bob")
    store.claim("run", "bob-probe", users["bob"].id)
    store.claim("run", "alice-private", users["alice"].id)
    for run_id in ("alice-test", "alice-all"):
        store.claim("run", run_id, users["alice"].id)
        store.share("run", run_id, "bob")
    clients = {n: TestClient(app, headers={"authorization": f"Bearer {store.create_token(n, 't')[1]}"}) for n in users}
    r = clients["alice"].put("/api/v1/datasets/pets/board", json={"hidden": ["test"], "group": True})
    assert r.status_code == 200, r.text
    yield clients
    app.state.vitrine.close()
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


def test_members_never_see_a_hidden_split_through_predictions(members):
    # bob's own run, scored on the hidden split: its images and labels are the owner's
    r = members["bob"].get("/api/v1/runs/bob-probe/predictions", params={"true": "cat"})
    assert r.status_code == 403, r.text
    assert "test split of dataset 'pets' is hidden" in r.json()["error"]["message"] and "cat/" not in r.text
    assert members["alice"].get("/api/v1/runs/bob-probe/predictions").status_code == 404  # bob's run: not hers
    # alice's run on the hidden split, shared with bob: hers to browse, not his
    assert members["alice"].get("/api/v1/runs/alice-test/predictions").json()["total"] == 12
    r = members["bob"].get("/api/v1/runs/alice-test/predictions", params={"true": "cat", "predicted": "dog"})
    assert r.status_code == 403 and "cat/" not in r.text
    # a run scored on every split shows bob only the images outside the hidden split: none here
    shown = members["bob"].get("/api/v1/runs/alice-all/predictions").json()
    assert shown["total"] == 0 and "test-" not in str(shown["images"])
    assert members["alice"].get("/api/v1/runs/alice-all/predictions").json()["total"] == 12
    # carol may read neither the run nor the dataset
    assert members["carol"].get("/api/v1/runs/alice-all/predictions").status_code == 404
    # a group board shows bob every run scored on the dataset, not their images: those stay the runs' owners'
    board = members["bob"].get("/api/v1/leaderboards/pets").json()
    assert "alice-private" in str(board)
    assert members["bob"].get("/api/v1/runs/alice-private/predictions").status_code == 404
    assert members["alice"].get("/api/v1/runs/alice-private/predictions").json()["total"] == 12
    # nor may bob evaluate his run on the hidden split (or on every split, which includes it)
    for split in ("test", "all"):
        r = members["bob"].post("/api/v1/runs/bob-probe/evaluate", json={"split": split})
        assert r.status_code == 403 and "hidden" in r.text, r.text
