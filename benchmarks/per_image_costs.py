"""What one image costs to index, per CPU core: decode, model, store; and the Ray path's overhead.

The figures docs/scaling.md sizes a 10M-image run from. On the photos that ship inside
scikit-image and scikit-learn (the demo project's 20), re-saved as JPEG (quality 90) at three sizes
(640x480, 1920x1080, 4000x3000), in this process:

  decode   ms/image, one thread: ``open_image(min_side=DECODE_MIN_SIDE)`` (JPEG draft mode) and
           the model's preprocessing, against the baseline of a plain full-size PIL decode and the
           same preprocessing;
  model    ms/image at batch 32 with 1 and with 2 torch threads: offline-concepts (its real
           weights) and the CLIP ViT-B/32 architecture (``clip-vit-b-32?weights=random``: the
           same compute as the real weights; speed only);
  index    ``Project.index`` end to end with offline-concepts on the 640x480 set, locally and with
           ``--ray local`` (a Ray started for the run, one actor), in the same run: the images/s
           ratio is what the Ray machinery costs on one machine; the store seconds per image come
           from the same reports.

Random-weight CLIP means speed only. Timings on a shared machine are noisy: read the ratios, and
the load average printed at the top.

Usage:
    python benchmarks/per_image_costs.py [--repeats 3] [--n 40] [--skip-index] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import vitrine  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SIZES = {"640x480": (640, 480), "1920x1080": (1920, 1080), "4000x3000": (4000, 3000)}
CLIP = "clip-vit-b-32?weights=random"
OFFLINE = "offline-concepts"
BATCH = 32


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load:.2f} at start"


def make_photos(root: Path, n: int) -> dict[str, list[Path]]:
    """``n`` distinct JPEGs per size: seeded crops (70-100 %) of the demo's photos, resized
    (upscaled where smaller) to each size."""
    import random

    from PIL import Image

    from vitrine.demo import build_demo

    demo = build_demo(root / "demo")
    sources = sorted(p for p in (demo / "images").rglob("*") if p.is_file())
    out: dict[str, list[Path]] = {}
    rng = random.Random(0)
    for label, size in SIZES.items():
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        out[label] = []
        for i in range(n):
            with Image.open(sources[i % len(sources)]) as im:
                im = im.convert("RGB")
                f = rng.uniform(0.7, 1.0)
                w, h = int(im.width * f), int(im.height * f)
                x, y = rng.randint(0, im.width - w), rng.randint(0, im.height - h)
                im = im.crop((x, y, x + w, y + h)).resize(size, Image.Resampling.BICUBIC)
                path = folder / f"{i:04d}.jpg"
                im.save(path, quality=90)
                out[label].append(path)
    return out


def time_decode(paths: list[Path], prepare, repeats: int) -> tuple[float, float]:
    """ms/image (median over repeats) for vitrine's decode and for a plain full-size PIL decode."""
    from PIL import Image

    from vitrine.collection.imageio import open_image
    from vitrine.models.preprocess import DECODE_MIN_SIDE

    def ours():
        for p in paths:
            prepare(open_image(p, min_side=DECODE_MIN_SIDE))

    def plain():
        for p in paths:
            with Image.open(p) as im:
                prepare(im.convert("RGB"))

    import torch

    runs = {"ours": [], "plain": []}
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one decode worker's cost: its preprocessing runs on its own thread
    try:
        for _ in range(repeats):
            for name, fn in (("ours", ours), ("plain", plain)):  # interleaved
                t0 = time.perf_counter()
                fn()
                runs[name].append((time.perf_counter() - t0) * 1000 / len(paths))
    finally:
        torch.set_num_threads(before)
    return statistics.median(runs["ours"]), statistics.median(runs["plain"])


def time_model(model, paths: list[Path], threads: int, repeats: int) -> float:
    """ms/image at batch ``BATCH`` with ``threads`` torch threads (decoding not counted)."""
    import torch

    from vitrine.collection.imageio import open_image
    from vitrine.embed.pipeline import embed_prepared
    from vitrine.models.preprocess import DECODE_MIN_SIDE

    prepared = [model.preprocess(open_image(p, min_side=DECODE_MIN_SIDE)) for p in paths[:BATCH]]
    while len(prepared) < BATCH:
        prepared += prepared[: BATCH - len(prepared)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        embed_prepared(model, prepared[:4])  # warm-up
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            embed_prepared(model, prepared)
            runs.append((time.perf_counter() - t0) * 1000 / BATCH)
    finally:
        torch.set_num_threads(before)
    return statistics.median(runs)


def time_index(paths: list[Path], root: Path, repeats: int) -> dict:
    """Project.index with offline-concepts, locally and on a local Ray (one actor), interleaved."""
    from vitrine.collection.layout import init_project
    from vitrine.embed.distributed import RayOptions
    from vitrine.project import Project

    results: dict[str, list[dict]] = {"local": [], "ray local": []}
    for r in range(repeats):
        for name, ray in (("local", None), ("ray local", RayOptions("local", actors=1, cpus_per_actor=1))):
            project_dir = root / f"project-{name.replace(' ', '-')}-{r}"
            paths_ = init_project(project_dir)
            for p in paths:
                shutil.copy(p, paths_.images_dir / p.name)
            report = Project(project_dir).index(model=OFFLINE, ray=ray)
            results[name].append(report.to_dict())
    out = {}
    for name, reports in results.items():
        ips = statistics.median(r["images_per_second"] for r in reports)
        # after the first batch: the pool's start (actors placed, each loading the model) left out
        steady = [
            (r["embedded"] - BATCH) / (r["embed_seconds"] - r["stages"]["ray"]["first_batch_seconds"])
            for r in reports
            if "ray" in r["stages"] and r["embedded"] > BATCH
        ]
        store_ms = statistics.median(r["stages"]["store_seconds"] * 1000 / max(1, r["embedded"]) for r in reports)
        out[name] = {"images_per_second": ips, "store_ms_per_image": store_ms, "reports": reports}
        if steady:
            out[name]["after_first_batch"] = statistics.median(steady)
            out[name]["first_batch_seconds"] = statistics.median(
                r["stages"]["ray"]["first_batch_seconds"] for r in reports
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=40, help="images per size")
    parser.add_argument("--skip-index", action="store_true", help="leave out the Project.index runs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from vitrine.models import registry

    print(machine())
    root = Path(tempfile.mkdtemp(prefix="vitrine-costs-"))
    results: dict = {"machine": machine(), "decode": {}, "model": {}}
    try:
        photos = make_photos(root, args.n)
        offline, clip = registry.load(OFFLINE), registry.load(CLIP)
        print("\ndecode + preprocess, one thread, ms/image (vitrine: JPEG draft mode toward 512 px; plain: full size)")
        for label, paths in photos.items():
            ours, plain = time_decode(paths, offline.preprocess, args.repeats)
            results["decode"][label] = {"vitrine_ms": ours, "plain_ms": plain}
            print(f"  {label:>10}: vitrine {ours:7.1f}   plain PIL {plain:7.1f}   ({plain / ours:.1f}x)")
        print(f"\nmodel, batch {BATCH}, torch fp32, ms/image (CLIP: random weights, speed only)")
        for name, model in ((OFFLINE, offline), ("clip-vit-b-32", clip)):
            one = time_model(model, photos["640x480"], 1, args.repeats)
            two = time_model(model, photos["640x480"], 2, args.repeats)
            results["model"][name] = {"threads_1_ms": one, "threads_2_ms": two}
            print(f"  {name:>16}: 1 thread {one:6.1f}   2 threads {two:6.1f}   ({one / two:.2f}x)")
        if not args.skip_index:
            index = time_index(photos["640x480"], root, max(1, args.repeats - 1))
            results["index"] = index
            local, ray = index["local"], index["ray local"]
            print(f"\nProject.index, offline-concepts, {args.n} images of 640x480 (median of the runs)")
            for name, row in index.items():
                more = (
                    f"; {row['after_first_batch']:.1f} images/s after the first batch"
                    f" (which came after {row['first_batch_seconds']:.1f} s)"
                    if "after_first_batch" in row
                    else ""
                )
                print(
                    f"  {name:>10}: {row['images_per_second']:6.1f} images/s, "
                    f"store {row['store_ms_per_image']:.2f} ms/image{more}"
                )
            ratio = ray["images_per_second"] / local["images_per_second"]
            steady = ray.get("after_first_batch", 0) / local["images_per_second"]
            print(f"  ray local / local: {ratio:.2f}x in all, {steady:.2f}x after the first batch")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
