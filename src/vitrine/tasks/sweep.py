"""The ``sweep`` job kind: run a sweep (made beforehand with :meth:`Sweep.create`) to its end in
server mode; resumable, so a server killed mid-sweep goes on when it starts again, without
re-running a finished trial (the engine's guarantee when ``run_sweep`` is called again on the same
sweep id).

The Ray driver runs in a child process (``python -m vitrine.tasks.sweep ROOT SWEEP_ID``), not in
the server: Ray's processes, threads, signal handlers and memory (the driver alone holds a few
hundred MB) stay out of the web server, a crashed driver cannot take the server down, and a
finished sweep gives all of it back to the system. The child is tied to the job: it is killed with
the worker thread that started it (Linux's parent-death signal) and a driver left over from a
killed server is stopped before a new one starts. Progress is read from ``sweep.json`` (the driver
alone writes it); a cancel is the sweep's cancel file, and the job waits for the driver to stop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from vitrine.core.errors import Cancelled, VitrineError
from vitrine.core.workspace import Workspace
from vitrine.experiments.sweep import FINISHED_TRIALS, Sweep, best_trial, describe, run_sweep
from vitrine.jobs import JobContext, register_kind

SWEEP_JOB = "sweep"
DRIVER_LOG = "driver.log"
DRIVER_PID = "driver.pid"
CANCELLED_EXIT = 3
POLL_SECONDS = 1.0


# ------------------------------------------------------------------------------------ the job
def sweep_progress(sweep: Sweep) -> tuple[int, int, dict, str]:
    """``(finished, total, info, message)`` for the job's progress, from the sweep's record."""
    trials = sweep.trials
    finished = sum(t["state"] in FINISHED_TRIALS for t in trials)
    running = [t for t in trials if t["state"] == "running"]
    best = best_trial(sweep)
    primary = sweep.record.get("primary") or "metric"
    bits = [f"{finished}/{len(trials)} trials finished"]
    for t in running[:3]:
        epoch = f" epoch {t['epoch']}" + (f"/{t['epochs']}" if t.get("epochs") else "") if t.get("epoch") else ""
        bits.append(f"t{t['index']:03d} running{epoch}")
    if best is not None:
        bits.append(f"best {primary} {best['metric']:.4f} (t{best['index']:03d})")
    info = {
        "sweep_id": sweep.id,
        "counts": sweep.counts(),
        "best": {"index": best["index"], "run_id": best["run_id"], "metric": best["metric"]} if best else None,
        "trials": [{k: t.get(k) for k in ("index", "run_id", "state", "epoch", "epochs", "metric")} for t in trials],
    }
    return finished, len(trials), info, " · ".join(bits)


def drive(
    ws: Workspace,
    sweep: Sweep,
    *,
    ray_address: str | None = None,
    progress=None,
    cancel: threading.Event | None = None,
    on_interrupt=None,
    note: str = "",
) -> Sweep:
    """Run the sweep to its end in a child driver process and return it (as ``sweep.json`` says).

    ``progress(sweep)`` is called about every second; setting ``cancel`` cancels the sweep (the
    driver stops the running trials at their next step) and the call waits for the driver to end.
    Ctrl-C (KeyboardInterrupt) sets ``cancel`` and calls ``on_interrupt()``; a second one leaves at
    once, killing the driver. Raises :class:`Cancelled` for a cancelled sweep and
    :class:`VitrineError` with the driver's reason for a failed one. The child runs in a session of
    its own, so a terminal's Ctrl-C reaches only this process and never Ray's."""
    cancel = cancel if cancel is not None else threading.Event()
    stop_leftover_driver(sweep)
    argv = [sys.executable, "-m", "vitrine.tasks.sweep", str(Path(ws.root).resolve()), sweep.id]
    argv += ["--parent", str(os.getpid())]
    if ray_address:
        argv += ["--ray-address", str(ray_address)]
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # the child imports this very vitrine
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    log_path = sweep.dir / DRIVER_LOG
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"--- driver started {time.strftime('%Y-%m-%d %H:%M:%S')} {note}\n")
        log.flush()
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    (sweep.dir / DRIVER_PID).write_text(str(proc.pid), encoding="utf-8")
    interrupted = False
    try:
        while proc.poll() is None:
            try:
                if cancel.is_set():
                    sweep.request_cancel()  # every poll: the driver clears an older cancel file when it starts
                if progress is not None:
                    with contextlib.suppress(VitrineError):
                        progress(Sweep.at(sweep.dir))
                time.sleep(POLL_SECONDS)
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                cancel.set()
                sweep.request_cancel()
                if on_interrupt is not None:
                    on_interrupt()
    finally:
        if proc.poll() is None:  # leaving early (a second Ctrl-C, the server stopping): take the driver along
            _kill_group(proc.pid)
            proc.wait()
        (sweep.dir / DRIVER_PID).unlink(missing_ok=True)
    final = Sweep.at(sweep.dir)
    if progress is not None:
        progress(final)
    state = final.record.get("state")
    if proc.returncode == CANCELLED_EXIT or state == "cancelled":
        left = sum(t["state"] not in FINISHED_TRIALS for t in final.trials)
        raise Cancelled(f"sweep {final.id} cancelled: {left} trial(s) not finished; resume it to go on")
    if proc.returncode != 0 or state != "done":
        reason = final.record.get("error") or _log_tail(log_path)
        raise VitrineError(f"sweep {final.id} failed: {reason}", hint=f"the driver's log: {log_path}")
    return final


def run_sweep_job(ctx: JobContext, params: dict) -> dict:
    """The ``sweep`` job kind: run sweep ``params["sweep_id"]`` in a child driver until it ends.
    Run again after an interruption, the driver resumes the sweep (finished trials are kept).
    The cluster is the server's ``RAY_ADDRESS`` (a request never picks the address)."""
    st = ctx.services
    ws = Workspace(st.settings.root) if st is not None else Workspace()
    sweep = Sweep.load(ws, params["sweep_id"])
    if ctx.resumed:
        ctx.log(f"resuming sweep {sweep.id}: finished trials are not run again")
    ctx.log(f"sweep {sweep.id}: {len(sweep.trials)} trials, driver in a child process")
    final = drive(
        ws,
        sweep,
        ray_address=params.get("ray_address"),
        progress=lambda s: _report(ctx, s),
        cancel=ctx.cancel_event,
        note=f"(job {ctx.job_id}, attempt {ctx.attempt})",
    )
    return {"sweep_id": final.id, "state": final.record["state"], "counts": final.counts(), "best": best_trial(final)}


def _report(ctx: JobContext, sweep: Sweep) -> None:
    done, total, info, message = sweep_progress(sweep)
    ctx.progress("trials", done, total, info, message=message)


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "the driver stopped without saying why"
    return " | ".join(text[-lines:]) or "the driver stopped without saying why"


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # the driver and the local Ray it started


def stop_leftover_driver(sweep: Sweep) -> None:
    """Stop the driver a killed server left behind (it would otherwise run the same trials)."""
    path = sweep.dir / DRIVER_PID
    try:
        pid = int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        cmdline = []
    if b"vitrine.tasks.sweep" in cmdline and sweep.id.encode() in cmdline:
        _kill_group(pid)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    path.unlink(missing_ok=True)


register_kind(SWEEP_JOB, run_sweep_job, resumable=True, concurrency=1, description="run a configuration sweep")


# ------------------------------------------------------------------------------------ the driver
def _die_with_parent(parent: int | None) -> None:
    """Linux: be killed when the thread that started this driver ends (the server killed)."""
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    """The driver: ``python -m vitrine.tasks.sweep ROOT SWEEP_ID [--ray-address A] [--parent PID]``."""
    parser = argparse.ArgumentParser(prog="python -m vitrine.tasks.sweep", description=main.__doc__)
    parser.add_argument("root")
    parser.add_argument("sweep_id")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--parent", type=int, default=None)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    ws = Workspace(args.root)
    try:
        sweep = run_sweep(ws, Sweep.load(ws, args.sweep_id), ray_address=args.ray_address, poll_seconds=POLL_SECONDS)
    except Cancelled as exc:
        print(exc.message, flush=True)
        return CANCELLED_EXIT
    except VitrineError as exc:
        print(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), flush=True)
        return 2
    print(f"sweep {sweep.id} {sweep.record['state']}: {describe(sweep)['counts']}", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as the job's child process
    sys.exit(main())
