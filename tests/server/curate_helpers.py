"""A classification run evaluated with known mistakes, for the error-browsing tests: dataset
``pets`` (cat, dog, owl; 4 test images each, solid colours) and run ``probe-pets`` whose test
predictions put two cats in dog and one dog in owl. The report and predictions.csv are written by
the evaluation's own writers from probabilities made by hand, so every count is known."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.evaluate.classification import classification_report, summary, write_report
from vitrine.evaluate.predictions import write_predictions
from vitrine.runs import Run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train" / "classification"))
import test_linear_probe as shared  # noqa: E402  (the tiny colour embedder and its datasets)

CLASSES = ["cat", "dog", "owl"]
COLOURS = {"cat": (200, 60, 40), "dog": (60, 160, 60), "owl": (60, 80, 200)}
# test images, in order: (true class, predicted class, probability of the predicted class)
TEST = [
    ("cat", "cat", 0.9),
    ("cat", "cat", 0.8),
    ("cat", "dog", 0.7),  # cat/test-2.png
    ("cat", "dog", 0.55),  # cat/test-3.png
    ("dog", "dog", 0.9),
    ("dog", "dog", 0.85),
    ("dog", "dog", 0.6),
    ("dog", "owl", 0.65),  # dog/test-3.png
    ("owl", "owl", 0.95),
    ("owl", "owl", 0.9),
    ("owl", "owl", 0.8),
    ("owl", "owl", 0.7),
]


def make_pets(root: Path, name: str = "pets") -> ClassificationDataset:
    """The dataset ``name`` in workspace ``root``: 2 train and 4 test images per class."""
    images = root / f"{name}-images"
    samples = []
    for label in CLASSES:
        for split, n in (("train", 2), ("test", 4)):
            for i in range(n):
                rel = f"{label}/{split}-{i}.png"
                (images / rel).parent.mkdir(parents=True, exist_ok=True)
                shade = tuple(min(255, c + 12 * i) for c in COLOURS[label])
                Image.new("RGB", (40, 30), shade).save(images / rel)
                samples.append(Sample(rel, label, split))
    ds = ClassificationDataset(name=name, root=images, samples=samples, classes=CLASSES)
    ds.save(Workspace(root).dataset_dir(name))
    return ds


def scored_paths() -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for true, _, _ in TEST:
        out.append(f"{true}/test-{seen.get(true, 0)}.png")
        seen[true] = seen.get(true, 0) + 1
    return out


def evaluate_by_hand(root: Path, run_id: str = "probe-pets", dataset: str = "pets", split: str = "test") -> Run:
    """A done linear-probe run on ``dataset`` evaluated on ``split`` with the mistakes of :data:`TEST`."""
    ws = Workspace(root)
    run = Run.create(ws, "linear-probe", dataset, "offline-concepts", {}, run_id=run_id)
    y_true, probs = [], []
    for true, predicted, p in TEST:
        row = np.full(len(CLASSES), (1 - p) / (len(CLASSES) - 1))
        row[CLASSES.index(predicted)] = p
        y_true.append(CLASSES.index(true))
        probs.append(row)
    report = {"split": split, **classification_report(y_true, np.array(probs), CLASSES)}
    write_report(run.dir, report)
    write_predictions(run.dir, scored_paths(), y_true, np.array(probs), CLASSES)
    run.update(state="done", classes=CLASSES, metrics={split: summary(report)})
    return run


@contextmanager
def tiny_registered():
    """The linear-probe tests' tiny colour embedder (``shared.TINY``) in the model registry, for
    tests whose server threads must find it; yields the model."""
    from vitrine.models import registry
    from vitrine.models.registry import Availability, ModelSpec

    model = shared.TinyColourEmbedder()
    registry.register(
        ModelSpec(
            name=shared.TINY,
            task="embedding",
            source="package",
            card=shared.ModelCard(summary="test colour model"),
            loader=lambda weights=None, device=None, **_: model,
            availability=lambda weights=None, probe_hub=False: Availability(True, "package"),
        ),
        replace=True,
    )
    try:
        yield model
    finally:
        registry.unregister(shared.TINY)
