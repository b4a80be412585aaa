"""Zero-shot classifier: an embedding model and a text prompt per class, no training.

Each class gets a prompt: its name in a template (``"a photo of a {}"``; underscores become
spaces; several templates are averaged, as in CLIP's prompt ensembling), or the description the
project's ontology gives to the keyword that matches the class name (ignoring case, accents and
``_``/``-``/space differences; a class with no matching keyword falls back to its name; a
dataset imported from a collection uses that collection's ontology unless another is given). The
prompts are embedded in the model's text space, the images in the same space, and

    P(class | image) = softmax(logit_scale * cosine(image, prompt))

``logit_scale`` is the softmax's inverse temperature. CLIP learnt its own: 100, used for every
open_clip model. ``offline-concepts`` has none, and its cosines are spread much wider than CLIP's
(its image vectors are mixtures of the MiniLM vectors of the image's top ImageNet labels): on the
scikit-image photos (cat, coffee, rocket, motorcycle, camera, astronaut), with "a photo of a
<name>" prompts, the right class scores 0.49-0.89 and the others 0.25-0.58; a clear answer leads
the runner-up by 0.12-0.44, and the one photo it gets wrong (the astronaut) has its top two
0.01 apart. The default scale there is 20: a lead
of 0.12 gives odds of 11:1, one of 0.3 of 400:1, and one of 0.05 only 2.7:1, so that an
ambiguous image does not look certain (at 100, every lead above 0.05 would read as > 99%). It is
a default chosen to give readable confidences, not a calibration fitted to a dataset;
``logit_scale=`` overrides it. Accuracy does not depend on it (the argmax is the same).

The run folder holds ``classifier.json`` (model, space, classes, prompts, logit scale) and
``classifier.npz`` (the prompt vectors). The run is still evaluated on the test split (or, when
the dataset has no splits, on all its samples: nothing was fitted on them).
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from pathlib import Path

import numpy as np

from vitrine.core.atomic import atomic_write_json
from vitrine.core.errors import VitrineError
from vitrine.predict.classifier import ZeroShotClassifier, softmax_scores
from vitrine.runs import Run
from vitrine.runs.lifecycle import run_lifecycle
from vitrine.train.classification.embeddings import (
    dataset_cache_dir,
    decode_some,
    embed_dataset,
    evaluate_probs,
    resolve,
)

KIND = "zero-shot"
DEFAULT_MODEL = "offline-concepts"
DEFAULT_TEMPLATE = "a photo of a {}"
CLIP_LOGIT_SCALE = 100.0
DEFAULT_LOGIT_SCALES = {"offline-concepts": 20.0}  # see the module docstring


def fold(text: str) -> str:
    """Lower case, no accents, ``_``/``-``/runs of spaces as one space: how names are matched."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[\s_\-]+", " ", text.casefold()).strip()


def class_display_name(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("_", " ")).strip()


def default_logit_scale(model_name: str, model) -> float:
    extra = getattr(model.spaces, "extra", {}) or {}
    if "logit_scale" in extra:
        return float(extra["logit_scale"])
    if model_name in DEFAULT_LOGIT_SCALES:
        return DEFAULT_LOGIT_SCALES[model_name]
    return CLIP_LOGIT_SCALE


def build_prompts(
    classes: list[str],
    prompts: str = "names",
    ontology_file: str | Path | None = None,
    template: str | list[str] = DEFAULT_TEMPLATE,
) -> tuple[list[list[str]], list[dict]]:
    """Prompt texts per class (several when there are several templates), and where each came from."""
    templates = [template] if isinstance(template, str) else list(template)
    if not templates or any("{}" not in t for t in templates):
        raise VitrineError("a prompt template must contain {} (where the class name goes)", hint=DEFAULT_TEMPLATE)
    if prompts not in ("names", "ontology"):
        raise VitrineError(f"unknown prompt source {prompts!r}", hint="use 'names' or 'ontology'")

    def from_name(c: str) -> list[str]:
        return [t.format(class_display_name(c)) for t in templates]

    if prompts == "names":
        return [from_name(c) for c in classes], [{"class": c, "source": "name"} for c in classes]

    from vitrine.collection.ontology import load_ontology

    if ontology_file is None:
        raise VitrineError(
            "prompts from the ontology need an ontology file",
            hint="give ontology_file=..., or use a dataset imported from a collection (its ontology is used)",
        )
    ontology = load_ontology(ontology_file)
    missing = next((p for p in ontology.problems if p.line == 0), None)
    if missing is not None:
        raise VitrineError(missing.message)
    by_fold: dict[str, object] = {}
    for entry in ontology.entries:
        by_fold.setdefault(fold(entry.keyword), entry)
    texts, sources = [], []
    for c in classes:
        entry = by_fold.get(fold(c))
        if entry is not None and entry.description:
            texts.append([entry.description])
            sources.append({"class": c, "source": "ontology", "keyword": entry.keyword, "line": entry.line})
        else:
            texts.append(from_name(c))
            why = "its keyword has no description" if entry is not None else "no ontology keyword matches"
            sources.append({"class": c, "source": "name", "note": why})
    return texts, sources


def collection_ontology(dataset) -> Path | None:
    """The ontology file of the collection a dataset was imported from (None for other sources)."""
    source = dataset.source or {}
    if source.get("kind") != "collection" or not source.get("path"):
        return None
    from vitrine.collection.layout import project_paths

    return project_paths(source["path"]).ontology_file


def prompt_vectors(model, texts: list[list[str]]) -> np.ndarray:
    """One L2-normalised vector per class: the mean of its prompts' vectors."""
    from vitrine.models.base import l2_normalize

    flat = [t for group in texts for t in group]
    vectors = np.asarray(model.embed_texts(flat), dtype=np.float32)
    out, i = [], 0
    for group in texts:
        out.append(vectors[i : i + len(group)].mean(axis=0))
        i += len(group)
    return l2_normalize(np.stack(out))


def make_zero_shot(
    workspace,
    dataset,
    *,
    embedding_model: str = DEFAULT_MODEL,
    prompts: str = "names",
    ontology_file: str | Path | None = None,
    template: str | list[str] = DEFAULT_TEMPLATE,
    logit_scale: float | None = None,
    progress=None,
    cancel: threading.Event | None = None,
    run_id: str | None = None,
) -> Run:
    """Make a zero-shot classifier for ``dataset``'s classes and evaluate it; return the run."""
    from vitrine.models import registry

    ws, ds = resolve(workspace, dataset)
    model = registry.load(embedding_model)
    space = model.spaces.text_space
    if space is None:
        raise VitrineError(
            f"model {embedding_model!r} cannot embed text, so it cannot classify zero-shot",
            hint="pick a model with text search (see `vitrine models`), or train a linear probe",
        )
    classes = list(ds.classes)
    if len(classes) < 2:
        raise VitrineError(f"dataset {ds.name!r} needs at least 2 classes")
    if prompts == "ontology" and ontology_file is None:
        ontology_file = collection_ontology(ds)
    texts, sources = build_prompts(classes, prompts, ontology_file, template)
    scale = float(logit_scale) if logit_scale is not None else default_logit_scale(embedding_model, model)
    config = {
        "prompts": prompts,
        "ontology_file": str(ontology_file) if ontology_file is not None else None,
        "template": template,
        "logit_scale": scale,
        "space": space,
    }
    run = Run.create(ws, KIND, ds.name, embedding_model, config, run_id)
    with run_lifecycle(run) as life:
        life.start(classes=classes)
        started = time.perf_counter()
        vectors = prompt_vectors(model, texts)
        np.savez(run.dir / "classifier.npz", text_vectors=vectors)
        atomic_write_json(
            run.dir / "classifier.json",
            {
                "kind": KIND,
                "embedding_model": embedding_model,
                "space": space,
                "classes": classes,
                "prompts": texts,
                "prompt_sources": sources,
                "logit_scale": scale,
            },
        )
        metrics: dict = {"train_seconds": round(time.perf_counter() - started, 3), "prompt_sources": sources}
        run.update(metrics=metrics, progress={"stage": "evaluate"})
        split = "test" if ds.split("test") else ("all" if not any(s.split for s in ds.samples) else None)
        if split is not None:
            samples = ds.samples if split == "all" else ds.split("test")
            emb = embed_dataset(
                ds,
                embedding_model,
                space,
                cache_dir=dataset_cache_dir(ws, ds),
                progress=progress,
                cancel=cancel,
                samples=samples,
            )
            probs = softmax_scores(emb.vectors, vectors, scale)
            metrics["embed_seconds"] = round(emb.seconds, 3)
            metrics["skipped"] = [{"path": p, "reason": r} for p, r in emb.failed]
            evaluate_probs(
                run,
                classes,
                split,
                emb.labels(classes),
                probs,
                metrics,
                skipped=emb.failed,
                classifier=ZeroShotClassifier(run.dir),  # the saved files, as predictions will load them
                speed_images=decode_some(ds, emb.samples),
                dataset=ds,
                paths=emb.paths,
            )
        life.done(metrics=metrics, progress={"stage": "done"})
    return run


__all__ = ["build_prompts", "make_zero_shot"]
