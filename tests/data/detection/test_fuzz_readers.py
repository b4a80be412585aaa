"""Damaged files never crash a reader: it returns (with problems) or raises a VitrineError.

Each round damages a valid file at random (seeded); set VITRINE_FUZZ_ROUNDS for a longer run."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vitrine.core.errors import VitrineError
from vitrine.data.detection.convert import read_any, write_any

ROUNDS = int(os.environ.get("VITRINE_FUZZ_ROUNDS", "60"))  # thousands find more; 60 keeps the suite fast


def _mutate(text: str, rng: np.random.Generator) -> str:
    chars = list(text)
    alphabet = list('0123456789-.,;:"{}[]<>/= \nabcxyz') + ["nan", "1e999", "&amp;", "\\u0000"]
    for _ in range(int(rng.integers(1, 6))):
        i = int(rng.integers(0, max(1, len(chars))))
        op = rng.integers(3)
        if op == 0 and chars:
            del chars[i : i + int(rng.integers(1, 8))]
        elif op == 1:
            chars.insert(i, str(rng.choice(alphabet)))
        elif chars:
            chars[min(i, len(chars) - 1)] = str(rng.choice(alphabet))
    return "".join(chars)


@pytest.mark.parametrize("fmt", ["coco", "cvat", "voc", "yolo"])
def test_mutated_files(tmp_path, handmade, fmt):
    target = {"coco": "a.json", "cvat": "a.xml", "voc": "voc", "yolo": "yolo"}[fmt]
    write_any(handmade, tmp_path / target, fmt, task="segment")
    if fmt == "voc":
        victim = tmp_path / "voc" / "Annotations" / "a.xml"
    elif fmt == "yolo":
        victim = tmp_path / "yolo" / "labels" / "train" / "a.txt"
    else:
        victim = tmp_path / target
    original = victim.read_text()
    rng = np.random.default_rng(len(fmt))
    outcomes = {"read": 0, "error": 0}
    for _ in range(ROUNDS):
        victim.write_text(_mutate(original, rng))
        try:
            ds = read_any(tmp_path / target, format=fmt, images_root=handmade.root)
        except VitrineError as exc:
            assert str(victim.name) in exc.message or "line" in exc.message, exc.message
            outcomes["error"] += 1
        else:
            for a in ds.annotations:  # whatever was kept is usable
                x, y, w, h = a.bbox
                im = next(i for i in ds.images if i.id == a.image_id)
                assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= im.width + 1e-6 and y + h <= im.height + 1e-6
            outcomes["read"] += 1
    assert outcomes["read"] > 0
