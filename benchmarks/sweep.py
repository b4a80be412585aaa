"""A configuration sweep on Ray Tune, as a user runs it, scored on vitrine's leaderboard.

**Detection** (``--task detect``, the default): Fashion-MNIST scenes are generated as
``benchmarks/detection.py`` does (3,000 train / 200 val / 200 test scenes of 128 px: real items on
photo backgrounds), then one sweep (``vitrine.experiments.sweep``: a local Ray, every trial an
ordinary run) trains every combination of ``--archs`` x ``--sizes`` x ``--widths`` (the FPN and
head width, ``fpn_channels``: the network's size, like YOLO's n/s/m) x ``--backbones`` for
``--trial-minutes`` each, validation included, ``--cpus-per-trial`` CPUs (and as many torch
threads) per trial, so that two trials share a 2-core machine. The baseline, today's benchmark
model (Mask R-CNN on EfficientNet-Lite0 at 128 px, 96 wide), is one of the trials: same data,
same budget, same scoring.

**Classification** (``--task classify``): Fashion-MNIST (Debian's ``dataset-fashion-mnist``,
nothing downloaded) exported and imported as a dataset, then a sweep of ``--backbones`` x
``--sizes`` fine-tuning runs; the baseline is EfficientNet-Lite0 at 64 px (the classification
benchmark's model) and the table compares each newer or larger configuration with it.

After the sweep every finished trial's best checkpoint is loaded again and timed by the one
speed harness (``vitrine.evaluate.speed``), all models interleaved over ``--rounds`` rounds in this
one process, the fastest round counting, with ``--speed-threads`` torch threads: the quiet speed
column (the speed each run recorded at its own evaluation was measured while the other trial
trained beside it). The table is vitrine's leaderboard of the dataset (``vitrine.runs.leaderboard``:
ranking by the primary metric, the split-fingerprint rule, the Pareto front of ms/image against
the primary metric) with the quiet speed and each run's ratios to the baseline. The chart
(``--chart``, a self-contained Plotly HTML file) is the leaderboard page's: x = ms/image,
y = primary metric, one colour per architecture, one marker per input size, the Pareto front as
a step line, hover shows the configuration.

The verdict (detection): a configuration at least ``--aim-speedup`` times faster than the
baseline (quiet speed) with at least ``--aim-fraction`` of its box mAP@.5, both from this run.

    .venv/bin/python benchmarks/sweep.py [--task detect] [--trial-minutes 8]
        [--archs maskrcnn,fcos] [--sizes 112,128,144] [--widths 64,96] [--backbones efficientnet-lite0]
        [--cpus-per-trial 1] [--train 3000] [--val 200] [--test 200] [--work DIR] [--chart sweep.html]
        [--json results.json]
    .venv/bin/python benchmarks/sweep.py --task classify [--trial-minutes 4] [--sizes 64,96]
        [--backbones efficientnet-lite0,efficientnet-lite1,efficientnet-lite2] [--train-per-class 1000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classification import Timer, load_average  # noqa: E402  (the sibling benchmark's helpers)
from detection import machine_facts  # noqa: E402

DEFAULTS = {
    "detect": {
        "archs": "maskrcnn,fcos",
        "sizes": "112,128,144",
        "widths": "64,96",
        "backbones": "efficientnet-lite0",
        "trial_minutes": 8.0,
        "baseline": {"arch": "maskrcnn", "backbone": "efficientnet-lite0", "image_size": 128, "fpn_channels": 96},
    },
    "classify": {
        "archs": "",
        "widths": "",
        "sizes": "64,96",
        "backbones": "efficientnet-lite0,efficientnet-lite1,efficientnet-lite2",
        "trial_minutes": 4.0,
        "baseline": {"backbone": "efficientnet-lite0", "image_size": 64},
    },
}


# ------------------------------------------------------------------------------------------ data
def detection_data(args, work: Path) -> str:
    from vitrine.data.detection.scenes import generate_scenes

    out = args.data or work / "scenes"
    if not (out / ".complete").is_file():
        t0 = time.perf_counter()
        ds = generate_scenes(out, args.train, args.val, args.test, image_size=128, seed=args.seed, yolo=False)
        (out / ".complete").write_text("ok\n")
        print(f"scenes: generated {len(ds.images)} in {time.perf_counter() - t0:.0f} s into {out}", flush=True)
    return str(out)


def classification_data(args, ws) -> str:
    from vitrine.data.fashion_mnist import DEFAULT_SOURCE, export_fashion_mnist
    from vitrine.data.importers import from_imagefolder
    from vitrine.data.split import assign_splits

    t0 = time.perf_counter()
    export_dir = ws.root.parent / "fashion-mnist"
    if not (export_dir / ".complete").is_file():
        export_fashion_mnist(
            export_dir,
            source_dir=DEFAULT_SOURCE,
            train_per_class=args.train_per_class,
            test_per_class=args.test_per_class,
            seed=args.seed,
        )
        (export_dir / ".complete").write_text("ok\n")
    ds = from_imagefolder(export_dir, "fashion-mnist", check_images=False)
    ds = assign_splits(ds, val=0.05, test=0.1, seed=args.seed)  # the official test split is kept
    ds.save(ws.dataset_dir(ds.name))
    counts = {sp: sum(c.values()) for sp, c in ds.counts().items()}
    print(
        f"data: Fashion-MNIST {counts.get('train', 0)} train / {counts.get('val', 0)} val / "
        f"{counts.get('test', 0)} test images, {len(ds.classes)} classes ({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return ds.name


# ----------------------------------------------------------------------------------------- sweep
def sweep_spec(args, dataset: str):
    from vitrine.experiments.sweep import SweepSpec

    grid = {"image_size": args.sizes, "backbone": args.backbones}
    if args.task == "detect":
        grid["arch"] = args.archs
        grid["fpn_channels"] = args.widths
        base = {
            "epochs": 100,
            "batch_size": 4,
            "lr": 0.02,
            "freeze_stages": 2,
            "max_val_images": 100,
            "seed": args.seed,
        }  # benchmarks/detection.py's settings
    else:
        base = {
            "epochs": 20,
            "batch_size": 64,
            "lr": 1e-3,
            "freeze_stages": 2,
            "augment": "none",
            "seed": args.seed,
        }  # benchmarks/classification.py's settings
    return SweepSpec.build(
        args.task,
        dataset,
        grid={k: v for k, v in grid.items() if v},
        base=base,
        trial_minutes=args.trial_minutes,
        cpus_per_trial=args.cpus_per_trial,
        name=f"bench-{args.task}",
    )


class Progress:
    """One line per trial state change, and a count line every minute."""

    def __init__(self):
        self.seen: dict[int, str] = {}
        self.t0 = time.perf_counter()
        self.last = 0.0

    def __call__(self, sweep) -> None:
        now = time.perf_counter() - self.t0
        for t in sweep.trials:
            if self.seen.get(t["index"]) != t["state"]:
                self.seen[t["index"]] = t["state"]
                metric = "" if t.get("metric") is None else f" metric {t['metric']:.3f}"
                error = f" ({t['error']})" if t.get("error") else ""
                print(f"  [{now:5.0f}s] trial {t['index']} {t['params']}: {t['state']}{metric}{error}", flush=True)
        if now - self.last >= 60:
            self.last = now
            print(f"  [{now:5.0f}s] {sweep.counts()}", flush=True)


# ----------------------------------------------------------------------------------------- speed
def quiet_speed(ws, run_ids: list[str], args) -> dict[str, float]:
    """ms/image at batch 1 of every run's best checkpoint, interleaved rounds, the fastest counting."""
    import torch
    from PIL import Image

    from vitrine.evaluate import speed
    from vitrine.runs import Run

    torch.set_num_threads(args.speed_threads)
    runs = [Run.load(ws, rid) for rid in run_ids]
    if args.task == "detect":
        from vitrine.data.detection.resolve import resolve_dataset
        from vitrine.evaluate.detection import measure_detector_speed
        from vitrine.predict.run_detector import load_run_detector

        ds, _, _ = resolve_dataset(Path(args.dataset), "scenes")
        test = ds.split("test")
        images = [Image.open(Path(test.root) / im.file_name).convert("RGB") for im in test.images[: args.speed_images]]
        models = {run.id: load_run_detector(run, device="cpu") for run in runs}

        def time_one(model) -> float:
            return measure_detector_speed(model, images, warmup=2, repeats=len(images))["ms_per_image"]
    else:
        from vitrine.data.dataset import ClassificationDataset
        from vitrine.predict.classifier import load_classifier

        ds = ClassificationDataset.load(ws.dataset_dir(args.dataset))
        test = [s for s in ds.samples if s.split == "test"][: args.speed_images]
        images = [Image.open(Path(ds.root) / s.path).convert("RGB") for s in test]
        models = {run.id: load_classifier(run) for run in runs}

        def time_one(model) -> float:
            report = speed.measure(
                lambda batch: model.predict_proba(batch), images, batch_size=0, latency_images=len(images), warmup=2
            )
            return report.latency_ms

    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for rid, model in models.items():
            ms = time_one(model)
            best[rid] = min(ms, best.get(rid, ms))
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return best


# ----------------------------------------------------------------------------------------- table
def leaderboard_rows(ws, sweep, dataset: str, quiet: dict[str, float]) -> tuple[list[dict], dict]:
    from vitrine.runs import Run
    from vitrine.runs.leaderboard import board, pareto_front

    runs = [Run.load(ws, t["run_id"]) for t in sweep.trials if t["state"] == "done"]
    table = board(runs, dataset)
    rows = [row for group in table["groups"] for row in group["rows"]]
    trial_of = {t["run_id"]: t for t in sweep.trials}
    for row in rows:
        trial = trial_of[row["id"]]
        row["params"] = trial["params"]
        row["steps"] = (Run.load(ws, row["id"]).record.get("metrics") or {}).get("steps")
        row["quiet_ms"] = quiet.get(row["id"])
    # the Pareto front of the quiet speed (the board marks the recorded one)
    for row in rows:
        row["recorded_pareto"] = row.get("pareto")
    pareto_front(rows, "quiet_ms", "primary")
    return rows, table


def is_baseline(row: dict, baseline: dict) -> bool:
    return all(row["params"].get(k, v) == v for k, v in baseline.items())


def describe(params: dict) -> str:
    """``fcos efficientnet-lite0 96px``: the varied options, architecture first."""
    order = ("arch", "backbone", "image_size", "fpn_channels")
    keys = [k for k in order if k in params] + [k for k in params if k not in order]
    shown = {"image_size": "{}px", "fpn_channels": "w{}"}
    return " ".join(shown.get(k, "{}").format(params[k]) for k in keys)


def print_table(rows: list[dict], base: dict | None, task: str) -> None:
    metric = "box mAP@.5" if task == "detect" else "accuracy"
    extra = "mask mAP@.5" if task == "detect" else "macro-F1"
    headers = ["#", "config", metric, extra, "steps", "ms/img rec.", "ms/img quiet", "speed vs base",
               f"{metric} vs base", "pareto"]  # fmt: skip

    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    table = [headers]
    for r in rows:
        m = r.get("metrics") or {}
        second = m.get("segm_map50") if task == "detect" else m.get("macro_f1")
        speedup = base["quiet_ms"] / r["quiet_ms"] if base and r.get("quiet_ms") else None
        frac = r["primary"] / base["primary"] if base and base.get("primary") and r.get("primary") is not None else None
        config = describe(r["params"]) + (" (baseline)" if r is base else "")
        table.append(
            [
                f(r.get("rank"), "d"),
                config,
                f(r.get("primary"), ".3f"),
                f(second, ".3f"),
                f(r.get("steps"), "d"),
                f(r.get("latency_ms"), ".1f"),
                f(r.get("quiet_ms"), ".1f"),
                "-" if speedup is None else f"{speedup:.2f}x",
                "-" if frac is None else f"{100 * frac:.0f} %",
                "*" if r.get("pareto") else "",
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    for j, row in enumerate(table):
        print("  ".join(c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def write_chart(rows: list[dict], path: Path, task: str, title: str, base: dict | None = None) -> None:
    """The leaderboard page's chart as a self-contained Plotly HTML file (the baseline labelled)."""
    import plotly.graph_objects as go

    symbols = ["circle", "square", "diamond", "triangle-up", "x", "star", "cross", "hexagon"]

    def family(r: dict) -> str:  # one colour per architecture (and width, when the sweep varies it)
        p = r["params"]
        name = str(p.get("arch" if task == "detect" else "backbone", r.get("arch")))
        return f"{name} w{p['fpn_channels']}" if "fpn_channels" in p else name

    archs = sorted({family(r) for r in rows})
    sizes = sorted({r["params"].get("image_size") for r in rows}, key=lambda s: (s is None, s))
    fig = go.Figure()
    for arch in archs:
        for size in sizes:
            pts = [r for r in rows if family(r) == arch
                   and r["params"].get("image_size") == size and r.get("quiet_ms") is not None]  # fmt: skip
            if not pts:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[r["quiet_ms"] for r in pts],
                    y=[r["primary"] for r in pts],
                    mode="markers",
                    name=f"{arch} {size}px",
                    legendgroup=arch,
                    marker={
                        "size": 12,
                        "symbol": symbols[sizes.index(size) % len(symbols)],
                        "color": f"hsl({int(360 * archs.index(arch) / max(1, len(archs)))},70%,45%)",
                    },
                    text=[json.dumps(r["params"]) + f"<br>run {r['id']}" for r in pts],
                    hovertemplate="%{text}<br>%{x:.1f} ms/image<br>%{y:.3f}<extra></extra>",
                )  # fmt: skip
            )
    front = sorted((r for r in rows if r.get("pareto") and r.get("quiet_ms") is not None), key=lambda r: r["quiet_ms"])
    if front:
        fig.add_trace(
            go.Scatter(
                x=[r["quiet_ms"] for r in front],
                y=[r["primary"] for r in front],
                mode="lines",
                line={"shape": "hv", "dash": "dot", "color": "#555"},
                name="Pareto front",
                hoverinfo="skip",
            )
        )
    if base is not None and base.get("quiet_ms") is not None:
        fig.add_annotation(x=base["quiet_ms"], y=base["primary"], text="baseline", showarrow=True, arrowhead=2, ay=-30)
    metric = "box mAP@.5" if task == "detect" else "test accuracy"
    fig.update_layout(
        title=title,
        xaxis_title="ms/image at batch 1 (CPU, quiet re-measurement)",
        yaxis_title=metric,
        template="plotly_white",
    )
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=("detect", "classify"), default="detect")
    ap.add_argument("--archs", default=None, help="detection architectures, comma separated")
    ap.add_argument("--sizes", default=None, help="input sizes, comma separated")
    ap.add_argument("--backbones", default=None, help="backbones, comma separated")
    ap.add_argument("--widths", default=None, help="detection: FPN and head widths (fpn_channels), comma separated")
    ap.add_argument("--trial-minutes", type=float, default=None, help="training budget of each trial")
    ap.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs (and torch threads) per trial (default 1)")
    ap.add_argument("--train", type=int, default=3000, help="detection: train scenes")
    ap.add_argument("--val", type=int, default=200, help="detection: val scenes")
    ap.add_argument("--test", type=int, default=200, help="detection: held-out test scenes")
    ap.add_argument("--data", type=Path, default=None, help="detection: reuse scenes generated in this folder")
    ap.add_argument("--train-per-class", type=int, default=1000, help="classification: train images per class")
    ap.add_argument("--test-per-class", type=int, default=300, help="classification: test images per class")
    ap.add_argument("--speed-images", type=int, default=30, help="test images timed per model and round")
    ap.add_argument("--speed-threads", type=int, default=1, help="torch threads of the quiet speed round")
    ap.add_argument("--rounds", type=int, default=3, help="quiet speed rounds; the fastest counts")
    ap.add_argument("--aim-speedup", type=float, default=2.0)
    ap.add_argument("--aim-fraction", type=float, default=0.9)
    ap.add_argument("--work", type=Path, default=None, help="keep the workspace here (default: temporary)")
    ap.add_argument("--chart", type=Path, default=None, help="chart file (default: sweep-<task>.html here)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    defaults = DEFAULTS[args.task]
    for key in ("archs", "sizes", "widths", "backbones", "trial_minutes"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    args.chart = args.chart or Path(f"sweep-{args.task}.html")
    baseline = defaults["baseline"]

    from vitrine.core.workspace import Workspace
    from vitrine.experiments.sweep import Sweep, run_sweep

    t_all = time.perf_counter()
    print(f"vitrine sweep benchmark ({args.task})", flush=True)
    print(machine_facts(args.speed_threads))
    print(f"load average at start (1/5/15 min): {load_average()}", flush=True)
    temp = args.work is None
    work = args.work or Path(tempfile.mkdtemp(prefix="vitrine-bench-sweep-"))
    try:
        ws = Workspace(work / "workspace")
        if args.task == "detect":
            args.dataset = detection_data(args, work)
        else:
            args.dataset = classification_data(args, ws)
        spec = sweep_spec(args, args.dataset)
        sweep_dir = ws.root / "sweeps" / (spec.name or "")
        if (sweep_dir / "sweep.json").is_file():
            sweep = Sweep.load(ws, spec.name)
            print(f"resuming sweep {sweep.id} in {work}", flush=True)
        else:
            sweep = Sweep.create(ws, spec)
        print(
            f"sweep {sweep.id}: {len(sweep.trials)} trials of {args.trial_minutes:g} min, {args.cpus_per_trial} "
            f"CPU(s) each, on a local Ray",
            flush=True,
        )
        t0 = time.perf_counter()
        try:
            run_sweep(ws, sweep, progress=Progress(), poll_seconds=5.0)
        except Exception as exc:  # noqa: BLE001 - report the trials that did finish
            print(f"sweep ended with: {type(exc).__name__}: {exc}", flush=True)
        sweep_seconds = time.perf_counter() - t0
        print(f"sweep: {sweep.counts()} in {sweep_seconds / 60:.1f} min")
        done = [t["run_id"] for t in sweep.trials if t["state"] == "done"]
        print(f"quiet speed round: {len(done)} models x {args.rounds} rounds x {args.speed_images} images", flush=True)
        with Timer() as t_speed:
            quiet = quiet_speed(ws, done, args)
        rows, table = leaderboard_rows(ws, sweep, _board_dataset(ws, done), quiet)
        base = next((r for r in rows if is_baseline(r, baseline)), None)
        print()
        print(
            f"leaderboard of {len(rows)} runs ({table['groups'][0]['split'] if table['groups'] else '-'} split, "
            f"one split fingerprint: {len(table['groups']) == 1}); ranked by {table['sort']}; "
            f"ms/img rec.: recorded at the run's evaluation (two trials training side by side); ms/img quiet: "
            f"re-measured, {args.speed_threads} thread(s), others {t_speed.others:.2f} cores; * Pareto front"
        )
        print_table(rows, base, args.task)
        verdict = None
        if base is not None and args.task == "detect":
            wins = [
                r
                for r in rows
                if r is not base
                and r.get("quiet_ms")
                and base["quiet_ms"] / r["quiet_ms"] >= args.aim_speedup
                and (r.get("primary") or 0) >= args.aim_fraction * (base.get("primary") or 0)
            ]
            best = max(wins, key=lambda r: r["primary"], default=None)
            verdict = {
                "met": best is not None,
                "config": best["params"] if best else None,
                "speedup": round(base["quiet_ms"] / best["quiet_ms"], 2) if best else None,
                "fraction": round(best["primary"] / base["primary"], 3) if best and base["primary"] else None,
            }
            print(
                f"aim (>= {args.aim_speedup:g}x faster than the baseline at >= {100 * args.aim_fraction:.0f} % of its "
                f"box mAP@.5): {'MET by ' + json.dumps(best['params']) if best else 'not met'}"
                + (f", {verdict['speedup']}x, {100 * verdict['fraction']:.0f} %" if best else "")
            )
        title = f"{args.task} sweep on {Path(args.dataset).name}: speed vs accuracy"
        write_chart(rows, args.chart, args.task, title, base)
        print(f"chart: {args.chart}")
        print(f"load average at end (1/5/15 min): {load_average()}")
        print(f"total benchmark time {(time.perf_counter() - t_all) / 60:.1f} min (sweep {sweep_seconds / 60:.1f} min)")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "machine": machine_facts(args.speed_threads),
                        "args": {k: str(v) for k, v in vars(args).items()},
                        "sweep": sweep.record,
                        "rows": rows,
                        "verdict": verdict,
                        "minutes": {"sweep": sweep_seconds / 60, "total": (time.perf_counter() - t_all) / 60},
                    },
                    indent=1,
                    default=str,
                )
            )
    finally:
        if temp:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _board_dataset(ws, run_ids: list[str]) -> str:
    from vitrine.runs import Run

    names = {Run.load(ws, rid).record.get("dataset") for rid in run_ids}
    return next(iter(names)) if len(names) == 1 else sorted(n for n in names if n)[0]


if __name__ == "__main__":
    sys.exit(main())
