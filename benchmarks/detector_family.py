"""The speed axis of a detector sweep: every architecture on every EfficientNet-Lite size, at several
input sizes, on this machine's CPU.

For each (arch, backbone, image size): parameters and GFLOPs at that size (``vitrine.evaluate.cost``)
and forward ms/image at batch 1 (``vitrine.evaluate.speed``, the one harness: median of single-image
calls after a warm-up; every configuration is timed once per round, the fastest round counts). The
network is built as ``DetectionConfig`` defaults build it, randomly initialised, in eval mode, on
square images of the input size. The last column compares with the baseline measured in the same
run: Mask R-CNN on EfficientNet-Lite0 at 128 px.

Random weights time the code path, not a trained model: a trained detector keeps a different
number of boxes after its score threshold, so the post-processing share can differ (Mask R-CNN's
mask head runs on every kept box: with random weights, all 30 of ``box_detections_per_img``). The
machine's load average is printed with the table; above the core count the times are inflated.

    .venv/bin/python benchmarks/detector_family.py [--sizes 128,256] [--threads 2] [--images 5] [--rounds 3]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys

BASELINE = ("maskrcnn", "efficientnet-lite0", 128)


def build(arch: str, backbone: str, size: int, images: int):
    """The network as ``DetectionConfig`` defaults build it (random init, eval mode), its cost
    figures, and its inputs."""
    import torch

    from vitrine.evaluate.cost import gflops, parameter_count
    from vitrine.models.detectors.torchvision_family import build_detection_model
    from vitrine.train.detection.config import DetectionConfig

    torch.manual_seed(0)
    options = DetectionConfig(arch=arch, backbone=backbone, image_size=size, pretrained=False).model_options()
    model = build_detection_model(options, num_classes=4).eval()
    inputs = [torch.rand(3, size, size) for _ in range(images)]
    row = {
        "arch": arch,
        "backbone": backbone,
        "image_size": size,
        "parameters_m": round(parameter_count(model) / 1e6, 2),
        "gflops": round(gflops(model, [inputs[0]]) or 0.0, 2),
    }
    return model, inputs, row


def time_one(model, inputs) -> tuple[float, float | None]:
    """Median ms/image at batch 1 (the speed harness) and the load average when measured."""
    import torch

    from vitrine.evaluate.speed import measure

    def predict(batch):
        with torch.inference_mode():
            return model(batch)

    report = measure(predict, inputs, batch_size=0, latency_images=len(inputs), warmup=2)
    return report.latency_ms, report.load_average


def main(argv: list[str] | None = None) -> int:
    import torch

    from vitrine.models.detectors.lite_features import LITE_BACKBONES
    from vitrine.models.detectors.torchvision_family import ARCHS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,256", help="input sizes, comma separated")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--images", type=int, default=5, help="timed single-image calls per configuration")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds; the fastest counts")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]

    configs = [BASELINE] + [
        (arch, backbone, size)
        for arch in ARCHS
        for backbone in LITE_BACKBONES
        for size in sizes
        if (arch, backbone, size) != BASELINE
    ]
    built = [build(*config, args.images) for config in configs]
    # every configuration once per round; the fastest round counts (the least disturbed by other work)
    for _ in range(args.rounds):
        for _model, _inputs, row in built:
            ms, load = time_one(_model, _inputs)
            row["ms_per_image"] = round(min(ms, row.get("ms_per_image", ms)), 1)
            row.setdefault("load_average", []).append(load)
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    rows = [row for _, _, row in built]
    base = rows[0]["ms_per_image"]
    rows.sort(key=lambda r: (ARCHS.index(r["arch"]), r["backbone"], r["image_size"]))
    print(f"{'arch':<11}{'backbone':<20}{'px':>5}{'params M':>10}{'GFLOPs':>8}{'ms/img':>8}{'vs base':>9}")
    for r in rows:
        speedup = base / r["ms_per_image"] if r["ms_per_image"] else float("nan")
        print(
            f"{r['arch']:<11}{r['backbone']:<20}{r['image_size']:>5}{r['parameters_m']:>10.2f}{r['gflops']:>8.2f}"
            f"{r['ms_per_image']:>8.1f}{speedup:>8.2f}x"
        )
    loads = [v for r in rows for v in r["load_average"] if v is not None]
    print(
        f"baseline {BASELINE[0]} {BASELINE[1]} {BASELINE[2]} px: {base} ms/image; threads {args.threads}; "
        f"fastest of {args.rounds} rounds of {args.images} images; "
        f"load average {min(loads, default=float('nan'))}-{max(loads, default=float('nan'))}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
