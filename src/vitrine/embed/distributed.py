"""Embedding on a Ray cluster with Ray Data: an actor pool embeds, the driver commits batch by batch.

The driver is the process that runs ``vitrine index PROJECT --ray ADDRESS``: it scans the project and
computes the pending list exactly as a local run does (contents with no vector for the model), then
hands it to Ray Data as a dataset of ``(content_id, path)`` rows, one block per batch (several
batches per block past :data:`MAX_BLOCKS` blocks). A pool of actors (``map_batches`` with a
callable class and a fixed ``ActorPoolStrategy``), each holding the model once and its thread
counts set explicitly, decodes the files of a batch (the same
:func:`~vitrine.embed.pipeline.decode_batches` / ``open_image(min_side=DECODE_MIN_SIDE)`` rules as
the local loop, in the actor's own threads) and embeds them. The driver iterates the results and
commits each block through the same ``on_batch`` as the local loop (one catalog transaction per
block), so a driver killed part-way loses only the blocks in flight and a rerun embeds only what
is missing.

The files are read by the actors, at the paths the driver sees: every node must see the project's
images at the same path (a shared filesystem; on a single machine, the same disk). Decoding happens
inside the actors so that only paths go out and only vectors (2 KB per 512-d image in float32)
come back: a prepared 224 px image is 600 KB, which the object store and the network would carry
otherwise.

Before anything starts, :func:`plan_pool` checks the cluster's resources: an actor pool that takes
every CPU leaves none for Ray Data's own tasks and the run hangs, an actor wider than every node
never starts, and a pool that does not fit the cluster's memory gets killed; each is refused with
what to change (``--ray-actors``, ``--ray-cpus-per-actor``, more nodes).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitrine.core.errors import Cancelled, VitrineError
from vitrine.core.ray_cluster import DEFAULT_OBJECT_STORE_BYTES, LOCAL, check_address, ray_init
from vitrine.embed.pipeline import EmbedItem, StageTimes, decode_batches, embed_prepared, throttle_seconds
from vitrine.models.base import Embedder
from vitrine.models.preprocess import DECODE_MIN_SIDE

READ_CPUS = 1  # CPUs an actor pool must leave free for Ray Data's own tasks (reads, splits)
# an actor's memory: this (a Ray worker with torch imported, a batch of decoded images) + 4 x the weights
BASE_ACTOR_MEMORY = 1024 * 1024 * 1024
# the settings that decide where a model's weights come from: the actors load it as the driver would
PASSED_ENV = (
    "VITRINE_CACHE_DIR",
    "VITRINE_HOME",
    "VITRINE_OFFLINE",
    "HF_HOME",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TORCH_HOME",
    "XDG_CACHE_HOME",
)
VECTOR = "vector:"  # result columns: ``vector:<space>`` (n, dim) float32
MAX_BLOCKS = 20_000  # one block per batch up to this many; beyond, blocks of several batches


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: ``address`` is ``local`` (a Ray started on this machine for the run),
    ``auto`` (the cluster this node belongs to) or the head's ``HOST:PORT``. ``actors`` and
    ``cpus_per_actor``: None lets :func:`plan_pool` choose from the cluster's resources."""

    address: str = LOCAL
    actors: int | None = None
    cpus_per_actor: int | None = None
    object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES  # only for a local Ray

    def __post_init__(self):
        check_address(self.address, "indexing on Ray")
        for name in ("actors", "cpus_per_actor"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise VitrineError(f"{name.replace('_', ' ')} must be at least 1, not {value}")


@dataclass(frozen=True)
class Pool:
    """The actor pool a run uses, and the cluster it was planned on."""

    actors: int
    cpus_per_actor: int
    memory_per_actor: int
    cluster_cpus: float
    cluster_nodes: int

    def to_dict(self) -> dict:
        return {
            "actors": self.actors,
            "cpus_per_actor": self.cpus_per_actor,
            "memory_per_actor_mb": round(self.memory_per_actor / 2**20),
            "cluster_cpus": self.cluster_cpus,
            "cluster_nodes": self.cluster_nodes,
        }


def model_memory_bytes(embedder: Embedder) -> int:
    """What one actor holding ``embedder`` needs: :data:`BASE_ACTOR_MEMORY` plus four times its
    torch weights and buffers (the weights, the activations of a batch). Ray Data measured up to
    1.2 GB per actor for offline-concepts (~100 MB of weights) at batches of 32: this says 1.4 GB.
    Ray schedules the actors with it, so a node never gets more models than its memory holds."""
    try:
        import torch
    except ImportError:  # a model on a CPU runtime only
        return BASE_ACTOR_MEMORY
    seen: set[int] = set()
    total = 0
    for value in vars(embedder).values():
        if isinstance(value, torch.nn.Module):
            for tensor in (*value.parameters(), *value.buffers()):
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    total += tensor.numel() * tensor.element_size()
    return BASE_ACTOR_MEMORY + 4 * total


def plan_pool(
    cpus: float,
    node_cpus: Sequence[float],
    memory: float,
    memory_per_actor: int,
    actors: int | None = None,
    cpus_per_actor: int | None = None,
) -> Pool:
    """The actor pool for a cluster with ``cpus`` free CPUs (``node_cpus``: each alive node's CPUs)
    and ``memory`` bytes of Ray memory, or a :class:`VitrineError` saying what to change.

    Defaults: one CPU per actor on a cluster of fewer than 4 CPUs, else two (two threads per model
    keep its batches short without leaving cores idle while it decodes); as many actors as fit
    in the CPUs left after :data:`READ_CPUS` and in the memory."""
    free = int(cpus) - READ_CPUS
    widest = int(max(node_cpus, default=0))
    more_nodes = "or add nodes (`ray start --address HEAD:PORT` on another machine)"
    if cpus_per_actor is None:
        cpus_per_actor = max(1, min(2 if cpus >= 4 else 1, widest))
    if cpus_per_actor > widest:
        raise VitrineError(
            f"an actor with {cpus_per_actor} CPUs fits on no node of this cluster (the largest has {widest})",
            hint=f"use --ray-cpus-per-actor {max(1, widest)} or less",
        )
    if free < cpus_per_actor:
        raise VitrineError(
            f"the Ray cluster has {cpus:g} free CPU(s): too few for an actor of {cpus_per_actor} CPU(s) "
            f"and the {READ_CPUS} Ray Data needs for its own tasks",
            hint=f"start Ray with more CPUs (ray start --num-cpus), {more_nodes}",
        )
    fit_memory = int(memory // memory_per_actor) if memory_per_actor else free
    if actors is None:
        actors = max(1, min(free // cpus_per_actor, fit_memory))
    taken = actors * cpus_per_actor
    if taken > free:
        most = free // cpus_per_actor
        raise VitrineError(
            f"an actor pool of {actors} actor(s) x {cpus_per_actor} CPU(s) takes {taken} of the cluster's "
            f"{cpus:g} free CPUs: Ray Data needs at least {READ_CPUS} left for its own tasks, else the run hangs",
            hint=f"use --ray-actors {most} (at {cpus_per_actor} CPU(s) each), a smaller --ray-cpus-per-actor, "
            f"{more_nodes}",
        )
    if actors * memory_per_actor > memory:
        mb = memory_per_actor / 2**20
        raise VitrineError(
            f"an actor pool of {actors} actor(s) needs about {actors * mb:.0f} MB for the model ({mb:.0f} MB "
            f"each), more than the {memory / 2**20:.0f} MB of memory the Ray cluster offers",
            hint=f"use --ray-actors {max(1, fit_memory)} or fewer, {more_nodes}",
        )
    return Pool(actors, cpus_per_actor, memory_per_actor, float(cpus), len(node_cpus))


class EmbedActor:
    """One actor of the pool: holds the model (loaded once) and embeds the batches Ray Data gives it.
    Its thread counts are set before the model loads: torch's intra-op threads, OpenMP's, and the
    CPU runtimes' (``VITRINE_RUNTIME_THREADS``) to its CPUs; decoding uses as many threads."""

    def __init__(self, model: str, weights: str | None, threads: int, runtime: str = "torch"):
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ["VITRINE_RUNTIME_THREADS"] = str(threads)
        import ray
        import torch

        torch.set_num_threads(threads)
        from vitrine.models import registry

        self.threads = threads
        self.model = registry.load(model, weights=weights)
        self.torch_threads = torch.get_num_threads()  # what the model really runs with, reported back
        # the CPU runtime is settled on the first batch (int8 calibrates on its images): the one
        # asked for, or with ``auto`` the choice saved on this node's machine, else torch
        self.runtime = runtime
        self.runtime_line: str | None = None
        context = ray.get_runtime_context()
        self.node = context.get_node_id()
        self.actor = context.get_actor_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [EmbedItem(int(c), Path(str(p)), "") for c, p in zip(batch["content_id"], batch["path"], strict=True)]
        if self.runtime_line is None:
            from vitrine.embed.runtime_choice import select

            decision = select(self.model, items, self.runtime, may_measure=False)
            self.model, self.runtime_line = decision.embedder, decision.line
        times = StageTimes()
        decoded: list = []
        batches = decode_batches(
            items,
            self.model.preprocess,
            len(items),
            workers=self.threads,
            prefetch=0,
            min_side=DECODE_MIN_SIDE,
            times=times,
        )
        with closing(batches):
            for part in batches:
                decoded.extend(part)
        ok = [i for i, (_, _, _, error) in enumerate(decoded) if error is None]
        t0 = time.perf_counter()
        vectors = embed_prepared(self.model, [decoded[i][1] for i in ok]) if ok else {}
        model_seconds = time.perf_counter() - t0
        n = len(decoded)
        meta = [d[2] or {} for d in decoded]
        out = {
            "content_id": np.asarray([d[0].content_id for d in decoded], dtype=np.int64),
            "error": np.asarray([d[3] or "" for d in decoded], dtype=object),
            "width": np.asarray([m.get("width") or -1 for m in meta], dtype=np.int64),
            "height": np.asarray([m.get("height") or -1 for m in meta], dtype=np.int64),
            "format": np.asarray([m.get("format") or "" for m in meta], dtype=object),
            # the batch's seconds on its first row: the driver adds the column up
            "decode_seconds": np.asarray([times.decode] + [0.0] * (n - 1)),
            "model_seconds": np.asarray([model_seconds] + [0.0] * (n - 1)),
            "node": np.asarray([self.node] * n, dtype=object),
            "actor": np.asarray([self.actor] * n, dtype=object),
            "threads": np.asarray([self.torch_threads] * n, dtype=np.int64),
            "runtime": np.asarray([self.runtime_line] * n, dtype=object),
        }
        for space, dim in self.model.spaces.dims.items():
            column = np.zeros((n, dim), dtype=np.float32)
            if ok:
                column[ok] = np.asarray(vectors[space], dtype=np.float32)
            out[VECTOR + space] = column
        return out


def _runtime_env() -> dict | None:
    env = {name: os.environ[name] for name in PASSED_ENV if os.environ.get(name)}
    return {"env_vars": env} if env else None


def _quiet_ray_data() -> None:
    """No progress bars or execution banners from Ray Data: the CLI draws its own progress, and
    ``--json`` keeps stdout for the report."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    for name in ("print_on_execution_start", "enable_operator_progress_bars", "verbose_stats_logs"):
        if hasattr(context, name):
            setattr(context, name, False)


class RayIndexer:
    """A connection to Ray for one indexing run (a context manager: it starts a local Ray or joins
    the cluster on entry, and leaves it on exit), the pool planned for the model (:meth:`prepare`)
    and the embedding itself (:meth:`embed`, called like :func:`~vitrine.embed.pipeline.embed_items`)."""

    def __init__(self, options: RayOptions):
        self.options = options
        self.pool: Pool | None = None
        self._model: tuple[str, str | None] | None = None
        self._started = False
        self._nodes: set[str] = set()
        self._actors: set[str] = set()
        self._threads: set[int] = set()
        self._runtimes: set[str] = set()
        self._runtime = "torch"
        self._connect_seconds = 0.0
        self._first_batch_seconds: float | None = None  # the pool's start: actors placed, models loaded

    def __enter__(self) -> RayIndexer:
        t0 = time.perf_counter()
        self._started = ray_init(
            self.options.address,
            object_store_bytes=self.options.object_store_bytes,
            use_env=False,
            runtime_env=_runtime_env(),
        )
        self._connect_seconds = time.perf_counter() - t0
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def prepare(self, embedder: Embedder, model: str, weights: str | None, runtime: str = "torch") -> Pool:
        """Plan the actor pool for ``embedder`` on this cluster (refused before any work when it
        does not fit; see :func:`plan_pool`). ``runtime``: what the actors embed with (as
        ``vitrine index --runtime``; ``auto`` uses the choice saved on each node's machine)."""
        self._runtime = runtime
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        available = ray.available_resources()
        self.pool = plan_pool(
            cpus=float(available.get("CPU", 0)),
            node_cpus=[float(n.get("Resources", {}).get("CPU", 0)) for n in nodes],
            memory=float(available.get("memory", 0)),
            memory_per_actor=model_memory_bytes(embedder),
            actors=self.options.actors,
            cpus_per_actor=self.options.cpus_per_actor,
        )
        self._model = (model, weights)
        return self.pool

    def summary(self) -> dict:
        """What the index report shows: the address, the pool and the nodes its actors ran on."""
        out = {"address": self.options.address, "connect_seconds": round(self._connect_seconds, 3)}
        if self.pool is not None:
            out |= self.pool.to_dict()
        out |= {"nodes": len(self._nodes), "actors_used": len(self._actors), "threads": sorted(self._threads)}
        out["runtimes"] = sorted(self._runtimes)
        if self._first_batch_seconds is not None:
            out["first_batch_seconds"] = round(self._first_batch_seconds, 3)
        return out

    def embed(
        self,
        model: Embedder,
        items: Sequence[EmbedItem],
        on_batch: Callable[[list[int], dict[str, np.ndarray], dict[int, dict]], None],
        on_failure: Callable[[EmbedItem, str], None],
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        batch_size: int | None = None,
        times: StageTimes | None = None,
    ) -> StageTimes:
        """Embed ``items`` on the pool; ``on_batch`` commits each batch on this process as it comes
        back (in whatever order the actors finish). ``times``: the actors' decode and model
        seconds (added up over actors), the driver's waits and its store time."""
        if self.pool is None or self._model is None:
            raise RuntimeError("RayIndexer.prepare() must be called before embed()")
        import pyarrow as pa
        import ray.data

        times = times if times is not None else StageTimes()
        times.workers = self.pool.actors * self.pool.cpus_per_actor
        if not items:
            return times
        batch_size = batch_size or model.batch_size
        by_id = {item.content_id: item for item in items}
        rows = block_rows(len(items), batch_size)
        blocks = [
            pa.table(
                {
                    "content_id": pa.array([it.content_id for it in items[i : i + rows]], pa.int64()),
                    "path": pa.array([str(it.path) for it in items[i : i + rows]], pa.string()),
                }
            )
            for i in range(0, len(items), rows)
        ]
        _quiet_ray_data()
        name, weights = self._model
        results = ray.data.from_arrow(blocks).map_batches(
            EmbedActor,
            fn_constructor_kwargs={
                "model": name,
                "weights": weights,
                "threads": self.pool.cpus_per_actor,
                "runtime": self._runtime,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.pool.actors),
            num_cpus=self.pool.cpus_per_actor,
            memory=self.pool.memory_per_actor,
        )
        spaces = list(model.spaces.dims)
        throttle = throttle_seconds()
        done = 0
        batches = results.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1)
        start = t0 = time.perf_counter()
        for batch in batches:
            times.wait += time.perf_counter() - t0
            if self._first_batch_seconds is None:
                self._first_batch_seconds = time.perf_counter() - start
            if cancel is not None and cancel.is_set():
                raise Cancelled("indexing was cancelled; what was embedded so far is kept")
            times.decode += float(np.sum(batch["decode_seconds"]))
            times.model += float(np.sum(batch["model_seconds"]))
            self._nodes.update(str(n) for n in batch["node"])
            self._actors.update(str(a) for a in batch["actor"])
            self._threads.update(int(t) for t in batch["threads"])
            self._runtimes.update(str(r) for r in batch["runtime"])
            good = np.asarray([not e for e in batch["error"]], dtype=bool)
            for cid, error in zip(batch["content_id"][~good], batch["error"][~good], strict=True):
                on_failure(by_id[int(cid)], str(error))
            if good.any():
                ids = [int(c) for c in batch["content_id"][good]]
                info = {
                    cid: {"width": int(w), "height": int(h), "format": str(f) or None}
                    for cid, w, h, f in zip(
                        ids, batch["width"][good], batch["height"][good], batch["format"][good], strict=True
                    )
                }
                vectors = {space: np.asarray(batch[VECTOR + space][good], dtype=np.float32) for space in spaces}
                t1 = time.perf_counter()
                on_batch(ids, vectors, info)
                times.store += time.perf_counter() - t1
                if throttle:
                    time.sleep(throttle)
            done += len(batch["content_id"])
            if progress:
                progress(done, len(items))
            t0 = time.perf_counter()
        return times


def block_rows(items: int, batch_size: int) -> int:
    """Rows per block of the dataset: one batch, or several when one batch each would make more
    than :data:`MAX_BLOCKS` blocks (each block is one task on an actor, and one commit on the
    driver: 10M images at batches of 32 commit every 512 images, in 19,532 blocks)."""
    per_block = -(-items // MAX_BLOCKS)  # ceil
    return batch_size * max(1, -(-per_block // batch_size))


def ray_indexer(options: RayOptions | None):
    """A :class:`RayIndexer` context for ``options``, or a context yielding None (a local run)."""
    return RayIndexer(options) if options is not None else nullcontext()


__all__ = [
    "EmbedActor",
    "Pool",
    "RayIndexer",
    "RayOptions",
    "block_rows",
    "model_memory_bytes",
    "plan_pool",
    "ray_indexer",
]
