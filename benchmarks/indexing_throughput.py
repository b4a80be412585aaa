"""End-to-end indexing throughput (images/s) of vitrine vs a plain open_clip loop, in one run.

A folder of N real-photo JPEGs (~640x480) is generated first: seeded random crops, resizes, flips
and tone changes of the photos that ship inside scikit-image and scikit-learn (no download). Then,
on the same files and in the same process, these are measured:

  (a) baseline: the plain open_clip loop vitrine is compared to -- PIL decode, open_clip's eval
      preprocess, ViT-B-32 in fp32, --batch-size images per batch, no decode threads; vectors are
      L2-normalised into a NumPy array that is saved to disk at the end;
  (b) vitrine: Project.index on a fresh project holding the images, with the clip-vit-b-32
      architecture (open_clip ViT-B-32) through a temporary registry entry whose loader wraps
      OpenClipEmbedder.from_open_clip. It includes everything `vitrine index` does: scan (SHA-256 of
      every file), threaded decode + preprocess, model, vectors committed to SQLite batch by
      batch, FAISS index built and saved;
  (c) vitrine: Project.index with offline-concepts (its real packaged weights);
  (d) the embed pipeline alone (vitrine.embed.pipeline.embed_items with the model of (b), vectors
      kept in memory), with 1 decode worker and with the default number, to show what the threaded
      decode buys;
  (e) vitrine: Project.index as in (b), on the CPU runtime picked by measurement (--runtime auto):
      before timing, every variant (ONNX Runtime fp32/int8, OpenVINO fp32/bf16/int8) is exported,
      quantized on up to 128 of the benchmark's images, held to the parity gate against torch and
      timed, exactly as `vitrine index` does on its first large run (the time it takes is printed
      apart: it is paid once per model, weights and machine); the timed runs then use the saved
      choice, loading the cached files (the session's compile time is inside the timed runs);
  (f) vitrine: Project.index with offline-concepts (real weights) on the CPU runtime picked likewise.

(b) and (c) are forced to torch (--runtime torch), so that (e) vs (a) and (f) vs (c) are what the
runtimes buy. The picked variant of (e) and (f), every trial's speed and parity figures are printed
after the table. Exported files and choices go to a temporary VITRINE_CACHE_DIR.

Models are loaded before timing (load times are reported apart). Every method is warmed up on a
few images, then its timed part runs --repeats times (methods interleaved, so that a change in
machine load hits all of them alike); the table reports the median. The CLIP models use RANDOM
weights (pretrained=None): same compute cost as the real ones, so the numbers measure speed only,
never quality. Next to wall time, the table gives the CPU time of this process and the cores that
other processes used meanwhile: on a shared machine, read the ratios with those in view (see
benchmarks/README.md, and --omp-passive).

Usage:
    python benchmarks/indexing_throughput.py [--n 256] [--repeats 2] [--device cpu|cuda]
        [--batch-size 32] [--methods a,b,c,d,e,f] [--warmup 8] [--torch-threads T] [--omp-passive]
        [--seed 0] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import vitrine  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

ARCH = "ViT-B-32"
CLIP_NAME = "bench-clip-vit-b-32-random"  # temporary registry entries, removed at exit
OFFLINE_NAME = "bench-offline-concepts"
IMAGE_SIZE = (640, 480)
FOLDERS = 8

# skimage.data photos (synthetic test patterns left out); grey ones are converted to RGB
SKIMAGE_PHOTOS = (
    "chelsea",
    "rocket",
    "astronaut",
    "coffee",
    "stereo_motorcycle",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "camera",
    "coins",
    "moon",
    "clock",
    "brick",
    "grass",
    "gravel",
)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


# ------------------------------------------------------------------------------------------------
# data


def source_photos() -> list:
    """The packaged photos as RGB PIL images (any that this install cannot load are skipped)."""
    from PIL import Image
    from skimage import data

    photos = []
    for name in SKIMAGE_PHOTOS:
        try:
            array = getattr(data, name)()
        except Exception:  # some skimage versions need a download for a few of them
            continue
        if isinstance(array, tuple):
            array = array[0]
        photos.append(Image.fromarray(np.asarray(array)).convert("RGB"))
    try:
        from sklearn.datasets import load_sample_images

        samples = load_sample_images()
        for fname in SKLEARN_PHOTOS:
            for path, array in zip(samples.filenames, samples.images, strict=True):
                if path.endswith(fname):
                    photos.append(Image.fromarray(array).convert("RGB"))
    except ImportError:
        pass
    if len(photos) < 4:
        raise SystemExit("need scikit-image (and ideally scikit-learn) sample photos to build the images")
    return photos


def make_images(folder: Path, n: int, seed: int) -> list[Path]:
    """N varied ~640x480 JPEGs under ``folder/set-XX/``: random 4:3 (or 3:4) crops of 45-100% of a
    source photo, resized, sometimes mirrored, brightness/contrast/colour jittered, JPEG q 80-95."""
    from PIL import Image, ImageEnhance

    rng = np.random.default_rng(seed)
    photos = source_photos()
    paths = []
    for i in range(n):
        src = photos[int(rng.integers(len(photos)))]
        portrait = rng.random() < 0.2
        out_w, out_h = IMAGE_SIZE[::-1] if portrait else IMAGE_SIZE
        aspect = out_w / out_h
        w, h = src.size
        crop_w = min(w, h * aspect)
        crop_w *= float(np.sqrt(rng.uniform(0.45, 1.0)))
        crop_h = crop_w / aspect
        x0 = rng.uniform(0, w - crop_w)
        y0 = rng.uniform(0, h - crop_h)
        img = src.resize((out_w, out_h), Image.Resampling.BICUBIC, box=(x0, y0, x0 + crop_w, y0 + crop_h))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
        img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.8, 1.2))
        img = ImageEnhance.Color(img).enhance(rng.uniform(0.7, 1.3))
        path = folder / f"set-{i % FOLDERS:02d}" / f"img-{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=int(rng.integers(80, 96)))
        paths.append(path)
    return paths


def fresh_project(parent: Path, name: str, images: list[Path], source_root: Path):
    """A new vitrine project whose images/ holds ``images`` (hard links when possible)."""
    from vitrine.collection.layout import init_project
    from vitrine.project import Project

    project_dir = parent / name
    paths = init_project(project_dir)
    for src in images:
        dst = paths.images_dir / src.relative_to(source_root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    # generated state inside the temporary folder, whatever VITRINE_DATA_DIR says
    return Project(project_dir, data_dir=parent / f"{name}-state")


# ------------------------------------------------------------------------------------------------
# models


def build_open_clip(device: str, seed: int):
    import open_clip
    import torch

    torch.manual_seed(seed)
    logging.disable(logging.WARNING)  # "No pretrained weights loaded": intended here
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            ARCH, pretrained=None, device=device, precision="fp32"
        )
    finally:
        logging.disable(logging.NOTSET)
    return model.eval(), preprocess, open_clip.get_tokenizer(ARCH)


def register_bench_models(bench_device: str, seed: int, offline_too: bool) -> None:
    """Temporary registry entries: ViT-B-32 with random weights and (``offline_too``)
    offline-concepts, both pinned to ``bench_device`` (Project.index loads models with the
    registry's default device)."""
    from vitrine.models import registry
    from vitrine.models.base import ModelCard
    from vitrine.models.embedders.clip import OpenClipEmbedder
    from vitrine.models.registry import Availability, ModelSpec

    def clip_loader(weights=None, device=None, **_):
        model, preprocess, tokenizer = build_open_clip(bench_device, seed)
        return OpenClipEmbedder.from_open_clip(CLIP_NAME, model, preprocess, tokenizer, device=bench_device)

    def available(**_):
        return Availability(True, "local", "benchmark entry")

    registry.register(
        ModelSpec(
            name=CLIP_NAME,
            task="embedding",
            source="local",
            availability=available,
            loader=clip_loader,
            card=ModelCard(summary=f"benchmark only: open_clip {ARCH} (clip-vit-b-32 architecture), random weights"),
        ),
        replace=True,
    )
    if not offline_too:
        return
    offline = registry.get("offline-concepts")

    def offline_loader(weights=None, device=None, **_):
        return offline.loader(weights=None, device=bench_device)

    registry.register(
        ModelSpec(
            name=OFFLINE_NAME,
            task="embedding",
            source="package",
            availability=available,
            loader=offline_loader,
            card=ModelCard(summary="benchmark only: offline-concepts pinned to the benchmark's device"),
        ),
        replace=True,
    )


def unregister_bench_models() -> None:
    from vitrine.models import registry

    registry.unregister(CLIP_NAME)
    registry.unregister(OFFLINE_NAME)


# ------------------------------------------------------------------------------------------------
# methods


@dataclass
class Method:
    key: str
    label: str
    run: Callable[[int], dict]  # run(repeat) -> details (images, breakdown, ...); timed around it
    warmup: Callable[[], None]
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # process CPU time (user + system)
    others: list[float] = field(default_factory=list)  # cores used by other processes, on average
    details: list[dict] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def baseline_loop(model, preprocess, paths: list[Path], batch_size: int, device: str, out: Path | None):
    """The plain open_clip loop: PIL decode, preprocess, fp32 model, no threads."""
    import torch
    from PIL import Image

    vectors = np.empty((len(paths), model.visual.output_dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in chunk])
            feats = model.encode_image(batch.to(device))
            feats = feats / feats.norm(dim=-1, keepdim=True)
            vectors[start : start + len(chunk)] = feats.cpu().numpy()
    if out is not None:
        np.save(out, vectors)
    return vectors


class StageClock:
    """Progress callback recording when Project.index passes its stages (scan, embed, index)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.last: dict[str, float] = {}
        self.index_begin: float | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        self.last[stage] = now
        if stage == "index" and done == 0:
            self.index_begin = now

    def breakdown(self, total: float) -> dict[str, float]:
        scan_end = self.last.get("scan", self.start)
        embed_end = self.last.get("embed", scan_end)
        index_begin = self.index_begin or embed_end
        index_end = self.last.get("index", index_begin)
        parts = {
            "scan": scan_end - self.start,
            "embed+store": embed_end - scan_end,
            "faiss": index_end - index_begin,
        }
        parts["other"] = max(0.0, total - sum(parts.values()))
        return parts


# ------------------------------------------------------------------------------------------------
# output


def machine_facts(device: str) -> str:
    import open_clip
    import PIL
    import torch

    from vitrine.embed.pipeline import default_workers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    dev = device
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return (
        f"machine: {os.cpu_count()} CPUs ({usable} usable, {cpu}), torch {torch.__version__} with "
        f"{torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} inter-op threads, "
        f"open_clip {open_clip.__version__}, Pillow {PIL.__version__}, device {dev}, "
        f"vitrine decode workers {default_workers()}, "
        f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY') or 'unset (idle OpenMP threads spin)'}, "
        f"Python {platform.python_version()}"
    )


def cpu_time() -> float:
    t = os.times()
    return t.user + t.system


def machine_busy() -> float | None:
    """CPU-seconds all processes have spent so far, machine-wide (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


HEADERS = ["method", "images", "seconds", "images/s", "vs (a)", "CPU s", "others", "runs (s)"]


def rows_for(methods: list[Method], n: int) -> list[list[str]]:
    base = next((m for m in methods if m.key == "a"), None)
    rows = []
    for m in methods:
        ips = n / m.median
        ratio = f"{ips / (n / base.median):.2f}x" if base is not None else "-"
        rows.append(
            [
                m.label,
                str(n),
                f"{m.median:.2f}",
                f"{ips:.1f}",
                ratio,
                f"{statistics.median(m.cpu_seconds):.1f}",
                f"{statistics.median(m.others):.2f}" if m.others else "n/a",
                ", ".join(f"{s:.2f}" for s in m.seconds),
            ]
        )
    return rows


def print_table(rows: list[list[str]], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        table = [HEADERS, *rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
        print(title)
        for j, line in enumerate(table):
            print(
                "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
                )
            )
            if j == 0:
                print("  ".join("-" * w for w in widths))
        return
    table = Table(title=title)
    for i, h in enumerate(HEADERS):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    Console(width=140).print(table)


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="number of generated images (default 256)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per method; the median is shown")
    ap.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    ap.add_argument("--batch-size", type=int, default=32, help="images per model batch, for every method")
    ap.add_argument("--methods", default="a,b,c,d,e,f", help="subset of a,b,c,d,e,f to run (a is the reference)")
    ap.add_argument("--warmup", type=int, default=8, help="images each method sees before timing")
    ap.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0: torch default)")
    ap.add_argument(
        "--omp-passive",
        action="store_true",
        help="set OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of spinning)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    if args.n < 1 or args.repeats < 1 or args.batch_size < 1:
        ap.error("--n, --repeats and --batch-size must be positive")
    wanted = {s.strip() for s in args.methods.split(",") if s.strip()}
    if not wanted or wanted - set("abcdef"):
        ap.error("--methods takes a comma-separated subset of a,b,c,d,e,f")

    if args.omp_passive:
        if "torch" in sys.modules:
            print("--omp-passive: torch is already imported, OMP_WAIT_POLICY cannot change now", file=sys.stderr)
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read once, when torch's OpenMP runtime loads

    if os.environ.pop("VITRINE_THROTTLE_BATCH_SECONDS", None):  # a test hook that sleeps between batches
        print("VITRINE_THROTTLE_BATCH_SECONDS ignored: it would add sleeps to vitrine's timings", file=sys.stderr)

    import torch

    from vitrine.embed.pipeline import EmbedItem, default_workers, embed_items
    from vitrine.models import registry

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    bs = args.batch_size
    t_all = time.perf_counter()
    print("vitrine indexing throughput benchmark")
    print(machine_facts(device))
    print(f"load average at start (1/5/15 min): {load_average()}")
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(
        "NOTE: the CLIP models run with RANDOM weights (no download): the same compute as the real "
        "weights, so these numbers measure speed only, never search quality."
    )

    tmp = Path(tempfile.mkdtemp(prefix="vitrine-bench-"))
    os.environ["VITRINE_CACHE_DIR"] = str(tmp / "cache")  # exported files and runtime choices: fresh
    try:
        t0 = time.perf_counter()
        source_root = tmp / "photos"
        paths = make_images(source_root, args.n, args.seed)
        warm_paths = make_images(tmp / "warmup-photos", max(1, args.warmup), args.seed + 1)
        mean_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        print(
            f"images: {len(paths)} JPEGs, {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} (20% portrait), "
            f"{mean_kb:.0f} KiB on average, generated in {time.perf_counter() - t0:.1f} s "
            "(files are in the page cache for every method)"
        )

        if wanted & {"c", "f"}:
            av = registry.get("offline-concepts").availability(probe_hub=False)
            if not av.ok:
                print(f"(c, f) skipped: offline-concepts is not available ({av.detail})")
                wanted -= {"c", "f"}
        register_bench_models(device, args.seed, offline_too=bool(wanted & {"c", "f"}))
        loads: dict[str, float] = {}
        methods: list[Method] = []
        counter = iter(range(1_000_000))

        # (a) the baseline: its own model instance, same seed, so same weights as (b)
        if "a" in wanted:
            t0 = time.perf_counter()
            base_model, base_pre, _ = build_open_clip(device, args.seed)
            loads["(a) open_clip ViT-B-32"] = time.perf_counter() - t0

            def run_a(rep: int) -> dict:
                baseline_loop(base_model, base_pre, paths, bs, device, tmp / f"baseline-{rep}.npy")
                return {}

            methods.append(
                Method(
                    "a",
                    "(a) baseline: plain open_clip loop (fp32, no decode threads)",
                    run_a,
                    lambda: baseline_loop(base_model, base_pre, warm_paths, bs, device, None),
                )
            )

        def index_method(key: str, name: str, label: str, runtime: str = "torch") -> Method:
            t0 = time.perf_counter()
            registry.load(name)  # Project.index finds it in the registry's cache
            loads[label.split(":")[0] + f" {name}"] = time.perf_counter() - t0
            warm = fresh_project(tmp, f"warm-{key}", warm_paths, tmp / "warmup-photos")

            def warmup() -> None:
                warm.index(model=name, batch_size=bs, runtime=runtime)
                warm.close()

            def run(rep: int) -> dict:
                project = fresh_project(tmp, f"{key}-{next(counter)}", paths, source_root)
                clock = StageClock()
                t_start = time.perf_counter()
                clock.start = t_start
                report = project.index(model=name, batch_size=bs, progress=clock, runtime=runtime)
                total = time.perf_counter() - t_start
                if report.embedded != len(paths) or report.failed:
                    raise SystemExit(f"{label}: embedded {report.embedded} of {len(paths)}, failed {report.failed}")
                detail = {"breakdown": clock.breakdown(total), "project": project, "runtime": report.runtime}
                project.close()
                return detail

            return Method(key, label, run, warmup)

        if "b" in wanted:
            methods.append(index_method("b", CLIP_NAME, "(b) vitrine index: clip-vit-b-32 arch, random weights"))
        if "c" in wanted:
            methods.append(index_method("c", OFFLINE_NAME, "(c) vitrine index: offline-concepts"))
        measured: dict[str, object] = {}
        for key, name in (("e", CLIP_NAME), ("f", OFFLINE_NAME)):
            if key not in wanted:
                continue
            t0 = time.perf_counter()
            measured[key] = measure_runtimes(registry.load(name), paths, source_root)
            loads[f"({key}) runtime measurement"] = time.perf_counter() - t0
        if "e" in wanted:
            methods.append(
                index_method("e", CLIP_NAME, "(e) vitrine index: clip-vit-b-32 arch, CPU runtime picked", "auto")
            )
        if "f" in wanted:
            methods.append(
                index_method("f", OFFLINE_NAME, "(f) vitrine index: offline-concepts, CPU runtime picked", "auto")
            )
        if "d" in wanted:
            embedder = registry.load(CLIP_NAME)
            items = [EmbedItem(i, p, str(p.relative_to(source_root))) for i, p in enumerate(paths)]
            warm_items = [EmbedItem(i, p, p.name) for i, p in enumerate(warm_paths)]

            def pipeline(workers: int | None, todo) -> None:
                stored: dict[int, np.ndarray] = {}

                def on_batch(ids, vectors, info):
                    for j, cid in enumerate(ids):
                        stored[cid] = vectors["joint"][j]

                def on_failure(item, reason):
                    raise SystemExit(f"{item.relpath}: {reason}")

                embed_items(embedder, todo, on_batch, on_failure, batch_size=bs, workers=workers)
                if len(stored) != len(todo):
                    raise SystemExit("the embed pipeline lost images")

            for workers, what in ((1, "1 decode worker"), (None, f"{default_workers()} decode workers (default)")):
                methods.append(
                    Method(
                        "d",
                        f"(d) embed pipeline only, {what}",
                        lambda rep, w=workers: pipeline(w, items) or {},
                        lambda w=workers: pipeline(w, warm_items),
                    )
                )

        if not methods:
            print("nothing to measure")
            return 1
        print("model load (before timing): " + ", ".join(f"{k} {v:.1f} s" for k, v in loads.items()))
        for m in methods:
            m.warmup()
        print(
            f"warm-up done ({args.warmup} images per method); timing {len(methods)} methods x "
            f"{args.repeats} runs of {args.n} images, interleaved",
            file=sys.stderr,
            flush=True,
        )
        for rep in range(args.repeats):
            for m in methods:
                c0, b0, t0 = cpu_time(), machine_busy(), time.perf_counter()
                detail = m.run(rep)
                m.seconds.append(time.perf_counter() - t0)
                m.cpu_seconds.append(cpu_time() - c0)
                b1 = machine_busy()
                if b0 is not None and b1 is not None:
                    m.others.append(max(0.0, (b1 - b0) - m.cpu_seconds[-1]) / m.seconds[-1])
                m.details.append(detail or {})
                print(
                    f"  run {rep + 1}: {m.label[:70]}: {m.seconds[-1]:.2f} s ({args.n / m.seconds[-1]:.1f} images/s)",
                    file=sys.stderr,
                    flush=True,
                )

        print()
        print_table(
            rows_for(methods, args.n),
            f"end-to-end indexing throughput, {args.n} JPEGs ~{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, "
            f"{ARCH} in (a, b, d, e), batch {bs}, median of {args.repeats} run{'s' if args.repeats > 1 else ''} "
            f"(device {device})",
        )
        if "d" in wanted:
            print(
                "(d) = vitrine.embed.pipeline.embed_items with the model of (b), vectors kept in memory: "
                "no scan, SQLite or FAISS"
            )
        print(
            "CPU s = CPU time of this process during the run (user + system)"
            + (
                ""
                if os.environ.get("OMP_WAIT_POLICY")
                else ", including OpenMP threads spin-waiting between parallel regions (see --omp-passive)"
            )
            + "; others = cores used by other processes meanwhile, on average (0 on an idle machine)"
        )
        for m in methods:
            bds = [d["breakdown"] for d in m.details if "breakdown" in d]
            if bds:
                parts = ", ".join(f"{k} {statistics.median(b[k] for b in bds):.2f} s" for k in bds[0])
                print(f"{m.label.split(':')[0]} time by stage (median): {parts}")
        check = vector_check(methods, paths, source_root)
        if check:
            print(check)
        by_key = {m.key: m for m in methods}
        for fast, slow, aim in (("e", "a", 3.5), ("f", "c", 5.0)):
            if fast in by_key and slow in by_key:
                gain = by_key[slow].median / by_key[fast].median
                print(f"({fast}) vs ({slow}): {gain:.2f}x end to end (issue 14 aims at >= {aim}x)")
        for key, choice in measured.items():
            print_choice(key, choice, methods)
        check = vector_check(methods, paths, source_root, "e")
        if check:
            print(check)
        print(f"load average at end (1/5/15 min): {load_average()}")
        others = [x for m in methods for x in m.others]
        busy = max(others) > 0.25 if others else load_start > (os.cpu_count() or 1) * 0.5
        if busy:
            print(
                "WARNING: other processes used the CPUs during the runs (column 'others'). Wall times are "
                "then noisy, and the kernel "
                "shares a contended CPU per thread, so threaded methods (b-d) get a larger share than "
                "the single-threaded baseline: ratios then flatter vitrine. Look at 'CPU s' too "
                "(CPU time of this process), and run again on an idle machine."
            )
        print(f"random weights: speed only, never quality. Total benchmark time {time.perf_counter() - t_all:.0f} s.")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "n": args.n,
                        "repeats": args.repeats,
                        "device": device,
                        "batch_size": bs,
                        "machine": machine_facts(device),
                        "load_times_s": loads,
                        "runtime_choices": {k: c.to_dict() for k, c in measured.items()},
                        "methods": [
                            {
                                "key": m.key,
                                "label": m.label,
                                "seconds": m.seconds,
                                "median_s": m.median,
                                "cpu_seconds": m.cpu_seconds,
                                "images_per_s": args.n / m.median,
                                "breakdown": [d["breakdown"] for d in m.details if "breakdown" in d],
                            }
                            for m in methods
                        ],
                    },
                    indent=2,
                )
            )
        return 0
    finally:
        unregister_bench_models()
        shutil.rmtree(tmp, ignore_errors=True)


def vector_check(methods: list[Method], paths: list[Path], source_root: Path, key: str = "b") -> str:
    """(b) and (a) use the same weights and preprocessing: their vectors must agree ((e): as close as
    the picked runtime's precision allows)."""
    a = next((m for m in methods if m.key == "a"), None)
    b = next((m for m in methods if m.key == key), None)
    if a is None or b is None:
        return ""
    baseline = np.load(source_root.parent / f"baseline-{len(a.seconds) - 1}.npy")
    project = b.details[-1]["project"]
    files = project.catalog.files()
    ids = [files[str(p.relative_to(source_root))].content_id for p in paths]
    got_ids, got = project.catalog.vectors_for(CLIP_NAME, "joint", ids)
    project.close()
    order = {cid: i for i, cid in enumerate(got_ids)}
    cos = np.array([float(got[order[cid]] @ baseline[i]) for i, cid in enumerate(ids)])
    what = "same weights, same preprocessing" if key == "b" else f"runtime {b.details[-1]['runtime']['line']}"
    return (
        f"check: ({key}) stored the same vectors as (a) -- cosine min {cos.min():.6f}, "
        f"mean {cos.mean():.6f} over {len(cos)} images ({what})"
    )


def measure_runtimes(embedder, paths: list[Path], source_root: Path):
    """What `vitrine index --runtime auto` does before its first large run: measure every variant on
    (up to 128 of) the images about to be indexed, and save the choice for the timed runs."""
    from vitrine.embed import runtime_choice
    from vitrine.embed.pipeline import EmbedItem
    from vitrine.models.embedders.image_runtime import image_tower

    tower = image_tower(embedder)
    if tower is None:
        raise SystemExit(f"{embedder.name}: no CPU runtime export (a GPU device?)")
    items = [EmbedItem(i, p, str(p.relative_to(source_root))) for i, p in enumerate(paths)]
    return runtime_choice.measure(
        embedder, tower, items, say=lambda m: print(f"  [{embedder.name}] {m}", file=sys.stderr, flush=True)
    )


def print_choice(key: str, choice, methods: list[Method]) -> None:
    """The trials of a runtime measurement: speed of the model alone, parity against torch, verdict."""
    ref = choice.trial(choice.reference)
    print(
        f"({key}) runtime measured on {choice.images} of the images (model alone, batch {choice.batch}); "
        f"picked: {choice.summary()}"
    )
    for t in choice.trials:
        fig = t.parity.figures if t.parity is not None else {}
        speed = f"{t.images_per_s:7.1f} img/s" if t.images_per_s else "      - img/s"
        gain = f"{t.images_per_s / ref.images_per_s:5.2f}x" if t.images_per_s and ref.images_per_s else "    -"
        parity = (
            f"recall@10 {fig['recall_at_10']:.3f}, cosine mean {fig['mean_cosine']:.4f} min {fig['min_cosine']:.4f}"
            if fig
            else "reference"
        )
        verdict = (
            "picked"
            if t.variant == choice.picked
            else f"failed: {t.error[:80]}"
            if t.error
            else f"refused: {t.parity.reason}"
            if t.parity is not None and not t.parity.passed
            else ""
        )
        print(f"    {t.variant.label:18} {speed} {gain}  {parity}  {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
