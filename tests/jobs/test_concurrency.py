"""A served workbench under load: 20 clients searching the demo project through the HTTP API while
two jobs run at once (a real indexing of another project and a job that writes its progress and
checkpoint several times a second) for about 20 s. No request fails, nothing reports a locked
database, both jobs finish. On SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import cli_helpers as cli  # noqa: E402
import restart_kinds  # noqa: E402, F401
from test_restart import _serve, _wait  # noqa: E402

from vitrine.jobs import JobManager  # noqa: E402
from vitrine.store.db import open_database  # noqa: E402

CLIENTS = 20
SECONDS = 20.0
QUERIES = ["a cat", "a rocket launch", "a cup of coffee", "a horse", "the moon", "text on paper"]


@pytest.mark.slow
def test_twenty_clients_search_while_two_jobs_run(db_url, tmp_path, indexed_demo, demo_source):
    root = tmp_path / "root"
    shutil.copytree(indexed_demo, root / indexed_demo.name)
    fresh = root / "fresh"
    shutil.copytree(demo_source, fresh)
    for f in (fresh / "ontology").glob(f"{demo_source.name}_ontology.txt"):
        f.rename(f.with_name("fresh_ontology.txt"))
    pythonpath = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    env = cli.cli_env(
        VITRINE_DATABASE_URL=db_url,
        VITRINE_JOB_MODULES="restart_kinds",
        PYTHONPATH=pythonpath,
        VITRINE_THROTTLE_BATCH_SECONDS="1.0",  # the indexing lasts a while even on a fast machine
    )
    engine = open_database(db_url, shared=False)
    jobs = JobManager(engine, pool=False)
    log = tmp_path / "server.log"
    server, base = _serve(root, env, log)
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            assert c.get(f"/api/v1/projects/{indexed_demo.name}/search", params={"q": "a cat"}).status_code == 200
            index_job = c.post("/api/v1/projects/fresh/index", data={"model": "offline-concepts"}).json()
        steps = int(SECONDS / 0.1)
        counter = jobs.submit("test-checkpointed", "load", {"run": "load", "steps": steps, "pause": 0.1})

        stop = time.monotonic() + SECONDS
        results: Counter = Counter()
        failures: list[str] = []
        lock = threading.Lock()

        latencies: list[float] = []

        def client(i: int) -> None:
            with httpx.Client(base_url=base, timeout=120) as http:
                n = 0
                while time.monotonic() < stop:
                    n += 1
                    t0 = time.monotonic()
                    try:
                        if n % 5 == 0:
                            r = http.get("/api/v1/jobs")
                        else:
                            r = http.get(
                                f"/api/v1/projects/{indexed_demo.name}/search",
                                params={"q": QUERIES[(i + n) % len(QUERIES)], "k": 5},
                            )
                    except httpx.HTTPError as exc:  # a timeout or a dropped connection is a failure too
                        with lock:
                            failures.append(f"client {i}: {type(exc).__name__}: {exc}")
                        continue
                    with lock:
                        latencies.append(time.monotonic() - t0)
                        results[r.status_code] += 1
                        if r.status_code != 200:
                            failures.append(f"{r.request.url}: {r.status_code} {r.text[:200]}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        overlap = _wait(
            lambda: {jobs.get(index_job["id"]).state, jobs.get(counter.id).state} == {"running"},
            "both jobs running at once",
            SECONDS,
        )
        for t in threads:
            t.join(SECONDS + 120)
        assert overlap
        assert failures == [], failures[:5]
        assert results[200] >= CLIENTS, results

        for job_id in (index_job["id"], counter.id):
            final = jobs.wait(job_id, 300)
            assert final.state == "done", final.to_dict()
        assert jobs.get(index_job["id"]).result["embedded"] == 20
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        engine.dispose()
    output = log.read_text()
    assert "database is locked" not in output.lower()
    assert "Traceback" not in output, output[-3000:]
    latencies.sort()
    print(
        f"{sum(results.values())} requests in {SECONDS:.0f} s by {CLIENTS} clients: {dict(results)}; latency "
        f"p50 {latencies[len(latencies) // 2]:.3f} s, p99 {latencies[int(len(latencies) * 0.99)]:.3f} s, "
        f"max {latencies[-1]:.3f} s"
    )
