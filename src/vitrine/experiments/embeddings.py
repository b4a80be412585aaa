"""Compare embedding models on the same images: ``vitrine compare-embeddings``, the
``compare-embeddings`` job and the leaderboard's embedding runs.

It sits in ``experiments/`` because it strings together what lies below: a dataset's or a
project's images (``data/``, ``collection/``), their vectors per model as the linear probe caches
them (``train/classification/embeddings.py``), the probe's own pipeline and the zero-shot
classifier's prompts (``train/classification/linear_probe.py``, ``zero_shot.py``: reused, not
rewritten), the metrics (``evaluate/embedding.py``), the one speed harness (``evaluate/speed.py``)
and the run record (``runs/``). Nothing below may import it.

For each model, on the same images (every sample of the dataset, or a seeded random ``limit`` of
them; a caller's view of a dataset leaves its hidden splits out before anything is embedded):

- **kNN accuracy** at k = 1 and 10 (leave-one-out, cosine, majority vote; ties: summed similarity,
  then the lower class id) and **retrieval mAP@k** (relevant: the other images of the query's
  class; AP@k divided by min(k, relevant)): :mod:`vitrine.evaluate.embedding`;
- **linear-probe accuracy**: the probe's pipeline (:func:`~vitrine.train.classification.linear_probe.make_pipeline`,
  standardisation + logistic regression, C = 1, the probe's value without a val grid) fitted on
  the train split and scored on the val split (the test split when there is no val split); a
  dataset without splits gets a seeded, stratified 80/20 split of its images;
- **zero-shot accuracy** (models that embed text): one prompt per class from its name, or the
  description the ontology gives its keyword (:func:`~vitrine.train.classification.zero_shot.build_prompts`),
  nothing fitted, so on every image;
- **keyword → image agreement** (an ontology whose keywords match labels: a project's ontology, or
  the one of the collection a dataset was imported from): each matching keyword's description as a
  text query, AP@k against the images of its label, averaged;
- **speed** by :func:`vitrine.evaluate.speed.measure`: images/s at the model's batch (decoded
  images in, preprocessing included) and ms per image at batch 1; **ms per text query** (batch 1,
  tokenising included); the **vector dimension** and **bytes per vector** in the index vitrine
  would build for this many images.

A model is scored in its image space (``visual`` for ``offline-concepts``, ``joint`` for CLIP);
``<model>#<space>`` names another of its spaces (``offline-concepts#concepts``: kNN, the probe and
mAP@k on the concept-bridged vectors).

Each model's scores are recorded as a finished run of kind ``embedding`` (task ``embedding``,
primary metric kNN@10 accuracy) on the target's board, with the fingerprint of the images scored,
so the leaderboard ranks and charts them. A model named ``...?weights=random`` is marked
``random_weights`` ("random weights: speed only") in its run and in the table: its accuracies
mean nothing. A project's labels are its first-level folders under ``images/``
(:func:`vitrine.data.importers.from_collection`); images directly in ``images/`` have none and are
left out.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitrine.core.errors import Cancelled, ModelError, VitrineError
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.models import registry

log = logging.getLogger(__name__)

DEFAULT_K = 10
KNN_KS = (1, 10)
MAX_K = 1000
MAX_MODELS = 20
SPEED_IMAGES = 64  # decoded images the speed harness times
TEXT_QUERIES = 10  # single text queries timed
SEED = 0
RANDOM_NOTE = registry.RANDOM_LABEL

Progress = Callable[..., None]  # progress(stage, done, total, info=None)


@dataclass
class Target:
    """The images compared on: a classification dataset (or a project read as one)."""

    kind: str  # "dataset" | "project"
    name: str  # the board the runs land on
    dataset: ClassificationDataset
    cache_dir: Path  # where each model's vectors are cached
    ontology_file: Path | None = None
    hidden: tuple[str, ...] = ()  # splits left out (a member's view)
    notes: list[str] = field(default_factory=list)


def dataset_target(workspace: Workspace, dataset: ClassificationDataset, exclude_splits: Sequence[str] = ()) -> Target:
    """A workspace dataset, without the splits in ``exclude_splits`` (a member's view leaves its
    hidden split out: its images are neither embedded nor scored)."""
    import dataclasses

    from vitrine.train.classification.embeddings import dataset_cache_dir
    from vitrine.train.classification.zero_shot import collection_ontology

    hidden = tuple(sorted(set(exclude_splits)))
    if hidden:
        dataset = dataclasses.replace(dataset, samples=[s for s in dataset.samples if s.split not in hidden])
    ontology = collection_ontology(dataset)
    return Target(
        "dataset",
        dataset.name,
        dataset,
        dataset_cache_dir(workspace, dataset),
        ontology if ontology is not None and ontology.is_file() else None,
        hidden,
    )


def project_target(project_dir: str | Path) -> Target:
    """A project's images labelled by their first-level folder under ``images/``."""
    from vitrine.collection.layout import project_paths
    from vitrine.data.importers import from_collection

    paths = project_paths(project_dir)
    if not paths.images_dir.is_dir():
        raise VitrineError(f"{paths.project_dir} is not a project: it has no images/ folder", hint="vitrine init")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", paths.project_dir.name).strip(".-")[:100] or "project"
    dataset = from_collection(paths.project_dir, name, check_images=False)
    notes = []
    if dataset.problems:
        notes.append(f"{len(dataset.problems)} image(s) without a folder label left out")
    ontology = paths.ontology_file if paths.ontology_file.is_file() else None
    return Target("project", name, dataset, paths.data_dir / "embeddings", ontology, (), notes)


def split_space(entry: str) -> tuple[str, str | None]:
    """``"offline-concepts#concepts"`` -> ``("offline-concepts", "concepts")``; no ``#``: no space."""
    name, sep, space = entry.partition("#")
    return name.strip(), (space.strip() or None) if sep else None


def parse_models(models: str | Sequence[str]) -> list[str]:
    """Model names from ``"a,b,c"`` (or a list), each checked: known, and an embedding model (a
    ``#space`` suffix names one of its spaces, checked when it loads). A bad name is a ModelError
    before any image is read."""
    names = models.split(",") if isinstance(models, str) else list(models)
    names = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    if not names:
        raise VitrineError("name at least one embedding model", hint="e.g. --models offline-concepts,timm:resnet50")
    if len(names) > MAX_MODELS:
        raise VitrineError(f"at most {MAX_MODELS} models per comparison, not {len(names)}")
    for entry in names:
        name, space = split_space(entry)
        if space is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,50}", space):
            raise ModelError(f"{entry!r}: {space!r} is not a space name", hint="e.g. offline-concepts#concepts")
        spec = registry.get(name)
        if spec.task != "embedding":
            raise ModelError(
                f"model {name!r} is a {spec.task} model, not an embedding model",
                hint="`vitrine models` lists the embedding models; timm:<name> and hf:<repo id> name others",
            )
    return names


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise VitrineError(f"k must be an integer from 1 to {MAX_K}, not {k!r}")
    return k


def chosen_samples(dataset: ClassificationDataset, limit: int | None) -> list[Sample]:
    """Every sample, or ``limit`` of them drawn at random (seeded: the same for every model and run)."""
    samples = list(dataset.samples)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 2:
            raise VitrineError(f"limit must be an integer of at least 2, not {limit!r}")
        if limit < len(samples):
            keep = np.sort(np.random.default_rng(SEED).choice(len(samples), limit, replace=False))
            samples = [samples[i] for i in keep]
    return samples


def _check_labels(target: Target, samples: list[Sample]) -> None:
    labels = {s.label for s in samples}
    if len(labels) < 2:
        where = "folders under images/" if target.kind == "project" else "classes"
        raise VitrineError(
            f"{target.kind} {target.name!r} has {len(labels)} label(s) among the images compared: "
            "the comparison needs labelled images of at least 2 classes",
            hint=f"give the images labels ({where}); every score compares an image with others of its class",
        )


# ------------------------------------------------------------------------------------------------
# the scores of one model


def probe_accuracy(vectors: np.ndarray, labels: np.ndarray, splits: Sequence[str]) -> tuple[float | None, str]:
    """Accuracy of the linear probe's pipeline fitted on the train split and scored on val (test
    without val); without a train split, on a seeded stratified 80/20 split. ``(None, why)`` when it
    cannot be fitted (fewer than 2 classes to fit on, nothing to score)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    from vitrine.train.classification.linear_probe import DEFAULT_CONFIG, make_pipeline

    splits = np.asarray([s or "" for s in splits])
    train = splits == "train"
    scored_on = "val" if (splits == "val").any() else "test"
    held = splits == scored_on
    if not train.any() or not held.any():
        import math

        idx = np.arange(len(labels))
        if len(idx) < 4:
            return None, "too few images for a train/test split"
        counts = np.bincount(labels)
        present = counts[counts > 0]
        n_test = math.ceil(0.2 * len(idx))
        # stratified when every class can be in both parts; else a plain seeded split
        can_stratify = present.min() >= 2 and n_test >= len(present) and len(idx) - n_test >= len(present)
        stratify = labels if can_stratify else None
        fit_idx, test_idx = train_test_split(idx, test_size=0.2, random_state=SEED, stratify=stratify)
        train, held = np.zeros(len(idx), bool), np.zeros(len(idx), bool)
        train[fit_idx], held[test_idx] = True, True
        scored_on = "20% held out (seeded)"
    if len(set(labels[train].tolist())) < 2:
        return None, "the train images hold fewer than 2 classes"
    pipeline = make_pipeline(1.0, DEFAULT_CONFIG["max_iter"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(vectors[train], labels[train])
    return float((pipeline.predict(vectors[held]) == labels[held]).mean()), scored_on


def _keyword_queries(ontology_file: Path | None, classes: list[str]) -> list[tuple[str, int]]:
    """``(query text, class id)`` for every ontology keyword whose name matches a class."""
    if ontology_file is None:
        return []
    from vitrine.collection.ontology import load_ontology
    from vitrine.train.classification.zero_shot import fold

    by_fold = {fold(c): i for i, c in enumerate(classes)}
    out = []
    for entry in load_ontology(ontology_file).entries:
        cls = by_fold.get(fold(entry.keyword))
        if cls is not None:
            out.append((entry.description or entry.keyword, cls))
    return out


def _torch_module(model):
    for attr in ("model", "classifier"):
        module = getattr(model, attr, None)
        if module is not None and hasattr(module, "parameters"):
            return module
    return None


def _speed(model, images: list) -> dict:
    import torch

    from vitrine.evaluate.speed import measure

    def embed(batch: list) -> None:
        model.embed_batch(torch.stack([model.preprocess(im) for im in batch]))

    batch = max(1, min(32, int(getattr(model, "batch_size", 32) or 32)))
    return measure(embed, images, batch_size=batch, latency_images=10, device=getattr(model, "device", "cpu")).to_dict()


def _text_ms(model, texts: list[str]) -> float | None:
    from vitrine.evaluate.speed import measure

    if not texts:
        return None
    report = measure(lambda batch: model.embed_texts(batch), texts, batch_size=0, latency_images=TEXT_QUERIES)
    return report.latency_ms


def score_model(
    target: Target,
    samples: list[Sample],
    name: str,
    *,
    k: int = DEFAULT_K,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """Every score of model ``name`` on ``samples`` of ``target`` (see the module docstring)."""
    from vitrine.evaluate.embedding import (
        bytes_per_vector,
        knn_accuracy,
        neighbours,
        retrieval_map_at_k,
        text_retrieval_map_at_k,
        zero_shot_accuracy,
    )
    from vitrine.train.classification.embeddings import decode_some, embed_dataset
    from vitrine.train.classification.zero_shot import build_prompts, prompt_vectors

    started = time.perf_counter()
    ds = target.dataset
    entry_name = name
    name, wanted = split_space(entry_name)
    model = registry.load(name)
    space = wanted or model.spaces.image_space
    if space not in model.spaces.dims:
        raise ModelError(f"model {name!r} has no space {space!r}", hint=f"its spaces: {', '.join(model.spaces.dims)}")

    def stage(label: str) -> Callable:
        return lambda st, done, total: progress and progress(f"{entry_name}: {label or st}", done, total)

    emb = embed_dataset(ds, name, space, cache_dir=target.cache_dir, progress=stage(""), cancel=cancel, samples=samples)
    if len(emb.samples) < 2:
        raise VitrineError(f"model {name!r}: fewer than 2 images could be read", hint="see the skipped images")
    classes = list(ds.classes)
    labels = emb.labels(classes)
    nb = neighbours(emb.vectors, max(max(KNN_KS), k))
    scores: dict = {
        "knn1_accuracy": knn_accuracy(emb.vectors, labels, 1, precomputed=nb),
        "knn10_accuracy": knn_accuracy(emb.vectors, labels, 10, precomputed=nb),
        "map_at_k": retrieval_map_at_k(emb.vectors, labels, k, precomputed=nb),
    }
    scores["probe_accuracy"], probe_on = probe_accuracy(emb.vectors, labels, [s.split for s in emb.samples])

    text_space = model.spaces.text_space
    scores["zero_shot_accuracy"] = scores["keyword_map_at_k"] = None
    prompts_from = None
    queries: list[str] = []
    if text_space is not None:
        text_emb = emb
        if text_space != space:  # every space was cached in the same pass: no second embedding
            text_emb = embed_dataset(
                ds, name, text_space, cache_dir=target.cache_dir, cancel=cancel, samples=emb.samples
            )
        prompts_from = "ontology" if target.ontology_file is not None else "names"
        texts, _ = build_prompts(classes, prompts_from, target.ontology_file)
        scores["zero_shot_accuracy"] = zero_shot_accuracy(
            text_emb.vectors, prompt_vectors(model, texts), text_emb.labels(classes)
        )
        keyword = _keyword_queries(target.ontology_file, classes)
        if keyword:
            q = model.embed_texts([t for t, _ in keyword])
            scores["keyword_map_at_k"] = text_retrieval_map_at_k(
                q, [c for _, c in keyword], text_emb.vectors, text_emb.labels(classes), k
            )
        queries = [group[0] for group in texts][:TEXT_QUERIES]
    if cancel is not None and cancel.is_set():
        raise Cancelled("the comparison was cancelled")

    if progress:
        progress(f"{entry_name}: speed", 0, 1)
    images = decode_some(ds, emb.samples, SPEED_IMAGES)
    speed = _speed(model, images) if images else {}
    scores["images_per_second"] = speed.get("images_per_second")
    scores["text_query_ms"] = _text_ms(model, queries) if queries else None
    dim = int(model.spaces.dims[space])
    size = bytes_per_vector(len(emb.samples), dim)
    scores["dim"] = dim
    scores["bytes_per_vector"] = size["bytes_per_vector"]
    module = _torch_module(model)
    from vitrine.evaluate.cost import parameter_count

    cost = {"parameters": parameter_count(module) if module is not None else None}
    if progress:
        progress(f"{entry_name}: speed", 1, 1)
    random = registry.is_random(name)
    return {
        "model": entry_name,
        "space": space,
        "text_space": text_space,
        "random_weights": random,
        "note": RANDOM_NOTE if random else None,
        "images": len(emb.samples),
        "scores": scores,
        "probe_scored_on": probe_on,
        "zero_shot_prompts": prompts_from,
        "index": size["index"],
        "speed": speed,
        "cost": cost,
        "skipped": [{"path": p, "reason": r} for p, r in emb.failed],
        "seconds": round(time.perf_counter() - started, 3),
    }


# ------------------------------------------------------------------------------------------------
# the comparison, recorded


def record_run(workspace: Workspace, target: Target, result: dict, fingerprint: str, *, k: int, limit, run_id=None):
    """A finished ``embedding`` run holding one model's scores (see :mod:`vitrine.runs.summary`)."""
    from vitrine.runs import Run
    from vitrine.runs.lifecycle import run_lifecycle

    config = {
        "k": k,
        "limit": limit,
        "space": result["space"],
        "random_weights": result["random_weights"],
        "target": target.kind,
        "hidden_splits_left_out": list(target.hidden),
    }
    extra = {"note": RANDOM_NOTE} if result["random_weights"] else None
    run = Run.create(workspace, "embedding", target.name, result["model"], config, run_id, extra=extra)
    metrics = {
        "all": {
            "split": "all",
            "fingerprint": fingerprint,
            "images": result["images"],
            **{key: value for key, value in result["scores"].items() if value is not None},
        },
        "speed": result["speed"],
        "cost": result["cost"],
        "probe_scored_on": result["probe_scored_on"],
        "zero_shot_prompts": result["zero_shot_prompts"],
        "index": result["index"],
        "skipped": result["skipped"],
        "embed_seconds": result["seconds"],
    }
    with run_lifecycle(run) as life:
        life.start(classes=list(target.dataset.classes))
        life.done(metrics=metrics, progress={"stage": "done"})
    return run


def compare_embeddings(
    workspace: Workspace | str | Path | None,
    target: Target,
    models: str | Sequence[str],
    *,
    k: int = DEFAULT_K,
    limit: int | None = None,
    record: bool = True,
    run_ids: Sequence[str] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    on_model: Callable[[dict], None] | None = None,
) -> dict:
    """Score every model of ``models`` on the same images of ``target``; with ``record``, each as a
    finished ``embedding`` run in ``workspace`` (``run_ids``: their ids, one per model). Returns
    ``{"target", "kind", "k", "images", "models": [...], "seconds"}``, one entry per model in
    the order given (``run_id`` in each when recorded). ``on_model(entry)`` is told about each
    model as it finishes. A model that cannot load stops the comparison with its error (models
    before it are recorded)."""
    from vitrine.data.fingerprint import classification_fingerprint

    started = time.perf_counter()
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    names = parse_models(models)
    k = check_k(k)
    samples = chosen_samples(target.dataset, limit)
    _check_labels(target, samples)
    if run_ids is not None and len(run_ids) != len(names):
        raise VitrineError("give one run id per model")
    fingerprint = classification_fingerprint(target.dataset, "all", samples)
    entries = []
    for i, name in enumerate(names):
        if cancel is not None and cancel.is_set():
            raise Cancelled("the comparison was cancelled")
        if progress:
            progress("models", i, len(names), {"model": name})
        entry = score_model(target, samples, name, k=k, progress=progress, cancel=cancel)
        if record:
            run = record_run(ws, target, entry, fingerprint, k=k, limit=limit, run_id=run_ids[i] if run_ids else None)
            entry["run_id"] = run.id
        entries.append(entry)
        if on_model is not None:
            on_model(entry)
    if progress:
        progress("models", len(names), len(names), {})
    return {
        "target": target.name,
        "kind": target.kind,
        "k": k,
        "limit": limit,
        "images": len(samples),
        "classes": len({s.label for s in samples}),
        "fingerprint": fingerprint,
        "hidden_splits_left_out": list(target.hidden),
        "notes": list(target.notes),
        "models": entries,
        "seconds": round(time.perf_counter() - started, 3),
    }


__all__ = [
    "DEFAULT_K",
    "Target",
    "compare_embeddings",
    "dataset_target",
    "parse_models",
    "probe_accuracy",
    "project_target",
    "score_model",
]
