"""``vitrine models --bench [MODEL] [--images DIR]``: measure an embedding model's CPU runtimes here.

Every variant (ONNX Runtime fp32/int8, OpenVINO fp32/bf16/int8) is exported, quantized on the given
images, checked against torch by the parity gate and timed, as ``vitrine index`` does on its first
large run; the table shows every trial and the choice is saved, so the next index run uses it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich import box
from rich.table import Table

from vitrine.cli._console import emit_json, err, guard, out
from vitrine.core.errors import VitrineError


def _image_items(folder: Path):
    from vitrine.collection.imageio import SUPPORTED_SUFFIXES
    from vitrine.embed.pipeline import EmbedItem

    if not folder.is_dir():
        raise VitrineError(f"--images {folder}: not a folder", hint="give a folder holding images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
    if len(files) < 2:
        raise VitrineError(
            f"--images {folder}: {len(files)} image file(s) found, at least 2 are needed",
            hint="supported formats: " + ", ".join(sorted(SUPPORTED_SUFFIXES)),
        )
    return [EmbedItem(i, p, str(p.relative_to(folder))) for i, p in enumerate(files)]


def verdict(trial, choice) -> str:
    if trial.variant == choice.picked:
        return "[green]picked[/]"
    if trial.error:
        return f"[red]failed[/]: {trial.error}"
    if trial.parity is not None and not trial.parity.passed:
        return f"[yellow]refused[/]: {trial.parity.reason}"
    if trial.variant == choice.reference:
        return "reference"
    if choice.picked != choice.reference:
        return "passed, slower than the pick"
    return "passed, not enough faster than the reference"


def choice_table(choice, title: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD)
    # short headers: the verdict (why a variant was refused) gets the width
    for col in ("variant", "img/s", "x ref", "recall@10", "cosine", "prep s"):
        table.add_column(col, justify="left" if col == "variant" else "right", no_wrap=True)
    table.add_column("verdict", overflow="fold")
    ref = choice.trial(choice.reference)
    base = ref.images_per_s if ref is not None else None
    for t in choice.trials:
        figures = t.parity.figures if t.parity is not None else {}
        table.add_row(
            t.variant.label,
            f"{t.images_per_s:.1f}" if t.images_per_s else "-",
            f"{t.images_per_s / base:.2f}" if t.images_per_s and base else "-",
            f"{figures['recall_at_10']:.3f}" if "recall_at_10" in figures else "-",
            f"{figures['mean_cosine']:.4f}" if "mean_cosine" in figures else "-",
            f"{t.build_seconds:.1f}" if t.build_seconds else "-",
            verdict(t, choice),
        )
    return table


def bench_models(name: str | None, images: Path | None, weights: str | None, as_json: bool) -> None:
    from vitrine.embed import runtime_choice
    from vitrine.models import registry
    from vitrine.models.embedders.image_runtime import image_tower

    with guard():
        if name is None:
            name, _why = registry.default_embedding_model(probe_hub=False)
        spec = registry.get(name)
        if spec.task != "embedding":
            raise VitrineError(f"{name!r} is a {spec.task} model: --bench measures embedding models")
        with tempfile.TemporaryDirectory(prefix="vitrine-bench-") as tmp:
            if images is None:
                from vitrine.demo import build_demo

                folder = build_demo(tmp) / "images"
                where = "the demo photos"
            else:
                folder, where = Path(images), str(images)
            items = _image_items(folder)
            embedder = registry.load(name, weights=weights)
            tower = image_tower(embedder)
            if tower is None:
                raise VitrineError(
                    f"{name!r} has no CPU runtime export here (it runs on a GPU, or its preprocessing "
                    "cannot run without torch)",
                    hint="it indexes with torch",
                )
            say = (lambda m: err.print(f"[dim]{m}[/]", highlight=False)) if not as_json else None
            choice = runtime_choice.measure(embedder, tower, items, say=say)
    path = runtime_choice.choice_path(tower)
    if as_json:
        emit_json({"model": name, "images_from": where, "saved": str(path), **choice.to_dict()})
        return
    out.print(choice_table(choice, f"{name} on {choice.images} images from {where}, batch {choice.batch}"))
    out.print(f"picked [bold]{choice.summary()}[/]; saved for `vitrine index` on this machine", highlight=False)
    notes = {n for t in choice.trials[1:] for n in t.notes}
    out.print(f"[dim]{choice.machine}; {'; '.join(sorted(notes))}[/]", highlight=False, soft_wrap=True)
