"""Zero-shot classifiers: prompts from class names or from the ontology; one run with the real
offline-concepts model on photos that ship with scikit-image."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrine.core.errors import VitrineError
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.predict.classifier import load_classifier
from vitrine.runs import Run

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_linear_probe as shared  # noqa: E402
from test_linear_probe import COLOURS, TINY, load_images, make_dataset, saved_dataset  # noqa: E402

tiny_model = shared.tiny_model  # the fixture, shared


def test_zero_shot_from_class_names(tmp_path, tiny_model):
    from vitrine.train.classification.zero_shot import make_zero_shot

    ws, ds = saved_dataset(tmp_path)
    run = make_zero_shot(ws, ds.name, embedding_model=TINY, run_id="zs-names", logit_scale=10)
    assert run.kind == "zero-shot" and run.record["state"] == "done"
    assert run.record["config"]["logit_scale"] == 10
    metrics = run.record["metrics"]
    assert metrics["test"]["accuracy"] == 1.0  # the test split only
    assert metrics["test"].get("n", 9) == 9
    assert [s["source"] for s in metrics["prompt_sources"]] == ["name"] * 3

    clf = load_classifier(Run.load(ws, "zs-names"))
    assert clf.prompts == [["a photo of a blue"], ["a photo of a green"], ["a photo of a red"]]
    images, labels = load_images(ds, "test")
    probs = clf.predict_proba(images)
    assert probs.shape == (9, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-9)
    assert (probs >= 0).all()
    assert [clf.classes[i] for i in probs.argmax(axis=1)] == labels


def test_zero_shot_prompts_from_ontology(tmp_path, tiny_model):
    """Class names the text model cannot read; the ontology descriptions say which colour each is.
    Keywords match class names whatever the case, accents and separators."""
    from vitrine.train.classification.zero_shot import build_prompts, make_zero_shot

    classes = {"cerise": COLOURS["red"], "emeraude": COLOURS["green"], "grand_ocean": COLOURS["blue"]}
    ws = Workspace(tmp_path / "ws")
    ds = make_dataset(tmp_path / "images", name="gems", classes=classes)
    ds.save(ws.dataset_dir(ds.name))
    ontology = tmp_path / "gems_ontology.txt"
    ontology.write_text(
        '"CERISE": "a small red fruit"\n"Émeraude": "a green gem",\n"Grand Océan": "deep blue water"\n'
        '"Autre": "something else"\n',
        encoding="utf-8",
    )
    by_name = make_zero_shot(ws, ds, embedding_model=TINY, logit_scale=10)
    by_ontology = make_zero_shot(ws, ds, embedding_model=TINY, prompts="ontology", ontology_file=ontology)
    assert by_name.record["metrics"]["test"]["accuracy"] < 0.5  # names alone say nothing here
    assert by_ontology.record["metrics"]["test"]["accuracy"] == 1.0
    sources = by_ontology.record["metrics"]["prompt_sources"]
    assert [(s["class"], s["keyword"]) for s in sources] == [
        ("cerise", "CERISE"),
        ("emeraude", "Émeraude"),
        ("grand_ocean", "Grand Océan"),
    ]
    clf = load_classifier(by_ontology)
    assert clf.prompts == [["a small red fruit"], ["a green gem"], ["deep blue water"]]

    # a dataset imported from a collection finds the collection's ontology by itself
    from vitrine.collection.layout import init_project

    project = init_project(tmp_path / "gems", keywords={"Cerise": "red", "Emeraude": "green", "Grand-Ocean": "blue"})
    ds.source = {"kind": "collection", "path": str(project.project_dir)}
    run = make_zero_shot(ws, ds, embedding_model=TINY, prompts="ontology")
    assert run.record["metrics"]["test"]["accuracy"] == 1.0
    assert load_classifier(run).prompts == [["red"], ["green"], ["blue"]]

    # a class with no keyword falls back to its name; a missing file is an error
    texts, sources = build_prompts(["cerise", "violet"], "ontology", ontology)
    assert texts == [["a small red fruit"], ["a photo of a violet"]]
    assert sources[1]["source"] == "name" and "no ontology keyword" in sources[1]["note"]
    with pytest.raises(VitrineError, match="not found"):
        build_prompts(["a", "b"], "ontology", tmp_path / "missing.txt")
    with pytest.raises(VitrineError, match="ontology file"):
        build_prompts(["a", "b"], "ontology", None)
    with pytest.raises(VitrineError, match="template"):
        build_prompts(["a", "b"], "names", template="no placeholder")


def test_zero_shot_without_splits_evaluates_all_samples(tmp_path, tiny_model):
    from vitrine.train.classification.zero_shot import make_zero_shot

    ds = make_dataset(tmp_path / "images", per_split={"": 2})
    run = make_zero_shot(tmp_path / "ws", ds, embedding_model=TINY, template=["a {} thing", "something {}"])
    assert run.record["metrics"]["all"]["accuracy"] == 1.0
    assert load_classifier(run).prompts[0] == ["a blue thing", "something blue"]
    from vitrine.evaluate.predictions import read_predictions

    kept = read_predictions(run.dir)  # every image scored, its prediction kept for error browsing
    assert sorted(p.path for p in kept) == sorted(s.path for s in ds.samples)
    assert all(p.true == p.predicted == p.path.split("/")[0] for p in kept)


@pytest.mark.slow
def test_zero_shot_offline_concepts_on_real_photos(tmp_path):
    """The real offline model: "cat", "coffee", "rocket" as class names; chelsea is a cat."""
    from skimage import data

    from vitrine.train.classification.zero_shot import make_zero_shot

    root = tmp_path / "photos"
    samples = []
    for label, name in (("cat", "chelsea"), ("coffee", "coffee"), ("rocket", "rocket")):
        (root / label).mkdir(parents=True)
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        w, h = image.size
        crop = image.crop((w // 10, h // 10, w - w // 10, h - h // 10)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        for i, im in enumerate((image, crop)):
            im.save(root / label / f"{name}-{i}.jpg", quality=90)
            samples.append(Sample(f"{label}/{name}-{i}.jpg", label, "test"))
    ds = ClassificationDataset("photos", root, samples)
    run = make_zero_shot(tmp_path / "ws", ds, embedding_model="offline-concepts", run_id="zs-real")
    assert run.record["config"]["logit_scale"] > 0
    clf = load_classifier(run)
    chelsea = Image.open(root / "cat" / "chelsea-0.jpg")
    probs = clf.predict_proba([chelsea])[0]
    assert clf.classes[int(probs.argmax())] == "cat" and probs.max() > 0.5
    assert abs(probs.sum() - 1.0) < 1e-9
    assert run.record["metrics"]["test"]["accuracy"] >= 5 / 6
    # what makes the run comparable: the split's fingerprint, speed by the one harness, cost
    metrics = run.record["metrics"]
    assert metrics["test"]["fingerprint"].startswith("sha256:") and metrics["speed"]["latency_ms"] > 0
    cost = metrics["cost"]  # the image network's (EfficientNet-Lite0 at 224 px) and the run's own file
    assert 4e6 < cost["parameters"] < 6e6 and cost["input_size"] == 224 and 0.3 < cost["gflops"] < 2
    assert cost["weights_bytes"] == (run.dir / "classifier.npz").stat().st_size
