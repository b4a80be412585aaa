"""Memory bounded by construction: extreme aspect ratios through every model's preprocessing,
reduced-scale decoding, and the pixel budget shared by concurrent decodes (issue 10, 18 and 20)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from PIL import Image

from vitrine.collection import imageio
from vitrine.collection.imageio import open_image, open_image_bytes
from vitrine.embed.pipeline import EmbedItem, decode_item
from vitrine.models.preprocess import MAX_ASPECT, limit_aspect

# Each model's real preprocessing, applied to thin images in a fresh process whose peak RSS is
# measured. Without the aspect bound, a 1 x 4000 image became 256 x 1,024,000 pixels (~790 MB)
# in the offline model's resize, and 224 x 896,000 in CLIP's.
_PEAK_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import open_clip, timm, torch
    from PIL import Image
    from vitrine.models.clip import OpenClipEmbedder
    from vitrine.models.offline_concepts import OfflineConceptsEmbedder
    from vitrine.train.classification.augment import eval_transform, train_transform

    offline = OfflineConceptsEmbedder.__new__(OfflineConceptsEmbedder)
    config = timm.data.resolve_data_config({}, model=timm.create_model("efficientnet_lite0"))
    offline.transform = timm.data.create_transform(**config)
    clip = OpenClipEmbedder.__new__(OpenClipEmbedder)
    clip._preprocess = open_clip.image_transform(224, is_train=False)
    norm = {"mean": config["mean"], "std": config["std"]}
    steps = [offline.preprocess, clip.preprocess, eval_transform(224, norm), train_transform(224, norm, "light")]
    small = Image.new("RGB", (64, 48), (90, 120, 30))
    for step in steps:
        step(small)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for size in [(1, 4000), (4000, 1), (2, 3999)]:
        im = Image.new("RGB", size, (200, 40, 40))
        for step in steps:
            out = step(im)
            assert tuple(out.shape) in ((3, 224, 224),), (size, tuple(out.shape))
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
    """
)


@pytest.mark.slow  # a fresh process importing torch, timm and open_clip
def test_thin_images_cost_no_memory_in_any_model_preprocessing():
    r = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    grown_mb = int(r.stdout.split()[-1])
    assert grown_mb < 100, f"peak RSS grew by {grown_mb} MB on 1 x 4000 images"


def test_limit_aspect_keeps_the_centre_that_the_crop_would_keep():
    arr = np.arange(7 * 100, dtype=np.uint8).reshape(7, 100)
    im = Image.fromarray(arr)
    out = limit_aspect(im)
    assert out.size == (round(7 * MAX_ASPECT), 7)
    left = (100 - out.width) // 2
    assert np.array_equal(np.asarray(out), arr[:, left : left + out.width])
    assert limit_aspect(im.transpose(Image.Transpose.TRANSPOSE)).size == (7, round(7 * MAX_ASPECT))
    square = Image.new("RGB", (50, 40))
    assert limit_aspect(square) is square
    assert limit_aspect(Image.new("RGB", (1, 65000))).size == (1, 3)


def _png(size, mode="RGB") -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(arr).convert(mode) if mode != "RGB" else Image.fromarray(arr)
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("PNG", "RGB"), ("PNG", "P"), ("PNG", "L"), ("PNG", "1")])
def test_decode_at_reduced_scale(fmt, mode):
    im = Image.fromarray(np.random.default_rng(1).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt)
    out = open_image_bytes(buf.getvalue(), min_side=300)
    assert out.mode == "RGB"
    assert min(out.size) >= 300 and max(out.size) <= 1000, out.size  # reduced, never below min_side
    assert abs(out.width / out.height - 2000 / 1500) < 0.02
    assert open_image_bytes(buf.getvalue()).size == (2000, 1500)  # full size when not asked


def test_sixteen_bit_png_reduces_too(tmp_path):
    arr = (np.arange(1200 * 900, dtype=np.uint32).reshape(900, 1200) % 65536).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    out = open_image(path, min_side=200)
    assert out.mode == "RGB" and min(out.size) >= 200 and max(out.size) < 1200


def test_indexing_records_the_file_size_not_the_reduced_one(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_png((1800, 1200)))
    item = EmbedItem(1, path, "big.png")
    _, prepared, info, error = decode_item(lambda im: im.size, item, min_side=256)
    assert error is None
    assert info == {"width": 1800, "height": 1200, "format": "PNG"}
    assert min(prepared) >= 256 and prepared[0] < 1800


def test_concurrent_decodes_share_one_pixel_budget(monkeypatch):
    monkeypatch.setenv("VITRINE_DECODE_BUDGET_PIXELS", "5000000")
    data = _png((2000, 1500))  # 3 M pixels: at most one at a time fits the budget
    small = _png((100, 100))
    imageio._BUDGET.peak = 0
    errors: list[BaseException] = []

    def work(payload):
        try:
            for _ in range(2):
                open_image_bytes(payload)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(data if i % 2 else small,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert 3_000_000 <= imageio._BUDGET.peak <= 5_000_000
    assert imageio._BUDGET.in_use == 0


def test_an_image_larger_than_the_budget_still_decodes(monkeypatch):
    monkeypatch.setenv("VITRINE_DECODE_BUDGET_PIXELS", "1000")
    assert open_image_bytes(_png((300, 200))).size == (300, 200)
    assert imageio._BUDGET.in_use == 0


# Eight uploads of a big legal PNG at once, as the search-by-image route decodes them (reduced
# scale, in threads), in a fresh process: peak and retained RSS. Without the pixel budget all
# eight full-size decodes (108 MB each) ran at once, and glibc kept what each thread freed.
_CONCURRENT_SCRIPT = textwrap.dedent(
    """
    import resource, sys, threading
    import psutil
    from vitrine.collection.imageio import open_image_bytes
    from vitrine.models.preprocess import DECODE_MIN_SIDE

    data = open(sys.argv[1], "rb").read()
    rss = lambda: psutil.Process().memory_info().rss // 2**20
    base_peak, base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, rss()
    out = []
    decode = lambda: out.append(open_image_bytes(data, min_side=DECODE_MIN_SIDE).size)
    threads = [threading.Thread(target=decode) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(out) == 8 and all(min(s) >= DECODE_MIN_SIDE for s in out), out
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(peak - max(base_peak, base), rss() - base)
    """
)


@pytest.mark.slow  # eight 36 M-pixel decodes
def test_concurrent_big_decodes_stay_bounded_and_memory_is_returned(tmp_path):
    ramp = np.linspace(0, 255, 6000, dtype=np.float32).astype(np.uint8)
    path = tmp_path / "big.png"
    big = Image.fromarray(np.broadcast_to(ramp[None, :], (6000, 6000)).copy(), "L").convert("RGB")
    big.save(path, compress_level=1)
    env = {**os.environ, "VITRINE_DECODE_BUDGET_PIXELS": "40000000"}
    cmd = [sys.executable, "-c", _CONCURRENT_SCRIPT, str(path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    peak_mb, kept_mb = (int(x) for x in r.stdout.split()[-2:])
    assert peak_mb < 400, f"peak RSS grew by {peak_mb} MB decoding eight 6000 x 6000 PNGs"
    assert kept_mb < 150, f"{kept_mb} MB kept after the decodes"
