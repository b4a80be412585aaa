"""Persistent jobs: submit, progress, cancel, failures, per-kind concurrency, per-user quota, two
pools on one database, and recovery of the jobs a dead process left. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest
from sqlalchemy import event, insert, select, update

from vitrine.core.errors import NotFound, VitrineError
from vitrine.jobs import JobManager, register_kind
from vitrine.jobs.kinds import concurrency_limits, parse_concurrency, unregister_kind
from vitrine.jobs.table import jobs as jobs_table

SEEN: dict[str, list] = {}
LOCK = threading.Lock()
ACTIVE: dict[str, int] = {}
PEAK: dict[str, int] = {}


def note(key: str, value) -> None:
    with LOCK:
        SEEN.setdefault(key, []).append(value)


def steps_handler(ctx, params):
    """Counts to params["n"], a pause between steps; records attempts and cancels."""
    note("attempts", (ctx.job_id, ctx.attempt))
    group = params.get("group", "all")
    with LOCK:
        ACTIVE[group] = ACTIVE.get(group, 0) + 1
        PEAK[group] = max(PEAK.get(group, 0), ACTIVE[group])
    try:
        ctx.log(f"starting with n={params['n']}")
        for i in range(params["n"]):
            ctx.check_cancel(f"stopped at step {i}")
            ctx.progress("count", i + 1, params["n"], {"step": i + 1})
            time.sleep(params.get("pause", 0.01))
        note("ran", ctx.job_id)
        return {"counted": params["n"], "np": __import__("numpy").float32(0.5)}
    finally:
        with LOCK:
            ACTIVE[group] -= 1


def failing_handler(ctx, params):
    if params.get("friendly"):
        raise VitrineError("the dataset has one class", hint="add another class")
    raise RuntimeError("boom")


def fast_progress_handler(ctx, params):
    deadline = time.monotonic() + params["seconds"]
    i = 0
    while time.monotonic() < deadline:
        i += 1
        ctx.progress("spin", i, 0)
    return {"calls": i}


@pytest.fixture
def kinds():
    SEEN.clear()
    ACTIVE.clear()
    PEAK.clear()
    names = {
        "t-steps": register_kind("t-steps", steps_handler, resumable=True, concurrency=2),
        "t-once": register_kind("t-once", steps_handler, resumable=False, concurrency=1),
        "t-fail": register_kind("t-fail", failing_handler),
        "t-spin": register_kind("t-spin", fast_progress_handler),
    }
    yield names
    for name in names:
        unregister_kind(name)


@pytest.fixture
def manager(db_engine, kinds):
    m = JobManager(db_engine)
    yield m
    m.close()


def test_a_job_runs_and_reports(manager):
    job = manager.submit("t-steps", "proj", {"n": 20, "pause": 0.02})
    assert job.state == "queued" and len(job.id) == 12
    seen_running = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = manager.get(job.id)
        if now.state == "running" and now.done:
            seen_running = now.to_dict()
        if now.state == "done":
            break
        time.sleep(0.02)
    assert seen_running is not None and seen_running["stage"] == "count" and seen_running["total"] == 20
    assert seen_running["eta_seconds"] is not None and 0 < seen_running["fraction"] <= 1
    final = manager.get(job.id).to_dict()
    assert final["state"] == "done", final
    assert final["result"] == {"counted": 20, "np": 0.5}
    assert (final["done"], final["total"], final["attempts"]) == (20, 20, 1)
    assert final["finished_at"] >= final["started_at"] >= final["created_at"]
    assert final["params"] == {"n": 20, "pause": 0.02}
    assert any("starting with n=20" in line for line in final["log"])
    assert [j.id for j in manager.list(target="proj")] == [job.id]
    assert manager.list(target="other") == []


def test_same_kind_and_target_follows_the_active_job(manager):
    first = manager.submit("t-steps", "p", {"n": 50, "pause": 0.02})
    again = manager.submit("t-steps", "p", {"n": 1})
    other = manager.submit("t-steps", "q", {"n": 1})
    assert again.id == first.id and other.id != first.id
    manager.wait(first.id, 30)
    later = manager.submit("t-steps", "p", {"n": 1})
    assert later.id != first.id
    assert manager.wait(later.id, 30).state == "done"


def test_unknown_kind_and_closures_are_refused(manager):
    with pytest.raises(VitrineError, match="unknown job kind"):
        manager.submit("no-such-kind", "x", {})
    with pytest.raises(TypeError, match="params"):
        manager.submit("t-steps", "x", lambda job: None)
    with pytest.raises(TypeError, match="module-level"):
        register_kind("t-lambda", lambda ctx, params: None)
    with pytest.raises(TypeError, match="JSON"):
        manager.submit("t-steps", "x", {"n": object()})
    with pytest.raises(NotFound, match="no job"):
        manager.get("0123456789ab")


def test_cancel_running_and_queued(manager):
    running = manager.submit("t-once", "a", {"n": 1000, "pause": 0.01})
    queued = manager.submit("t-once", "b", {"n": 5})  # t-once runs one at a time: this one waits
    deadline = time.monotonic() + 20
    while manager.get(running.id).state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert manager.get(queued.id).state == "queued"
    after = manager.cancel(queued.id)
    assert after.state == "cancelled" and after.started_at is None
    manager.cancel(running.id)
    final = manager.wait(running.id, 20)
    assert final.state == "cancelled" and final.message.startswith("stopped at step")
    assert final.cancel_requested and final.result is None
    assert manager.cancel(running.id).state == "cancelled"  # finished: left as it is
    assert queued.id not in [j for _, j in SEEN.get("attempts", [])]


def test_failures_are_recorded(manager):
    friendly = manager.wait(manager.submit("t-fail", "a", {"friendly": True}).id, 20)
    assert friendly.state == "failed"
    assert friendly.error == {
        "code": "bad_request",
        "message": "the dataset has one class",
        "hint": "add another class",
    }
    crash = manager.wait(manager.submit("t-fail", "b", {}).id, 20)
    assert crash.state == "failed" and crash.error["code"] == "internal"
    assert "RuntimeError: boom" in crash.error["message"] and "failing_handler" in crash.error["traceback"]
    assert any("failed: RuntimeError: boom" in line for line in crash.log)


def test_progress_is_written_a_few_times_per_second(manager, db_engine):
    updates = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE JOBS"):
            updates.append(time.monotonic())

    event.listen(db_engine, "before_cursor_execute", count)
    try:
        job = manager.wait(manager.submit("t-spin", "x", {"seconds": 2.0}).id, 30)
    finally:
        event.remove(db_engine, "before_cursor_execute", count)
    assert job.state == "done" and job.result["calls"] > 1000
    assert len(updates) <= 2.0 * 5 + 4, len(updates)  # ≤ ~4 progress writes/s, the claim and the end


def test_per_kind_concurrency(db_engine, kinds):
    manager = JobManager(db_engine, concurrency={"t-steps": 2})
    try:
        ids = [manager.submit("t-steps", f"t{i}", {"n": 8, "pause": 0.03, "group": "g"}).id for i in range(5)]
        for job_id in ids:
            assert manager.wait(job_id, 60).state == "done"
        assert PEAK["g"] == 2
    finally:
        manager.close()


def test_concurrency_setting(monkeypatch, kinds):
    monkeypatch.setenv("VITRINE_JOBS_CONCURRENCY", "t-steps:3, t-once:2")
    limits = concurrency_limits()
    assert (limits["t-steps"], limits["t-once"], limits["t-fail"]) == (3, 2, 1)
    assert parse_concurrency("") == {}
    for bad in ("t-steps", "t-steps:0", "t-steps:x", ":2"):
        with pytest.raises(VitrineError, match="VITRINE_JOBS_CONCURRENCY"):
            parse_concurrency(bad)


def test_per_user_quota(db_engine, kinds):
    manager = JobManager(db_engine, concurrency={"t-steps": 4}, per_user=1)
    try:
        a1 = manager.submit("t-steps", "a1", {"n": 15, "pause": 0.03, "group": "alice"}, owner="alice")
        a2 = manager.submit("t-steps", "a2", {"n": 15, "pause": 0.03, "group": "alice"}, owner="alice")
        b1 = manager.submit("t-steps", "b1", {"n": 15, "pause": 0.03, "group": "bob"}, owner="bob")
        time.sleep(0.3)
        states = {j.id: j.state for j in manager.list()}
        assert states[a1.id] == "running" and states[b1.id] == "running"
        assert states[a2.id] == "queued"  # alice has one running already
        for job in (a1, a2, b1):
            assert manager.wait(job.id, 60).state == "done"
        assert PEAK["alice"] == 1
        assert [j.owner for j in manager.list(owner="alice")] == ["alice", "alice"]
    finally:
        manager.close()


def test_two_pools_on_one_database_never_run_a_job_twice(db_url, kinds):
    from vitrine.store.db import open_database

    engines = [open_database(db_url, shared=False) for _ in range(2)]
    pools = [JobManager(e, concurrency={"t-steps": 3}) for e in engines]
    try:
        ids = [pools[i % 2].submit("t-steps", f"t{i}", {"n": 2, "pause": 0.01}).id for i in range(12)]
        for job_id in ids:
            assert pools[0].wait(job_id, 60).state == "done"
        assert sorted(SEEN["ran"]) == sorted(ids)  # each exactly once
        workers = {pools[0].get(i).attempts for i in ids}
        assert workers == {1}
    finally:
        for pool in pools:
            pool.close()
        for engine in engines:
            engine.dispose()


def test_cancel_reaches_a_job_running_in_another_pool(db_url, kinds):
    from vitrine.store.db import open_database

    engines = [open_database(db_url, shared=False) for _ in range(2)]
    runner, other = JobManager(engines[0]), JobManager(engines[1])
    try:
        job = runner.submit("t-once", "x", {"n": 2000, "pause": 0.01})
        deadline = time.monotonic() + 20
        while other.get(job.id).state != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert other.cancel(job.id).message == "cancelling…"
        assert runner.wait(job.id, 20).state == "cancelled"
    finally:
        runner.close()
        other.close()
        for engine in engines:
            engine.dispose()


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _left_running(engine, kind: str, worker_id: str, heartbeat: float, info: dict | None = None) -> str:
    job_id = uuid.uuid4().hex[:12]
    with engine.begin() as conn:
        conn.execute(
            insert(jobs_table).values(
                id=job_id, kind=kind, target="t", params={"n": 3}, state="running", created_at=time.time() - 100,
                started_at=time.time() - 90, heartbeat_at=heartbeat, worker_id=worker_id, attempts=1,
                stage="count", done=1, total=3, info=info, log_tail="",
            )
        )  # fmt: skip
    return job_id


def test_recovery_of_jobs_a_dead_process_left(db_engine, kinds):
    host = socket.gethostname()
    dead = f"{host}:{_dead_pid()}:deadbeef"
    resumable = _left_running(db_engine, "t-steps", dead, time.time())
    plain = _left_running(db_engine, "t-once", dead, time.time(), {"checkpoint": "/runs/r1/last.pt"})
    stale_elsewhere = _left_running(db_engine, "t-steps", "elsewhere:1:aaaa", time.time() - 3600)
    alive_elsewhere = _left_running(db_engine, "t-steps", "elsewhere:2:bbbb", time.time())
    # this process, but a worker id no open pool has (a pool closed without cleaning up): gone
    closed_here = _left_running(db_engine, "t-steps", f"{host}:{os.getpid()}:cccc", time.time())
    # the two jobs still running elsewhere count against the kind's limit, hence room for 3 more
    manager = JobManager(db_engine, stale_after=60, concurrency={"t-steps": 5})
    other_live = JobManager(db_engine)  # a live pool of this process: its jobs are not touched
    live_job = _left_running(db_engine, "t-steps", other_live.worker_id, time.time())
    try:
        recovered = manager.startup()
        assert sorted(recovered["requeued"]) == sorted([resumable, stale_elsewhere, closed_here])
        assert recovered["failed"] == [plain]
        failed = manager.get(plain)
        assert failed.state == "failed" and failed.error["code"] == "interrupted"
        assert "last checkpoint kept at /runs/r1/last.pt" in failed.message
        for job_id in (resumable, stale_elsewhere):
            final = manager.wait(job_id, 30)
            assert final.state == "done" and final.attempts == 2
            assert any("re-queued" in line for line in final.log)
            assert any("attempt 2" in line for line in final.log)
        assert (resumable, 2) in SEEN["attempts"]
        with db_engine.connect() as conn:
            rows = dict(conn.execute(select(jobs_table.c.id, jobs_table.c.state)).all())
        assert rows[alive_elsewhere] == "running" and rows[live_job] == "running"
    finally:
        manager.close()
        other_live.close()


def test_a_resumable_job_that_keeps_dying_is_failed(db_engine, kinds):
    dead = f"{socket.gethostname()}:{_dead_pid()}:deadbeef"
    job_id = _left_running(db_engine, "t-steps", dead, time.time())
    with db_engine.begin() as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(attempts=3))
    manager = JobManager(db_engine)
    try:
        assert manager.startup()["failed"] == [job_id]
        assert "3 attempts" in manager.get(job_id).error["message"]
    finally:
        manager.close()


def test_stopping_the_pool_requeues_resumable_jobs(db_engine, kinds):
    manager = JobManager(db_engine)
    resumable = manager.submit("t-steps", "a", {"n": 200, "pause": 0.01})
    plain = manager.submit("t-once", "b", {"n": 1000, "pause": 0.01})
    deadline = time.monotonic() + 20
    while {manager.get(resumable.id).state, manager.get(plain.id).state} != {"running"}:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    manager.close()
    assert manager.get(resumable.id).state == "queued"
    assert manager.get(plain.id).state == "failed"
    again = JobManager(db_engine)
    try:
        again.startup()
        final = again.wait(resumable.id, 60)
        assert final.state == "done" and final.attempts == 2
    finally:
        again.close()
