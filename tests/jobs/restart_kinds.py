"""Job kinds for the restart tests, loaded by a server through ``VITRINE_JOB_MODULES=restart_kinds``
(with this folder on ``PYTHONPATH``). A job counts ``steps`` in the run folder
``<root>/runs/<run>``, saving its count after every step in ``last.json`` (atomically) like a
trainer saves last.pt, and resumes from it when it runs again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from vitrine.core.atomic import atomic_write_json
from vitrine.jobs import register_kind


def count_steps(ctx, params):
    root = Path(ctx.services.settings.root) if ctx.services is not None else Path.cwd()
    run_dir = root / "runs" / params["run"]
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / "last.json"
    ctx.set_checkpoint(checkpoint)
    start = json.loads(checkpoint.read_text())["step"] if checkpoint.is_file() else 0
    with open(run_dir / "attempts.log", "a", encoding="utf-8") as fh:
        fh.write(f"attempt {ctx.attempt} pid {os.getpid()} from step {start}\n")
    for step in range(start + 1, params["steps"] + 1):
        ctx.check_cancel()
        time.sleep(params.get("pause", 0.2))
        atomic_write_json(checkpoint, {"step": step})
        ctx.progress("count", step, params["steps"])
    return {"steps": params["steps"], "resumed_from": start, "attempt": ctx.attempt}


def count_steps_once(ctx, params):
    return count_steps(ctx, params)


register_kind("test-checkpointed", count_steps, resumable=True, concurrency=2)
register_kind("test-not-resumable", count_steps_once, resumable=False, concurrency=2)
