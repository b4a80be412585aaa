"""Linear probe and the dataset embedding cache, on tiny generated colour datasets.

A small deterministic embedder (``tiny-colour``) stands in for the real models: its ``visual``
space is a colour histogram, its ``concepts`` space the mean colour, and its text encoder maps the
words red/green/blue to the matching directions. It counts the images it embeds, so tests can
tell a cache hit from re-embedding. The helpers here are shared with test_zero_shot.py and
test_cli_predict.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrine.core.errors import Cancelled, VitrineError
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.models import registry
from vitrine.models.base import ModelCard, Spaces, l2_normalize
from vitrine.models.registry import Availability, ModelSpec
from vitrine.predict.classifier import load_classifier
from vitrine.runs import Run
from vitrine.train.classification.embeddings import cache_file, embed_dataset

TINY = "tiny-colour"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
WORDS = ("red", "green", "blue")


class TinyColourEmbedder:
    name = TINY
    batch_size = 8

    def __init__(self):
        self.spaces = Spaces(dims={"concepts": 3, "visual": 24}, text_space="concepts", image_space="visual")
        self.images_embedded = 0
        self.lock = threading.Lock()

    def preprocess(self, image):
        import torch

        array = np.asarray(image.convert("RGB").resize((16, 16)), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def embed_batch(self, batch) -> dict[str, np.ndarray]:
        x = batch.numpy()
        with self.lock:
            self.images_embedded += len(x)
        mean = x.mean(axis=(2, 3))
        hist = np.stack(
            [np.concatenate([np.histogram(im[c], bins=8, range=(0, 1))[0] for c in range(3)]) for im in x]
        ).astype(np.float32)
        return {"concepts": l2_normalize(mean - mean.mean(axis=1, keepdims=True) + 1e-3), "visual": l2_normalize(hist)}

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        out = []
        for text in texts:
            words = text.lower().replace(",", " ").split()
            v = np.array([words.count(w) for w in WORDS], dtype=np.float32)
            v = v - v.mean() if v.any() else np.full(3, 1e-3, np.float32)
            out.append(v + 1e-4)
        return l2_normalize(np.stack(out))


@pytest.fixture
def tiny_model():
    """Register ``tiny-colour`` in the model registry for one test; yield the loaded instance."""
    model = TinyColourEmbedder()
    registry.register(
        ModelSpec(
            name=TINY,
            task="embedding",
            source="package",
            card=ModelCard(summary="test colour model"),
            loader=lambda weights=None, device=None, **_: model,
            availability=lambda weights=None, probe_hub=False: Availability(True, "package"),
        ),
        replace=True,
    )
    yield model
    registry.unregister(TINY)


def make_dataset(
    root: Path,
    name: str = "colours",
    classes: dict[str, tuple[int, int, int]] | None = None,
    per_split: dict[str, int] | None = None,
    seed: int = 0,
) -> ClassificationDataset:
    """Noisy solid-colour PNGs in ``root/<class>/``, with train/val/test splits."""
    classes = classes or {c: COLOURS[c] for c in WORDS}
    per_split = per_split or {"train": 8, "val": 3, "test": 3}
    rng = np.random.default_rng(seed)
    samples = []
    for label, rgb in classes.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for split, n in per_split.items():
            for i in range(n):
                noise = rng.integers(-25, 26, size=(20, 20, 3))
                pixels = np.clip(np.array(rgb)[None, None, :] + noise, 0, 255).astype(np.uint8)
                rel = f"{label}/{split}-{i}.png"
                Image.fromarray(pixels).save(root / rel)
                samples.append(Sample(rel, label, split))
    return ClassificationDataset(name=name, root=root, samples=samples)


def saved_dataset(tmp_path: Path, **kw) -> tuple[Workspace, ClassificationDataset]:
    ws = Workspace(tmp_path / "ws")
    ds = make_dataset(tmp_path / "images", **kw)
    ds.save(ws.dataset_dir(ds.name))
    return ws, ds


def load_images(ds: ClassificationDataset, split: str) -> tuple[list[Image.Image], list[str]]:
    samples = ds.split(split)
    return [Image.open(ds.path_of(s)).convert("RGB") for s in samples], [s.label for s in samples]


# ------------------------------------------------------------------------------------------------


def test_probe_trains_saves_reloads_and_predicts_identically(tmp_path, tiny_model):
    from vitrine.train.classification.linear_probe import train_linear_probe

    ws, ds = saved_dataset(tmp_path)
    stages = []
    run = train_linear_probe(
        ws, ds.name, embedding_model=TINY, run_id="probe-1", progress=lambda st, d, t: stages.append(st)
    )
    assert {"hash", "embed", "fit", "evaluate"} <= set(stages)
    assert run.kind == "linear-probe" and run.record["state"] == "done"
    assert (run.dir / "classifier.joblib").is_file() and (run.dir / "classifier.json").is_file()
    metrics = run.record["metrics"]
    assert metrics["n_train"] == 24 and metrics["n_val"] == 9 and metrics["n_test"] == 9
    assert metrics["C"] in (0.001, 0.01, 0.1, 1.0) and len(metrics["grid"]) == 4  # grid scored on val
    assert metrics["val_accuracy"] == 1.0
    assert metrics["test"]["accuracy"] == 1.0
    assert run.record["classes"] == ["blue", "green", "red"]
    # what makes it comparable: the test split's fingerprint, speed by the one harness, its own file
    from vitrine.data.fingerprint import classification_fingerprint

    assert metrics["test"]["fingerprint"] == classification_fingerprint(ds, "test")
    assert metrics["speed"]["latency_ms"] > 0 and metrics["speed"]["latency_images"] == 10
    assert metrics["cost"]["weights_bytes"] == (run.dir / "classifier.joblib").stat().st_size

    reloaded = Run.load(ws, "probe-1")
    assert reloaded.record["state"] == "done"
    clf = load_classifier(reloaded)
    assert clf.classes == ["blue", "green", "red"]
    images, labels = load_images(ds, "test")
    probs = clf.predict_proba(images)
    assert probs.shape == (9, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert [clf.classes[i] for i in probs.argmax(axis=1)] == labels
    # the same as a second load, and as the cached vectors the evaluation used
    np.testing.assert_array_equal(load_classifier(reloaded).predict_proba(images), probs)
    emb = embed_dataset(ds, TINY, "visual", cache_dir=ws.dataset_dir(ds.name) / "embeddings", samples=ds.split("test"))
    np.testing.assert_allclose(clf.proba_from_vectors(emb.vectors), probs, atol=1e-6)
    # each test image's prediction is kept for error browsing, with the probabilities just computed
    from vitrine.evaluate.predictions import read_predictions

    kept = {p.path: p for p in read_predictions(run.dir)}
    assert sorted(kept) == sorted(s.path for s in ds.split("test"))
    for s, row in zip(ds.split("test"), probs, strict=True):
        p = kept[s.path]
        assert p.true == s.label and p.predicted == s.label and p.top[0] == (s.label, round(float(row.max()), 4))
        assert p.p_true == round(float(row[clf.classes.index(s.label)]), 4) and len(p.top) == 3


def test_probe_fixed_C_without_val_split_and_bad_inputs(tmp_path, tiny_model):
    from vitrine.train.classification.linear_probe import train_linear_probe

    ws, ds = saved_dataset(tmp_path, per_split={"train": 6, "test": 2})
    run = train_linear_probe(ws, ds, embedding_model=TINY)
    assert run.record["metrics"]["C"] == 1.0 and "val_accuracy" not in run.record["metrics"]
    run = train_linear_probe(ws, ds, embedding_model=TINY, config={"C": 0.05})
    assert run.record["metrics"]["C"] == 0.05
    with pytest.raises(VitrineError, match="unknown linear-probe option"):
        train_linear_probe(ws, ds, embedding_model=TINY, config={"c": 1})
    unsplit = ClassificationDataset("unsplit", ds.root, [Sample(s.path, s.label) for s in ds.samples])
    with pytest.raises(VitrineError, match="no train split"):
        train_linear_probe(ws, unsplit, embedding_model=TINY)


def test_probe_cancel_marks_the_run(tmp_path, tiny_model):
    from vitrine.train.classification.linear_probe import train_linear_probe

    ws, ds = saved_dataset(tmp_path)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        train_linear_probe(ws, ds, embedding_model=TINY, cancel=cancel, run_id="cancelled-probe")
    run = Run.load(ws, "cancelled-probe")
    assert run.record["state"] == "cancelled"
    with pytest.raises(VitrineError, match="no saved linear probe"):
        load_classifier(run)


def test_embedding_cache_hit_change_move_and_unreadable(tmp_path, tiny_model):
    ds = make_dataset(tmp_path / "images")
    cache_dir = tmp_path / "cache"
    first = embed_dataset(ds, TINY, "visual", cache_dir=cache_dir)
    n = len(ds.samples)
    assert (first.embedded, first.cached, tiny_model.images_embedded) == (n, 0, n)
    assert cache_file(cache_dir, TINY, "visual").is_file() and cache_file(cache_dir, TINY, "concepts").is_file()
    paths, vectors = first
    assert paths == [s.path for s in ds.samples] and vectors.shape == (n, 24)

    # cache hit: nothing embedded again, same vectors; the other space was filled by the same pass
    again = embed_dataset(ds, TINY, "visual", cache_dir=cache_dir)
    assert (again.embedded, again.cached, tiny_model.images_embedded) == (0, n, n)
    np.testing.assert_array_equal(again.vectors, vectors)
    concepts = embed_dataset(ds, TINY, "concepts", cache_dir=cache_dir)
    assert concepts.embedded == 0 and concepts.vectors.shape == (n, 3)

    # a changed file is embedded again; a moved one (same content) is not; a corrupt one is reported
    changed, moved, broken = ds.samples[0], ds.samples[1], ds.samples[2]
    Image.new("RGB", (20, 20), (250, 250, 0)).save(ds.path_of(changed))
    new_path = ds.path_of(moved).with_name("moved.png")
    ds.path_of(moved).rename(new_path)
    ds.path_of(broken).write_bytes(b"\x89PNG\r\n\x1a\n not really")
    samples = list(ds.samples)
    samples[1] = Sample(new_path.relative_to(ds.root).as_posix(), moved.label, moved.split)
    ds2 = ClassificationDataset(ds.name, ds.root, samples)
    result = embed_dataset(ds2, TINY, "visual", cache_dir=cache_dir)
    assert result.embedded == 1 and tiny_model.images_embedded == n + 1  # only the changed one
    assert [p for p, _ in result.failed] == [broken.path] and result.failed[0][1]
    assert len(result.samples) == n - 1 and broken not in result.samples
    np.testing.assert_array_equal(result.vectors[result.paths.index(samples[1].path)], vectors[1])
    assert not np.allclose(result.vectors[0], vectors[0])

    # a damaged cache file is rebuilt, not fatal
    cache_file(cache_dir, TINY, "visual").write_bytes(b"garbage")
    rebuilt = embed_dataset(ds2, TINY, "visual", cache_dir=cache_dir)
    assert rebuilt.embedded == n - 1 and len(rebuilt.failed) == 1
