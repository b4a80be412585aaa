"""Background jobs (indexing, training, evaluation): stored in the server database, run by a pool
of threads in the server process, with progress, log tail, cancel, and resume after a restart.

Register a kind with :func:`register_kind` (a module-level handler ``handler(ctx, params)``),
then ``JobManager(engine).submit(kind, target, params)``.
"""

from vitrine.jobs.kinds import JobKind, concurrency_limits, get_kind, register_kind, registered_kinds
from vitrine.jobs.manager import JobManager
from vitrine.jobs.types import STATES, Job, JobContext

__all__ = [
    "STATES",
    "Job",
    "JobContext",
    "JobKind",
    "JobManager",
    "concurrency_limits",
    "get_kind",
    "register_kind",
    "registered_kinds",
]
