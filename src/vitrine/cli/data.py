"""``vitrine data``: import labelled datasets, list them, show their statistics, export Fashion-MNIST.

Every import splits the data (seeded, stratified; a given split is kept unless --no-keep-split),
saves the dataset in the workspace and prints the counts per split and class, then the rows or
files that were skipped and why. Skipped rows are not an error (exit 0); a problem that stops the
import (missing file, unknown column, existing dataset) exits 2 with a message, no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vitrine.cli._console import JsonOpt, emit_json, err, guard, out

data_app = typer.Typer(
    help="Labelled datasets: import, list, statistics; detection scenes and annotation conversion.",
    no_args_is_help=True,
)
import_app = typer.Typer(help="Import a labelled dataset into the workspace.", no_args_is_help=True)
data_app.add_typer(import_app, name="import")

NameOpt = Annotated[str, typer.Option("--name", "-n", help="dataset name (letters, digits, . _ -)")]
WorkspaceOpt = Annotated[
    Path | None, typer.Option("--workspace", "-w", help="workspace folder (default: $VITRINE_HOME or .)")
]
ValOpt = Annotated[float, typer.Option("--val", min=0.0, max=0.99, help="share of unassigned images for val")]
TestOpt = Annotated[float, typer.Option("--test", min=0.0, max=0.99, help="share of unassigned images for test")]
SeedOpt = Annotated[int, typer.Option("--seed", help="seed of the split (same seed, same split)")]
KeepOpt = Annotated[
    bool, typer.Option("--keep-split/--no-keep-split", help="keep a split given by the source (folders, column)")
]
StratifyOpt = Annotated[bool, typer.Option("--stratify/--no-stratify", help="keep class proportions in each split")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="replace a dataset of the same name")]
CheckOpt = Annotated[
    bool, typer.Option("--check-images/--no-check-images", help="read every image's header to find bad files")
]

MAX_SHOWN_PROBLEMS = 50


def _workspace(workspace: Path | None):
    from vitrine.core.workspace import Workspace

    return Workspace(workspace)


def _problem_line(p) -> str:
    return escape(f"{p.source}:{p.row}: {p.message}" if p.row else f"{p.source}: {p.message}")


def _counts_table(counts: dict[str, dict[str, int]], classes: list[str], title: str | None = None):
    from rich.table import Table

    splits = [sp for sp in ("train", "val", "test", "unassigned") if sp in counts]
    table = Table(title=title)
    table.add_column("class")
    for sp in splits:
        table.add_column(sp, justify="right")
    table.add_column("total", justify="right")
    for c in classes:
        row = [counts[sp].get(c, 0) for sp in splits]
        table.add_row(escape(c), *map(str, row), str(sum(row)))
    totals = [sum(counts[sp].values()) for sp in splits]
    table.add_row("[bold]all[/]", *(f"[bold]{n}[/]" for n in totals), f"[bold]{sum(totals)}[/]")
    return table


def _named_counts(dataset) -> dict[str, dict[str, int]]:
    return {(sp or "unassigned"): c for sp, c in dataset.counts().items()}


def _finish_import(
    dataset,
    *,
    workspace: Path | None,
    val: float,
    test: float,
    seed: int,
    keep_split: bool,
    stratify: bool,
    overwrite: bool,
    as_json: bool,
) -> None:
    from vitrine.data.importers import import_dataset
    from vitrine.data.split import assign_splits, split_notes

    dataset = assign_splits(dataset, val=val, test=test, seed=seed, stratify=stratify, keep_existing=keep_split)
    directory = import_dataset(_workspace(workspace), dataset, overwrite=overwrite)
    counts = _named_counts(dataset)
    notes = split_notes(dataset)
    if as_json:
        emit_json(
            {
                "name": dataset.name,
                "path": str(directory),
                "root": str(dataset.root),
                "samples": len(dataset.samples),
                "classes": dataset.classes,
                "counts": counts,
                "splits": {sp: sum(c.values()) for sp, c in counts.items()},
                "skipped": [{"source": p.source, "row": p.row, "message": p.message} for p in dataset.problems],
                "notes": notes,
                "source": dataset.source,
            }
        )
        return
    out.print(
        f"dataset [bold]{dataset.name}[/]: {len(dataset.samples)} images, {len(dataset.classes)} classes, "
        f"saved in {escape(str(directory))}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(_counts_table(counts, dataset.classes))
    for note in notes:
        out.print(f"[dim]split:[/] {escape(note)}", highlight=False, soft_wrap=True)
    problems = dataset.problems
    if problems:
        out.print(f"[yellow]{len(problems)} skipped[/] (not imported):", highlight=False)
        for p in problems[:MAX_SHOWN_PROBLEMS]:
            out.print(f"  [yellow]skipped[/] {_problem_line(p)}", highlight=False, soft_wrap=True)
        if len(problems) > MAX_SHOWN_PROBLEMS:
            out.print(f"  ... and {len(problems) - MAX_SHOWN_PROBLEMS} more (all of them with --json)")


def _refuse_existing(workspace: Path | None, name: str, overwrite: bool) -> None:
    """Fail before a long scan when the dataset exists already."""
    from vitrine.core.errors import VitrineError
    from vitrine.data.importers import dataset_exists

    if not overwrite and dataset_exists(_workspace(workspace), name):
        raise VitrineError(
            f"dataset {name!r} already exists in {_workspace(workspace).root}",
            hint="choose another --name, or pass --overwrite",
        )


@import_app.command("imagefolder")
def import_imagefolder(
    path: Annotated[Path, typer.Argument(help="folder of <class>/<image> (or <split>/<class>/<image>)")],
    name: NameOpt,
    val: ValOpt = 0.1,
    test: TestOpt = 0.1,
    seed: SeedOpt = 0,
    keep_split: KeepOpt = True,
    stratify: StratifyOpt = True,
    check_images: CheckOpt = True,
    workspace: WorkspaceOpt = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
):
    """Import an ImageFolder tree: one folder per class; train/val/test folders above them are kept."""
    from vitrine.data.importers import from_imagefolder

    with guard():
        _refuse_existing(workspace, name, overwrite)
        dataset = from_imagefolder(path, name, check_images=check_images)
        _finish_import(
            dataset,
            workspace=workspace,
            val=val,
            test=test,
            seed=seed,
            keep_split=keep_split,
            stratify=stratify,
            overwrite=overwrite,
            as_json=as_json,
        )


@import_app.command("csv")
def import_csv(
    file: Annotated[Path, typer.Argument(help="CSV file, one row per image")],
    name: NameOpt,
    image_column: Annotated[str, typer.Option("--image-column", help="column holding the image paths")],
    label_column: Annotated[str, typer.Option("--label-column", help="column holding the labels")],
    root: Annotated[
        Path | None, typer.Option("--root", help="folder the image paths are relative to (default: the CSV's)")
    ] = None,
    split_column: Annotated[
        str | None, typer.Option("--split-column", help="column holding train/val/test (optional)")
    ] = None,
    depth: Annotated[
        int | None, typer.Option("--depth", min=1, help="cut category paths (a >> b >> c) to this many levels")
    ] = None,
    separator: Annotated[str, typer.Option("--separator", help="separator of category paths")] = ">>",
    delimiter: Annotated[
        str | None, typer.Option("--delimiter", help="CSV delimiter (default: detected among , ; tab |)")
    ] = None,
    val: ValOpt = 0.1,
    test: TestOpt = 0.1,
    seed: SeedOpt = 0,
    keep_split: KeepOpt = True,
    stratify: StratifyOpt = True,
    check_images: CheckOpt = True,
    workspace: WorkspaceOpt = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
):
    """Import a CSV of image paths and labels; bad rows are reported with their line and skipped."""
    from vitrine.data.importers import from_csv

    with guard():
        _refuse_existing(workspace, name, overwrite)
        dataset = from_csv(
            file,
            name,
            image_column=image_column,
            label_column=label_column,
            root=root,
            split_column=split_column,
            label_depth=depth,
            separator=separator,
            check_images=check_images,
            delimiter=delimiter,
        )
        _finish_import(
            dataset,
            workspace=workspace,
            val=val,
            test=test,
            seed=seed,
            keep_split=keep_split,
            stratify=stratify,
            overwrite=overwrite,
            as_json=as_json,
        )


@import_app.command("collection")
def import_collection(
    project_dir: Annotated[Path, typer.Argument(help="project folder (its images/ subfolders are the labels)")],
    name: NameOpt,
    depth: Annotated[int, typer.Option("--depth", min=1, help="folder levels that make the label")] = 1,
    val: ValOpt = 0.1,
    test: TestOpt = 0.1,
    seed: SeedOpt = 0,
    keep_split: KeepOpt = True,
    stratify: StratifyOpt = True,
    check_images: CheckOpt = True,
    workspace: WorkspaceOpt = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
):
    """Import a collection, its subfolders of images/ used as labels."""
    from vitrine.data.importers import from_collection

    with guard():
        _refuse_existing(workspace, name, overwrite)
        dataset = from_collection(project_dir, name, depth=depth, check_images=check_images)
        _finish_import(
            dataset,
            workspace=workspace,
            val=val,
            test=test,
            seed=seed,
            keep_split=keep_split,
            stratify=stratify,
            overwrite=overwrite,
            as_json=as_json,
        )


@data_app.command("list")
def list_datasets(workspace: WorkspaceOpt = None, as_json: JsonOpt = False):
    """List the datasets of the workspace."""
    from rich.table import Table

    from vitrine.core.errors import VitrineError
    from vitrine.data.dataset import ClassificationDataset

    with guard():
        ws = _workspace(workspace)
        rows = []
        for name in ws.dataset_names():
            try:
                summary = ClassificationDataset.load(ws.dataset_dir(name)).summary()
                rows.append(
                    {
                        "name": name,
                        "samples": summary["samples"],
                        "classes": len(summary["classes"]),
                        "splits": summary["splits"],
                        "source": summary["source"].get("kind", ""),
                        "root": summary["root"],
                        "skipped": len(summary["problems"]),
                        "error": None,
                    }
                )
            except VitrineError as exc:  # one damaged dataset does not hide the others
                rows.append({"name": name, "error": exc.message})
    if as_json:
        emit_json(rows)
        return
    if not rows:
        out.print(f"no dataset in {escape(str(ws.root))} (import one with `vitrine data import`)", highlight=False)
        return
    table = Table(title=f"datasets in {escape(str(ws.root))}")
    for col in ("name", "images", "classes", "train", "val", "test", "source", "skipped"):
        table.add_column(col, justify="right" if col not in ("name", "source") else "left")
    for r in rows:
        if r["error"]:
            table.add_row(r["name"], f"[red]{escape(r['error'])}[/]", "", "", "", "", "", "")
            continue
        sp = r["splits"]
        table.add_row(
            r["name"],
            str(r["samples"]),
            str(r["classes"]),
            *(str(sp.get(s, 0)) for s in ("train", "val", "test")),
            r["source"],
            str(r["skipped"]),
        )
    out.print(table)


def _fmt_bytes(n) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _fmt(v, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "file_size":
        return _fmt_bytes(v)
    if kind == "aspect":
        return f"{v:.2f}"
    return f"{v:g}"


@data_app.command("stats")
def stats(
    name: Annotated[str, typer.Argument(help="dataset name (see `vitrine data list`)")],
    workspace: WorkspaceOpt = None,
    max_images: Annotated[
        int | None, typer.Option("--max-images", min=1, help="measure a random sample of this many images")
    ] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="recompute even when cached")] = False,
    per_image: Annotated[bool, typer.Option("--per-image", help="include per-image values in --json")] = False,
    as_json: JsonOpt = False,
):
    """Images per class and split, image sizes, formats, duplicates and leakage across splits."""
    from rich.table import Table

    from vitrine.data.importers import load_dataset
    from vitrine.data.stats import dataset_stats

    with guard():
        ws = _workspace(workspace)
        dataset = load_dataset(ws, name)
        st = dataset_stats(dataset, max_images=max_images, cache_dir=ws.dataset_dir(name), refresh=refresh)
    if as_json:
        emit_json(st if per_image else {k: v for k, v in st.items() if k != "per_image"})
        return
    cached = " [dim](cached)[/]" if st.get("cached") else ""
    out.print(
        f"dataset [bold]{st['name']}[/]: {st['total']} images, {len(st['classes'])} classes, "
        f"imbalance {st['imbalance_ratio'] or '-'}{cached}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(_counts_table(st["counts"], st["classes"], title="images per class"))
    sizes = Table(title=f"image sizes ({st['measured']} measured)")
    for col in ("", "min", "p5", "median", "p95", "max", "mean"):
        sizes.add_column(col, justify="right" if col else "left")
    for key, label in (("width", "width"), ("height", "height"), ("aspect", "aspect w/h"), ("file_size", "file")):
        s = st[key]
        p = s.get("percentiles") or {}
        sizes.add_row(
            label,
            *(_fmt(v, key) for v in (s["min"], p.get("p5"), p.get("p50"), p.get("p95"), s["max"], s["mean"])),
        )
    out.print(sizes)
    if st["formats"]:
        out.print("formats: " + ", ".join(f"{k} {v}" for k, v in st["formats"].items()), highlight=False)
    dup = st["duplicates"]
    if dup["n_groups"]:
        out.print(
            f"duplicates: {dup['n_groups']} group(s) of identical files ({dup['redundant']} redundant copies)",
            highlight=False,
        )
    else:
        out.print("duplicates: none", highlight=False)
    for g in st["leakage"][:10]:
        where = escape(", ".join(f"{p} ({sp or 'unassigned'})" for p, sp in zip(g["paths"], g["splits"], strict=True)))
        out.print(f"  [yellow]leak[/] {where}", highlight=False, soft_wrap=True)
    if len(st["leakage"]) > 10:
        out.print(f"  ... and {len(st['leakage']) - 10} more groups (all of them with --json)")
    for u in st["unreadable"][:MAX_SHOWN_PROBLEMS]:
        out.print(
            f"  [yellow]unreadable[/] {escape(u['path'])}: {escape(u['reason'])}", highlight=False, soft_wrap=True
        )
    for w in st["warnings"]:
        out.print(f"[bold yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)


@data_app.command("fashion-mnist")
def fashion_mnist(
    out_dir: Annotated[Path, typer.Argument(help="new folder to write the images into")],
    train_per_class: Annotated[
        int | None, typer.Option("--train-per-class", min=0, help="train images per class (default: all 6,000)")
    ] = None,
    test_per_class: Annotated[
        int | None, typer.Option("--test-per-class", min=0, help="test images per class (default: all 1,000)")
    ] = None,
    layout: Annotated[str, typer.Option("--layout", help="imagefolder or csv")] = "imagefolder",
    seed: SeedOpt = 0,
    source: Annotated[
        Path | None, typer.Option("--source", help="folder of the IDX files (default: Debian's dataset-fashion-mnist)")
    ] = None,
    as_json: JsonOpt = False,
):
    """Write Fashion-MNIST (from Debian's dataset-fashion-mnist) as PNG files, ready to import."""
    import time

    from vitrine.data.fashion_mnist import DEFAULT_SOURCE, export_fashion_mnist

    with guard():
        t0 = time.perf_counter()
        path = export_fashion_mnist(
            out_dir,
            source_dir=source or DEFAULT_SOURCE,
            layout=layout,
            train_per_class=train_per_class,
            test_per_class=test_per_class,
            seed=seed,
        )
        elapsed = time.perf_counter() - t0
    if layout == "csv":
        files = sum(1 for _ in (path / "images").rglob("*.png"))
        command = f"vitrine data import csv {path / 'labels.csv'} --name fashion-mnist "
        command += "--image-column path --label-column label --split-column split"
    else:
        files = sum(1 for _ in path.rglob("*.png"))
        command = f"vitrine data import imagefolder {path} --name fashion-mnist"
    if as_json:
        emit_json({"path": str(path), "layout": layout, "images": files, "elapsed_s": round(elapsed, 2)})
        return
    out.print(f"wrote {files} images to {escape(str(path))} in {elapsed:.1f} s", highlight=False, soft_wrap=True)
    out.print(f"import it with: {escape(command)}", highlight=False, soft_wrap=True)


def _print_problems(problems, what: str = "problems") -> None:
    if not problems:
        return
    out.print(f"[yellow]{len(problems)} {what}[/]:", highlight=False)
    for p in problems[:MAX_SHOWN_PROBLEMS]:
        out.print(f"  [yellow]![/] {escape(str(p))}", highlight=False, soft_wrap=True)
    if len(problems) > MAX_SHOWN_PROBLEMS:
        out.print(f"  ... and {len(problems) - MAX_SHOWN_PROBLEMS} more (all of them with --json)")


@data_app.command("scenes")
def scenes(
    out_dir: Annotated[Path, typer.Argument(help="new folder to write the scenes into")],
    train: Annotated[int, typer.Option("--train", min=0, help="train scenes")] = 200,
    val: Annotated[int, typer.Option("--val", min=0, help="validation scenes")] = 50,
    test: Annotated[int, typer.Option("--test", min=0, help="test scenes")] = 50,
    size: Annotated[int, typer.Option("--size", min=16, max=4096, help="image side in pixels")] = 128,
    min_objects: Annotated[int, typer.Option("--min-objects", min=1, help="fewest items per scene")] = 1,
    max_objects: Annotated[int, typer.Option("--max-objects", min=1, help="most items per scene")] = 4,
    classes: Annotated[
        str | None, typer.Option("--classes", help="comma-separated Fashion-MNIST classes (default: all 10)")
    ] = None,
    masks: Annotated[str, typer.Option("--masks", help="COCO masks as polygons or rle")] = "polygons",
    seed: Annotated[int, typer.Option("--seed", help="same seed, same scenes (byte for byte)")] = 0,
    source: Annotated[
        Path | None, typer.Option("--source", help="folder of the IDX files (default: Debian's dataset-fashion-mnist)")
    ] = None,
    as_json: JsonOpt = False,
):
    """Generate instance-segmentation scenes (Fashion-MNIST items on photos), as COCO and YOLO."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vitrine.data.detection.scenes import generate_scenes
    from vitrine.data.fashion_mnist import DEFAULT_SOURCE

    with guard():
        t0 = time.perf_counter()
        progress = Progress(
            TextColumn("[bold]scenes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
            disable=as_json,
        )  # fmt: skip
        with progress:
            bar = progress.add_task("scenes", total=train + val + test)
            ds = generate_scenes(
                out_dir,
                n_train=train,
                n_val=val,
                n_test=test,
                image_size=size,
                objects=(min_objects, max_objects),
                classes=[c.strip() for c in classes.split(",") if c.strip()] if classes else None,
                seed=seed,
                source=source or DEFAULT_SOURCE,
                masks=masks,
                progress=lambda done, total: progress.update(bar, completed=done),
            )
        elapsed = time.perf_counter() - t0
    splits = {sp: len(ds.split(sp).images) for sp in ("train", "val", "test")}
    objects = {sp: len(ds.split(sp).annotations) for sp in ("train", "val", "test")}
    if as_json:
        emit_json(
            {
                "path": str(out_dir),
                "images": splits,
                "objects": objects,
                "classes": ds.category_names(),
                "coco": {sp: str(out_dir / "annotations" / f"instances_{sp}.json") for sp in splits if splits[sp]},
                "yolo": str(out_dir / "yolo" / "data.yaml"),
                "elapsed_s": round(elapsed, 2),
            }
        )
        return
    counts = ", ".join(f"{sp} {splits[sp]} images / {objects[sp]} objects" for sp in splits if splits[sp])
    out.print(f"wrote scenes to {escape(str(out_dir))} in {elapsed:.1f} s: {counts}", highlight=False, soft_wrap=True)
    out.print(f"COCO: {escape(str(out_dir / 'annotations'))}/instances_<split>.json", highlight=False, soft_wrap=True)
    out.print(f"YOLO: {escape(str(out_dir / 'yolo' / 'data.yaml'))}", highlight=False, soft_wrap=True)


@data_app.command("convert")
def convert(
    src: Annotated[
        Path, typer.Argument(help="annotations to read: COCO .json, CVAT .xml, YOLO data.yaml/folder, VOC folder")
    ],
    dst: Annotated[Path, typer.Argument(help="where to write: a .json (COCO), an .xml (CVAT), a folder (YOLO, VOC)")],
    from_format: Annotated[
        str | None, typer.Option("--from", help="coco, yolo, cvat or voc (default: detected)")
    ] = None,
    to_format: Annotated[str, typer.Option("--to", help="coco, yolo, cvat or voc")] = "coco",
    images_root: Annotated[
        Path | None, typer.Option("--images-root", help="folder the image names of SRC are relative to")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="YOLO output: detect or segment (default: segment when masks)")
    ] = None,
    images: Annotated[str, typer.Option("--images", help="YOLO/VOC output: link (hard links), copy, or none")] = "link",
    as_json: JsonOpt = False,
):
    """Convert annotations between COCO, YOLO, CVAT for images 1.1 and Pascal VOC."""
    from vitrine.core.errors import VitrineError
    from vitrine.data.detection.convert import FORMATS, read_any, write_any

    with guard():
        if to_format.lower() not in FORMATS:
            raise VitrineError(f"unknown output format {to_format!r}", hint="choose among " + ", ".join(FORMATS))
        ds = read_any(src, format=from_format, images_root=images_root)
        written = write_any(ds, dst, to_format, task=task, images=images)
    if as_json:
        emit_json(
            {
                "source": str(src),
                "destination": str(dst),
                "to": to_format.lower(),
                "images": len(ds.images),
                "annotations": len(ds.annotations),
                "categories": ds.category_names(),
                "read_problems": [vars(p) for p in ds.problems],
                "write_problems": [vars(p) for p in written],
            }
        )
        return
    out.print(
        f"converted {len(ds.images)} images, {len(ds.annotations)} annotations, {len(ds.categories)} classes "
        f"to {to_format.lower()} in {escape(str(dst))}",
        highlight=False,
        soft_wrap=True,
    )
    _print_problems(ds.problems, "problems in the source")
    _print_problems(written, "note(s) on the output: what its format cannot hold")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main `vitrine` app."""
    app.add_typer(data_app, name="data")
