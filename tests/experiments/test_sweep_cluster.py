"""The cluster path: a Ray head and a worker started with ``ray start`` on 127.0.0.1 (one CPU each),
and a 2-trial sweep sent to the head's address with one CPU per trial: both trials finish, on two
different nodes. Prints Ray's start-up time and the memory (RSS) of its processes (``-s``).
Random-initialised models on 32 px images: the machinery, never quality."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from vitrine.experiments.sweep import Sweep, SweepSpec
from vitrine.tasks.sweep import drive

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_loopback import loopback_cluster, pss, ray_processes, wait_for_nodes  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray's processes in /proc"),
]

TINY = ["pretrained=false", "batch_size=8", "early_stopping_patience=none", "cache_mb=64", "epochs=1"]
OBJECT_STORE = 80 * 1024 * 1024  # per node: the trials pass nothing through it


@pytest.fixture
def cluster(monkeypatch):
    """A head and a worker on 127.0.0.1, one CPU each, no dashboard, a temporary folder of their own.
    Yields ``(address, temp_dir, timings)``; the finalizer stops both."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # loopback only; the head, the worker and the driver agree
    with loopback_cluster((1, 1), OBJECT_STORE) as found:
        yield found


def test_a_sweep_on_a_two_node_cluster_runs_its_trials_on_both_nodes(cluster, sweep_ws):
    address, temp_dir, timings = cluster
    wait_for_nodes(address, 2)
    idle = ray_processes(temp_dir)
    spec = SweepSpec.build("classify", "colours", grid=["lr=0.01,0.1"], base=TINY, cpus_per_trial=1, name="cluster")
    started = time.perf_counter()
    peak: dict[int, int] = {}
    peak_pss: dict[int, int] = {}

    def sample(sweep) -> None:  # the Ray processes' memory while trials train (trial workers included)
        for pid, rss in ray_processes(temp_dir).items():
            peak[pid] = max(peak.get(pid, 0), rss)
            peak_pss[pid] = max(peak_pss.get(pid, 0), pss(Path(f"/proc/{pid}")))

    # the driver as `vitrine sweep --ray-address` runs it: a child process (this one ran local Rays before)
    sweep = drive(sweep_ws, Sweep.create(sweep_ws, spec), ray_address=address, progress=sample)
    took = time.perf_counter() - started
    assert sweep.record["state"] == "done"
    assert [t["state"] for t in sweep.trials] == ["done", "done"]
    nodes = [t.get("node") for t in sweep.trials]
    assert all(nodes) and len(set(nodes)) == 2, nodes  # one trial per node: each has one CPU
    mib = 1024 * 1024
    print(
        f"\nRay cluster on loopback: head started in {timings['head_s']:.1f} s, worker in {timings['worker1_s']:.1f} s;"
        f" {len(idle)} Ray processes, {sum(idle.values()) / mib:.0f} MiB RSS"
        f" ({sum(pss(Path(f'/proc/{pid}')) for pid in idle) / mib:.0f} MiB PSS) idle;"
        f" the 2-trial sweep took {took:.1f} s; {len(peak)} Ray processes at their peaks:"
        f" {sum(peak.values()) / mib:.0f} MiB RSS, {sum(peak_pss.values()) / mib:.0f} MiB PSS"
    )
