"""The types a job is made of, shared by the kinds registry and the manager: the stored
:class:`Job` record, the live progress of a running job (:class:`RunningJob`) and the
:class:`JobContext` a handler gets. Imports nothing else of ``vitrine.jobs``.
"""

from __future__ import annotations

import collections
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from vitrine.core.errors import Cancelled
from vitrine.core.jsonio import jsonable

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")
LOG_LINES = 50  # lines of log kept per job


# ------------------------------------------------------------------------------------ the job record
@dataclass
class Job:
    """A job as stored: what ``get``/``list``/``submit`` return and the API serialises."""

    id: str
    kind: str
    target: str
    params: dict
    state: str = "queued"
    owner: str | None = None
    stage: str = ""
    done: int = 0
    total: int = 0
    info: dict | None = None
    message: str = ""
    result: dict | None = None
    error: dict | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    worker_id: str | None = None
    attempts: int = 0
    cancel_requested: bool = False
    log: list[str] = field(default_factory=list)

    @classmethod
    def from_row(cls, row) -> Job:
        m = row._mapping
        return cls(
            id=m["id"],
            kind=m["kind"],
            target=m["target"] or "",
            params=m["params"] or {},
            state=m["state"],
            owner=m["owner"],
            stage=m["stage"] or "",
            done=int(m["done"] or 0),
            total=int(m["total"] or 0),
            info=m["info"],
            message=m["message"] or "",
            result=m["result"],
            error=m["error"],
            created_at=m["created_at"],
            started_at=m["started_at"],
            finished_at=m["finished_at"],
            heartbeat_at=m["heartbeat_at"],
            worker_id=m["worker_id"],
            attempts=int(m["attempts"] or 0),
            cancel_requested=bool(m["cancel_requested"]),
            log=[line for line in (m["log_tail"] or "").split("\n") if line],
        )

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left: the handler's own estimate when it gives one, else from the pace so far."""
        if self.state != "running":
            return None
        given = (self.info or {}).get("eta_seconds")
        if isinstance(given, (int, float)) and math.isfinite(given):
            return max(0.0, float(given))
        if not self.started_at or not self.done or not self.total:
            return None
        elapsed = time.time() - self.started_at
        return max(0.0, elapsed / self.done * (self.total - self.done))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "owner": self.owner,
            "params": self.params,
            "state": self.state,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "fraction": (self.done / self.total) if self.total else None,
            "eta_seconds": self.eta_seconds,
            "info": self.info,
            "message": self.message,
            "log": self.log,
            "result": self.result,
            "error": self.error,
            "attempts": self.attempts,
            "cancel_requested": self.cancel_requested,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "heartbeat_at": self.heartbeat_at,
        }


# ------------------------------------------------------------------------------------ running jobs
class RunningJob:
    """What the pool keeps about a job it runs: the live progress, written out by the pool."""

    def __init__(self, job: Job):
        self.job = job
        self.lock = threading.Lock()
        self.cancel = threading.Event()
        self.stage, self.done, self.total = job.stage, job.done, job.total
        self.info: dict = dict(job.info or {})
        self.message = job.message
        self.log: collections.deque[str] = collections.deque(job.log, maxlen=LOG_LINES)
        self.dirty = False
        self.lost = False  # another process took the job over: stop, write nothing more
        self.thread: threading.Thread | None = None

    def snapshot(self) -> dict:
        with self.lock:
            self.dirty = False
            return {
                "stage": self.stage[:64],
                "done": int(self.done),
                "total": int(self.total),
                "info": jsonable(self.info) if self.info else None,
                "message": self.message,
                "log_tail": "\n".join(self.log),
            }


class JobContext:
    """What a handler gets: its job's identity and params, progress, log and cancel."""

    def __init__(self, manager: Any, running: RunningJob):
        """``manager`` is the :class:`~vitrine.jobs.manager.JobManager` running the job."""
        self._manager = manager
        self._running = running
        job = running.job
        self.job_id: str = job.id
        self.kind: str = job.kind
        self.target: str = job.target
        self.owner: str | None = job.owner
        self.params: dict = job.params
        self.attempt: int = job.attempts  # 1 on the first run, 2 after one restart, …
        self.services = manager.services  # what the host gives handlers (the server's AppState)
        self.cancel_event: threading.Event = running.cancel

    @property
    def resumed(self) -> bool:
        """True when an earlier run of this job was interrupted (the handler should resume)."""
        return self.attempt > 1

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancel(self, message: str = "cancelled") -> None:
        if self.cancel_event.is_set():
            raise Cancelled(message)

    def progress(
        self, stage: str, done: int = 0, total: int = 0, info: dict | None = None, message: str | None = None
    ) -> None:
        r = self._running
        with r.lock:
            r.stage, r.done, r.total = stage or "", int(done or 0), int(total or 0)
            kept = {"checkpoint": r.info["checkpoint"]} if "checkpoint" in r.info else {}
            r.info = {**kept, **(info or {})}  # this step's details replace the last step's
            if message is not None:
                r.message = message
            r.dirty = True

    def set_message(self, message: str) -> None:
        with self._running.lock:
            self._running.message = message
            self._running.dirty = True

    def log(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._running.lock:
            for part in str(line).splitlines() or [""]:
                self._running.log.append(f"{stamp} {part}"[:500])
            self._running.dirty = True

    def set_checkpoint(self, path: str | os.PathLike) -> None:
        """Say where the job keeps its last checkpoint (named if the job fails when the server stops)."""
        with self._running.lock:
            self._running.info["checkpoint"] = str(path)
            self._running.dirty = True


__all__ = ["ACTIVE", "FINISHED", "LOG_LINES", "STATES", "Job", "JobContext", "RunningJob", "jsonable"]
