"""The cluster path: a Ray head and a worker started with ``ray start`` on 127.0.0.1 (one CPU each),
and a 2-trial sweep sent to the head's address with one CPU per trial: both trials finish, on two
different nodes. Prints Ray's start-up time and the memory (RSS) of its processes (``-s``).
Random-initialised models on 32 px images: the machinery, never quality."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from vitrine.experiments.sweep import Sweep, SweepSpec
from vitrine.tasks.sweep import drive

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray's processes in /proc"),
]

TINY = ["pretrained=false", "batch_size=8", "early_stopping_patience=none", "cache_mb=64", "epochs=1"]
OBJECT_STORE = str(80 * 1024 * 1024)  # per node: the trials pass nothing through it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pss(entry: Path) -> int:
    """Proportional set size in bytes (shared pages split between the processes sharing them)."""
    try:
        for line in (entry / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _processes() -> dict[int, tuple[int, str, int]]:
    """``{pid: (parent pid, command line, RSS in bytes)}`` of every process readable in /proc."""
    page = os.sysconf("SC_PAGE_SIZE")
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            rss = int((entry / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out[int(entry.name)] = (ppid, cmdline, rss)
    return out


def ray_processes(temp_dir: str) -> dict[int, int]:
    """``{pid: RSS}`` of the Ray processes of the cluster kept in ``temp_dir`` (every one of them
    names it, or descends from one that does): exactly the processes this test started."""
    procs = _processes()
    found = {pid for pid, (_, cmd, _) in procs.items() if temp_dir in cmd}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _, _) in procs.items() if ppid in found and pid not in found}
        found |= more
        grew = bool(more)
    return {pid: procs[pid][2] for pid in found}


def _stop(temp_dir: str) -> None:
    """Stop this cluster's processes, by their ids (``ray stop`` would stop every Ray of the machine)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        pids = ray_processes(temp_dir)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while ray_processes(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not ray_processes(temp_dir):
            return


def _ray(*args: str, env: dict) -> float:
    ray = Path(sys.executable).with_name("ray")
    start = time.perf_counter()
    done = subprocess.run([str(ray), *args], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"ray {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return time.perf_counter() - start


@pytest.fixture
def cluster(monkeypatch):
    """A head and a worker on 127.0.0.1, one CPU each, no dashboard, a temporary folder of their own.
    Yields ``(address, temp_dir, timings)``; the finalizer stops both."""
    temp_dir = tempfile.mkdtemp(prefix="vray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # loopback only; the head, the worker and the driver agree
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", OBJECT_STORE]
    try:
        timings = {
            "head_s": _ray(
                "start",
                "--head",
                "--port",
                str(port),
                "--include-dashboard=false",
                "--temp-dir",
                temp_dir,
                *common,
                env=env,
            ),  # fmt: skip
            "worker_s": _ray("start", "--address", address, *common, env=env),
        }
        yield address, temp_dir, timings
    finally:
        _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _nodes(address: str, count: int, timeout: float = 60) -> None:
    import ray

    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        deadline = time.monotonic() + timeout
        while sum(n["Alive"] for n in ray.nodes()) < count:
            assert time.monotonic() < deadline, f"the cluster never had {count} nodes: {ray.nodes()}"
            time.sleep(0.2)
    finally:
        ray.shutdown()


def test_a_sweep_on_a_two_node_cluster_runs_its_trials_on_both_nodes(cluster, sweep_ws):
    address, temp_dir, timings = cluster
    _nodes(address, 2)
    idle = ray_processes(temp_dir)
    spec = SweepSpec.build("classify", "colours", grid=["lr=0.01,0.1"], base=TINY, cpus_per_trial=1, name="cluster")
    started = time.perf_counter()
    peak: dict[int, int] = {}
    peak_pss: dict[int, int] = {}

    def sample(sweep) -> None:  # the Ray processes' memory while trials train (trial workers included)
        for pid, rss in ray_processes(temp_dir).items():
            peak[pid] = max(peak.get(pid, 0), rss)
            peak_pss[pid] = max(peak_pss.get(pid, 0), _pss(Path(f"/proc/{pid}")))

    # the driver as `vitrine sweep --ray-address` runs it: a child process (this one ran local Rays before)
    sweep = drive(sweep_ws, Sweep.create(sweep_ws, spec), ray_address=address, progress=sample)
    took = time.perf_counter() - started
    assert sweep.record["state"] == "done"
    assert [t["state"] for t in sweep.trials] == ["done", "done"]
    nodes = [t.get("node") for t in sweep.trials]
    assert all(nodes) and len(set(nodes)) == 2, nodes  # one trial per node: each has one CPU
    mib = 1024 * 1024
    print(
        f"\nRay cluster on loopback: head started in {timings['head_s']:.1f} s, worker in {timings['worker_s']:.1f} s;"
        f" {len(idle)} Ray processes, {sum(idle.values()) / mib:.0f} MiB RSS"
        f" ({sum(_pss(Path(f'/proc/{pid}')) for pid in idle) / mib:.0f} MiB PSS) idle;"
        f" the 2-trial sweep took {took:.1f} s; {len(peak)} Ray processes at their peaks:"
        f" {sum(peak.values()) / mib:.0f} MiB RSS, {sum(peak_pss.values()) / mib:.0f} MiB PSS"
    )
