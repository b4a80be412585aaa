"""A server killed (SIGKILL) in the middle of a sweep job, started again on the same database: the
job (left "running" by the dead server) is re-queued, its driver (a child process) died with the
server, and the sweep finishes without training a finished trial again. Real Ray Tune,
random-initialised models on 32 px images: the machinery, never quality."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import cli_helpers as cli  # noqa: E402

from vitrine.core.workspace import Workspace  # noqa: E402

_spec = importlib.util.spec_from_file_location("sweep_datasets", HERE.parent / "experiments" / "conftest.py")
_datasets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_datasets)

TINY = {"pretrained": False, "batch_size": 8, "early_stopping_patience": None, "cache_mb": 64, "epochs": 5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read().decode("utf-8"))


def _serve(root: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    with open(log, "a", encoding="utf-8") as fh:
        proc = subprocess.Popen(
            [*cli.vitrine_command(), "serve", str(root), "--port", str(port)], stdout=fh, stderr=fh, env=cli.cli_env()
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"vitrine serve exited with {proc.returncode}\n{log.read_text()[-5000:]}"
        try:
            if _call(base + "/api/v1/health") == {"status": "ok"}:
                return proc, base
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("vitrine serve did not come up")


def _wait(predicate, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _drivers(sweep_id: str) -> list[int]:
    """The pids of the sweep driver processes of ``sweep_id`` still alive."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"vitrine.tasks.sweep" in argv and sweep_id.encode() in argv:
            found.append(int(proc.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the driver")
def test_a_sweep_job_resumes_after_the_server_is_killed_without_retraining_finished_trials(tmp_path):
    root = tmp_path / "root"
    _datasets.make_colours(tmp_path / "images").save(Workspace(root).dataset_dir("colours"))
    log = tmp_path / "server.log"
    server, base = _serve(root, log)
    second = None
    try:
        body = {"task": "classify", "dataset": "colours", "grid": {"image_size": [32, 40, 48]}, "base": TINY,
                "cpus_per_trial": 2, "name": "restart"}  # fmt: skip
        job_id = _call(base + "/api/v1/sweeps", body)["job"]["id"]
        sweep_json = root / "sweeps" / "restart" / "sweep.json"

        def finished_one():
            trials = json.loads(sweep_json.read_text())["trials"]
            return any(t["state"] == "done" for t in trials) and not all(t["state"] == "done" for t in trials)

        _wait(finished_one, "one trial finished, not all", 300)
        server.send_signal(signal.SIGKILL)
        server.wait(30)
        _wait(lambda: not _drivers("restart"), "the driver to die with the server", 30)
        record = json.loads(sweep_json.read_text())
        finished = [t["run_id"] for t in record["trials"] if t["state"] == "done"]
        created = {rid: json.loads((root / "runs" / rid / "run.json").read_text())["created_at"] for rid in finished}

        second, base = _serve(root, log)
        final = _wait(
            lambda: (j := _call(f"{base}/api/v1/jobs/{job_id}"))["state"] in ("done", "failed", "cancelled") and j,
            "the resumed sweep job to finish",
            400,
        )
        assert final["state"] == "done", final
        assert final["attempts"] == 2 and any("resuming sweep restart" in line for line in final["log"])
        sweep = _call(f"{base}/api/v1/sweeps/restart")
        assert sweep["state"] == "done" and [t["state"] for t in sweep["trials"]] == ["done"] * 3
        assert sweep["attempts"] == 2  # the driver ran twice: once per server
        for rid in finished:  # not trained again: the same run, created once
            assert json.loads((root / "runs" / rid / "run.json").read_text())["created_at"] == created[rid]
        assert sorted(p.name for p in (root / "runs").iterdir()) == ["restart-t000", "restart-t001", "restart-t002"]
    finally:
        for proc in (server, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for pid in _drivers("restart"):
            os.killpg(pid, signal.SIGKILL)
    assert "Traceback" not in log.read_text()
