"""Background jobs stored in the server database, run by a pool of threads in the server process.

A job is a row of the ``jobs`` table: its kind, target, owner and params (everything needed to
run it again), its state (queued → running → done | failed | cancelled), progress (stage, done,
total, info, message), the last lines of its log, its result or error, timestamps, a heartbeat
and the number of attempts. :class:`JobManager` takes queued jobs (claimed with a conditional
UPDATE, so two processes never run the same job), within per-kind concurrency limits and a
per-owner quota, runs each in a thread, writes its progress a few times per second and a
heartbeat every few seconds, and carries cancel requests from the database to the handler.

When it starts, jobs left ``running`` by a process that is gone (its pid is dead on this host, or
its heartbeat is stale) are re-queued when their kind is resumable (the handler sees
``ctx.attempt > 1`` and resumes, e.g. a fine-tuning from its last.pt) or else marked failed,
naming the checkpoint they left when they reported one.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import Engine

from vitrine.core.errors import Cancelled, NotFound, VitrineError
from vitrine.core.jsonio import jsonable
from vitrine.jobs.kinds import JobKind, concurrency_limits, get_kind, registered_kinds
from vitrine.jobs.table import jobs as jobs_table
from vitrine.jobs.types import ACTIVE, FINISHED, LOG_LINES, Job, JobContext, RunningJob

log = logging.getLogger("vitrine.jobs")

PROGRESS_INTERVAL = 0.25  # seconds between progress writes of a job (at most)
HEARTBEAT_INTERVAL = 5.0
CANCEL_POLL_INTERVAL = 1.0
IDLE_POLL_INTERVAL = 5.0  # how often an idle pool looks for jobs queued by other processes
RECOVER_INTERVAL = 30.0
PER_USER_ENV = "VITRINE_JOBS_PER_USER"
STALE_ENV = "VITRINE_JOBS_STALE_SECONDS"
MAX_ATTEMPTS = 3  # a resumable job that keeps dying with its server is failed after this many runs

_LIVE_WORKERS: set[str] = set()  # worker ids of the open managers of this process
_CLAIM_LOCK = threading.Lock()
_CLAIM_LOCK_ID = 0x6A6F6273  # "jobs": PostgreSQL advisory lock serialising claims across processes


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise VitrineError(f"{name} must be a whole number, not {raw!r}") from None


# ------------------------------------------------------------------------------------ the manager
class JobManager:
    """Submit, list, cancel and run the jobs of one server database."""

    def __init__(
        self,
        engine: Engine,
        *,
        services: Any = None,
        concurrency: dict[str, int] | None = None,
        per_user: int | None = None,
        stale_after: float | None = None,
        worker_id: str | None = None,
        pool: bool = True,
    ):
        """``pool=False`` makes a client that submits, lists and cancels but runs nothing (the
        jobs are run by the server's pool)."""
        self.engine = engine
        self.pool = pool
        self.services = services
        self.concurrency_overrides = dict(concurrency or {})
        concurrency_limits(self.concurrency_overrides)  # a bad VITRINE_JOBS_CONCURRENCY fails now, clearly
        self.per_user = _env_int(PER_USER_ENV, 2) if per_user is None else per_user
        self.stale_after = float(_env_int(STALE_ENV, 60) if stale_after is None else stale_after)
        self.host = socket.gethostname()
        self.worker_id = worker_id or f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._running: dict[str, RunningJob] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._submit_lock = threading.Lock()
        _LIVE_WORKERS.add(self.worker_id)

    # ---------------------------------------------------------------- public API
    def submit(
        self, kind: str, target: str, params: dict | None = None, *, owner: str | None = None, dedupe: bool = True
    ) -> Job:
        """Queue a job of ``kind`` on ``target``. With ``dedupe``, while a job of the same kind and
        target is queued or running, that job is returned instead (the caller follows it)."""
        if callable(params):
            raise TypeError("submit() takes the job's params (a dict), not a function: register a job kind")
        get_kind(kind)  # unknown kinds are refused now
        params = dict(params or {})
        try:
            stored = json.loads(json.dumps(params))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"job params must be JSON: {exc}") from None
        job = Job(id=uuid.uuid4().hex[:12], kind=kind, target=target or "", params=stored, owner=owner)
        with self._submit_lock, self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CLAIM_LOCK_ID})
            if dedupe:
                row = conn.execute(
                    select(jobs_table)
                    .where(jobs_table.c.kind == kind, jobs_table.c.target == job.target, jobs_table.c.state.in_(ACTIVE))
                    .order_by(jobs_table.c.created_at.desc())
                    .limit(1)
                ).first()
                if row is not None:
                    return Job.from_row(row)
            conn.execute(
                insert(jobs_table).values(
                    id=job.id,
                    kind=kind,
                    owner=owner,
                    target=job.target,
                    params=stored,
                    state="queued",
                    stage="",
                    done=0,
                    total=0,
                    message="",
                    created_at=job.created_at,
                    attempts=0,
                    cancel_requested=False,
                    log_tail="",
                )
            )
        self.start()
        self._wake.set()
        return job

    def get(self, job_id: str) -> Job:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs_table).where(jobs_table.c.id == str(job_id))).first()
        if row is None:
            raise NotFound(f"no job {job_id!r}", hint="see GET /api/v1/jobs for the jobs there are")
        return Job.from_row(row)

    def list(
        self,
        target: str | None = None,
        *,
        kind: str | None = None,
        owner: str | None = None,
        states: tuple[str, ...] | None = None,
        limit: int = 500,
    ) -> list[Job]:
        """Jobs, newest first."""
        query = select(jobs_table)
        if target is not None:
            query = query.where(jobs_table.c.target == target)
        if kind is not None:
            query = query.where(jobs_table.c.kind == kind)
        if owner is not None:
            query = query.where(jobs_table.c.owner == owner)
        if states:
            query = query.where(jobs_table.c.state.in_(states))
        query = query.order_by(jobs_table.c.created_at.desc(), jobs_table.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [Job.from_row(r) for r in conn.execute(query)]

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one at once, a running one at its next check (wherever it runs);
        a finished one is left as it is."""
        job = self.get(job_id)
        if job.state == "queued":
            with self.engine.begin() as conn:
                done = conn.execute(
                    update(jobs_table)
                    .where(jobs_table.c.id == job.id, jobs_table.c.state == "queued")
                    .values(
                        state="cancelled",
                        cancel_requested=True,
                        finished_at=time.time(),
                        message="cancelled before it started",
                    )
                ).rowcount
            if done:
                return self.get(job.id)
            job = self.get(job.id)
        if job.state == "running":
            with self.engine.begin() as conn:
                conn.execute(
                    update(jobs_table)
                    .where(jobs_table.c.id == job.id, jobs_table.c.state == "running")
                    .values(cancel_requested=True, message="cancelling…")
                )
            with self._lock:
                running = self._running.get(job.id)
            if running is not None:
                with running.lock:
                    running.message = "cancelling…"  # before the event: the handler's own last word wins
                running.cancel.set()
            job = self.get(job.id)
        return job

    def wait(self, job_id: str, timeout: float = 60.0, poll: float = 0.05) -> Job:
        """Block until the job is finished (or ``timeout`` seconds pass); return it."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.state in FINISHED or time.monotonic() >= deadline:
                return job
            time.sleep(poll)

    def running_here(self) -> list[str]:
        with self._lock:
            return list(self._running)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the pool's thread (once): it claims queued jobs and keeps running ones reported."""
        with self._lock:
            if not self.pool or self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._loop, name=f"jobs-{self.worker_id[-8:]}", daemon=True)
            self._thread.start()

    def startup(self) -> dict:
        """What a server does when it starts: recover the jobs a dead process left, then start the
        pool (it also runs jobs that other processes queue). Returns what was recovered."""
        recovered = self.recover()
        self.start()
        return recovered

    def close(self, timeout: float = 15.0) -> None:
        """Stop: running jobs are interrupted; resumable ones go back to the queue (they resume at
        the next start), the others are failed."""
        self._stopping = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)  # it claims jobs: once it is gone, no job starts here any more
        with self._lock:
            running = list(self._running.values())
        for r in running:
            r.cancel.set()
        deadline = time.monotonic() + timeout
        for r in running:
            if r.thread is not None:
                r.thread.join(max(0.0, deadline - time.monotonic()))
        _LIVE_WORKERS.discard(self.worker_id)

    # ---------------------------------------------------------------- recovery
    def _owner_is_dead(self, worker_id: str | None, heartbeat_at: float | None, now: float) -> bool:
        if not worker_id:
            return True
        if worker_id in _LIVE_WORKERS:
            return False
        host, _, rest = worker_id.partition(":")
        pid_text = rest.partition(":")[0]
        if host == self.host and pid_text.isdigit():
            pid = int(pid_text)
            if pid == os.getpid():
                return True  # this process, but no open manager has that id: it was closed
            if not _pid_alive(pid):
                return True
        return heartbeat_at is None or now - heartbeat_at > self.stale_after

    def recover(self) -> dict:
        """Jobs marked running by a process that is gone: re-queued when resumable, else failed."""
        now = time.time()
        out = {"requeued": [], "failed": [], "cancelled": []}
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs_table).where(jobs_table.c.state == "running")).fetchall()
        kinds = registered_kinds()
        for row in rows:
            job = Job.from_row(row)
            if job.worker_id == self.worker_id or not self._owner_is_dead(job.worker_id, job.heartbeat_at, now):
                continue
            kind = kinds.get(job.kind)
            checkpoint = (job.info or {}).get("checkpoint")
            lines = job.log[-(LOG_LINES - 1) :]
            stamp = time.strftime("%H:%M:%S")
            if job.cancel_requested:
                values = {"state": "cancelled", "finished_at": now, "message": "cancelled (the server stopped first)"}
                bucket = "cancelled"
            elif kind is not None and kind.resumable and job.attempts < MAX_ATTEMPTS:
                values = {"state": "queued", "message": "the server stopped; the job resumes"}
                lines.append(f"{stamp} server stopped during attempt {job.attempts}; re-queued to resume")
                bucket = "requeued"
            else:
                why = (
                    f"the server stopped while it ran ({job.attempts} attempts)"
                    if kind is not None and kind.resumable
                    else "the server stopped while it ran"
                )
                where = f"; last checkpoint kept at {checkpoint}" if checkpoint else ""
                values = {
                    "state": "failed",
                    "finished_at": now,
                    "message": f"server stopped; {why}{where}",
                    "error": {
                        "code": "interrupted",
                        "message": f"{why}{where}",
                        "hint": "start it again" + (" (it can resume from that checkpoint)" if checkpoint else ""),
                    },
                }
                lines.append(f"{stamp} server stopped; job failed{where}")
                bucket = "failed"
            with self.engine.begin() as conn:
                changed = conn.execute(
                    update(jobs_table)
                    .where(
                        jobs_table.c.id == job.id,
                        jobs_table.c.state == "running",
                        (jobs_table.c.worker_id == job.worker_id)
                        if job.worker_id
                        else jobs_table.c.worker_id.is_(None),
                    )
                    .values(worker_id=None, log_tail="\n".join(lines), **values)
                ).rowcount
            if changed:
                out[bucket].append(job.id)
                log.warning("job %s (%s) left running by %s: %s", job.id, job.kind, job.worker_id, bucket)
        if out["requeued"]:
            self.start()
            self._wake.set()
        return out

    # ---------------------------------------------------------------- the pool's loop
    def _loop(self) -> None:
        last_heartbeat = last_cancel = last_claim = last_recover = 0.0
        while not self._stop.is_set():
            woken = self._wake.is_set()
            self._wake.clear()
            now = time.monotonic()
            try:
                busy = bool(self.running_here())
                if busy:
                    self._flush(heartbeat=now - last_heartbeat >= HEARTBEAT_INTERVAL)
                    if now - last_heartbeat >= HEARTBEAT_INTERVAL:
                        last_heartbeat = now
                    if now - last_cancel >= CANCEL_POLL_INTERVAL:
                        self._poll_cancel()
                        last_cancel = now
                if now - last_recover >= RECOVER_INTERVAL:
                    last_recover = now
                    if last_claim:  # startup() already recovered once
                        self.recover()
                if not self._stopping and (woken or now - last_claim >= (1.0 if busy else IDLE_POLL_INTERVAL)):
                    last_claim = now
                    self._claim()
            except Exception:  # the database may be briefly unreachable: try again on the next round
                log.exception("job pool: database round failed")
            self._wake.wait(PROGRESS_INTERVAL if self.running_here() else IDLE_POLL_INTERVAL)

    def _limits(self) -> dict[str, int]:
        return concurrency_limits(self.concurrency_overrides)

    def _claim(self) -> None:
        kinds = registered_kinds()
        if not kinds:
            return
        limits = self._limits()
        claimed: list[tuple[Job, JobKind]] = []
        now = time.time()
        with _CLAIM_LOCK, self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CLAIM_LOCK_ID})
            counts = collections.Counter()
            owners = collections.Counter()
            for kind, owner, n in conn.execute(
                select(jobs_table.c.kind, jobs_table.c.owner, func.count())
                .where(jobs_table.c.state == "running")
                .group_by(jobs_table.c.kind, jobs_table.c.owner)
            ):
                counts[kind] += n
                if owner is not None:
                    owners[owner] += n
            open_kinds = [k for k in kinds if counts[k] < limits.get(k, 1)]
            if not open_kinds:
                return
            queued = conn.execute(
                select(jobs_table)
                .where(jobs_table.c.state == "queued", jobs_table.c.kind.in_(open_kinds))
                .order_by(jobs_table.c.created_at, jobs_table.c.id)
                .limit(200)
            ).fetchall()
            for row in queued:
                job = Job.from_row(row)
                if counts[job.kind] >= limits.get(job.kind, 1):
                    continue
                if job.owner is not None and self.per_user > 0 and owners[job.owner] >= self.per_user:
                    continue
                changed = conn.execute(
                    update(jobs_table)
                    .where(jobs_table.c.id == job.id, jobs_table.c.state == "queued")
                    .values(
                        state="running",
                        worker_id=self.worker_id,
                        started_at=now,
                        heartbeat_at=now,
                        attempts=jobs_table.c.attempts + 1,
                        finished_at=None,
                    )
                ).rowcount
                if changed != 1:
                    continue
                counts[job.kind] += 1
                if job.owner is not None:
                    owners[job.owner] += 1
                job.state, job.worker_id, job.started_at, job.heartbeat_at = "running", self.worker_id, now, now
                job.attempts += 1
                claimed.append((job, kinds[job.kind]))
        for job, kind in claimed:
            running = RunningJob(job)
            if job.cancel_requested:
                running.cancel.set()
            running.thread = threading.Thread(
                target=self._execute, args=(running, kind), name=f"job-{job.id}", daemon=True
            )
            with self._lock:
                self._running[job.id] = running
            running.thread.start()

    def _flush(self, heartbeat: bool = False) -> None:
        with self._lock:
            running = list(self._running.values())
        now = time.time()
        for r in running:
            if r.lost or not (r.dirty or heartbeat):
                continue
            values = r.snapshot() if r.dirty else {}
            with self.engine.begin() as conn:
                changed = conn.execute(
                    update(jobs_table)
                    .where(
                        jobs_table.c.id == r.job.id,
                        jobs_table.c.worker_id == self.worker_id,
                        jobs_table.c.state == "running",
                    )
                    .values(heartbeat_at=now, **values)
                ).rowcount
            if not changed:
                self._lose(r)

    def _lose(self, r: RunningJob) -> None:
        """The job is no longer ours (another process recovered it, or it was deleted): stop it."""
        if not r.lost:
            log.warning("job %s was taken over by another process; stopping it here", r.job.id)
        r.lost = True
        r.cancel.set()

    def _poll_cancel(self) -> None:
        ids = self.running_here()
        if not ids:
            return
        with self.engine.connect() as conn:
            rows = {
                r.id: r
                for r in conn.execute(
                    select(
                        jobs_table.c.id, jobs_table.c.cancel_requested, jobs_table.c.worker_id, jobs_table.c.state
                    ).where(jobs_table.c.id.in_(ids))
                )
            }
        for job_id in ids:
            with self._lock:
                r = self._running.get(job_id)
            if r is None:
                continue
            row = rows.get(job_id)
            if row is None or row.worker_id != self.worker_id or row.state != "running":
                self._lose(r)
            elif row.cancel_requested:
                r.cancel.set()

    def _execute(self, r: RunningJob, kind: JobKind) -> None:
        ctx = JobContext(self, r)
        job = r.job
        if job.attempts > 1:
            ctx.log(f"attempt {job.attempts}: resuming after an interruption")
        state, result, error, message = "failed", None, None, None
        try:
            if r.cancel.is_set() and not self._stopping:
                raise Cancelled("cancelled before it started")
            out = kind.handler(ctx, dict(job.params))
            result = jsonable(out if isinstance(out, dict) or out is None else {"value": out})
            state = "done"
        except Cancelled as exc:
            if self._stopping and not r.lost:
                state, message = self._interrupted(kind, r)
                if state == "failed":
                    error = {"code": "interrupted", "message": message, "hint": "start it again"}
            else:
                state, message = "cancelled", exc.message
        except VitrineError as exc:
            state, error = "failed", exc.to_dict()
        except Exception as exc:  # report, never lose the thread silently
            log.exception("job %s (%s) failed", job.id, job.kind)
            state = "failed"
            error = {
                "code": "internal",
                "message": f"{type(exc).__name__}: {exc}",
                "hint": None,
                "traceback": traceback.format_exc(limit=8),
            }
        finally:
            self._finish(r, state, result, error, message)

    def _interrupted(self, kind: JobKind, r: RunningJob) -> tuple[str, str]:
        if kind.resumable:
            return "queued", "the server stopped; the job resumes when it starts again"
        checkpoint = r.info.get("checkpoint")
        where = f"; last checkpoint kept at {checkpoint}" if checkpoint else ""
        return "failed", f"server stopped{where}"

    def _finish(self, r: RunningJob, state: str, result, error, message: str | None) -> None:
        if message is not None:
            with r.lock:
                r.message = message
        if error is not None:
            ctx_line = error.get("message", "")
            with r.lock:
                r.log.append(f"{time.strftime('%H:%M:%S')} failed: {ctx_line}"[:500])
        values = r.snapshot()
        values.update(state=state, result=result, error=jsonable(error) if error else None)
        if state == "queued":
            values.update(worker_id=None, started_at=None)
        else:
            values.update(finished_at=time.time())
        try:
            if not r.lost:
                with self.engine.begin() as conn:
                    conn.execute(
                        update(jobs_table)
                        .where(jobs_table.c.id == r.job.id, jobs_table.c.worker_id == self.worker_id)
                        .values(**values)
                    )
        except Exception:
            log.exception("job %s: could not record its end (%s)", r.job.id, state)
        finally:
            with self._lock:
                self._running.pop(r.job.id, None)
            self._wake.set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is dead for our purpose
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


__all__ = ["JobManager"]
