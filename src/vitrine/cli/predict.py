"""``vitrine predict``: classify image files and folders with a trained run (any kind).

    vitrine predict --model RUN|EXPORTED [--workspace DIR] [--top-k 3] [--output preds.csv] [--json] IMAGES...

Folders are searched recursively for supported images (the same rules as indexing: hidden files
skipped, symlinks leaving the folder refused). Images are decoded in worker threads and classified
in batches. A file that cannot be read gets a row with its error and the others go on: the exit
status is 0 as long as the run could be loaded (2 when it cannot, or when nothing was given).

``--model`` may also be a folder written by ``vitrine export-model`` (or its model file): the model
then runs on ONNX Runtime or OpenVINO and torch is never imported.

The CSV has one row per file: ``path, pred, prob, class_1, prob_1, ... class_K, prob_K, error``
(``pred``/``prob`` repeat the first choice for convenience; ``error`` is empty for predicted
files). ``--output -`` writes it to stdout instead of the table.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from vitrine.cli._console import emit_json, err, guard, out
from vitrine.cli._inputs import collect_inputs


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "pred": self.top[0][0] if self.top else None,
            "prob": self.top[0][1] if self.top else None,
            "top": [{"class": c, "prob": p} for c, p in self.top],
            "error": self.error,
        }


def predict_files(
    classifier, inputs: list[tuple[str, Path | None, str | None]], top_k: int, batch_size: int = 32
) -> Iterator[Prediction]:
    """Predictions in the order of ``inputs``; decoding runs in threads, the model in batches."""
    import numpy as np

    from vitrine.collection.imageio import open_image
    from vitrine.core.errors import ImageError
    from vitrine.embed.pipeline import default_workers

    classes = list(classifier.classes)
    k = max(1, min(top_k, len(classes)))

    def decode(path: Path):
        try:
            return open_image(path), None
        except ImageError as exc:
            return None, getattr(exc, "reason", None) or exc.message

    with ThreadPoolExecutor(max_workers=default_workers(), thread_name_prefix="decode") as pool:
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            futures = [pool.submit(decode, path) if path is not None else None for _, path, _ in chunk]
            results: list[Prediction] = []
            images, slots = [], []
            for (shown, _, error), fut in zip(chunk, futures, strict=True):
                if fut is not None:
                    image, error = fut.result()
                    if image is not None:
                        images.append(image)
                        slots.append(len(results))
                results.append(Prediction(shown, error=error))
            if images:
                probs = np.asarray(classifier.predict_proba(images), dtype=np.float64)
                order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
                for slot, row, idx in zip(slots, probs, order, strict=True):
                    results[slot].top = [(classes[i], float(row[i])) for i in idx]
            yield from results


def _csv_header(k: int) -> list[str]:
    cols = ["path", "pred", "prob"]
    for i in range(1, k + 1):
        cols += [f"class_{i}", f"prob_{i}"]
    return [*cols, "error"]


def _csv_row(p: Prediction, k: int) -> list[str]:
    row = [p.path, p.top[0][0] if p.top else "", f"{p.top[0][1]:.6f}" if p.top else ""]
    for i in range(k):
        row += [p.top[i][0], f"{p.top[i][1]:.6f}"] if i < len(p.top) else ["", ""]
    return [*row, p.error or ""]


def _load_run(model: str, workspace: Path | None):
    from vitrine.core.workspace import Workspace
    from vitrine.runs import Run

    as_path = Path(model)
    if (as_path / "run.json").is_file() and workspace is None:  # a run folder given as a path
        return Run.load(Workspace(as_path.resolve().parent.parent), as_path.resolve().name)
    return Run.load(Workspace(workspace), model)


def _is_path(model: str) -> bool:
    """``model`` names a file or folder (not a run id): ``vitrine export-model``'s output or a mistake."""
    from vitrine.predict.exported import MODEL_SUFFIXES, is_exported_model

    p = Path(model)
    return is_exported_model(model) or (
        not (p / "run.json").is_file() and ("/" in model or model.lower().endswith(MODEL_SUFFIXES))
    )


def _load_exported(model: str):
    """An exported classifier (no torch): the folder ``vitrine export-model`` wrote, or its model file."""
    from vitrine.core.errors import ModelError
    from vitrine.predict.exported import load_exported

    classifier = load_exported(model)
    if classifier.manifest["task"] != "classification":
        raise ModelError(
            f"{model} is an exported {classifier.manifest['task']} model, not a classifier",
            hint=f"run it with `vitrine detect --model {model} IMAGES... --out DIR`",
        )
    return classifier


def _load_classifier(run):
    from vitrine.predict.classifier import load_classifier
    from vitrine.train.classification import linear_probe, zero_shot  # noqa: F401  (they register their loaders)

    try:
        from vitrine.train.classification import finetune  # noqa: F401
    except ImportError:
        pass
    return load_classifier(run)


def predict(
    images: Annotated[list[Path], typer.Argument(help="image files and/or folders (searched recursively)")],
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="the run to predict with (its id, or its folder), or a folder from export-model"
        ),
    ],
    workspace: Annotated[
        Path | None, typer.Option(help="workspace holding runs/ (default: $VITRINE_HOME or the current folder)")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=1000, help="classes shown per image")] = 3,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the predictions as CSV ('-': to stdout)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="images per model batch")] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="print machine-readable JSON on stdout")] = False,
):
    """Classify images (files or folders) with a trained run; print a table, write a CSV."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from vitrine.core.errors import VitrineError

    with guard():
        exported = _is_path(model)
        run = None if exported else _load_run(model, workspace)
        inputs = collect_inputs(images)
        if not inputs:
            raise VitrineError("no images found", hint="give image files, or folders that hold some")
        classifier = _load_exported(model) if exported else _load_classifier(run)
        if exported:  # the run it was exported from, as a run's predictions name it
            source = classifier.manifest.get("run") or {}
            run_id, kind = str(source.get("id") or classifier.name), str(source.get("kind") or "finetune")
        else:
            run_id, kind = run.id, run.kind
        for note in getattr(classifier, "notes", ()) if exported else ():
            err.print(f"[dim]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        k = max(1, min(top_k, len(classifier.classes)))
        to_stdout = output is not None and str(output) == "-"
        fh = None
        writer = None
        if output is not None:
            try:
                fh = sys.stdout if to_stdout else open(output, "w", newline="", encoding="utf-8")
            except OSError as exc:
                raise VitrineError(f"cannot write {output}: {exc.strerror or exc}") from None
            writer = csv.writer(fh)
            writer.writerow(_csv_header(k))
        predictions: list[Prediction] = []
        try:
            for p in predict_files(classifier, inputs, k, batch_size):
                predictions.append(p)
                if writer is not None:
                    writer.writerow(_csv_row(p, k))
        except KeyboardInterrupt:
            err.print(f"[yellow]interrupted[/] after {len(predictions)} of {len(inputs)} files", soft_wrap=True)
            raise typer.Exit(130) from None
        finally:
            if fh is not None and not to_stdout:
                fh.close()

    failed = [p for p in predictions if p.error]
    for p in failed:
        err.print(f"[yellow]skipped[/] {escape(p.path)}: {escape(p.error)}", highlight=False, soft_wrap=True)
    if as_json:
        document = {"run": run_id, "kind": kind, "predictions": [p.to_dict() for p in predictions]}
        if exported:
            document["model"] = {"path": str(classifier.folder), "runtime": classifier.session.runtime}
            document["model"]["precision"] = classifier.session.precision
        emit_json(document)
    elif not to_stdout:
        table = Table(title=f"run {run_id} ({kind}{', exported' if exported else ''})")
        table.add_column("file", overflow="fold")
        table.add_column("prediction")
        table.add_column("prob", justify="right")
        if k > 1:
            table.add_column(f"next {k - 1}")
        for p in predictions:
            if p.error:
                cells = [Text(p.path), Text("unreadable", style="red"), "", *([Text(p.error)] if k > 1 else [])]
            else:
                rest = ", ".join(f"{c} {prob:.2f}" for c, prob in p.top[1:])
                cells = [Text(p.path), Text(p.top[0][0]), f"{p.top[0][1]:.2f}", *([Text(rest)] if k > 1 else [])]
            table.add_row(*cells)
        out.print(table)
    summary = f"{len(predictions) - len(failed)} predicted, {len(failed)} unreadable"
    if output is not None and not to_stdout:
        summary += f"; wrote {escape(str(output))}"
    err.print(summary, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main `vitrine` app."""
    app.command("predict")(predict)
