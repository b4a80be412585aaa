"""``vitrine duplicates``, ``vitrine outliers`` and ``vitrine label-errors`` on a small real project
and dataset (the demo's photos, offline-concepts' packaged weights), run as a user runs them."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

import vitrine
from vitrine.collection.layout import init_project
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cli_helpers as cli  # noqa: E402


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch):
    monkeypatch.delenv("VITRINE_DATA_DIR", raising=False)
    monkeypatch.delenv("VITRINE_PROGRESS", raising=False)


def _ok(result):
    assert result.returncode == 0, cli.describe(result)
    return result


@pytest.fixture(scope="module")
def dup_project(tmp_path_factory, demo_source) -> Path:
    """The demo photos plus a half-size re-encoded copy of the cat (a near duplicate: the full-size
    original must be kept) and a byte-for-byte copy of the coffee (an exact duplicate), indexed."""
    project_dir = tmp_path_factory.mktemp("dups") / "demo"
    shutil.copytree(demo_source, project_dir)
    images = project_dir / "images"
    with Image.open(images / "animaux" / "chat.jpg") as im:
        small = im.convert("RGB").resize((im.width // 2, im.height // 2))
    (images / "copies").mkdir()
    small.save(images / "copies" / "chat-petit.jpg", quality=75)
    shutil.copy(images / "objets" / "café.jpg", images / "copies" / "café-copie.jpg")
    vitrine.open_project(project_dir).index(model=cli.OFFLINE)
    return project_dir


@pytest.mark.slow
def test_duplicates_and_outliers_on_a_real_project(dup_project):
    dups, outl, table = cli.run_many(
        ("duplicates", dup_project, "--json"),
        ("outliers", dup_project, "--k", "3", "--top", "5", "--json"),
        ("duplicates", dup_project),
    )
    result = json.loads(_ok(dups).stdout)
    assert result["model"] == cli.OFFLINE and result["space"] == "visual"
    groups = result["groups"]
    cat = next(g for g in groups if "copies/chat-petit.jpg" in [m["path"] for m in g["others"]] + [g["keep"]["path"]])
    assert cat["keep"]["path"] == "animaux/chat.jpg" and cat["keep_rule"] == "resolution"
    assert [m["path"] for m in cat["others"]] == ["copies/chat-petit.jpg"]
    assert result["threshold"] <= cat["others"][0]["similarity"] < 1.0
    # the exact copy is one content (same SHA-256): listed as such, never as a near-duplicate group
    assert {"path": "objets/café.jpg", "exact_duplicates": ["copies/café-copie.jpg"]} in result["exact"] or {
        "path": "copies/café-copie.jpg",
        "exact_duplicates": ["objets/café.jpg"],
    } in result["exact"]
    assert result["images"] == len(list((dup_project / "images").rglob("*.*"))) - 1
    o = json.loads(_ok(outl).stdout)
    assert o["k"] == 3 and len(o["outliers"]) == 5
    scores = [x["score"] for x in o["outliers"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert "chat-petit" not in " ".join(x["path"] for x in o["outliers"][:1])  # a near copy is not isolated
    text = _ok(table).stdout
    assert "animaux/chat.jpg" in text and "resolution" in text and "copies/chat-petit.jpg" in text


def test_bad_input_exits_2_with_a_precise_message(indexed_demo, tmp_path):
    unindexed = tmp_path / "neuf"
    init_project(unindexed, {"Chat": "a cat"})
    cases = {
        "threshold above 1": (("duplicates", indexed_demo, "--threshold", "1.5"), "threshold 1.5 is out of range"),
        "threshold 0": (("duplicates", indexed_demo, "--threshold", "0"), "is out of range"),
        "k 0": (("outliers", indexed_demo, "--k", "0"), "k = 0 is out of range"),
        "unknown model": (("duplicates", indexed_demo, "--model", "nada"), "unknown model 'nada'"),
        "other model": (("outliers", indexed_demo, "--model", "clip-vit-b-32"), "not 'clip-vit-b-32'"),
        "not indexed": (("duplicates", unindexed), "has not been indexed yet"),
        "no dataset": (("label-errors", "nulle", "-w", tmp_path), "no dataset 'nulle'"),
        "dataset k": (("label-errors", "nulle", "--k", "-1", "-w", tmp_path), "k = -1 is out of range"),
    }
    results = cli.run_many(*(args for args, _ in cases.values()))
    for (name, (_, message)), r in zip(cases.items(), results, strict=True):
        assert r.returncode == 2, f"{name}: {cli.describe(r)}"
        assert message in cli.flat(r.stderr), f"{name}: {cli.describe(r)}"
        assert "Traceback" not in r.stderr, name


@pytest.mark.slow
def test_label_errors_on_a_small_dataset(tmp_path, demo_source):
    """Four crops of the cat and four of the coffee cup, one cat crop labelled "coffee": with k=3
    its neighbours are the other cat crops, so it is listed with "cat" suggested."""
    ws = Workspace(tmp_path / "ws")
    root = tmp_path / "images"
    samples = []
    for label, photo in (("cat", "animaux/chat.jpg"), ("coffee", "objets/café.jpg")):
        with Image.open(demo_source / "images" / photo) as im:
            im = im.convert("RGB")
            w, h = im.size
            for n, (dx, dy) in enumerate(((0, 0), (w // 10, 0), (0, h // 10), (w // 10, h // 10), (w // 20, h // 20))):
                rel = f"{label}/{n}.jpg"
                (root / label).mkdir(parents=True, exist_ok=True)
                im.crop((dx, dy, dx + w * 8 // 10, dy + h * 8 // 10)).save(root / rel, quality=90)
                samples.append(Sample(rel, "coffee" if rel == "cat/4.jpg" else label, "train"))
    ClassificationDataset("mini", root, samples).save(ws.dataset_dir("mini"))
    r = _ok(cli.run("label-errors", "mini", "--k", "3", "-w", ws.root, "--json"))
    result = json.loads(r.stdout)
    assert result["images"] == 10 and result["k"] == 3 and result["model"] == cli.OFFLINE
    top = result["errors"][0]
    assert (top["path"], top["label"], top["suggested"], top["split"]) == ("cat/4.jpg", "coffee", "cat", "train")
    assert top["agreement"] == 1.0
    table = _ok(cli.run("label-errors", "mini", "--k", "3", "-w", ws.root)).stdout
    assert "cat/4.jpg" in table and "possible label error" in table
