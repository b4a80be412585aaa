"""``vitrine duplicates``, ``vitrine outliers`` (a project) and ``vitrine label-errors`` (a
classification dataset): lists computed from stored vectors by :mod:`vitrine.search.neighbours`,
as Rich tables or, with --json, the same dictionaries the API answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vitrine.cli._console import JsonOpt, emit_json, guard, out, with_progress
from vitrine.cli._runs import WorkspaceOpt, workspace_of

ProjectDir = Annotated[Path, typer.Argument(help="project folder (holds images/ and ontology/)")]
ModelOpt = Annotated[str | None, typer.Option(help="embedding model (default: the project's, or offline-concepts)")]
KOpt = Annotated[int, typer.Option("--k", help="neighbours per image (1-1000)")]


def duplicates(
    project_dir: ProjectDir,
    threshold: Annotated[
        float | None, typer.Option(help="cosine similarity in (0, 1] from which two images are near duplicates")
    ] = None,
    model: ModelOpt = None,
    pixels: Annotated[
        bool,
        typer.Option(
            help="confirm each pair by the pictures' pixel signatures: a copy, not another photo of the same thing"
        ),
    ] = True,
    pixel_threshold: Annotated[
        float | None, typer.Option(help="signature correlation in [-1, 1] a pair must reach too (with --pixels)")
    ] = None,
    as_json: JsonOpt = False,
):
    """Near-duplicate groups of a project, each with the image to keep (largest resolution, then
    largest file, then oldest) and the others' similarity to it; exact copies are marked."""
    from vitrine.project import Project
    from vitrine.search.neighbours import DEFAULT_PIXEL_THRESHOLD, DEFAULT_THRESHOLD

    with guard():
        result = Project(project_dir).duplicates(
            threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
            model=model,
            pixels=pixels,
            pixel_threshold=DEFAULT_PIXEL_THRESHOLD if pixel_threshold is None else pixel_threshold,
        )
    if as_json:
        emit_json(result)
        return
    groups = result["groups"]
    check = result["pixel_check"]
    pixels_note = f", pixels >= {check['pixel_threshold']}" if check else ", no pixel check"
    table = Table(
        title=f"{len(groups)} near-duplicate group(s) among {result['images']} images "
        f"[dim](cosine >= {result['threshold']}{pixels_note}, {result['model']} {result['space']})[/]"
    )
    table.add_column("#", justify="right")
    table.add_column("keep (why)")
    table.add_column("similar", justify="right")
    if check:
        table.add_column("pixels", justify="right")
    table.add_column("others")
    for n, g in enumerate(groups, 1):
        keep = g["keep"]
        same = f"  (+{len(keep['exact_duplicates'])} exact)" if keep["exact_duplicates"] else ""
        table.add_row(str(n), f"{keep['path']}{same}  [dim]({g['keep_rule']})[/]", "", *([""] if check else []), "")
        for m in g["others"]:
            same = f"  (+{len(m['exact_duplicates'])} exact)" if m["exact_duplicates"] else ""
            pixel = [f"{m['pixel_similarity']:.3f}"] if check else []
            table.add_row("", "", f"{m['similarity']:.3f}", *pixel, m["path"] + same)
    out.print(table)
    if check and check["rejected_pairs"]:
        out.print(
            f"[dim]{check['rejected_pairs']} of {check['candidate_pairs']} similar pair(s) left out: alike in "
            "content, different pictures (--no-pixels keeps them)[/]"
        )
    for bad in result["unreadable"]:
        out.print(f"[yellow]could not read {bad['path']}: {bad['reason']}[/]")
    if result["exact"]:
        out.print(f"{len(result['exact'])} image(s) have exact copies (same SHA-256); --json lists them")


def outliers(
    project_dir: ProjectDir,
    k: KOpt = 10,
    top: Annotated[int | None, typer.Option(min=1, help="show the N most isolated images only")] = 20,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
):
    """The most isolated images of a project: mean cosine distance to their k nearest neighbours."""
    from vitrine.project import Project

    with guard():
        result = Project(project_dir).outliers(k=k, top=top, model=model)
    if as_json:
        emit_json(result)
        return
    table = Table(
        title=f"most isolated of {result['images']} images "
        f"[dim](k {result['k']}, {result['model']} {result['space']})[/]"
    )
    table.add_column("#", justify="right")
    table.add_column("distance", justify="right")
    table.add_column("image")
    table.add_column("nearest")
    for n, o in enumerate(result["outliers"], 1):
        nearest = f"{o['nearest']} ({o['nearest_similarity']:.3f})" if o["nearest"] else "—"
        table.add_row(str(n), f"{o['score']:.3f}", o["path"], nearest)
    out.print(table)


def label_errors(
    dataset: Annotated[str, typer.Argument(help="classification dataset name in the workspace")],
    model: ModelOpt = None,
    k: KOpt = 10,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
):
    """Images of a dataset whose label disagrees with most of their k nearest neighbours'
    (leave-one-out, cosine), with the suggested label, most confident first."""
    from vitrine.curation import dataset_label_errors
    from vitrine.data.importers import load_dataset
    from vitrine.search.neighbours import check_k

    with guard():
        check_k(k)  # before the dataset is embedded
        ws = workspace_of(workspace)
        ds = load_dataset(ws, dataset)
        result = with_progress(
            lambda progress, cancel: dataset_label_errors(ws, ds, model=model, k=k, progress=progress, cancel=cancel),
            "the images embedded so far are cached",
        )
    if as_json:
        emit_json(result)
        return
    errors = result["errors"]
    table = Table(
        title=f"{len(errors)} possible label error(s) among {result['images']} images "
        f"[dim](k {result['k']}, {result['model']} {result['space']})[/]"
    )
    table.add_column("#", justify="right")
    table.add_column("image")
    table.add_column("label")
    table.add_column("suggested")
    table.add_column("agreement", justify="right")
    table.add_column("split")
    for n, e in enumerate(errors, 1):
        table.add_row(str(n), e["path"], e["label"], e["suggested"], f"{e['agreement']:.2f}", e["split"] or "")
    out.print(table)
    if result["skipped"]:
        out.print(f"[yellow]{len(result['skipped'])} image(s) could not be read[/] (--json lists them)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main `vitrine` app."""
    app.command()(duplicates)
    app.command()(outliers)
    app.command("label-errors")(label_errors)
