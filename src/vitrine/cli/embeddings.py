"""``vitrine compare-embeddings TARGET --models a,b,c``: embedding models scored side by side on the
same images of a classification dataset or a project (:mod:`vitrine.experiments.embeddings`), as a
Rich table (a progress bar per model on a terminal) or, with --json, the dictionary the API's job
returns. Each model's scores are recorded as an ``embedding`` run on the target's leaderboard
(``vitrine leaderboard TARGET --task embedding``) unless --no-record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vitrine.cli._console import JsonOpt, emit_json, guard, out, with_progress
from vitrine.cli._runs import WorkspaceOpt, workspace_of


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _num(value, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def resolve_target(target: str, workspace: Path | None):
    """A project folder (one holding ``images/``) or the name of a dataset of the workspace."""
    from vitrine.data.importers import load_dataset
    from vitrine.experiments.embeddings import dataset_target, project_target

    path = Path(target).expanduser()
    if path.is_dir() and (path / "images").is_dir():
        return project_target(path)
    ws = workspace_of(workspace)
    return dataset_target(ws, load_dataset(ws, target))


def compare_embeddings(
    target: Annotated[str, typer.Argument(help="a dataset of the workspace (its name), or a project folder")],
    models: Annotated[
        str,
        typer.Option(
            "--models",
            "-m",
            help="comma-separated embedding models: registry names (vitrine models), timm:<name>, "
            "hf:<repo id or folder>; add ?weights=random for a randomly initialised architecture (speed only)",
        ),
    ],
    k: Annotated[int, typer.Option("--k", help="results per query for retrieval mAP@k (1-1000)")] = 10,
    limit: Annotated[
        int | None, typer.Option(min=2, help="score a seeded random sample of N images (the same for every model)")
    ] = None,
    record: Annotated[bool, typer.Option(help="record each model's scores as a run on the leaderboard")] = True,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
):
    """Score embedding models on the same labelled images: kNN accuracy (k = 1, 10; leave-one-out,
    cosine), linear-probe accuracy, zero-shot accuracy (models that embed text), retrieval mAP@k,
    keyword agreement (an ontology), images/s, ms per text query, dimension and bytes per vector."""
    from vitrine.experiments.embeddings import check_k, compare_embeddings, parse_models

    with guard():
        names = parse_models(models)  # unknown names fail before any image is read
        check_k(k)
        tgt = resolve_target(target, workspace)
        ws = workspace_of(workspace)

        def work(progress, cancel):
            def report(stage: str, done: int, total: int, info=None) -> None:
                progress(stage, done, total)

            return compare_embeddings(ws, tgt, names, k=k, limit=limit, record=record, progress=report, cancel=cancel)

        result = with_progress(work, "the images embedded so far are cached; models already scored are recorded")
    if as_json:
        emit_json(result)
        return
    table = Table(
        title=f"{len(result['models'])} embedding model(s) on {result['images']} images of {result['kind']} "
        f"{result['target']!r} ({result['classes']} classes) [dim]· {result['seconds']:.0f} s[/]"
    )
    k_label = f"mAP@{result['k']}"
    columns = (  # (title, score key, format); a column no model has a value for is left out
        ("kNN@1", "knn1_accuracy", _pct),
        ("kNN@10", "knn10_accuracy", _pct),
        ("probe", "probe_accuracy", _pct),
        ("0-shot", "zero_shot_accuracy", _pct),
        (k_label, "map_at_k", lambda v: _num(v, 3)),
        ("kw mAP", "keyword_map_at_k", lambda v: _num(v, 3)),
        ("img/s", "images_per_second", _num),
        ("ms/text", "text_query_ms", _num),
        ("dim", "dim", lambda v: _num(v, 0)),
        ("B/vector", "bytes_per_vector", lambda v: _num(v, 0)),
    )
    shown = [c for c in columns if any(e["scores"].get(c[1]) is not None for e in result["models"])]
    table.add_column("model", overflow="fold")
    for title, _, _ in shown:
        table.add_column(title, justify="right", no_wrap=True)
    for entry in result["models"]:
        name = entry["model"] + (" [yellow]*[/]" if entry["random_weights"] else "")
        table.add_row(name, *(fmt(entry["scores"].get(key)) for _, key, fmt in shown))
    out.print(table)
    if any(entry["random_weights"] for entry in result["models"]):
        out.print("[yellow]*[/] random weights: speed only (the architecture's speed; its accuracies mean nothing)")
    first = result["models"][0] if result["models"] else None
    if first is not None:
        out.print(
            f"[dim]probe: fitted on train, scored on {first['probe_scored_on']}; index: {first['index']}; "
            f"speed on {first['speed'].get('device', '?')} with {first['speed'].get('threads', '?')} threads[/]"
        )
    for note in result["notes"]:
        out.print(f"[dim]{note}[/]")
    if result["hidden_splits_left_out"]:
        out.print(f"[dim]hidden split(s) left out: {', '.join(result['hidden_splits_left_out'])}[/]")
    runs = [e["run_id"] for e in result["models"] if e.get("run_id")]
    if runs:
        out.print(f"runs: {', '.join(runs)}")
        out.print(f"leaderboard: vitrine leaderboard {result['target']} --task embedding")


def register(app: typer.Typer) -> None:
    """``compare-embeddings``."""
    app.command("compare-embeddings")(compare_embeddings)
