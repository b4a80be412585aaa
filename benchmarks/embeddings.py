"""Embedding models compared side by side, as `vitrine compare-embeddings` scores them.

Two labelled sets, both offline:

  fashion-mnist   the 10,000 Fashion-MNIST test images (28 px grey PNGs, 10 classes), from the
                  Debian package vitrine's tests use (data/fashion_mnist.py); no splits, so the
                  linear probe is fitted on a seeded stratified 80 % and scored on the other 20 %
  photos          the real photos that ship inside scikit-image and scikit-learn, each cut into
                  --crops random crops (40-80 % of the side, seeded): the class is the photo (named
                  by what it shows: "cat", "rocket", "gravel"...), so kNN and mAP measure whether
                  crops of one photo find each other, zero-shot whether the name finds the photo

Models (default): offline-concepts in both of its spaces (``visual``: EfficientNet-Lite0 features,
its image space; ``concepts``: concept bridging), a timm backbone (timm:resnet18 with random
weights: no timm weights are packaged for it, so speed only) and CLIP ViT-B/32 with random weights
(speed only: no hub here). A random-weight model's accuracies are those of random features:
they are a floor, not a score.

Reported per set and model: kNN@1 and @10 accuracy (leave-one-out, cosine), linear-probe and
zero-shot accuracy, mAP@10, images/s (batch of 32, preprocessing included, decoded images in) and
ms per image at batch 1, ms per text query, dimension and bytes per vector in the index vitrine
would build; the time each model took (embedding included), the machine's load average when each
model was timed, and the total time.

Usage:
    python benchmarks/embeddings.py [--limit N] [--crops 8] [--models a,b,c] [--sets fashion-mnist,photos]
        [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from indexing_throughput import SKIMAGE_PHOTOS, SKLEARN_PHOTOS, machine_facts  # noqa: E402

DEFAULT_MODELS = (
    "offline-concepts",  # its image space: visual
    "offline-concepts#concepts",
    "timm:resnet18?weights=random",
    "clip-vit-b-32?weights=random",
)
# what each packaged photo shows: the class name its zero-shot prompt uses
PHOTO_NAMES = {
    "chelsea": "cat",
    "rocket": "rocket",
    "astronaut": "astronaut",
    "coffee": "cup of coffee",
    "stereo_motorcycle": "motorcycle",
    "hubble_deep_field": "galaxy",
    "retina": "retina",
    "immunohistochemistry": "stained tissue",
    "camera": "cameraman",
    "coins": "coins",
    "moon": "moon",
    "clock": "clock",
    "brick": "brick wall",
    "grass": "grass",
    "gravel": "gravel",
    "china.jpg": "temple",
    "flower.jpg": "flower",
}


def packaged_photos() -> list[tuple[str, object]]:
    """``(class name, RGB image)`` of the photos scikit-image and scikit-learn ship (those this
    install can load)."""
    from PIL import Image
    from skimage import data

    out = []
    for name in SKIMAGE_PHOTOS:
        try:
            array = getattr(data, name)()
        except Exception:  # some skimage versions need a download for a few of them
            continue
        if isinstance(array, tuple):
            array = array[0]
        out.append((PHOTO_NAMES[name], Image.fromarray(np.asarray(array)).convert("RGB")))
    try:
        from sklearn.datasets import load_sample_images

        samples = load_sample_images()
        for path, array in zip(samples.filenames, samples.images, strict=True):
            for fname in SKLEARN_PHOTOS:
                if path.endswith(fname):
                    out.append((PHOTO_NAMES[fname], Image.fromarray(array).convert("RGB")))
    except ImportError:
        pass
    return out


def fashion_mnist_dataset(folder: Path, limit: int | None):
    from vitrine.data.dataset import ClassificationDataset, Sample
    from vitrine.data.fashion_mnist import export_fashion_mnist

    export_fashion_mnist(folder, train_per_class=0)
    samples = [
        Sample(p.relative_to(folder).as_posix(), p.parent.name, "") for p in sorted((folder / "test").glob("*/*.png"))
    ]
    return ClassificationDataset(name="fashion-mnist-test", root=folder, samples=samples)


def photos_dataset(folder: Path, crops: int, seed: int = 0):
    from vitrine.data.dataset import ClassificationDataset, Sample

    rng = np.random.default_rng(seed)
    samples = []
    for label, photo in packaged_photos():
        (folder / label).mkdir(parents=True, exist_ok=True)
        w, h = photo.size
        for i in range(crops):
            side = rng.uniform(0.4, 0.8)
            cw, ch = int(w * side), int(h * side)
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            photo.crop((x, y, x + cw, y + ch)).resize((224, 224)).save(folder / label / f"{i}.jpg", quality=90)
            samples.append(Sample(f"{label}/{i}.jpg", label, ""))
    return ClassificationDataset(name="photos", root=folder, samples=samples)


def pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def num(v, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def table(result: dict) -> str:
    k = result["k"]
    lines = [
        f"| model | kNN@1 % | kNN@10 % | probe % | zero-shot % | mAP@{k} | images/s | ms/image b1 | ms/text | dim "
        "| bytes/vector | load | time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in result["models"]:
        s = e["scores"]
        name = f"`{e['model']}`" + (" (random weights: speed only)" if e["random_weights"] else "")
        lines.append(
            f"| {name} | {pct(s['knn1_accuracy'])} | {pct(s['knn10_accuracy'])} | {pct(s['probe_accuracy'])} "
            f"| {pct(s['zero_shot_accuracy'])} | {num(s['map_at_k'], 3)} | {num(s['images_per_second'])} "
            f"| {num(e['speed'].get('latency_ms'))} | {num(s['text_query_ms'])} | {s['dim']} "
            f"| {s['bytes_per_vector']:,} | {num(e['speed'].get('load_average'))} | {e['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, help="score a seeded random N of the Fashion-MNIST images (default: all 10k)")
    ap.add_argument("--crops", type=int, default=8, help="crops per packaged photo (default 8)")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--sets", default="fashion-mnist,photos")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    from vitrine.core.workspace import Workspace
    from vitrine.experiments.embeddings import compare_embeddings, dataset_target

    os.environ.setdefault("VITRINE_OFFLINE", "1")
    print(machine_facts("cpu"))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        for name in sets:
            t0 = time.perf_counter()
            if name == "fashion-mnist":
                ds, limit = fashion_mnist_dataset(Path(tmp) / "fmnist", args.limit), args.limit
            elif name == "photos":
                ds, limit = photos_dataset(Path(tmp) / "photos", args.crops), None
            else:
                ap.error(f"unknown set {name!r}: fashion-mnist or photos")
            made = time.perf_counter() - t0

            def progress(stage, done, total, info=None, _name=name):
                if stage == "models" and done < total:
                    print(f"  [{_name}] {info.get('model')} ({done + 1}/{total})", flush=True)

            result = compare_embeddings(ws, dataset_target(ws, ds), models, k=args.k, limit=limit, progress=progress)
            result["made_seconds"] = made
            results[name] = result
            print(
                f"\n### {name}: {result['images']} images, {result['classes']} classes "
                f"(made in {made:.0f} s, compared in {result['seconds']:.0f} s)\n"
            )
            print(table(result))
            print(flush=True)
    total = time.perf_counter() - started
    print(f"total time: {total:.0f} s ({total / 60:.1f} min)")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "total_seconds": total}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
