"""The jobs of the REST API on both databases (the default suite runs these on PostgreSQL too;
the whole API suite runs there with VITRINE_TEST_DATABASE=postgresql): an index job through the
API, its progress and result, and the jobs still listed after the server restarts."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from vitrine.server.app import create_app

API = "/api/v1"


def _wait(c: TestClient, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"{API}/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_index_job_through_the_api_and_after_a_restart(fresh_demo, db_url):
    name = fresh_demo.name
    with TestClient(create_app(fresh_demo.parent, database_url=db_url)) as c:
        assert c.get(f"{API}/jobs").json() == []
        r = c.post(f"{API}/projects/{name}/index", data={"model": "offline-concepts"})
        assert r.status_code == 202, r.text
        job = _wait(c, r.json()["id"])
        assert job["state"] == "done", job
        assert job["result"]["embedded"] == 20 and job["params"] == {"project": name, "model": "offline-concepts"}
        assert job["attempts"] == 1 and job["total"] > 0 and job["done"] == job["total"]
        assert c.get(f"{API}/projects/{name}").json()["job"]["id"] == job["id"]

    # a new server on the same database: the finished job is still there, nothing runs again
    with TestClient(create_app(fresh_demo.parent, database_url=db_url)) as c:
        jobs = c.get(f"{API}/jobs", params={"project": name}).json()
        assert [(j["id"], j["state"], j["attempts"]) for j in jobs] == [(job["id"], "done", 1)]
        again = _wait(c, c.post(f"{API}/projects/{name}/index").json()["id"])
        assert again["state"] == "done" and again["result"]["unchanged"] == 20
        assert [j["id"] for j in c.get(f"{API}/jobs").json()] == [again["id"], job["id"]]
        r = c.post(f"{API}/jobs/{job['id']}/cancel")
        assert r.status_code == 200 and r.json()["state"] == "done"
