#!/usr/bin/env python3
"""Write Fashion-MNIST (Debian's dataset-fashion-mnist package) as PNG files vitrine can import.

    python scripts/fashion_mnist_to_imagefolder.py OUT_DIR [--train-per-class N] [--test-per-class N]
        [--layout imagefolder|csv] [--seed S] [--source DIR]

Same as ``vitrine data fashion-mnist``; the work is done by :mod:`vitrine.data.fashion_mnist`.
Then: ``vitrine data import imagefolder OUT_DIR --name fashion-mnist`` (val is carved from train).
"""

from __future__ import annotations

import argparse
import sys
import time

from vitrine.core.errors import VitrineError
from vitrine.data.fashion_mnist import DEFAULT_SOURCE, export_fashion_mnist


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", help="new (or empty) folder to write into")
    ap.add_argument("--train-per-class", type=int, default=None, help="train images per class (default: all)")
    ap.add_argument("--test-per-class", type=int, default=None, help="test images per class (default: all)")
    ap.add_argument("--layout", choices=("imagefolder", "csv"), default="imagefolder")
    ap.add_argument("--seed", type=int, default=0, help="seed of the per-class subsets")
    ap.add_argument("--source", default=DEFAULT_SOURCE, help=f"folder of the IDX files (default: {DEFAULT_SOURCE})")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        out = export_fashion_mnist(
            args.out_dir,
            source_dir=args.source,
            layout=args.layout,
            train_per_class=args.train_per_class,
            test_per_class=args.test_per_class,
            seed=args.seed,
        )
    except VitrineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
