"""``vitrine export-model``: a fine-tuned run as a portable model, with a parity report.

    vitrine export-model RUN --format onnx|openvino [--int8 [--force]] [--images DIR...] [--output DIR] [--json]

Writes a folder (model files and ``vitrine-model.json``, see :mod:`vitrine.predict.export_model`) that
``vitrine predict --model DIR`` / ``vitrine detect --model DIR`` run without torch, and prints the
parity of each variant against the torch model on the images given (default: a few of the run's
validation images). Exit status: 0 written; 1 when ``--int8`` was refused by the parity gate (the fp32
model is written, the int8 one is not; ``--force`` keeps it anyway); 2 for a usage error (not an
exportable run, unknown format, no readable image, an export that does not reproduce the model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vitrine.cli._console import JsonOpt, emit_json, err, guard, out
from vitrine.cli._inputs import collect_inputs


def _load_run(model: str, workspace: Path | None):
    from vitrine.core.workspace import Workspace
    from vitrine.runs import Run

    as_path = Path(model)
    if (as_path / "run.json").is_file() and workspace is None:  # a run folder given as a path
        return Run.load(Workspace(as_path.resolve().parent.parent), as_path.resolve().name)
    return Run.load(Workspace(workspace), model)


def export_model(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="the run to export (its id, or its folder)")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx (ONNX Runtime) or openvino (OpenVINO IR)")] = "onnx",
    int8: Annotated[
        bool, typer.Option("--int8", help="also quantize to int8 (calibrated on --images), kept if parity passes")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="write what fails the parity gate anyway (an int8 model, or an fp32 export)")
    ] = False,
    images: Annotated[
        list[Path] | None,
        typer.Option("--images", "-i", help="images (files or folders) to check parity on and calibrate int8"),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="folder to write (default: <run>/exports/<format>[-int8])")
    ] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="workspace holding runs/ (default: $VITRINE_HOME or the current folder)")
    ] = None,
    as_json: JsonOpt = False,
):
    """Export a fine-tuned classifier or detector to ONNX / OpenVINO, with a parity report."""
    from rich.markup import escape
    from rich.table import Table

    from vitrine.core.errors import VitrineError
    from vitrine.predict.exported import FORMATS

    with guard():
        fmt = fmt.strip().lower()
        if fmt not in FORMATS:
            raise VitrineError(f"unknown export format {fmt!r}", hint=f"--format {' or '.join(FORMATS)}")
        run = _load_run(run_id, workspace)
        paths = None
        if images:
            inputs = collect_inputs(images)
            missing = [f"{shown}: {error}" for shown, path, error in inputs if error == "no such file or folder"]
            if missing:
                raise VitrineError(f"--images: {missing[0]}", hint="give existing image files or folders")
            paths = [path for _, path, _ in inputs if path is not None]
            if not paths:
                raise VitrineError(
                    "--images: no images found there", hint="give image files, or folders that hold some"
                )
        err.print(f"exporting run {escape(run.id)} to {fmt}{' + int8' if int8 else ''}…", highlight=False)
        from vitrine.predict.export_model import export_run

        report = export_run(run, fmt, int8=int8, images=paths, output=output, force=force)

    for line in report.skipped:
        err.print(f"[yellow]skipped[/] {escape(line)}", highlight=False, soft_wrap=True)
    parity = report.manifest["parity"]
    if as_json:
        emit_json(report.to_dict())
    else:
        task = report.manifest["task"]
        table = Table(title=f"parity against the torch model on {report.images} image(s) ({task})")
        table.add_column("variant")
        table.add_column("gate")
        if task == "classification":
            cols = [("top-1 agreement", "top1_agreement"), ("max prob. change", "max_probability_change")]
        else:
            cols = [("boxes kept", "boxes_kept"), ("class agreement", "class_agreement"), ("mean IoU", "mean_iou")]
        for title, _ in cols:
            table.add_column(title, justify="right")
        table.add_column("ms/image", justify="right")
        table.add_column("torch ms/image", justify="right")
        for row in parity["variants"]:
            verdict = "[green]passed[/]" if row["passed"] else f"[red]failed[/] ({escape(row['reason'])})"
            figures = [f"{row['figures'].get(key, float('nan')):.4f}" for _, key in cols]
            speed = [f"{row[k]:.1f}" if k in row else "" for k in ("ms_per_image", "torch_ms")]
            table.add_row(row["variant"], verdict, *figures, *speed)
        out.print(table)
        for note in parity.get("notes", []):
            err.print(f"[dim]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    folder = escape(str(report.folder))
    if report.refused:
        err.print(
            f"[red]int8 refused by the parity gate[/]: wrote the fp32 model only, to {folder} "
            "(--force keeps the int8 model anyway)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    if not parity["variants"][0]["passed"]:
        err.print("[yellow]written although it does not reproduce the torch model (--force)[/]", highlight=False)
    if report.int8 == "forced":
        err.print("[yellow]int8 kept although it failed the parity gate (--force)[/]", highlight=False)
    err.print(
        f"wrote {folder} ({report.manifest['runtime']} {report.manifest['precision']}); "
        f"run it with `vitrine {'predict' if report.manifest['task'] == 'classification' else 'detect'} "
        f"--model {folder} ...`",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main `vitrine` app."""
    app.command("export-model")(export_model)
