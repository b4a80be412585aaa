"""Indexing on Ray Data (``vitrine index PROJECT --ray ADDRESS``): the pool's resources check, a
precise error for an address nothing answers at, and on a real two-node cluster started on
127.0.0.1 (one head and one worker, two logical CPUs each, module-scoped): the same vectors as a
local run of offline-concepts on the demo project, and a driver killed with SIGKILL part-way that a
rerun completes by embedding only what is missing."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vitrine.core.errors import VitrineError
from vitrine.embed import distributed
from vitrine.embed.distributed import BASE_ACTOR_MEMORY, READ_CPUS, RayOptions, block_rows, plan_pool
from vitrine.models import registry
from vitrine.project import Project

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cli_helpers as cli  # noqa: E402
from ray_loopback import free_port, loopback_cluster, ray_cli, wait_for_nodes  # noqa: E402

OFFLINE = cli.OFFLINE
N_DEMO = 20
GB = 1024**3


# ------------------------------------------------------------------------- the pool's resources
def test_a_pool_that_takes_every_cpu_is_refused_with_what_to_change():
    with pytest.raises(VitrineError) as info:
        plan_pool(cpus=4, node_cpus=[2, 2], memory=16 * GB, memory_per_actor=GB, actors=4, cpus_per_actor=1)
    message = str(info.value)
    assert "takes 4 of the cluster's 4 free CPUs" in message and "hangs" in message
    assert "--ray-actors 3" in message and "add nodes" in message
    # two CPUs per actor: one actor fits beside the CPU left for Ray Data, two do not
    assert plan_pool(4, [2, 2], 16 * GB, GB, actors=1, cpus_per_actor=2).actors == 1
    with pytest.raises(VitrineError, match="--ray-actors 1 "):
        plan_pool(4, [2, 2], 16 * GB, GB, actors=2, cpus_per_actor=2)


def test_the_default_pool_leaves_a_cpu_and_fits_the_memory():
    pool = plan_pool(cpus=4, node_cpus=[2, 2], memory=16 * GB, memory_per_actor=GB)
    assert (pool.actors, pool.cpus_per_actor) == (1, 2)  # 2 CPUs each on a 4-CPU cluster, one left over
    pool = plan_pool(cpus=3, node_cpus=[2, 1], memory=16 * GB, memory_per_actor=GB)
    assert (pool.actors, pool.cpus_per_actor) == (2, 1)
    assert pool.actors * pool.cpus_per_actor <= 3 - READ_CPUS
    # memory bounds the default: 17 free CPUs but room for 3 models
    assert plan_pool(cpus=17, node_cpus=[17], memory=3.5 * GB, memory_per_actor=GB, cpus_per_actor=1).actors == 3


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"cpus": 1, "node_cpus": [1]}, "too few for an actor"),
        ({"cpus": 8, "node_cpus": [4, 4], "cpus_per_actor": 6}, r"fits on no node .*the largest has 4"),
        ({"cpus": 8, "node_cpus": [8], "actors": 4, "memory": 3 * GB}, "more than the 3072 MB"),
    ],
)
def test_pools_that_cannot_run_are_refused(kwargs, expected):
    args = {"memory": 16 * GB, "memory_per_actor": GB, "cpus_per_actor": 1} | kwargs
    with pytest.raises(VitrineError, match=expected) as info:
        plan_pool(**args)
    assert info.value.hint


def test_blocks_hold_one_batch_until_there_would_be_too_many():
    assert block_rows(20, 4) == 4
    assert block_rows(640_000, 32) == 32  # 20,000 blocks of one batch
    assert block_rows(640_001, 32) == 64
    rows = block_rows(10_000_000, 32)
    assert rows % 32 == 0 and -(-10_000_000 // rows) <= distributed.MAX_BLOCKS


def test_the_model_memory_estimate_counts_the_weights():
    from vitrine.embed.distributed import model_memory_bytes

    embedder = registry.load(OFFLINE)
    estimate = model_memory_bytes(embedder)
    assert BASE_ACTOR_MEMORY + 30 * 2**20 < estimate < BASE_ACTOR_MEMORY + 2 * GB


# ------------------------------------------------------------------------------- the address
def test_an_address_nothing_answers_at_fails_at_once(fresh_demo):
    port = free_port()  # bound then closed: nothing listens there
    started = time.monotonic()
    with pytest.raises(VitrineError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}") as info:
        Project(fresh_demo).index(model=OFFLINE, ray=RayOptions(f"127.0.0.1:{port}"))
    assert time.monotonic() - started < 30
    assert "ray start --head" in info.value.hint
    with pytest.raises(VitrineError, match="Ray Client"):
        RayOptions("ray://127.0.0.1:10001")
    with pytest.raises(VitrineError, match="actors must be at least 1"):
        RayOptions("local", actors=0)


def test_ray_options_need_ray_on_the_command_line(fresh_demo):
    result = cli.run("index", fresh_demo, "--ray-actors", "2")
    assert result.returncode != 0 and "apply to a run on Ray only" in cli.flat(result.stderr + result.stdout)


# ------------------------------------------------------------------------ a loopback cluster
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker on 127.0.0.1 (two logical CPUs each: a pool of 2 one-CPU actors leaves
    two for Ray Data), started with ``ray start`` and stopped at the module's end."""
    if ray_cli() is None:
        pytest.skip("the `ray` command is not installed next to this Python (pip install 'ray[data]')")
    if not sys.platform.startswith("linux"):
        pytest.skip("the loopback cluster finds Ray's processes in /proc")
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")  # loopback only: the nodes and the drivers agree
    patch.setenv("VITRINE_CACHE_DIR", str(tmp_path_factory.mktemp("ray-cache")))
    try:
        with loopback_cluster((2, 2)) as (address, _, _):
            wait_for_nodes(address, 2)
            yield address
    finally:
        patch.undo()


def _vectors(p: Project) -> dict[str, dict[str, np.ndarray]]:
    """``{space: {relpath: vector}}`` of every file of the project."""
    files = p.catalog.files()
    out = {}
    for space in registry.load(OFFLINE).spaces.dims:
        ids, vecs = p.catalog.vectors_for(OFFLINE, space, [row.content_id for row in files.values()])
        by_id = dict(zip(ids.tolist(), vecs, strict=True))
        out[space] = {rel: by_id[row.content_id] for rel, row in files.items() if row.content_id in by_id}
    return out


def _assert_same_vectors(p: Project, ref: Project) -> None:
    got, want = _vectors(p), _vectors(ref)
    for space in want:
        assert set(got[space]) == set(want[space]) and len(want[space]) == N_DEMO, space
        a = np.stack([got[space][rel] for rel in sorted(want[space])]).astype(np.float32)
        b = np.stack([want[space][rel] for rel in sorted(want[space])]).astype(np.float32)
        cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cosine.min() >= 0.999, (space, cosine.min())


@pytest.mark.slow
def test_ray_on_two_nodes_gives_the_vectors_of_a_local_run(cluster, fresh_demo, indexed_demo, monkeypatch):
    # blocks of several batches (as past 20,000 blocks): 20 images -> blocks of 12 and 8, batches of 4
    monkeypatch.setattr(distributed, "MAX_BLOCKS", 2)
    assert distributed.block_rows(N_DEMO, 4) == 12
    p = Project(fresh_demo)
    report = p.index(model=OFFLINE, ray=RayOptions(cluster, actors=2, cpus_per_actor=1), batch_size=4)
    assert (report.embedded, report.unchanged, report.failed) == (N_DEMO, 0, [])
    ray = report.stages["ray"]
    assert (ray["actors"], ray["cpus_per_actor"], ray["cluster_nodes"]) == (2, 1, 2)
    assert 1 <= ray["nodes"] <= 2 and 1 <= ray["actors_used"] <= 2
    assert ray["threads"] == [1]  # each actor's torch threads: its one CPU
    assert ray["runtimes"] == ["torch: asked for"]  # the tests index on torch (VITRINE_RUNTIME)
    assert report.stages["model_seconds"] > 0 and report.stages["decode_seconds"] > 0
    _assert_same_vectors(p, Project(indexed_demo))
    assert p.search("a cat", k=1).hits[0].path == Project(indexed_demo).search("a cat", k=1).hits[0].path
    print(f"\nRay on loopback: {ray}")


@pytest.mark.slow
def test_ray_actors_embed_on_the_runtime_asked_for(cluster, fresh_demo, indexed_demo):
    p = Project(fresh_demo)
    report = p.index(model=OFFLINE, ray=RayOptions(cluster, actors=1, cpus_per_actor=1), runtime="onnxruntime")
    assert report.embedded == N_DEMO
    (line,) = report.stages["ray"]["runtimes"]
    assert line.startswith("onnxruntime fp32"), line
    assert report.runtime["line"] == f"Ray actors: {line}"
    _assert_same_vectors(p, Project(indexed_demo))  # ONNX Runtime fp32 on the actor gives torch's vectors


@pytest.mark.slow
def test_the_resources_check_refuses_a_pool_that_takes_every_cpu(cluster, fresh_demo):
    p = Project(fresh_demo)
    with pytest.raises(VitrineError, match=r"takes 4 of the cluster.s [0-9.]+ free CPUs") as info:
        p.index(model=OFFLINE, ray=RayOptions(cluster, actors=4, cpus_per_actor=1))
    assert "--ray-actors" in info.value.hint and "add nodes" in info.value.hint
    assert p.catalog.models().get(OFFLINE, 0) == 0  # refused before any work


@pytest.mark.slow
def test_a_driver_killed_part_way_resumes_with_only_the_missing_images(cluster, fresh_demo, indexed_demo):
    p = Project(fresh_demo)
    # a pause after each committed batch of 2 keeps the driver going long enough to be killed part-way
    env = cli.cli_env(VITRINE_THROTTLE_BATCH_SECONDS="0.5")
    args = ("index", fresh_demo, "--model", OFFLINE, "--ray", cluster, "--ray-actors", "1", "--batch-size", "2")
    proc = cli.start(*args, env=env)
    try:
        cli.wait_for_vectors(proc, p.paths.catalog_db, at_least=4, timeout=240)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    committed = cli.committed_vectors(p.paths.catalog_db)
    assert 4 <= committed < N_DEMO, f"{committed} vectors: the run was not stopped part-way"

    result = cli.run("index", fresh_demo, "--ray", cluster, "--ray-actors", "1", "--json", timeout=240)
    assert result.returncode == 0, cli.describe(result)
    report = json.loads(result.stdout)
    assert (report["embedded"], report["unchanged"], report["failed"]) == (N_DEMO - committed, committed, [])
    assert report["stages"]["ray"]["actors"] == 1
    _assert_same_vectors(p, Project(indexed_demo))
    assert os.environ.get("RAY_AUTH_MODE") == "disabled"


def test_the_report_line_says_how_many_actors_on_how_many_nodes():
    from vitrine.cli.project import ray_line

    line = ray_line(
        {"address": "127.0.0.1:6379", "actors": 2, "nodes": 2, "cpus_per_actor": 1, "cluster_nodes": 2,
         "cluster_cpus": 4.0, "connect_seconds": 0.4, "first_batch_seconds": 9.5}
    )  # fmt: skip
    assert line.startswith("2 actors on 2 nodes (1 CPU(s) each; the cluster: 2 nodes, 4 free CPUs) at 127.0.0.1:6379")
    assert "first batch after 9.5 s" in line
