"""Classification on Fashion-MNIST: three ways to get a classifier, against a baseline, in one run.

Fashion-MNIST (70,000 28x28 greyscale photos of clothes in 10 classes) is read from Debian's
``dataset-fashion-mnist`` package (/usr/share/datasets/fashion-mnist): nothing is downloaded.
It is exported as PNG files (``vitrine.data.fashion_mnist``), imported as an image-folder
dataset with its official train/test split kept and a val split carved from train, and then,
in the same process:

  (0) majority class: the most frequent class of the train split, whatever the image;
  (a) zero-shot with offline-concepts: class names as prompts ("a photo of a T-shirt top"), no
      training at all (the model knows ImageNet concepts from colour photos: expect it to do
      poorly on small grey clothes);
  (b) linear probe on offline-concepts' ``visual`` embeddings (EfficientNet-Lite0 penultimate
      features): logistic regression, C picked on the val split;
  (c) fine-tuning EfficientNet-Lite0 end to end (``vitrine.train.classification.finetune``), under a time
      budget.

For each: test accuracy and macro-F1 on the official test set (all 10,000 images by default),
training time (what a user waits for: for the probe, embedding its train and val images plus
fitting; for zero-shot, embedding the prompts) and inference images/s (``predict_proba`` on
decoded test images, preprocessing included, batches of 32, the same images for every method).
The test set is embedded once before the methods run (shared by (a) and (b): the model computes
both of its spaces in one pass); that time is printed apart.

The aim for (c): >= 93% test accuracy within 15 minutes of training on 2 CPU cores. The
defaults: all 57,000 train images (3,000 held out for val: each validation pass costs training
time), 64x64 input, the stem and first two stages frozen (faster steps: more epochs in the budget),
batches of 64, AdamW at lr 0.001 with the cosine schedule stretched over the time budget, no
augmentation, channels-last memory format; the 15-minute budget stops the run (after 2-3 epochs on
2 cores) and the best checkpoint (lowest val loss) is evaluated.

Threads: every method runs with ``--torch-threads`` torch threads (default 1). On a 2-core
machine that other processes also use, 2 OpenMP threads wait on each other at every layer and
run several times slower than 1; the column ``others`` says how many cores other processes used
meanwhile (0 on an idle machine). On an idle machine, compare with ``--torch-threads 2``.

Usage:
    python benchmarks/classification.py [--methods baseline,zero-shot,probe,finetune]
        [--probe-train-per-class 200] [--train-per-class 0 (all)] [--test-per-class N (all)]
        [--finetune-minutes 15] [--image-size 64] [--epochs 20] [--batch-size 64] [--lr 0.001]
        [--augment none] [--torch-threads 1] [--ft KEY=VALUE ...] [--speed-images 128] [--work DIR]
        [--json results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import vitrine  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

METHODS = ("baseline", "zero-shot", "probe", "finetune")
EMBEDDING_MODEL = "offline-concepts"
BACKBONE = "efficientnet-lite0"
AIM_ACCURACY = 0.93
AIM_MINUTES = 15.0


@dataclass
class Result:
    method: str
    train_images: int = 0
    test_images: int = 0
    accuracy: float | None = None
    macro_f1: float | None = None
    train_seconds: float | None = None
    images_per_second: float | None = None
    others: float | None = None  # cores used by other processes during training, on average
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# machine


def machine_facts() -> str:
    import PIL
    import sklearn
    import timm
    import torch

    from vitrine.embed.pipeline import default_workers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {os.cpu_count()} CPUs ({usable} usable, {cpu}), torch {torch.__version__} with "
        f"{torch.get_num_threads()} intra-op threads, device cpu, timm {timm.__version__}, "
        f"scikit-learn {sklearn.__version__}, Pillow {PIL.__version__}, vitrine decode workers "
        f"{default_workers()}, Python {platform.python_version()}"
    )


def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine_busy() -> float | None:
    """CPU-seconds all processes have spent so far, machine-wide (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class Timer:
    """Wall time, and the cores other processes used meanwhile (0 on an idle machine)."""

    def __enter__(self):
        t = os.times()
        self.cpu0, self.busy0, self.t0 = t.user + t.system, machine_busy(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        t = os.times()
        self.seconds = time.perf_counter() - self.t0
        cpu = t.user + t.system - self.cpu0
        busy1 = machine_busy()
        self.others = None
        if self.busy0 is not None and busy1 is not None and self.seconds > 0:
            self.others = max(0.0, (busy1 - self.busy0) - cpu) / self.seconds
        return False


SHOWN = ("epoch", "epoch_loss", "epoch_accuracy", "val_accuracy", "images_per_second", "eta_seconds", "lr")


class Progress:
    """progress(stage, done, total, ...) -> a line on stderr now and then."""

    def __init__(self, label: str, every_s: float = 15.0):
        self.label, self.every_s, self.last, self.t0 = label, every_s, 0.0, time.perf_counter()

    def __call__(self, stage: str, done: int = 0, total: int = 0, info: dict | None = None, **extra) -> None:
        now = time.perf_counter()
        if now - self.last < self.every_s and not (total and done >= total):
            return
        self.last = now
        bits = {k: v for k, v in {**(info or {}), **extra}.items() if k in SHOWN}
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in bits.items())
        print(
            f"  [{self.label} {now - self.t0:6.0f} s] {stage} {done}/{total or '?'}" + (f" ({shown})" if shown else ""),
            file=sys.stderr,
            flush=True,
        )


# ------------------------------------------------------------------------------------------------
# data


def prepare_data(args, ws):
    """Export, import, split; the datasets each method uses (saved in the workspace)."""
    from vitrine.data.dataset import ClassificationDataset, Sample
    from vitrine.data.fashion_mnist import export_fashion_mnist
    from vitrine.data.importers import from_imagefolder
    from vitrine.data.split import assign_splits

    wanted_train = None
    if "finetune" not in args.methods:
        wanted_train = args.probe_train_per_class
    elif args.train_per_class is not None:
        wanted_train = max(args.train_per_class, args.probe_train_per_class)
    train_pc = None if wanted_train is None else int(np.ceil(wanted_train / (1 - args.val)))
    tag = f"train{train_pc or 'all'}-test{args.test_per_class or 'all'}-seed{args.seed}"
    export_dir = Path(args.work) / f"fashion-mnist-{tag}"
    t0 = time.perf_counter()
    if not (export_dir / ".complete").is_file():
        if export_dir.exists():
            shutil.rmtree(export_dir)
        export_fashion_mnist(
            export_dir,
            source_dir=args.source,
            train_per_class=train_pc,
            test_per_class=args.test_per_class,
            seed=args.seed,
        )
        (export_dir / ".complete").write_text("ok\n")
    full = from_imagefolder(export_dir, "fashion-mnist", check_images=False)
    full = assign_splits(full, val=args.val, test=0.1, seed=args.seed)  # the official test split is kept
    full.save(ws.dataset_dir(full.name))
    counts = {sp: sum(c.values()) for sp, c in full.counts().items()}
    print(
        f"data: Fashion-MNIST from {args.source}: {counts.get('train', 0)} train, {counts.get('val', 0)} val, "
        f"{counts.get('test', 0)} test images, {len(full.classes)} classes, exported and imported in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )

    def subset(name: str, train_per_class: int | None) -> ClassificationDataset:
        """``train_per_class`` train images of each class drawn at random (seeded), and about a
        ninth as many val images; the whole test split."""
        keep: list[Sample] = []
        taken: dict[tuple[str, str], int] = {}
        limits = {"train": train_per_class, "val": None if train_per_class is None else max(10, train_per_class // 9)}
        for i in np.random.default_rng(args.seed).permutation(len(full.samples)):
            s = full.samples[int(i)]
            limit = limits.get(s.split)
            key = (s.split, s.label)
            if limit is not None and taken.get(key, 0) >= limit:
                continue
            taken[key] = taken.get(key, 0) + 1
            keep.append(s)
        keep.sort(key=lambda s: s.path)
        ds = ClassificationDataset(name, full.root, keep, classes=list(full.classes), source=dict(full.source))
        ds.save(ws.dataset_dir(name))
        return ds

    probe_ds = subset("fashion-mnist-probe", args.probe_train_per_class)
    finetune_ds = subset("fashion-mnist-finetune", args.train_per_class) if "finetune" in args.methods else None
    return full, probe_ds, finetune_ds


def speed_images(ds, n: int, seed: int) -> list:
    from vitrine.collection.imageio import open_image

    test = ds.split("test")
    rng = np.random.default_rng(seed + 1)
    picked = rng.choice(len(test), size=min(n, len(test)), replace=False)
    return [open_image(ds.path_of(test[i])) for i in picked]


def images_per_second(classifier, images: list) -> float:
    from vitrine.evaluate.classification import measure_speed

    return float(measure_speed(classifier, images, batch_size=32)["images_per_second"])


# ------------------------------------------------------------------------------------------------
# methods


def run_baseline(full) -> Result:
    from sklearn.metrics import f1_score

    classes = full.classes
    index = full.class_index()
    train = np.array([index[s.label] for s in full.split("train")])
    test = np.array([index[s.label] for s in full.split("test")])
    t0 = time.perf_counter()
    majority = int(np.bincount(train, minlength=len(classes)).argmax())
    seconds = time.perf_counter() - t0
    pred = np.full_like(test, majority)
    return Result(
        "(0) majority class",
        train_images=len(train),
        test_images=len(test),
        accuracy=float((pred == test).mean()),
        macro_f1=float(f1_score(test, pred, labels=list(range(len(classes))), average="macro", zero_division=0)),
        train_seconds=seconds,
        notes=[f"always {classes[majority]!r} (classes are balanced: chance level)"],
    )


def run_zero_shot(ws, ds, images: list) -> Result:
    from vitrine.predict.classifier import load_classifier
    from vitrine.train.classification.zero_shot import make_zero_shot

    with Timer() as t:
        run = make_zero_shot(ws, ds, embedding_model=EMBEDDING_MODEL, progress=Progress("zero-shot"))
    m = run.record["metrics"]
    test = m["test"]
    clf = load_classifier(run)
    return Result(
        f"(a) zero-shot, {EMBEDDING_MODEL}, class names",
        train_images=0,
        test_images=test["n"],
        accuracy=test["accuracy"],
        macro_f1=test["macro_f1"],
        train_seconds=m["train_seconds"],
        images_per_second=images_per_second(clf, images),
        others=t.others,
        notes=[
            f"prompts like {clf.prompts[0][0]!r}; logit scale {clf.logit_scale:g}; "
            f"top-3 accuracy {test.get('top_k', {}).get('top_3', float('nan')):.3f}"
        ],
    )


def run_probe(ws, ds, images: list) -> Result:
    from vitrine.predict.classifier import load_classifier
    from vitrine.train.classification.linear_probe import train_linear_probe

    with Timer() as t:
        run = train_linear_probe(ws, ds, embedding_model=EMBEDDING_MODEL, progress=Progress("probe"))
    m = run.record["metrics"]
    test = m["test"]
    clf = load_classifier(run)
    n_embedded = m["images_embedded"]
    return Result(
        f"(b) linear probe, {EMBEDDING_MODEL} visual",
        train_images=m["n_train"],
        test_images=test["n"],
        accuracy=test["accuracy"],
        macro_f1=test["macro_f1"],
        train_seconds=m["embed_seconds"] + m["train_seconds"],
        images_per_second=images_per_second(clf, images),
        others=t.others,
        notes=[
            f"embedding {n_embedded} train+val images {m['embed_seconds']:.0f} s + fit {m['train_seconds']:.1f} s; "
            f"C={m['C']:g} (val accuracy {m.get('val_accuracy', float('nan')):.3f})"
        ],
    )


def finetune_config(args):
    from vitrine.train.classification.finetune import FinetuneConfig

    wanted = {
        "backbone": BACKBONE,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "max_minutes": args.finetune_minutes,
        "seed": args.seed,
        "channels_last": args.channels_last,
        "augment": args.augment,
        "threads": args.torch_threads or None,
        "freeze_stages": 2,  # the stem and first two stages: faster steps (--ft freeze_stages=0 to train all)
    }
    for item in args.finetune_option:
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw  # a bare word: a string
        wanted[key.strip().replace("-", "_")] = value
    known = {f.name for f in dataclasses.fields(FinetuneConfig)}
    unknown = sorted(k for k, v in wanted.items() if v is not None and k not in known)
    if unknown:
        print(f"note: FinetuneConfig has no {', '.join(unknown)}: left to its defaults", file=sys.stderr)
    return FinetuneConfig(**{k: v for k, v in wanted.items() if v is not None and k in known})


def run_finetune(args, ws, ds, images: list) -> Result:
    from vitrine.evaluate.classification import evaluate_run
    from vitrine.predict.classifier import load_classifier
    from vitrine.train.classification.finetune import train_finetune

    config = finetune_config(args)
    cancel = threading.Event()
    with Timer() as t:
        run = train_finetune(ws, ds, config, progress=Progress("finetune"), cancel=cancel, run_id=None, resume=False)
    m = run.record.get("metrics") or {}
    test = m.get("test")
    eval_note = ""
    if not test or test.get("accuracy") is None:
        t0 = time.perf_counter()
        report = evaluate_run(ws, run, ds, "test", progress=Progress("evaluate"))
        test = report
        eval_note = f"; test evaluated after training in {time.perf_counter() - t0:.0f} s"
    train_seconds = m.get("train_seconds") or m.get("training_seconds") or t.seconds
    clf = load_classifier(run)
    minutes = train_seconds / 60
    ok = test["accuracy"] >= AIM_ACCURACY and minutes <= AIM_MINUTES
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    keys = ("image_size", "epochs", "batch_size", "lr", "max_minutes", "augment", "channels_last", "threads")
    keys += tuple(k for k in cfg if k not in keys and any(o.startswith(k) for o in args.finetune_option))
    shown = ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg)
    history = m.get("history") or run.record.get("history") or []
    if history:
        shown += "; val accuracy after epoch " + ", ".join(
            f"{h.get('epoch')}{' (partial)' if h.get('partial') else ''}: {h.get('val_accuracy', float('nan')):.3f}"
            for h in history[-4:]
        )
    return Result(
        f"(c) fine-tune {BACKBONE}",
        train_images=len(ds.split("train")),
        test_images=test["n"],
        accuracy=test["accuracy"],
        macro_f1=test["macro_f1"],
        train_seconds=train_seconds,
        images_per_second=images_per_second(clf, images),
        others=t.others,
        notes=[
            f"{shown}; run {run.id} ({run.record.get('state')}); wall time of the call {t.seconds:.0f} s{eval_note}",
            f"aim >= {AIM_ACCURACY:.0%} in <= {AIM_MINUTES:g} min: {'MET' if ok else 'NOT MET'} "
            f"({test['accuracy']:.2%} in {minutes:.1f} min)",
        ],
    )


# ------------------------------------------------------------------------------------------------
# output


HEADERS = ["method", "train imgs", "test imgs", "accuracy", "macro-F1", "train s", "infer img/s", "others"]


def cells(r: Result) -> list[str]:
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    return [
        r.method,
        f"{r.train_images:,}",
        f"{r.test_images:,}",
        f(r.accuracy, ".4f"),
        f(r.macro_f1, ".4f"),
        f(r.train_seconds, ".1f"),
        f(r.images_per_second, ".1f"),
        f(r.others, ".2f"),
    ]


def print_table(results: list[Result], title: str) -> None:
    rows = [HEADERS, *(cells(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    print(title)
    for j, row in enumerate(rows):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    for r in results:
        for note in r.notes:
            print(f"  {r.method.split(' ')[0]} {note}")


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from vitrine.data.fashion_mnist import DEFAULT_SOURCE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    ap.add_argument("--source", default=DEFAULT_SOURCE, help="folder holding the four Fashion-MNIST IDX files")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one, removed at the end)")
    ap.add_argument("--test-per-class", type=int, default=None, help="test images per class (default: all 1,000)")
    ap.add_argument("--val", type=float, default=0.05, help="share of the train images held out for val (default 0.05)")
    ap.add_argument(
        "--probe-train-per-class", type=int, default=200, help="train images per class for the probe (default 200)"
    )
    ap.add_argument(
        "--train-per-class",
        type=int,
        default=0,
        help="train images per class for fine-tuning (default 0: all, 5,400 after the val split)",
    )
    ap.add_argument("--finetune-minutes", type=float, default=AIM_MINUTES, help="fine-tuning time budget")
    ap.add_argument("--image-size", type=int, default=64, help="fine-tuning input size (default 64)")
    ap.add_argument(
        "--epochs", type=int, default=20, help="fine-tuning epochs (default 20: the time budget stops it first)"
    )
    ap.add_argument("--batch-size", type=int, default=64, help="fine-tuning batch size")
    ap.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (default 0.001)")
    ap.add_argument(
        "--augment",
        default="none",
        help="fine-tuning augmentation: none (default: a 15-minute run sees each image 1-3 times, too few to "
        "overfit), light or strong",
    )
    ap.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fine-tune in channels-last memory format (faster on CPU; default on)",
    )
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads for every method (default 1; 0: leave what vitrine sets). When another "
        "process holds one of 2 cores, 2 threads wait on each other: fine-tuning at 32 px ran at 48 images/s "
        "with 2 threads and 330 with 1. On an idle machine, try 2",
    )
    ap.add_argument(
        "--finetune-option",
        "--ft",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other FinetuneConfig option, e.g. --ft label_smoothing=0.1 (values are read as JSON; repeatable)",
    )
    ap.add_argument("--speed-images", type=int, default=128, help="test images timed per method (default 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.methods or set(args.methods) - set(METHODS):
        ap.error(f"--methods takes a comma-separated subset of {','.join(METHODS)}")
    if args.train_per_class is not None and args.train_per_class <= 0:
        args.train_per_class = None  # 0: all

    import torch

    import vitrine.data.importers  # noqa: F401  (imports what indexing imports, FAISS included)
    from vitrine.core.workspace import Workspace
    from vitrine.train.classification.embeddings import dataset_cache_dir, embed_dataset

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    t_all = time.perf_counter()
    print("vitrine classification benchmark: Fashion-MNIST", flush=True)
    print(machine_facts())
    print(f"load average at start (1/5/15 min): {load_average()}", flush=True)
    temp = args.work is None
    args.work = args.work or tempfile.mkdtemp(prefix="vitrine-bench-cls-")
    ws = Workspace(Path(args.work) / "workspace")
    results: list[Result] = []
    try:
        full, probe_ds, finetune_ds = prepare_data(args, ws)
        images = speed_images(full, args.speed_images, args.seed)
        if "baseline" in args.methods:
            results.append(run_baseline(full))
        if {"zero-shot", "probe"} & set(args.methods):
            from vitrine.models import registry

            t0 = time.perf_counter()
            model = registry.load(EMBEDDING_MODEL)
            print(f"{EMBEDDING_MODEL} loaded in {time.perf_counter() - t0:.1f} s", flush=True)
            t0 = time.perf_counter()
            emb = embed_dataset(
                probe_ds,
                EMBEDDING_MODEL,
                model.spaces.image_space,
                cache_dir=dataset_cache_dir(ws, probe_ds),
                samples=probe_ds.split("test"),
                progress=Progress("embed test"),
            )
            seconds = time.perf_counter() - t0
            print(
                f"test set embedded once for (a) and (b): {emb.embedded} images in {seconds:.0f} s "
                f"({emb.embedded / max(seconds, 1e-9):.1f} images/s; {emb.cached} from the cache)",
                flush=True,
            )
        if "zero-shot" in args.methods:
            results.append(run_zero_shot(ws, probe_ds, images))
            print(f"  done: {results[-1].method}: accuracy {results[-1].accuracy:.4f}", file=sys.stderr, flush=True)
        if "probe" in args.methods:
            results.append(run_probe(ws, probe_ds, images))
            print(f"  done: {results[-1].method}: accuracy {results[-1].accuracy:.4f}", file=sys.stderr, flush=True)
        if "finetune" in args.methods:
            try:
                import vitrine.train.classification.finetune  # noqa: F401
            except ImportError as exc:
                print(f"(c) fine-tuning skipped: its module cannot be imported ({exc})", flush=True)
            else:
                results.append(run_finetune(args, ws, finetune_ds, images))

        print()
        print_table(
            results,
            f"Fashion-MNIST test set ({results[0].test_images if results else 0:,} images), "
            f"inference on {len(images)} decoded test images, batch 32, cpu",
        )
        print(
            "train s: (0) counting labels; (a) embedding the prompts; (b) embedding the train+val images and "
            "fitting; (c) the fine-tuning run. others: CPU cores other processes used meanwhile, on average "
            "(0 on an idle machine; above ~0.3 the times are inflated)."
        )
        print(f"load average at end (1/5/15 min): {load_average()}")
        print(f"total benchmark time {time.perf_counter() - t_all:.0f} s")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "machine": machine_facts(),
                        "args": {k: v for k, v in vars(args).items() if k != "json"},
                        "results": [dataclasses.asdict(r) for r in results],
                    },
                    indent=2,
                    default=str,
                )
            )
    finally:
        if temp:
            shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
