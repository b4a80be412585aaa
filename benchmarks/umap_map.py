"""The 2-D map of a collection at scale: UMAP time, payload size, and the page's time to first draw.

For each size a synthetic project is built: a catalog with N image rows in 20 folders and one
512-d L2-normalised vector each (CLIP's dimension), drawn from a two-level Gaussian mixture
(topics of clusters: a collection has structure, isotropic noise has none and is UMAP's worst
case). No image file exists: the map reads the catalog only, and thumbnails are not needed to draw.

Measured, per size:
- ``umap s``: the ``map`` job's work, ``Project.map2d`` (read the vectors from SQLite, UMAP with
  cosine metric and a fixed seed, save the .npz), under ``nice`` if asked; its ``umap`` part alone;
- ``cached s``: the same call again (the cache: no UMAP);
- ``points MB``: ``GET /api/v1/projects/{name}/map/points``, the JSON and (in brackets) the bytes
  sent (gzip), and ``points s`` the request's time;
- ``first draw ms``: in headless Chromium, the map page's own measure from just before
  ``Plotly.newPlot`` to the animation frame after it resolves (``window.vitrineMap.drawMs``), and the
  time from navigation start to the first draw (fetch and parse included); ``recolour ms``, a
  change of colours (by cluster: KMeans on the server); ``zoom ms``, a zoom redrawing the scene.

Above ``--max-points`` (200,000 by default) the map draws a seeded subsample and says so: at 1M
vectors the table shows the note and the time of mapping those 200k.

Usage:
    nice -n 10 python benchmarks/umap_map.py [--sizes 100000,1000000] [--dim 512] [--no-draw]
        [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import vitrine  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

ROOT = Path(__file__).resolve().parents[1]
MODEL = "clip-vit-b-32"  # a name the registry knows (nothing is loaded: the space is recorded)
SPACE = "joint"


class Mixture:
    """A two-level Gaussian mixture of unit vectors: topics of clusters, drawn batch by batch."""

    def __init__(self, dim: int, seed: int = 0, topics: int = 12, per_topic: int = 8):
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(topics, dim))
        self.comps = centres.repeat(per_topic, axis=0) + 0.6 * rng.normal(size=(topics * per_topic, dim))
        self.rng = rng

    def draw(self, n: int) -> np.ndarray:
        which = self.rng.integers(0, len(self.comps), size=n)
        block = self.comps[which] + 0.9 * self.rng.normal(size=(n, self.comps.shape[1]))
        return (block / np.linalg.norm(block, axis=1, keepdims=True)).astype(np.float32)


def build_project(root: Path, n: int, dim: int) -> Path:
    """A project whose catalog holds n files (20 folders) with a vector each; no image on disk."""
    from vitrine.collection.layout import init_project
    from vitrine.store.catalog import Catalog

    paths = init_project(root / f"map{n}")
    cat = Catalog(paths.catalog_db)
    batch = 100_000  # files per scan transaction (each reads every content's hash first)
    mixture = Mixture(dim)
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        upserts = [
            (f"folder{i % 20:02d}/img{i:07d}.jpg", f"folder{i % 20:02d}", 1000 + i, 1, f"{i:064x}")
            for i in range(start, stop)
        ]
        cat.apply_scan(upserts, [])
        ids = sorted(cat.content_ids_by_sha([u[4] for u in upserts]).values())
        for sub in range(0, len(ids), 20_000):  # vectors: one transaction per 20k (SQLite's bound parameters)
            chunk = ids[sub : sub + 20_000]
            cat.add_vectors(MODEL, chunk, {SPACE: mixture.draw(len(chunk))})
    cat.set_meta("model", MODEL)
    cat.set_meta(f"image_space:{MODEL}", SPACE)
    cat.close()
    return paths.project_dir


def time_map(project_dir: Path) -> dict:
    from vitrine.project import Project

    p = Project(project_dir)
    stages: dict[str, float] = {}
    marks: dict[str, float] = {}

    def progress(stage, done, total):
        marks.setdefault(stage, time.perf_counter())

    start = time.perf_counter()
    summary = p.map2d(progress=progress)
    total = time.perf_counter() - start
    stages["umap"] = summary["seconds"]
    start = time.perf_counter()
    again = p.map2d()
    cached = time.perf_counter() - start
    assert again["computed"] is False
    p.close()
    return {
        "job_s": total,
        "umap_s": stages["umap"],
        "cached_s": cached,
        "points": summary["points"],
        "total": summary["total"],
        "note": summary["note"],
    }


def time_draw(root: Path, name: str, shots: Path | None) -> dict:
    sys.path.insert(0, str(ROOT / "tests" / "server"))
    import httpx
    from playwright.sync_api import sync_playwright
    from ui_helpers import CHROMIUM_ARGS, ServerThread, chromium_path

    from vitrine.server.app import create_app

    app = create_app(root)
    out: dict = {}
    with ServerThread(app, health_path="/api/v1/health") as server:
        t0 = time.perf_counter()
        res = httpx.get(f"{server.url}/api/v1/projects/{name}/map/points", timeout=120)
        res.raise_for_status()
        out["points_s"] = time.perf_counter() - t0  # built, compressed, sent, decompressed
        out["points_mb"] = len(res.content) / 1e6
        out["points_gzip_mb"] = res.num_bytes_downloaded / 1e6  # as sent (gzip)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{server.url}/p/{name}/map")
            page.wait_for_function("window.vitrineMap && window.vitrineMap.drawMs !== undefined", timeout=300_000)
            facts = page.evaluate("({draw: window.vitrineMap.drawMs, first: window.vitrineMap.firstDrawAt})")
            out["draw_ms"] = facts["draw"]
            out["first_draw_ms"] = facts["first"]
            # interactivity: a colour change redraws every point
            t0 = time.perf_counter()
            page.select_option("#map-color", "cluster")
            page.wait_for_function("document.querySelector('#map-plot').dataset.colour === 'cluster'", timeout=300_000)
            out["recolour_ms"] = (time.perf_counter() - t0) * 1000
            # interactivity: a zoom into the middle redraws the WebGL scene
            out["zoom_ms"] = page.evaluate(
                """async () => {
                    const gd = document.querySelector('#map-plot'), fl = gd._fullLayout;
                    const [x0, x1] = fl.xaxis.range, [y0, y1] = fl.yaxis.range;
                    const t0 = performance.now();
                    await Plotly.relayout(gd, {'xaxis.range': [x0 + (x1 - x0) / 4, x1 - (x1 - x0) / 4],
                                               'yaxis.range': [y0 + (y1 - y0) / 4, y1 - (y1 - y0) / 4]});
                    await new Promise((r) => requestAnimationFrame(() => r()));
                    return performance.now() - t0;
                }"""
            )
            if shots is not None:
                page.screenshot(path=str(shots / f"{name}.png"))
            browser.close()
    app.state.vitrine.close()
    return out


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}, nice {os.nice(0)}, Python {platform.python_version()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="collection sizes (comma-separated)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--no-draw", action="store_true", help="skip the Chromium measure")
    ap.add_argument("--threads", type=int, default=2, help="numba/BLAS threads (the machine's cores)")
    ap.add_argument("--screenshots", type=Path, default=None, help="save a screenshot of each map here")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    print(machine())
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="umap-map-"))
    try:
        for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
            t0 = time.perf_counter()
            project = build_project(tmp, n, args.dim)
            build_s = time.perf_counter() - t0
            row = {"n": n, "dim": args.dim, "build_s": build_s} | time_map(project)
            if not args.no_draw:
                row |= time_draw(tmp, project.name, args.screenshots)
            rows.append(row)
            print(json.dumps(row), flush=True)
            shutil.rmtree(project, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    head = (
        "| vectors | mapped | job s | umap s | cached s | points MB (gzip) | points s | draw ms | first draw ms "
        "| recolour ms | zoom ms |"
    )
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for r in rows:
        size = f"{r['points_mb']:.1f} ({r['points_gzip_mb']:.1f})" if "points_mb" in r else "–"
        ms = [f"{r[k]:.0f}" if k in r else "–" for k in ("draw_ms", "first_draw_ms", "recolour_ms", "zoom_ms")]
        points_s = f"{r['points_s']:.2f}" if "points_s" in r else "–"
        print(
            f"| {r['n']:,} | {r['points']:,} | {r['job_s']:.1f} | {r['umap_s']:.1f} | {r['cached_s']:.2f} | {size} | "
            f"{points_s} | " + " | ".join(ms) + " |"
        )
    for r in rows:
        if r["note"]:
            print(f"\n{r['n']:,}: {r['note']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
