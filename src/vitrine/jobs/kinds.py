"""Job kinds: what a job of each kind runs, whether it can resume, how many run at once.

A kind's handler is a module-level function ``handler(ctx, params) -> dict | None`` (never a
closure): a job is stored with its params only, so that any process can run it again after a
restart. Modules that register kinds are imported by whoever runs jobs (the server imports
``vitrine.tasks``, which registers the built-in kinds); more can be named in ``VITRINE_JOB_MODULES``
(comma-separated module names), e.g. for plugins or tests.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vitrine.core.errors import VitrineError
from vitrine.jobs.types import JobContext

CONCURRENCY_ENV = "VITRINE_JOBS_CONCURRENCY"
MODULES_ENV = "VITRINE_JOB_MODULES"

Handler = Callable[[JobContext, dict], "dict[str, Any] | None"]


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Handler
    resumable: bool = False  # re-queued (and resumed by its handler) after the server stopped mid-job
    concurrency: int = 1  # jobs of this kind running at once on one database (VITRINE_JOBS_CONCURRENCY wins)
    description: str = ""


_KINDS: dict[str, JobKind] = {}


def register_kind(
    name: str, handler: Handler, *, resumable: bool = False, concurrency: int = 1, description: str = ""
) -> JobKind:
    """Register (or replace) the job kind ``name``. ``handler`` must be importable by name."""
    qualname = getattr(handler, "__qualname__", "")
    if not callable(handler) or "<locals>" in qualname or "<lambda>" in qualname:
        raise TypeError(f"job kind {name!r}: the handler must be a module-level function, not {handler!r}")
    if concurrency < 1:
        raise ValueError(f"job kind {name!r}: concurrency must be at least 1")
    kind = JobKind(name, handler, resumable, concurrency, description)
    _KINDS[name] = kind
    return kind


def unregister_kind(name: str) -> None:
    _KINDS.pop(name, None)


def get_kind(name: str) -> JobKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise VitrineError(
            f"unknown job kind {name!r}", hint="known kinds: " + (", ".join(sorted(_KINDS)) or "none")
        ) from None


def registered_kinds() -> dict[str, JobKind]:
    return dict(_KINDS)


def parse_concurrency(text: str) -> dict[str, int]:
    """``"index:1,train:2"`` → ``{"index": 1, "train": 2}``."""
    out: dict[str, int] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise VitrineError(
                f"{CONCURRENCY_ENV}: cannot read {item!r}",
                hint="write kind:count pairs separated by commas, e.g. index:1,train:2 (counts ≥ 1)",
            )
        out[name.strip()] = int(value)
    return out


def concurrency_limits(overrides: dict[str, int] | None = None) -> dict[str, int]:
    """Jobs of each kind allowed to run at once: the kinds' defaults, then
    ``VITRINE_JOBS_CONCURRENCY``, then ``overrides``."""
    limits = {name: kind.concurrency for name, kind in _KINDS.items()}
    limits.update(parse_concurrency(os.environ.get(CONCURRENCY_ENV, "")))
    limits.update(overrides or {})
    return limits


def load_job_modules() -> list[str]:
    """Import the modules named in ``VITRINE_JOB_MODULES`` (they register kinds)."""
    loaded = []
    for name in os.environ.get(MODULES_ENV, "").split(","):
        name = name.strip()
        if not name:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise VitrineError(
                f"{MODULES_ENV}: cannot import {name!r} ({exc})", hint="name importable modules, comma-separated"
            ) from None
        loaded.append(name)
    return loaded
