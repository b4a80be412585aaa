"""Linear probe: logistic regression on an embedding model's image vectors (seconds to train).

The dataset's images are embedded once in the model's image space (``visual`` for
``offline-concepts``: EfficientNet-Lite0 penultimate features; ``joint`` for CLIP) and cached
(:mod:`vitrine.train.classification.embeddings`); a scikit-learn pipeline (standardisation, then multinomial
logistic regression, lbfgs) is fitted on the train split. The inverse regularisation ``C`` comes
from the config, or is picked from a small grid by accuracy on the val split (ties: the lower
log-loss); with no val split it is 1.0. The chosen model is the one fitted on the train split,
so the val score stays honest.

The run folder holds ``classifier.joblib`` (the fitted pipeline: a pickle, load only runs you
made) and ``classifier.json`` (model, space, classes, C). To predict, images are embedded with the
same model and space, then go through the pipeline.
"""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np

from vitrine.core.atomic import atomic_open, atomic_write_json
from vitrine.core.errors import Cancelled, VitrineError
from vitrine.predict.classifier import LinearProbeClassifier, full_proba
from vitrine.runs import Run
from vitrine.runs.lifecycle import run_lifecycle
from vitrine.train.classification.embeddings import (
    dataset_cache_dir,
    decode_some,
    embed_dataset,
    evaluate_probs,
    resolve,
)

KIND = "linear-probe"
DEFAULT_MODEL = "offline-concepts"
DEFAULT_CONFIG: dict = {
    "C": None,  # None: chosen from C_grid on the val split (1.0 when there is no val split)
    "C_grid": [0.001, 0.01, 0.1, 1.0],
    "max_iter": 1000,
    "class_weight": None,  # or "balanced"
    "space": None,  # None: the model's image space
    "batch_size": None,  # images per model batch when embedding (None: the model's default)
}
SPLITS_USED = ("train", "val", "test")


def make_pipeline(C: float, max_iter: int = 1000, class_weight=None):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("logreg", LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight, solver="lbfgs")),
        ]
    )


def _log_loss(y: np.ndarray, probs: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))


def train_linear_probe(
    workspace,
    dataset,
    *,
    embedding_model: str = DEFAULT_MODEL,
    config: dict | None = None,
    progress=None,
    cancel: threading.Event | None = None,
    run_id: str | None = None,
) -> Run:
    """Fit a linear probe on ``dataset``'s train split; evaluate it on its test split; return the run.

    ``workspace``: a :class:`~vitrine.core.workspace.Workspace` or its folder; ``dataset``: a
    :class:`~vitrine.data.dataset.ClassificationDataset` or its name in the workspace.
    ``progress(stage, done, total)`` is told about the stages ``embed``, ``fit`` and ``evaluate``.
    """
    from vitrine.models import registry

    ws, ds = resolve(workspace, dataset)
    unknown = set(config or {}) - set(DEFAULT_CONFIG)
    if unknown:
        raise VitrineError(
            f"unknown linear-probe option(s): {', '.join(sorted(unknown))}",
            hint=f"known: {', '.join(DEFAULT_CONFIG)}",
        )
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    model = registry.load(embedding_model)
    space = cfg["space"] or model.spaces.image_space
    if space not in model.spaces.dims:
        raise VitrineError(f"model {embedding_model!r} has no space {space!r}")
    cfg["space"] = space
    if not ds.split("train"):
        raise VitrineError(
            f"dataset {ds.name!r} has no train split",
            hint="assign train/val/test splits to its samples first",
        )

    run = Run.create(ws, KIND, ds.name, embedding_model, cfg, run_id)
    with run_lifecycle(run) as life:
        life.start(classes=list(ds.classes))
        metrics = _train(run, ws, ds, model, embedding_model, space, cfg, progress, cancel)
        life.done(metrics=metrics, progress={"stage": "done"})
    return run


def _train(run: Run, ws, ds, model, model_name: str, space: str, cfg: dict, progress, cancel) -> dict:
    import joblib
    import sklearn
    from sklearn.exceptions import ConvergenceWarning

    classes = list(ds.classes)
    samples = [s for s in ds.samples if s.split in SPLITS_USED]
    emb = embed_dataset(
        ds,
        model_name,
        space,
        cache_dir=dataset_cache_dir(ws, ds),
        progress=progress,
        cancel=cancel,
        samples=samples,
        batch_size=cfg["batch_size"],
    )
    train, val, test = (emb.subset(sp) for sp in SPLITS_USED)
    y_train = train.labels(classes)
    if len(set(y_train.tolist())) < 2:
        raise VitrineError("the train split needs images of at least 2 classes (that could be read)")

    # fit: one C, or the grid scored on the val split
    started = time.perf_counter()
    y_val = val.labels(classes)
    if cfg["C"] is not None:
        grid = [float(cfg["C"])]
    elif len(val.samples) and cfg["C_grid"]:
        grid = [float(c) for c in cfg["C_grid"]]
    else:
        grid = [1.0]
    tried = []
    best = None
    for i, C in enumerate(grid):
        if cancel is not None and cancel.is_set():
            raise Cancelled("training was cancelled")
        if progress:
            progress("fit", i, len(grid))
        pipeline = make_pipeline(C, cfg["max_iter"], cfg["class_weight"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # recorded below instead
            pipeline.fit(train.vectors, y_train)
        n_iter = int(np.max(pipeline[-1].n_iter_))
        entry = {"C": C, "iterations": n_iter, "converged": n_iter < cfg["max_iter"]}
        if len(val.samples):
            p = full_proba(pipeline, val.vectors, len(classes))
            entry["val_accuracy"] = float((p.argmax(axis=1) == y_val).mean())
            entry["val_log_loss"] = _log_loss(y_val, p)
        tried.append(entry)
        score = (entry.get("val_accuracy", 0.0), -entry.get("val_log_loss", 0.0))
        if best is None or score > best[0]:
            best = (score, C, pipeline, entry)
    if progress:
        progress("fit", len(grid), len(grid))
    _, C, pipeline, chosen = best
    train_seconds = time.perf_counter() - started
    train_accuracy = float((full_proba(pipeline, train.vectors, len(classes)).argmax(axis=1) == y_train).mean())

    # save
    with atomic_open(run.dir / "classifier.joblib", "wb") as fh:
        joblib.dump(pipeline, fh)
    atomic_write_json(
        run.dir / "classifier.json",
        {
            "kind": KIND,
            "embedding_model": model_name,
            "space": space,
            "dim": int(model.spaces.dims[space]),
            "classes": classes,
            "C": C,
            "sklearn": sklearn.__version__,
        },
    )

    metrics = {
        "C": C,
        "grid": tried,
        "train_accuracy": train_accuracy,
        "train_seconds": round(train_seconds, 3),
        "embed_seconds": round(emb.seconds, 3),
        "images_embedded": emb.embedded,
        "images_from_cache": emb.cached,
        "n_train": len(train.samples),
        "n_val": len(val.samples),
        "n_test": len(test.samples),
        "skipped": [{"path": p, "reason": r} for p, r in emb.failed],
    }
    if "val_accuracy" in chosen:
        metrics["val_accuracy"] = chosen["val_accuracy"]
    run.update(metrics=metrics, progress={"stage": "evaluate"})
    if len(test.samples):
        if progress:
            progress("evaluate", 0, 1)
        probs = full_proba(pipeline, test.vectors, len(classes))
        test_paths = {s.path for s in ds.split("test")}
        test_failed = [(p, r) for p, r in emb.failed if p in test_paths]
        evaluate_probs(
            run,
            classes,
            "test",
            test.labels(classes),
            probs,
            metrics,
            skipped=test_failed,
            classifier=LinearProbeClassifier(run.dir),  # the saved files, as predictions will load them
            speed_images=decode_some(ds, test.samples),
            dataset=ds,
            paths=test.paths,
        )
        if progress:
            progress("evaluate", 1, 1)
    return metrics


__all__ = ["DEFAULT_CONFIG", "train_linear_probe"]
