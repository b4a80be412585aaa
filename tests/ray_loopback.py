"""A Ray cluster on 127.0.0.1 for tests: a head and workers started with ``ray start`` (the real
two-node path), in a temporary folder of their own, stopped by their process ids at the end
(``ray stop`` would stop every Ray of the machine). Linux only (it finds Ray's processes in /proc)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


def ray_cli() -> Path | None:
    """The ``ray`` command next to the running Python, or None when Ray is not installed."""
    path = Path(sys.executable).with_name("ray")
    return path if path.is_file() and os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pss(entry: Path) -> int:
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


def stop(temp_dir: str) -> None:
    """Stop this cluster's processes, by their ids."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
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
    start = time.perf_counter()
    done = subprocess.run([str(ray_cli()), *args], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"ray {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return time.perf_counter() - start


@contextmanager
def loopback_cluster(cpus: tuple[int, ...] = (1, 1), object_store_bytes: int = 80 * 2**20, env: dict | None = None):
    """A head and ``len(cpus) - 1`` workers on 127.0.0.1 (``cpus``: each node's CPUs), no dashboard.
    ``RAY_AUTH_MODE=disabled`` must be in the environment of the drivers too (loopback only).
    Yields ``(address, temp_dir, timings)``; stops every process of the cluster on exit."""
    temp_dir = tempfile.mkdtemp(prefix="vray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, **(env or {}), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_port()
    address = f"127.0.0.1:{port}"

    def common(n: int) -> list[str]:
        store = str(object_store_bytes)
        return ["--node-ip-address", "127.0.0.1", "--num-cpus", str(n), "--object-store-memory", store]

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
                *common(cpus[0]),
                env=env,
            ),  # fmt: skip
        }
        for i, n in enumerate(cpus[1:], start=1):
            timings[f"worker{i}_s"] = _ray("start", "--address", address, *common(n), env=env)
        yield address, temp_dir, timings
    finally:
        stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_nodes(address: str, count: int, timeout: float = 60) -> None:
    """Wait until the cluster at ``address`` has ``count`` alive nodes (joins and leaves it)."""
    import ray

    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        deadline = time.monotonic() + timeout
        while sum(n["Alive"] for n in ray.nodes()) < count:
            assert time.monotonic() < deadline, f"the cluster never had {count} nodes: {ray.nodes()}"
            time.sleep(0.2)
    finally:
        ray.shutdown()
