"""Search latency and recall of vitrine's vector index vs the exact (flat) baseline.

For each size, synthetic 512-d L2-normalised vectors are generated (float32, in chunks) and two
indexes are built through vitrine.index.VectorIndex: the exact flat index (the baseline, measured
in the same run) and the index choose_index_kind() picks. Single queries (k=10) are timed one at a
time; recall@10 is measured against the exact index's answers for the same queries.

Usage:
    python benchmarks/search_latency.py [--sizes 10000,100000,1000000] [--queries 200]
        [--data clustered|isotropic|both] [--candidates] [--sweep-nprobe 8,16,32,64]

--data isotropic is the adversarial case (uniform on the sphere: no structure for IVF to use).

--text adds the text-query rows (``--sizes ""`` runs only them): the demo project is indexed with
each of --text-models (offline-concepts, real weights; clip-vit-b-32?weights=random, speed only),
which also exports its text tower to ONNX Runtime; then, for each model, in the same process and
in interleaved rounds, a text query through the API (GET /api/v1/projects/<p>/search via FastAPI's
TestClient: in process, no socket) with the exported tower and with the torch model
(VITRINE_TEXT_RUNTIME=torch, the path before the export existed), and the wall time of a cold
``vitrine search`` in a new process (python -m vitrine.cli), both ways.
--candidates also builds the alternative encodings considered for large collections (IVF-SQ8 with
the same lists, and HNSW32 up to --hnsw-max vectors) so the choice can be re-checked.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np

try:
    from vitrine.index import EXACT_MAX, IndexPlan, VectorIndex, choose_index_kind
    from vitrine.index.faiss_index import faiss_thread_count
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from vitrine.index import EXACT_MAX, IndexPlan, VectorIndex, choose_index_kind
    from vitrine.index.faiss_index import faiss_thread_count

DIM = 512
K = 10
CHUNK = 65_536


# ------------------------------------------------------------------------------------------------
# data


@dataclasses.dataclass
class Mixture:
    """Two-level Gaussian mixture: components grouped under topics, so neighbouring components
    overlap (clusters with structure, not isolated blobs)."""

    centres: np.ndarray  # (c, d) unit vectors
    weights: np.ndarray  # (c,)
    spread: np.ndarray  # (c,) noise norm relative to the unit centre

    @classmethod
    def make(cls, n: int, dim: int, seed: int, per_component: int) -> Mixture:
        rng = np.random.default_rng(seed)
        n_comp = max(8, n // per_component)
        n_topics = max(4, int(math.sqrt(n_comp)))
        topics = _normalise(rng.standard_normal((n_topics, dim), dtype=np.float32))
        topic_of = rng.integers(0, n_topics, n_comp)
        centres = topics[topic_of] + rng.standard_normal((n_comp, dim), dtype=np.float32) / math.sqrt(dim)
        weights = rng.lognormal(0.0, 0.75, n_comp)
        spread = rng.uniform(0.9, 1.5, n_comp).astype(np.float32)
        return cls(_normalise(centres), weights / weights.sum(), spread)

    def sample(self, n: int, seed: int) -> np.ndarray:
        out = np.empty((n, self.centres.shape[1]), dtype=np.float32)
        dim = self.centres.shape[1]
        for i, start in enumerate(range(0, n, CHUNK)):
            stop = min(n, start + CHUNK)
            rng = np.random.default_rng([seed, i])
            comp = rng.choice(len(self.weights), size=stop - start, p=self.weights)
            block = rng.standard_normal((stop - start, dim), dtype=np.float32)
            block *= (self.spread[comp] / math.sqrt(dim))[:, None]
            block += self.centres[comp]
            out[start:stop] = _normalise(block)
        return out


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def isotropic(n: int, dim: int, seed: int) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for i, start in enumerate(range(0, n, CHUNK)):
        stop = min(n, start + CHUNK)
        rng = np.random.default_rng([seed, i])
        out[start:stop] = _normalise(rng.standard_normal((stop - start, dim), dtype=np.float32))
    return out


def dataset(kind: str, n: int, n_queries: int, seed: int, per_component: int) -> tuple[np.ndarray, np.ndarray]:
    """Base vectors and queries drawn from the same distribution (queries are not in the base)."""
    if kind == "clustered":
        mix = Mixture.make(n, DIM, seed, per_component)
        return mix.sample(n, seed + 1), mix.sample(n_queries, seed + 2)
    return isotropic(n, DIM, seed + 1), isotropic(n_queries, DIM, seed + 2)


# ------------------------------------------------------------------------------------------------
# measurements


@dataclasses.dataclass
class Row:
    n: int
    data: str
    index: str
    build_s: float
    p50_ms: float
    p99_ms: float
    qps: float
    recall: float
    speedup: float
    mb_per_m: float


def serialized_bytes(index: faiss.Index) -> int:
    size = 0

    def count(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)

    writer = faiss.PyCallbackIOWriter(count)
    faiss.write_index(index, writer)
    del writer
    return size


def time_single_queries(vi: VectorIndex, queries: np.ndarray, refine=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-query latencies (ms) and the (m, K) ids, searching one query at a time."""
    vi.search(queries[0], K, refine=refine)  # warm-up
    lat = np.empty(len(queries))
    ids = np.empty((len(queries), K), dtype=np.int64)
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        _, found = vi.search(q, K, refine=refine)
        lat[i] = (time.perf_counter() - t0) * 1e3
        ids[i] = found[0]
    return lat, ids


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def measure(
    label: str,
    vi: VectorIndex,
    build_s: float,
    n: int,
    data: str,
    queries: np.ndarray,
    truth: np.ndarray | None,
    exact_p50: float | None,
    refine=None,
) -> tuple[Row, np.ndarray]:
    lat, found = time_single_queries(vi, queries, refine)
    p50 = float(np.percentile(lat, 50))
    row = Row(
        n=n,
        data=data,
        index=label,
        build_s=build_s,
        p50_ms=p50,
        p99_ms=float(np.percentile(lat, 99)),
        qps=len(lat) / (lat.sum() / 1e3),
        recall=1.0 if truth is None else recall_at_k(found, truth),
        speedup=1.0 if exact_p50 is None else exact_p50 / p50,
        mb_per_m=serialized_bytes(vi._index) / n * 1e6 / 1e6,
    )
    return row, found


def plan_label(plan: IndexPlan) -> str:
    if plan.kind == "flat":
        return "exact Flat"
    enc = plan.factory.split(",", 1)[1]
    return f"IVF{plan.nlist},{enc} np={plan.nprobe}"


def run_size(n: int, data: str, n_queries: int, args, emit) -> list[Row]:
    rows: list[Row] = []
    t0 = time.perf_counter()
    base, queries = dataset(data, n, n_queries, seed=args.seed, per_component=args.per_component)
    ids = np.arange(n, dtype=np.int64) * 7 + 3  # non-contiguous external ids
    gen_s = time.perf_counter() - t0
    print(f"  n={n:,}: generated {data} vectors in {gen_s:.1f}s", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    exact = VectorIndex.build(ids, base, plan=IndexPlan.flat())
    exact_build = time.perf_counter() - t0
    _, truth = exact.search(queries, K)  # batched exact ground truth
    timed = queries[: args.exact_timing_queries]
    row, _ = measure("exact Flat (baseline)", exact, exact_build, n, data, timed, None, None)
    emit(row)
    rows.append(row)
    exact_p50 = row.p50_ms
    del exact

    plan = choose_index_kind(n, DIM)
    if plan.kind == "flat":
        rows.append(dataclasses.replace(row, index="chosen: exact Flat (same index)"))
        emit(rows[-1])
    else:
        t0 = time.perf_counter()
        chosen = VectorIndex.build(ids, base, seed=args.seed)
        build = time.perf_counter() - t0
        with catalog_for(ids, base, plan) as refine:
            label = f"chosen: {plan_label(plan)}" + (f", re-ranked x{plan.rerank} from the catalog" if refine else "")
            row, _ = measure(label, chosen, build, n, data, queries, truth, exact_p50, refine)
            emit(row)
            rows.append(row)
            rows.extend(sweep(chosen, args, n, data, queries, truth, exact_p50, emit, refine))
        if plan.rerank:
            label = "  same, codes alone (no re-rank)"
            row, _ = measure(label, chosen, float("nan"), n, data, queries, truth, exact_p50)
            emit(row)
            rows.append(row)
        del chosen

    if args.candidates and n > EXACT_MAX:
        nlist = plan.nlist
        for enc in ("SQ8", "SQfp16"):
            alt = IndexPlan(kind="ivf", nlist=nlist, nprobe=plan.nprobe, factory=f"IVF{nlist},{enc}")
            t0 = time.perf_counter()
            vi = VectorIndex.build(ids, base, plan=alt, seed=args.seed)
            build = time.perf_counter() - t0
            row, _ = measure(f"alt: {plan_label(alt)}", vi, build, n, data, queries, truth, exact_p50)
            emit(row)
            rows.append(row)
            rows.extend(sweep(vi, args, n, data, queries, truth, exact_p50, emit))
            del vi
        if n <= args.hnsw_max:
            rows.append(measure_hnsw(base, ids, queries, truth, exact_p50, n, data))
            emit(rows[-1])
    return rows


@contextlib.contextmanager
def catalog_for(ids: np.ndarray, base: np.ndarray, plan: IndexPlan):
    """For a plan that re-ranks: a real catalog (SQLite file, vectors as float16, as
    ``vitrine index`` stores them) holding the base vectors, and the ``refine`` a project
    searches with (:meth:`Catalog.vectors_for`); None for other plans."""
    if not plan.rerank:
        yield None
        return
    import tempfile

    from vitrine.store.catalog import Catalog, contents, embeddings

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cat = Catalog(Path(tmp) / "catalog.db")
        cat.set_meta("vector_dtype:bench", "float16")
        with cat.engine.begin() as conn:
            for start in range(0, len(ids), CHUNK):
                part = ids[start : start + CHUNK].tolist()
                conn.execute(contents.insert(), [{"id": i, "sha256": f"{i:064x}", "size": 1} for i in part])
                half = base[start : start + CHUNK].astype(np.float16)
                conn.execute(
                    embeddings.insert(),
                    [
                        {"content_id": i, "model": "bench", "space": "s", "vector": half[j].tobytes()}
                        for j, i in enumerate(part)
                    ],
                )
        size = (Path(tmp) / "catalog.db").stat().st_size
        print(
            f"  catalog of {len(ids):,} float16 vectors: {size / 1e6:,.0f} MB on disk, "
            f"written in {time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        try:
            yield lambda cand: cat.vectors_for("bench", "s", cand.tolist())
        finally:
            cat.close()


def sweep(vi: VectorIndex, args, n, data, queries, truth, exact_p50, emit, refine=None) -> list[Row]:
    """The same IVF index searched with the other --sweep-nprobe values."""
    plan, rows = vi.plan, []
    for nprobe in args.sweep_nprobe:
        if nprobe == plan.nprobe or nprobe > plan.nlist:
            continue
        vi.plan = dataclasses.replace(plan, nprobe=nprobe)  # nprobe is applied per search
        row, _ = measure(f"  same, nprobe={nprobe}", vi, 0.0, n, data, queries, truth, exact_p50, refine)
        row.build_s = float("nan")
        emit(row)
        rows.append(row)
    vi.plan = plan
    return rows


def measure_hnsw(base, ids, queries, truth, exact_p50, n, data) -> Row:
    """HNSW32 (efSearch 64) for reference only: it cannot remove ids, which vitrine needs."""
    t0 = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 40
    index = faiss.IndexIDMap2(hnsw)
    index.add_with_ids(base, ids)
    hnsw.hnsw.efSearch = 64
    build = time.perf_counter() - t0
    lat = np.empty(len(queries))
    found = np.empty((len(queries), K), dtype=np.int64)
    for i, q in enumerate(queries):
        t1 = time.perf_counter()
        found[i] = index.search(q[None, :], K)[1][0]
        lat[i] = (time.perf_counter() - t1) * 1e3
    p50 = float(np.percentile(lat, 50))
    return Row(
        n,
        data,
        "alt: HNSW32 efS=64 (no remove)",
        build,
        p50,
        float(np.percentile(lat, 99)),
        len(lat) / (lat.sum() / 1e3),
        recall_at_k(found, truth),
        exact_p50 / p50,
        serialized_bytes(index) / n,
    )


# ------------------------------------------------------------------------------------------------
# text queries: exported text tower vs torch, through the API and a cold CLI

TEXT_QUERIES = ["a cat", "a cup of coffee", "a rocket launch", "a motorcycle", "a dog on grass", "flowers"]
TEXT_HEADERS = ["model", "text encoder", "API p50 ms", "API p90 ms", "vs torch", "cold CLI s", "vs torch", "top-10"]


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def text_rows(args) -> list[list[str]]:
    import json
    import statistics
    import subprocess
    import tempfile

    from fastapi.testclient import TestClient

    from vitrine.demo import build_demo
    from vitrine.models.embedders import text_runtime
    from vitrine.project import open_project
    from vitrine.server.app import create_app

    env_name = text_runtime.TEXT_RUNTIME_ENV
    src = str(Path(__file__).resolve().parents[1] / "src")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vitrine-text-bench-") as tmp:
        os.environ["VITRINE_CACHE_DIR"] = str(Path(tmp) / "cache")  # exports made in this run, then dropped
        for model in [m.strip() for m in args.text_models.split(",") if m.strip()]:
            root = Path(tmp) / f"root-{len(rows)}"
            project_dir = build_demo(root)
            t0 = time.perf_counter()
            report = open_project(project_dir).index(model=model)
            print(
                f"{model}: demo indexed in {time.perf_counter() - t0:.1f} s, text tower exported in "
                f"{report.stages.get('text_export_seconds', float('nan')):.1f} s",
                file=sys.stderr,
                flush=True,
            )
            client = TestClient(create_app(root, multi_user=False))
            url = f"/api/v1/projects/{project_dir.name}/search"

            def ask(query: str, torch_path: bool, client=client, url=url) -> list[str]:
                if torch_path:
                    os.environ[env_name] = "torch"
                else:
                    os.environ.pop(env_name, None)
                r = client.get(url, params={"q": query, "k": 10})
                if r.status_code != 200:
                    raise SystemExit(f"search failed: {r.status_code} {r.text[:200]}")
                return [h["path"] for h in r.json()["hits"]]

            same = all(ask(q, False) == ask(q, True) for q in TEXT_QUERIES)  # also loads the torch model
            lat: dict[bool, list[float]] = {False: [], True: []}
            per_round = max(1, args.text_repeats // 10)
            for i in range(10):  # interleaved rounds: a change in the machine's load hits both alike
                for torch_path in (False, True):
                    for j in range(per_round):
                        t0 = time.perf_counter()
                        ask(TEXT_QUERIES[(i + j) % len(TEXT_QUERIES)], torch_path)
                        lat[torch_path].append((time.perf_counter() - t0) * 1000)
            os.environ.pop(env_name, None)
            cold: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.cold_repeats):
                for torch_path in (False, True):
                    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
                    if torch_path:
                        env[env_name] = "torch"
                    t0 = time.perf_counter()
                    out = subprocess.run(
                        [sys.executable, "-m", "vitrine.cli", "search", str(project_dir), "a cat", "--json"],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    cold[torch_path].append(time.perf_counter() - t0)
                    if out.returncode != 0 or not json.loads(out.stdout or "[]"):
                        raise SystemExit(f"vitrine search failed: {out.stderr[-500:]}")
            client.close()
            api = {k: statistics.median(v) for k, v in lat.items()}
            cli = {k: statistics.median(v) for k, v in cold.items()}
            for torch_path in (False, True):
                rows.append(
                    [
                        model,
                        "torch" if torch_path else "onnxruntime (exported)",
                        f"{api[torch_path]:.1f}",
                        f"{_p(lat[torch_path], 90):.1f}",
                        "1.00x" if torch_path else f"{api[True] / api[False]:.1f}x faster",
                        f"{cli[torch_path]:.2f}",
                        "1.00x" if torch_path else f"{cli[True] / cli[False]:.1f}x faster",
                        "same" if same else "differ",
                    ]
                )
    return rows


def print_text_table(rows: list[list[str]], title: str) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(TEXT_HEADERS)]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs)

    print(title)
    print(line(TEXT_HEADERS))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


# ------------------------------------------------------------------------------------------------
# output

HEADERS = ["n", "data", "index", "build s", "p50 ms", "p99 ms", "QPS", "recall@10", "speed-up", "MB / 1M vec"]


def cells(r: Row) -> list[str]:
    build = "-" if math.isnan(r.build_s) else f"{r.build_s:.1f}"
    return [
        f"{r.n:,}",
        r.data,
        r.index,
        build,
        f"{r.p50_ms:.2f}",
        f"{r.p99_ms:.2f}",
        f"{r.qps:,.0f}",
        f"{r.recall:.3f}",
        f"{r.speedup:.1f}x",
        f"{r.mb_per_m:,.0f}",
    ]


def print_table(rows: list[Row], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        table = [HEADERS] + [cells(r) for r in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
        print(title)
        for j, line in enumerate(table):
            print(
                "  ".join(
                    c.rjust(w) if i != 2 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
                )
            )
            if j == 0:
                print("  ".join("-" * w for w in widths))
        return
    table = Table(title=title)
    for i, h in enumerate(HEADERS):
        table.add_column(h, justify="left" if i in (1, 2) else "right")
    for r in rows:
        table.add_row(*cells(r))
    Console(width=170).print(table)


def conclusion(rows: list[Row]) -> str:
    chosen = [r for r in rows if r.index.startswith("chosen: IVF")]
    if not chosen:
        return (
            f"Conclusion: every size ran on the exact flat index (EXACT_MAX={EXACT_MAX:,}); "
            "add sizes above it to exercise IVF."
        )
    worst = min(chosen, key=lambda r: r.recall)
    big = max(chosen, key=lambda r: r.n)
    return (
        f"Conclusion: above EXACT_MAX={EXACT_MAX:,} the chosen IVF index keeps recall@10 >= "
        f"{worst.recall:.3f} (worst: n={worst.n:,}, {worst.data}) and at n={big.n:,} answers a "
        f"single query in {big.p50_ms:.2f} ms p50, {big.speedup:.0f}x faster than exact."
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--data", choices=["clustered", "isotropic", "both"], default="clustered")
    ap.add_argument("--candidates", action="store_true", help="also measure IVF-SQ8 and HNSW32")
    ap.add_argument("--hnsw-max", type=int, default=100_000, help="largest n to build HNSW at")
    ap.add_argument("--sweep-nprobe", default="", help="extra nprobe values to measure, e.g. 8,16,64")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--per-component",
        type=int,
        default=5000,
        help="mean points per mixture component (clustered data); fewer is easier for IVF",
    )
    ap.add_argument(
        "--exact-timing-queries",
        type=int,
        default=50,
        help="single queries timed on the exact index (it is slow at 1M); ground truth uses all queries",
    )
    ap.add_argument(
        "--threads", type=int, default=0, help="FAISS threads (0: vitrine's default, VITRINE_FAISS_THREADS or 1)"
    )
    ap.add_argument("--text", action="store_true", help="also time text queries: exported text tower vs torch")
    ap.add_argument("--text-models", default="offline-concepts,clip-vit-b-32?weights=random")
    ap.add_argument("--text-repeats", type=int, default=200, help="API text queries timed per model and encoder")
    ap.add_argument("--cold-repeats", type=int, default=5, help="cold CLI searches timed per model and encoder")
    args = ap.parse_args(argv)
    if args.threads > 0:
        os.environ["VITRINE_FAISS_THREADS"] = str(args.threads)  # what vitrine's index uses for each call
        faiss.omp_set_num_threads(args.threads)  # and raw FAISS calls (the exact baseline)
    else:
        faiss.omp_set_num_threads(faiss_thread_count())
    sizes = [int(s) for s in args.sizes.replace("_", "").split(",") if s.strip()]
    args.sweep_nprobe = [int(s) for s in args.sweep_nprobe.split(",") if s.strip()]
    kinds = ["clustered", "isotropic"] if args.data == "both" else [args.data]

    if not sizes and args.text:
        print(
            f"vitrine text query benchmark: {os.cpu_count()} CPUs, {platform.machine()}, "
            f"load average at start {os.getloadavg()[0]:.1f}"
        )
    else:
        threads = faiss_thread_count()
        print(
            f"vitrine vector index benchmark: {DIM}-d L2-normalised float32, k={K}, "
            f"{args.queries} single queries per index, faiss {faiss.__version__}, {threads} threads, "
            f"{os.cpu_count()} CPUs, {platform.machine()}"
        )
        for kind in kinds:
            if kind == "clustered":
                print(
                    f"data: clustered = synthetic Gaussian mixture (~{args.per_component} points per "
                    "component, components grouped in topics), normalised; queries drawn from the same "
                    "mixture, not from the base set"
                )
            else:
                print("data: isotropic = uniform on the sphere (adversarial for IVF: no cluster structure)")
        print(
            f"EXACT_MAX = {EXACT_MAX:,}; recall@10 and speed-up (p50 ratio) are against the exact "
            f"flat index built in the same run (timed on {args.exact_timing_queries} queries); "
            f"load average at start {os.getloadavg()[0]:.1f}"
        )

    rows: list[Row] = []
    t_start = time.perf_counter()

    def emit(r: Row) -> None:
        print("  " + " | ".join(cells(r)), file=sys.stderr, flush=True)

    for kind in kinds:
        for n in sizes:
            rows.extend(run_size(n, kind, args.queries, args, emit))
    if rows:
        print()
        print_table(rows, f"single-query search, k={K} (total {time.perf_counter() - t_start:.0f} s)")
        print(conclusion(rows))
    if args.text:
        t0 = time.perf_counter()
        text = text_rows(args)
        print()
        print_text_table(
            text,
            f"text query on the demo project, k=10: API p50 over {args.text_repeats} requests (TestClient), "
            f"cold CLI median of {args.cold_repeats} (total {time.perf_counter() - t0:.0f} s, "
            f"load average at end {os.getloadavg()[0]:.1f})",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
