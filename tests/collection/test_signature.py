"""Pixel signatures on real photos: a copy (re-encoded, resized, cropped 5 %, brighter) correlates
highly with its original, another part of the same photo does not, and a flat image matches
nothing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from vitrine.collection.signature import SIDE, pixel_signature, signatures_of


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).convert("RGB")  # 512 x 512, packaged


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_copies_correlate_other_pictures_do_not(photo):
    s = pixel_signature(photo)
    assert s.shape == (SIDE * SIDE,) and s.dtype == np.float32
    assert np.linalg.norm(s) == pytest.approx(1.0, abs=1e-5)
    assert abs(float(s.mean())) < 1e-6
    w, h = photo.size
    copies = {
        "jpeg 60": jpeg(photo, 60),
        "half size": photo.resize((w // 2, h // 2), Image.Resampling.BICUBIC),
        "5 % cropped": photo.crop((12, 12, w - 13, h - 13)),
        "brighter": ImageEnhance.Brightness(photo).enhance(1.3),
    }
    for name, copy in copies.items():
        assert float(s @ pixel_signature(copy)) > 0.8, name
    others = {
        "mirrored": photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "a quarter of it": photo.crop((0, 0, w // 2, h // 2)),
    }
    for name, other in others.items():
        assert float(s @ pixel_signature(other)) < 0.6, name


def test_a_flat_image_matches_nothing(photo):
    flat = pixel_signature(Image.new("RGB", (64, 48), (120, 130, 140)))
    assert not flat.any()
    assert float(flat @ pixel_signature(photo)) == 0.0


def test_signatures_of_files_report_the_unreadable(tmp_path, photo):
    good = tmp_path / "a.jpg"
    photo.save(good, quality=90)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"not an image")
    sigs, failed = signatures_of([good, bad, tmp_path / "gone.jpg"])
    assert sigs.shape == (3, SIDE * SIDE)
    assert float(sigs[0] @ pixel_signature(photo)) > 0.99
    assert set(failed) == {1, 2} and not sigs[1].any() and not sigs[2].any()
    assert "b.jpg" in failed[1]
