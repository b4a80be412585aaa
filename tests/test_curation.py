"""The Python API of near duplicates, outliers and label errors on a real project and dataset:
what the catalog adds to the computations (exact copies, the keep rule's facts, the model's image
space) and what a dataset adds (labels, splits, its embedding cache)."""

from __future__ import annotations

import os
import shutil

import pytest
from PIL import Image
from sqlalchemy import delete

import vitrine
from vitrine.core.workspace import Workspace
from vitrine.curation import dataset_duplicates, dataset_label_errors, dataset_outliers
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.search.neighbours import BadParameter
from vitrine.store.catalog import meta


@pytest.fixture
def project(tmp_path, indexed_demo):
    project_dir = tmp_path / indexed_demo.name
    shutil.copytree(indexed_demo, project_dir)
    p = vitrine.open_project(project_dir)
    yield p
    p.close()


def test_exact_copies_and_the_oldest_file(project):
    """A byte-for-byte copy is one content: listed under ``exact``, never a near-duplicate group;
    the path shown for a content is its oldest file."""
    images = project.paths.images_dir
    shutil.copy(images / "objets" / "café.jpg", images / "copie.jpg")
    os.utime(images / "copie.jpg", ns=(1, 1))  # older than the original
    project.index()
    result = project.duplicates(threshold=0.999)
    assert result["groups"] == []
    assert {"path": "copie.jpg", "exact_duplicates": ["objets/café.jpg"]} in result["exact"]


def test_a_project_indexed_before_the_space_was_recorded(project):
    """Without the recorded image space, the model says which it is (loaded once)."""
    model = project.model_name
    with project.catalog.engine.begin() as conn:
        conn.execute(delete(meta).where(meta.c.key == f"image_space:{model}"))
    assert project.catalog.get_meta(f"image_space:{model}") is None
    assert project.outliers(k=3, top=2)["space"] == "visual"
    with pytest.raises(BadParameter, match="k = 1001"):
        project.outliers(k=1001)


def test_the_pixel_check_separates_a_copy_from_another_photo_of_the_same_thing(project, monkeypatch):
    """A resized, re-encoded copy of the cat and a mirror image of it (another picture: its
    layout differs) are both close to the cat in the model's space; with the pixel check only the
    copy joins the cat's group, and asking again decodes nothing (the signatures are kept)."""
    images = project.paths.images_dir
    with Image.open(images / "animaux" / "chat.jpg") as im:
        im = im.convert("RGB")
        im.resize((im.width * 2 // 3, im.height * 2 // 3)).save(images / "chat-copie.jpg", quality=70)
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(images / "chat-miroir.jpg", quality=90)
    project.index()

    def cat_group(result):
        g = next(g for g in result["groups"] if g["keep"]["path"] == "animaux/chat.jpg")
        return {m["path"]: m for m in g["others"]}

    loose = cat_group(project.duplicates(threshold=0.5, pixels=False))
    assert {"chat-copie.jpg", "chat-miroir.jpg"} <= set(loose)
    assert loose["chat-copie.jpg"]["pixel_similarity"] is None
    result = project.duplicates(threshold=0.5)
    checked = cat_group(result)
    assert "chat-copie.jpg" in checked and "chat-miroir.jpg" not in checked
    assert checked["chat-copie.jpg"]["pixel_similarity"] > 0.9
    check = result["pixel_check"]
    assert check["pixel_threshold"] == 0.6 and check["rejected_pairs"] >= 1 and check["images_checked"] >= 3
    assert result["unreadable"] == []
    decoded = []
    import vitrine.project as project_module

    real = project_module.signatures_of
    monkeypatch.setattr(project_module, "signatures_of", lambda paths: (decoded.extend(paths), real(paths))[1])
    assert project.duplicates(threshold=0.5)["groups"] == result["groups"]
    assert decoded == []
    with pytest.raises(BadParameter, match="pixel threshold 2"):
        project.duplicates(pixel_threshold=2)


@pytest.mark.slow
def test_dataset_duplicates_outliers_and_label_errors(tmp_path, demo_source):
    """Two crops of the cat, one labelled "dog": a near-duplicate group whose labels differ; the
    label-errors list uses the embedding cache the linear probe uses."""
    ws = Workspace(tmp_path / "ws")
    root = tmp_path / "imgs"
    samples = []
    for label, photo in (("cat", "animaux/chat.jpg"), ("coffee", "objets/café.jpg"), ("moon", "espace/lune.png")):
        with Image.open(demo_source / "images" / photo) as im:
            im = im.convert("RGB")
            (root / label).mkdir(parents=True)
            im.save(root / label / "a.jpg", quality=92)
            im.resize((im.width * 3 // 4, im.height * 3 // 4)).save(root / label / "b.jpg", quality=80)
            samples += [Sample(f"{label}/a.jpg", label, "train"), Sample(f"{label}/b.jpg", label, "val")]
    samples[1] = Sample("cat/b.jpg", "dog", "val")
    ds = ClassificationDataset("mini", root, samples)
    ds.save(ws.dataset_dir("mini"))
    dups = dataset_duplicates(ws, ds, threshold=0.8)
    cat = next(g for g in dups["groups"] if g["keep"]["path"] == "cat/a.jpg")
    assert cat["keep_rule"] == "resolution" and [m["path"] for m in cat["others"]] == ["cat/b.jpg"]
    assert cat["labels_differ"] and cat["labels"] == ["cat", "dog"]
    assert (ws.dataset_dir("mini") / "embeddings" / "offline-concepts-visual.npz").is_file()
    errors = dataset_label_errors(ws, ds, k=1)
    assert [(e["path"], e["suggested"]) for e in errors["errors"]] == [("cat/a.jpg", "dog"), ("cat/b.jpg", "cat")]
    out = dataset_outliers(ws, ds, k=1, top=2)
    assert len(out["outliers"]) == 2 and out["images"] == 6
