"""Submissions scored on a split of a workspace dataset: classification CSVs and COCO results, the
precise errors for files that do not fit, and the dataset left as it was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrine.core.workspace import Workspace
from vitrine.data.board import image_token, read_board, set_hidden
from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.evaluate.submission import (
    SubmissionError,
    image_of,
    listing,
    load_target,
    score_submission,
)
from vitrine.runs import Run
from vitrine.runs.leaderboard import board
from vitrine.runs.summary import comparable

CLASSES = ["Cat", "Dog", "T-shirt top"]


def make_classification(ws: Workspace) -> ClassificationDataset:
    root = ws.root / "photos"
    samples = []
    for split, n in (("train", 2), ("test", 3)):
        for label in CLASSES:
            for i in range(n):
                rel = f"{split}/{label}/{i}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (i * 40, len(label) * 20, 0)).save(root / rel)
                samples.append(Sample(rel, label, split))
    ds = ClassificationDataset(name="shapes", root=root, samples=samples, classes=list(CLASSES))
    ds.save(ws.dataset_dir("shapes"))
    return ds


def make_detection(ws: Workspace) -> Path:
    folder = ws.dataset_dir("boxes")
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    for i in range(1, 5):
        Image.new("RGB", (64, 48)).save(folder / "images" / f"{i}.png")
        images.append(
            {"id": i, "file_name": f"{i}.png", "width": 64, "height": 48, "split": "test" if i > 2 else "train"}
        )
        annotations.append({"id": i, "image_id": i, "category_id": 1 + i % 2, "bbox": [8, 8, 20, 16], "area": 320,
                            "iscrowd": 0})  # fmt: skip
    doc = {"images": images, "annotations": annotations,
           "categories": [{"id": 1, "name": "ball"}, {"id": 2, "name": "box"}]}  # fmt: skip
    (folder / "annotations").mkdir()
    (folder / "annotations" / "instances.json").write_text(json.dumps(doc))
    return folder


def tree_digest(folder: Path, skip: tuple[str, ...] = ("board.json",)) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in skip:
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def ws(tmp_path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    make_classification(ws)
    make_detection(ws)
    return ws


def csv_of(target, pick) -> bytes:
    rows = ["image,class"] + [f"{key},{pick(sample)}" for key, sample in target.by_id.items()]
    return ("\n".join(rows) + "\n").encode()


def test_hiding_a_split_is_a_board_setting_and_ids_give_no_label_away(ws):
    assert read_board(ws, "shapes").hidden == () and read_board(ws, "boxes").task == "detect"
    board_ = set_hidden(ws, "shapes", "test")
    assert board_.hidden == ("test",) and read_board(ws, "shapes").is_hidden("test")
    target = load_target(ws, "shapes", "test")
    shown = listing(target)
    assert len(shown["images"]) == 9 and shown["hidden"] and shown["classes"] == CLASSES
    for row in shown["images"]:
        assert set(row) == {"id"} and row["id"].startswith("img-")
        assert not any(c.lower() in row["id"].lower() for c in ("cat", "dog", "shirt"))
    # the id is keyed by the dataset's secret: not the hash of a guessed path
    assert image_token(board_, "test/Cat/0.png") in target.by_id
    assert hashlib.sha256(b"test/Cat/0.png").hexdigest()[:20] not in json.dumps(shown)
    assert image_of(target, shown["images"][0]["id"]).is_file()
    with pytest.raises(Exception, match="no image"):
        image_of(target, "test/Cat/0.png")  # a path is not an id
    assert set_hidden(ws, "shapes", "test", hidden=False).hidden == ()
    with pytest.raises(Exception, match="cannot hide split 'train'"):
        set_hidden(ws, "shapes", "train")


def test_a_classification_submission_is_scored_like_a_run_and_ranked_on_its_board(ws):
    before = tree_digest(ws.dataset_dir("shapes")), tree_digest(ws.root / "photos")
    target = load_target(ws, "shapes", "test")
    wrong_dogs = csv_of(target, lambda s: "Cat" if s.label == "Dog" else s.label.lower())  # case does not matter
    run = score_submission(ws, "shapes", wrong_dogs, "team-a.csv")
    assert run.kind == "submission" and run.record["state"] == "done" and run.record["model"] == "team-a"
    test = run.record["metrics"]["test"]
    assert test["accuracy"] == pytest.approx(6 / 9)
    report = json.loads((run.dir / "metrics.json").read_text())
    dog = next(r for r in report["per_class"] if r["class"] == "Dog")
    assert dog["recall"] == 0.0 and report["confusion_matrix"][1] == [3, 0, 0]
    assert (run.dir / "submission.csv").read_bytes() == wrong_dogs
    # the split fingerprint is the one every run scored on this split records
    from vitrine.evaluate.comparable import split_record

    assert test["fingerprint"] == split_record(target.dataset, "test")["fingerprint"]
    perfect = score_submission(ws, "shapes", csv_of(target, lambda s: s.label), "team-b.csv", label="team b")
    rows = board([Run.load(ws, run.id), Run.load(ws, perfect.id)], "shapes")["groups"][0]["rows"]
    assert [(r["id"], r["primary"]) for r in rows] == [(perfect.id, 1.0), (run.id, pytest.approx(6 / 9))]
    assert comparable(perfect)["arch"] == "team b"
    assert (tree_digest(ws.dataset_dir("shapes")), tree_digest(ws.root / "photos")) == before


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: b"picture;guess\nx;Cat\n", "line 1: the header must name an image column and a class column"),
        (
            lambda t: csv_of(t, lambda s: s.label).replace(b"image,class\n", b"image,class\nimg-nope,Cat\n"),
            "line 2: image 'img-nope' is not an image of the test split",
        ),
        (
            lambda t: csv_of(t, lambda s: "Horse" if s.label == "Cat" else s.label),
            "class 'Horse' is not one of the dataset's classes",
        ),
        (
            lambda t: csv_of(t, lambda s: s.label) + csv_of(t, lambda s: s.label).splitlines(True)[1],
            "line 11: image 'img-",
        ),
        (
            lambda t: b"\n".join(csv_of(t, lambda s: s.label).splitlines()[:-2]) + b"\n",
            "2 of 9 images of the test split have no prediction",
        ),
        (lambda t: b"image,class\n\xff\xfe\x00,Cat\n", "not UTF-8"),
        (lambda t: b"  \n", "the CSV is empty"),
        (lambda t: b"image,class\ntest/Cat/0.png,Cat\n", "image 'test/Cat/0.png' is not an image of the test split"),
    ],  # fmt: skip
)
def test_classification_submission_errors_are_precise_and_record_nothing(ws, edit, message):
    target = load_target(ws, "shapes", "test")
    with pytest.raises(SubmissionError) as info:
        score_submission(ws, "shapes", edit(target), "bad.csv")
    assert message in info.value.message, info.value.message
    assert info.value.status == 422
    assert not list(ws.root.glob("runs/*/run.json"))  # nothing recorded


def test_the_owner_may_name_images_by_path(ws):
    rows = ["image,class"] + [f"{s.path},{s.label}" for s in load_target(ws, "shapes").by_id.values()]
    data = ("\n".join(rows) + "\n").encode()
    with pytest.raises(SubmissionError, match="is not an image of the test split"):
        score_submission(ws, "shapes", data, "paths.csv")
    run = score_submission(ws, "shapes", data, "paths.csv", allow_paths=True)
    assert run.record["metrics"]["test"]["accuracy"] == 1.0


def test_a_detection_submission_is_scored_by_pycocotools_through_the_same_evaluation(ws):
    before = tree_digest(ws.dataset_dir("boxes"))
    target = load_target(ws, "boxes", "test")
    shown = listing(target)
    assert [im["id"] for im in shown["images"]] == [3, 4] and shown["categories"][0] == {"id": 1, "name": "ball"}
    results = [
        {"image_id": 3, "category_id": 2, "bbox": [8, 8, 20, 16], "score": 0.9},  # image 3: a box (id 2), right
        {"image_id": 4, "category_name": "Ball", "bbox": [40, 30, 10, 10], "score": 0.8},  # image 4: wrong place
    ]
    run = score_submission(ws, "boxes", json.dumps(results).encode(), "yolo.json")
    test = run.record["metrics"]["test"]
    assert run.kind == "detection" and test["bbox_map50"] == pytest.approx(0.5)  # one class found, one missed
    assert (run.dir / "detection_metrics.json").is_file() and (run.dir / "per_class_bbox.csv").is_file()
    lines = b"\n".join(json.dumps(r).encode() for r in results)  # JSON Lines score the same
    again = score_submission(ws, "boxes", lines, "yolo.jsonl")
    assert again.record["metrics"]["test"]["bbox_map50"] == pytest.approx(0.5)
    assert test["fingerprint"] == again.record["metrics"]["test"]["fingerprint"]
    assert tree_digest(ws.dataset_dir("boxes")) == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'[{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},', "not valid JSON at line 1"),
        (
            b'{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}\n{"image_id": 3,,}\n',
            "line 2: not valid JSON",
        ),
        (
            b'[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]',
            "result [0]: image_id 1 is not an image of the test split",
        ),
        (
            b'[{"image_id": 3, "category_name": "dog", "bbox": [1, 2, 3, 4], "score": 0.5}]',
            "category name 'dog' does not map to a category of the dataset",
        ),
        (b'[{"image_id": 3, "category_id": 7, "bbox": [1, 2, 3, 4], "score": 0.5}]', "category_id 7 is not a category"),
        (b'[{"image_id": 3, "category_id": 1, "bbox": [1, 2, -3, 4], "score": 0.5}]', "bbox must be [x, y, width"),
        (b'[{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": "high"}]', "score must be a finite"),
        (
            b'[{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5, "segmentation": {"size": [2, 2],'
            b' "counts": "a"}}]',
            "segmentation size [2, 2] is not the image's [48, 64]",
        ),
        (b"[3]", "result [0]: a result is a JSON object, not int"),
    ],  # fmt: skip
)
def test_detection_submission_errors_are_precise(ws, data, message):
    with pytest.raises(SubmissionError) as info:
        score_submission(ws, "boxes", data, "bad.json")
    assert message in info.value.message, info.value.message


def test_polygon_masks_are_scored_as_masks(ws):
    # the dataset has boxes only: masks given are kept as masks but only boxes can be scored
    poly = [[8, 8, 28, 8, 28, 24, 8, 24]]
    results = [{"image_id": 3, "category_id": 2, "bbox": [8, 8, 20, 16], "score": 0.9, "segmentation": poly}]
    run = score_submission(ws, "boxes", json.dumps(results).encode(), "masks.json")
    assert run.record["metrics"]["test"]["bbox_map50"] == pytest.approx(0.5)
    assert np.isfinite(run.record["metrics"]["test"]["bbox_map50"])
