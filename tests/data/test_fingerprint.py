"""Split fingerprints: equal for the same images and labels in any order, different for any change
a score depends on."""

import dataclasses

from vitrine.data.dataset import ClassificationDataset, Sample
from vitrine.data.detection.model import Annotation, Category, DetectionDataset, ImageRecord
from vitrine.data.fingerprint import split_fingerprint


def _cls(tmp_path, samples):
    for s in samples:
        (tmp_path / s.path).write_bytes(b"x" * 10)
    return ClassificationDataset("d", tmp_path, list(samples))


def test_classification_fingerprint(tmp_path):
    samples = [Sample("a.png", "cat", "test"), Sample("b.png", "dog", "test"), Sample("c.png", "cat", "train")]
    fp = split_fingerprint(_cls(tmp_path, samples), "test")
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 16
    assert split_fingerprint(_cls(tmp_path, samples[::-1]), "test") == fp  # row order does not matter
    assert split_fingerprint(_cls(tmp_path, samples), "train") != fp
    relabelled = [Sample("a.png", "dog", "test"), *samples[1:]]
    assert split_fingerprint(_cls(tmp_path, relabelled), "test") != fp
    assert split_fingerprint(_cls(tmp_path, samples[1:]), "test") != fp  # an image left out
    moved = [*samples[:2], Sample("c.png", "cat", "test")]
    assert split_fingerprint(_cls(tmp_path, moved), "test") != fp  # an image added
    ds = _cls(tmp_path, samples)
    (tmp_path / "a.png").write_bytes(b"y" * 11)  # the file swapped under the same name
    assert split_fingerprint(ds, "test") != fp


def _det(tmp_path, boxes, split="val"):
    (tmp_path / "i.jpg").write_bytes(b"x" * 10)
    return DetectionDataset(
        images=[ImageRecord(1, "i.jpg", 64, 48, split), ImageRecord(2, "j.jpg", 64, 48, "train")],
        categories=[Category(1, "cat"), Category(2, "dog")],
        annotations=[Annotation(k + 1, 1, c, b) for k, (c, b) in enumerate(boxes)],
        root=tmp_path,
    )


def test_detection_fingerprint(tmp_path):
    boxes = [(1, (1.0, 2.0, 10.0, 10.0)), (2, (5.0, 5.0, 20.0, 20.0))]
    fp = split_fingerprint(_det(tmp_path, boxes), "val")
    assert split_fingerprint(_det(tmp_path, boxes[::-1]), "val") == fp  # annotation order does not matter
    assert split_fingerprint(_det(tmp_path, [(1, (1.001, 2.0, 10.0, 10.0)), boxes[1]]), "val") == fp  # < 0.01 px
    assert split_fingerprint(_det(tmp_path, [(1, (1.5, 2.0, 10.0, 10.0)), boxes[1]]), "val") != fp  # a moved box
    assert split_fingerprint(_det(tmp_path, [(2, boxes[0][1]), boxes[1]]), "val") != fp  # a relabelled box
    assert split_fingerprint(_det(tmp_path, boxes[:1]), "val") != fp  # a box removed
    assert split_fingerprint(_det(tmp_path, boxes), "train") != fp
    renamed = _det(tmp_path, boxes)
    renamed.categories[0] = dataclasses.replace(renamed.categories[0], id=1, name="kitten")
    assert split_fingerprint(renamed, "val") != fp


def test_fingerprint_of_the_samples_or_images_actually_scored(tmp_path):
    """A validation set held out of the train split is fingerprinted by its own rows; "all" covers
    every sample; the same images named explicitly give the split's own fingerprint."""
    from vitrine.data.fingerprint import classification_fingerprint, detection_fingerprint

    samples = [Sample("a.png", "cat", "test"), Sample("b.png", "dog", "train"), Sample("c.png", "cat", "train")]
    ds = _cls(tmp_path, samples)
    assert classification_fingerprint(ds, "test", [samples[0]]) == split_fingerprint(ds, "test")
    held_out = classification_fingerprint(ds, "val", samples[1:2])
    assert held_out != classification_fingerprint(ds, "val", samples[2:]) != split_fingerprint(ds, "val")
    assert classification_fingerprint(ds, "all") == classification_fingerprint(ds, "all", samples[::-1])
    assert classification_fingerprint(ds, "all") != split_fingerprint(ds, "test")

    det = _det(tmp_path, [(1, (1.0, 2.0, 10.0, 10.0))])
    assert detection_fingerprint(det, "val", image_ids=[1]) == split_fingerprint(det, "val")
    assert detection_fingerprint(det, "val", image_ids=[2]) != split_fingerprint(det, "val")  # a train image
    assert detection_fingerprint(det, "val", image_ids=[]) != detection_fingerprint(det, "val", image_ids=[2])
