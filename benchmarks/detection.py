"""Instance segmentation benchmark: Mask R-CNN fine-tuned on generated Fashion-MNIST scenes.

It generates a scenes dataset (``vitrine.data.detection.scenes``: real Fashion-MNIST items pasted
on photo backgrounds, exact masks; train and val items from the Fashion-MNIST train file, test
items from its test file), then compares on the held-out test scenes:

- **untrained**: the same Mask R-CNN (EfficientNet-Lite0 + FPN, the packaged ImageNet backbone
  weights) with its detection heads as initialised, not trained: the baseline;
- **trained**: that network fine-tuned with ``vitrine.train.detection.trainer.train_detector`` for a
  bounded time (``--minutes``, default 20, of CPU training; validation included), best checkpoint
  by validation mask mAP@.5;
- **ssd-mobilenet-v2-coco** (when the registry has it): the offline COCO detector, timed only
  (its COCO classes are not the scenes' classes, so it has no mAP here).

The table gives box and mask mAP@.5 and mAP@.5:.95 (pycocotools, through
``vitrine.evaluate.detection``), inference ms/image (one image at a time, as a request is served)
and ``others``: how many CPU cores other processes used meanwhile, on average (0 on an idle
machine; above ~0.3 the times are inflated). Aim: mask mAP@.5 >= 0.5 within 20 minutes of CPU
training on 2 cores.

    .venv/bin/python benchmarks/detection.py [--minutes 20] [--train 3000] [--test 200] [--data DIR]
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classification import Timer, load_average  # noqa: E402  (the sibling benchmark's helpers)

SSD = "ssd-mobilenet-v2-coco"


@dataclass
class Row:
    model: str
    train_seconds: float | None = None
    steps: int | None = None
    bbox_map50: float | None = None
    bbox_map: float | None = None
    segm_map50: float | None = None
    segm_map: float | None = None
    ms_per_image: float | None = None
    others: float | None = None
    notes: list[str] = field(default_factory=list)


def machine_facts(threads: int) -> str:
    import torch
    import torchvision

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {os.cpu_count()} CPUs ({usable} usable, {cpu}), torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}, {threads} torch thread(s), device cpu, Python {platform.python_version()}"
    )


def time_detector(detector, images, warmup: int = 2) -> float:
    """Mean ms per image, one image per call (preprocessing and mask pasting included)."""
    for im in images[:warmup]:
        detector.predict(im, threshold=0.5)
    t0 = time.perf_counter()
    for im in images:
        detector.predict(im, threshold=0.5)
    return 1000 * (time.perf_counter() - t0) / max(1, len(images))


def evaluate(detector, test, label: str) -> dict:
    from vitrine.evaluate.detection import evaluate_detection, predict_dataset

    t0 = time.perf_counter()
    preds = predict_dataset(detector, test, threshold=0.05, batch_size=4)
    report = evaluate_detection(test, preds)
    print(
        f"  {label}: predicted and evaluated {len(preds)} test images in {time.perf_counter() - t0:.0f} s", flush=True
    )
    return report


class Progress:
    def __init__(self, every_s: float = 60.0):
        self.every_s, self.last, self.t0 = every_s, 0.0, time.perf_counter()

    def __call__(self, stage, done=0, total=0, info=None):
        info = info or {}
        now = time.perf_counter()
        if stage == "epoch":
            maps = " ".join(f"{k}={v:.3f}" for k, v in info.items() if k.startswith("val_") and "map" in k)
            print(f"  [{now - self.t0:5.0f}s] epoch {info.get('epoch')} (step {info.get('step')}): {maps}", flush=True)
        elif stage == "train" and now - self.last >= self.every_s:
            self.last = now
            print(
                f"  [{now - self.t0:5.0f}s] step {done} loss {info.get('loss', float('nan')):.3f} "
                f"lr {info.get('lr', 0):.4f} {info.get('images_per_second', 0):.1f} img/s",
                flush=True,
            )


def print_table(rows: list[Row], title: str) -> None:
    headers = ["model", "train s", "steps", "box mAP@.5", "box mAP@.5:.95", "mask mAP@.5", "mask mAP@.5:.95"]
    headers += ["ms/image", "others"]

    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    table = [headers] + [
        [
            r.model,
            f(r.train_seconds, ".0f"),
            f(r.steps, "d"),
            f(r.bbox_map50, ".3f"),
            f(r.bbox_map, ".3f"),
            f(r.segm_map50, ".3f"),
            f(r.segm_map, ".3f"),
            f(r.ms_per_image, ".1f"),
            f(r.others, ".2f"),
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    print(title)
    for j, row in enumerate(table):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        for note in r.notes:
            print(f"  {r.model}: {note}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="training time budget (default 20)")
    ap.add_argument("--train", type=int, default=3000, help="train scenes (default 3000)")
    ap.add_argument("--val", type=int, default=200, help="val scenes (default 200)")
    ap.add_argument("--test", type=int, default=200, help="held-out test scenes (default 200)")
    ap.add_argument("--scene-size", type=int, default=128, help="scene side in pixels (default 128)")
    ap.add_argument("--image-size", type=int, default=128, help="the network's input size (default 128)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--freeze-stages", type=int, default=2)
    ap.add_argument("--max-val-images", type=int, default=100, help="val images per validation (default 100)")
    ap.add_argument("--config", default="{}", help="more DetectionConfig options, as JSON")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: see benchmarks/README.md)")
    ap.add_argument("--speed-images", type=int, default=50, help="test images timed per model (default 50)")
    ap.add_argument("--data", type=Path, default=None, help="reuse scenes generated earlier in this folder")
    ap.add_argument("--work", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = ap.parse_args(argv)

    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    from vitrine.core.workspace import Workspace
    from vitrine.data.detection.resolve import resolve_dataset
    from vitrine.evaluate.detection import report_summary as summarize
    from vitrine.models.detectors.torchvision_family import build_detection_model
    from vitrine.predict.run_detector import CategoryMapped, load_run_detector
    from vitrine.train.detection.config import DetectionConfig
    from vitrine.train.detection.trainer import train_detector

    t_all = time.perf_counter()
    print("vitrine detection benchmark: Mask R-CNN on Fashion-MNIST scenes", flush=True)
    print(machine_facts(args.threads))
    print(f"load average at start (1/5/15 min): {load_average()}", flush=True)
    temp = args.work is None
    work = args.work or Path(tempfile.mkdtemp(prefix="vitrine-bench-det-"))
    rows: list[Row] = []
    try:
        if args.data is not None and args.data.exists():
            ds, _, _ = resolve_dataset(args.data, "scenes")
            print(f"scenes: {len(ds.images)} images from {args.data}", flush=True)
        else:
            from vitrine.data.detection.scenes import generate_scenes

            t0 = time.perf_counter()
            out = args.data or work / "scenes"
            ds = generate_scenes(
                out, args.train, args.val, args.test, image_size=args.scene_size, seed=args.seed, yolo=False
            )
            print(f"scenes: generated {len(ds.images)} in {time.perf_counter() - t0:.0f} s into {out}", flush=True)
        counts = {s: sum(1 for im in ds.images if im.split == s) for s in ("train", "val", "test")}
        test = ds.split("test")
        print(
            f"  {counts['train']} train / {counts['val']} val / {counts['test']} test scenes of {args.scene_size} px, "
            f"{len(ds.annotations)} objects, {len(ds.categories)} classes",
            flush=True,
        )
        config = DetectionConfig(
            **{
                "image_size": args.image_size,
                "batch_size": args.batch_size,
                "lr": args.lr,
                "freeze_stages": args.freeze_stages,
                "max_minutes": args.minutes,
                "epochs": 100,
                "max_val_images": args.max_val_images,
                "threads": args.threads,
                "seed": args.seed,
                **json.loads(args.config),
            }
        )
        print(f"config: {json.dumps(config.to_dict())}", flush=True)
        speed_images = [
            Image.open(Path(test.root) / im.file_name).convert("RGB") for im in test.images[: args.speed_images]
        ]

        # the baseline: the same network, heads not trained
        from vitrine.models.detectors.torch_detector import TorchvisionDetector

        ids = sorted(c.id for c in ds.categories)
        torch.manual_seed(args.seed)
        untrained = build_detection_model(config.model_options(), len(ids) + 1)
        names = {c.id: c.name for c in ds.categories}
        det0 = TorchvisionDetector(CategoryMapped(untrained, ids), names, "untrained", "segmentation", device="cpu")
        with Timer() as t:
            report0 = summarize(evaluate(det0, test, "untrained"))
            ms0 = time_detector(det0, speed_images)
        rows.append(Row("untrained (same net)", ms_per_image=ms0, others=t.others, **_maps(report0)))

        # the trained model
        ws = Workspace(work / "workspace")
        print(f"training for {args.minutes:g} min ({args.threads} thread(s))...", flush=True)
        with Timer() as t:
            run = train_detector(ws, ds, config, progress=Progress(), run_id="bench", dataset_name="scenes")
        m = run.record["metrics"]
        print(
            f"  trained {m['steps']} steps ({m['images_trained']} images, {m['train_images_per_second']} img/s), "
            f"stopped by {m['stopped']}, best epoch {m['best_epoch']}; wall {t.seconds:.0f} s incl. final evaluation",
            flush=True,
        )
        det1 = load_run_detector(run, device="cpu")
        ms1 = time_detector(det1, speed_images)
        row = Row(
            "trained (vitrine)",
            train_seconds=m["train_seconds"],
            steps=m["steps"],
            ms_per_image=ms1,
            others=t.others,
            **{k: m["test"].get(k) for k in ("bbox_map50", "bbox_map", "segm_map50", "segm_map")},
        )
        row.notes.append(f"run folder {run.dir}" + (" (temporary)" if temp else ""))
        rows.append(row)

        # the offline SSD detector, speed only
        try:
            from vitrine.predict.detector import load_detector

            ssd = load_detector(SSD)
        except Exception as e:  # not registered, or its package missing
            print(f"{SSD}: not available ({type(e).__name__}: {e})", flush=True)
        else:
            with Timer() as ts:
                ms = time_detector(ssd, speed_images)
            r = Row(SSD, ms_per_image=ms, others=ts.others)
            r.notes.append("COCO classes, not the scenes' classes: timed only")
            rows.append(r)

        print()
        print_table(
            rows,
            f"held-out test scenes ({len(test.images)} images, {args.scene_size} px), mAP by pycocotools; "
            f"ms/image: one image per call, {args.threads} thread(s), cpu",
        )
        print(
            "train s: training seconds of the run (validation included, final evaluation not); others: CPU cores "
            "other processes used meanwhile, on average (training and final evaluation for the trained model)."
        )
        print(f"load average at end (1/5/15 min): {load_average()}")
        print(f"total benchmark time {time.perf_counter() - t_all:.0f} s")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "machine": machine_facts(args.threads),
                        "args": {k: str(v) for k, v in vars(args).items()},
                        "config": config.to_dict(),
                        "rows": [asdict(r) for r in rows],
                        "history": m.get("history"),
                    },
                    indent=2,
                    default=str,
                )
            )
    finally:
        if temp:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _maps(summary: dict) -> dict:
    return {k: summary.get(k) for k in ("bbox_map50", "bbox_map", "segm_map50", "segm_map")}


if __name__ == "__main__":
    sys.exit(main())
