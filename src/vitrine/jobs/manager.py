"""Background jobs in the server process: a thread per job, progress, cancel, result.

Single-user mode keeps jobs in memory. The job object is the contract the API and UI read
(``to_dict``); persistence across restarts belongs to the multi-user job store.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from vitrine.errors import Cancelled, NotFound, VitrineError

STATES = ("queued", "running", "done", "failed", "cancelled")


@dataclass
class Job:
    id: str
    kind: str
    target: str  # what it works on, e.g. the project name
    state: str = "queued"
    stage: str = ""
    done: int = 0
    total: int = 0
    message: str = ""
    result: dict | None = None
    error: dict | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def progress(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, total

    @property
    def eta_seconds(self) -> float | None:
        if self.state != "running" or not self.started_at or not self.done or not self.total:
            return None
        elapsed = time.time() - self.started_at
        return max(0.0, elapsed / self.done * (self.total - self.done))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "state": self.state,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "fraction": (self.done / self.total) if self.total else None,
            "eta_seconds": self.eta_seconds,
            "message": self.message,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class JobManager:
    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, target: str, work: Callable[[Job], dict | None]) -> Job:
        """Run ``work(job)`` in a thread; one active job per (kind, target) at a time."""
        with self._lock:
            for job in self._jobs.values():
                if job.kind == kind and job.target == target and job.state in ("queued", "running"):
                    return job  # already under way: the caller follows that one
            job = Job(id=uuid.uuid4().hex[:12], kind=kind, target=target)
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, work), name=f"job-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, work) -> None:
        job.state, job.started_at = "running", time.time()
        try:
            job.result = work(job)
            job.state = "done"
        except Cancelled as exc:
            job.state, job.message = "cancelled", exc.message
        except VitrineError as exc:
            job.state, job.error = "failed", exc.to_dict()
        except Exception as exc:  # report, never lose the thread silently
            job.state = "failed"
            job.error = {
                "code": "internal",
                "message": f"{type(exc).__name__}: {exc}",
                "hint": None,
                "traceback": traceback.format_exc(limit=5),
            }
        finally:
            job.finished_at = time.time()

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return job

    def list(self, target: str | None = None) -> list[Job]:
        jobs = [j for j in self._jobs.values() if target is None or j.target == target]
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state in ("queued", "running"):
            job.cancel_event.set()
            job.message = "cancelling…"
        return job
