from __future__ import annotations

import io
import random
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hostile_corpus as hc  # noqa: E402

from vitrine.collection.imageio import (  # noqa: E402
    SUPPORTED_SUFFIXES,
    image_info,
    make_thumbnail,
    max_file_bytes,
    max_pixels,
    open_image,
    open_image_bytes,
    open_image_with_info,
)
from vitrine.core.errors import ImageError, VitrineError  # noqa: E402

# reasons that open_image itself gives (the others come from the walk: symlinks, names)
DECODER_REASONS = {hc.TRUNCATED, hc.NOT_IMAGE, hc.EMPTY, hc.TOO_LARGE, hc.NOT_REGULAR}


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch):
    monkeypatch.delenv("VITRINE_MAX_PIXELS", raising=False)
    monkeypatch.delenv("VITRINE_MAX_FILE_BYTES", raising=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    images = root / "proj" / "images"
    hostile = hc.make_hostile_corpus(images, root / "outside")
    good = hc.make_good_corpus(images)
    return images, good, hostile


def test_supported_suffixes():
    assert SUPPORTED_SUFFIXES == {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}


def test_good_files_decode_to_rgb_with_the_right_size(corpus):
    images, good, _ = corpus
    for relpath in good:
        im = open_image(images / relpath)
        expected = hc.GOOD_EXPECTED[relpath]
        assert im.mode == "RGB", relpath
        assert im.size == expected["size"], relpath
        if "pixel" in expected:
            xy, colour = expected["pixel"]
            assert im.getpixel(xy) == colour, relpath
        im.load()
        np.asarray(im)  # usable after the file was closed


def test_exif_rotation(corpus):
    images, _, _ = corpus
    path = images / "good" / "rotated.jpg"
    with Image.open(path) as raw:
        assert raw.size == (40, 20)
    assert open_image(path).size == (20, 40)
    info = image_info(path)
    assert (info["width"], info["height"], info["orientation"]) == (20, 40, 6)


def test_sixteen_bit_is_scaled_not_clipped(corpus):
    images, _, _ = corpus
    path = images / "good" / "sixteen_bit.png"
    with Image.open(path) as raw:
        assert raw.mode == "I;16"
    arr = np.asarray(open_image(path))
    assert arr[:, 0].max() <= 2 and arr[:, -1].min() >= 253
    assert 100 < arr.mean() < 155


def test_animated_gif_and_multipage_tiff_give_the_first_frame(corpus):
    images, _, _ = corpus
    gif = open_image(images / "good" / "animated.gif")
    assert gif.getpixel((1, 1)) == (255, 0, 0)
    assert getattr(gif, "n_frames", 1) == 1  # a plain image, detached from the file
    assert open_image(images / "good" / "pages.tif").size == (60, 40)


def test_cmyk_colours_are_close_to_the_original(corpus):
    images, _, _ = corpus
    out = np.asarray(open_image(images / "good" / "cmyk.jpg"), dtype=np.int32)
    ref = np.asarray(hc.photo((80, 60)), dtype=np.int32)
    assert np.abs(out - ref).mean() < 20


def test_hostile_files_raise_image_error_with_the_reason(corpus):
    images, _, hostile = corpus
    checked = 0
    for relpath, reason in hostile.items():
        if reason not in DECODER_REASONS:
            continue
        with pytest.raises(ImageError) as info:
            open_image(images / relpath)
        err = info.value
        assert reason in err.reason, (relpath, err.reason)
        assert reason in err.message and Path(relpath).name in err.message
        assert err.path == str(images / relpath)
        assert err.status == 400 and err.code == "bad_image"
        checked += 1
    assert checked >= 10


def test_hostile_bytes_raise_image_error(corpus):
    images, _, hostile = corpus
    for relpath, reason in hostile.items():
        path = images / relpath
        if reason not in DECODER_REASONS or reason == hc.NOT_REGULAR:
            continue
        with pytest.raises(ImageError) as info:
            open_image_bytes(path.read_bytes(), name=path.name)
        assert reason in info.value.reason, (relpath, info.value.reason)


def test_truncated_jpeg_is_refused_even_though_pillow_could_show_part_of_it(corpus):
    images, _, _ = corpus
    with pytest.raises(ImageError, match="truncated"):
        open_image(images / "hostile" / "truncated.jpg")


def test_load_truncated_images_switched_on_elsewhere_is_detected(corpus, monkeypatch):
    images, _, _ = corpus
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageError, match="LOAD_TRUNCATED_IMAGES"):
        open_image(images / "hostile" / "truncated.jpg")


def test_bomb_message_and_no_warning_leaks(corpus):
    images, _, _ = corpus
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError) as info:
            open_image(images / "hostile" / "bomb_medium.png")
        with pytest.raises(ImageError):
            open_image(images / "hostile" / "bomb.png")
    assert "12000 x 12000 pixels exceeds the limit of 100000000" in info.value.reason
    assert "VITRINE_MAX_PIXELS" in info.value.reason
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert before is None or Image.MAX_IMAGE_PIXELS >= before  # never lowered


def test_pixel_limit_from_env_and_argument(corpus, monkeypatch):
    images, _, _ = corpus
    path = images / "good" / "UPPER.JPG"  # 64 x 48 = 3072 pixels
    assert max_pixels() == 100_000_000
    with pytest.raises(ImageError, match="64 x 48 pixels exceeds the limit of 3000"):
        open_image(path, max_pixels=3000)
    monkeypatch.setenv("VITRINE_MAX_PIXELS", "3_000")
    assert max_pixels() == 3000
    with pytest.raises(ImageError, match="too large"):
        open_image(path)
    assert open_image(path, max_pixels=4000).size == (64, 48)
    monkeypatch.setenv("VITRINE_MAX_PIXELS", "lots")
    with pytest.raises(VitrineError, match="VITRINE_MAX_PIXELS"):
        max_pixels()


def test_raised_limit_beyond_pillows_own_is_honoured(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(hc.forged_png(20000, 10000))  # 200M pixels: over twice Pillow's default
    with pytest.raises(ImageError, match="too large"):
        image_info(path)
    monkeypatch.setenv("VITRINE_MAX_PIXELS", "300000000")
    assert image_info(path)["width"] == 20000


def test_file_size_limit(corpus, monkeypatch):
    images, _, _ = corpus
    assert max_file_bytes() == 256 * 1024 * 1024
    monkeypatch.setenv("VITRINE_MAX_FILE_BYTES", "100")
    with pytest.raises(ImageError, match="file too large"):
        open_image(images / "good" / "UPPER.JPG")
    with pytest.raises(ImageError, match="file too large"):
        open_image_bytes(b"x" * 101)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        open_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        open_image(tmp_path)
    with pytest.raises(ImageError, match="empty file"):
        open_image_bytes(b"")


def test_image_info_is_header_only(corpus):
    images, _, _ = corpus
    info = image_info(images / "good" / "sixteen_bit.png")
    assert info == {"width": 256, "height": 32, "format": "PNG", "mode": "I;16", "orientation": 1}
    # a truncated file still has a readable header
    assert image_info(images / "hostile" / "truncated.jpg")["width"] == 256
    with pytest.raises(ImageError, match="not an image"):
        image_info(images / "hostile" / "text.png")


def test_a_decode_says_what_the_header_says(tmp_path, corpus):
    """open_image_with_info: the file's own size and format, as image_info reads them, from the one
    opening that decodes it, also when the decode is at reduced scale or the EXIF turns the image."""
    big = tmp_path / "big.jpg"
    hc.photo((1600, 1200)).save(big, quality=90)
    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    hc.photo((300, 200)).save(turned, exif=exif)
    images, _, _ = corpus
    for path, min_side in ((big, 256), (big, None), (turned, None), (images / "good" / "sixteen_bit.png", 16)):
        image, info = open_image_with_info(path, min_side=min_side)
        assert info == image_info(path), path.name
    image, info = open_image_with_info(big, min_side=256)
    assert image.size == (400, 300) and (info["width"], info["height"]) == (1600, 1200)  # DCT-scaled 1/4
    image, info = open_image_with_info(turned)
    assert image.size == (200, 300) and (info["width"], info["height"], info["orientation"]) == (200, 300, 6)
    with pytest.raises(ImageError, match="truncated"):
        open_image_with_info(images / "hostile" / "truncated.jpg")


def test_thumbnail():
    big = hc.photo((640, 480))
    data = make_thumbnail(big)
    assert data[:3] == b"\xff\xd8\xff"
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.size == (320, 240) and thumb.format == "JPEG"
    assert big.size == (640, 480)  # the input is not modified
    with Image.open(io.BytesIO(make_thumbnail(hc.photo((100, 50)), size=320))) as small:
        assert small.size == (100, 50)  # never enlarged
    rgba = Image.new("RGBA", (50, 400), (0, 0, 0, 0))
    with Image.open(io.BytesIO(make_thumbnail(rgba, size=64))) as t:
        assert t.size == (8, 64) and t.mode == "RGB"
        assert t.getpixel((4, 32))[0] > 240  # transparent -> white


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fuzzed_files_only_ever_raise_image_error(tmp_path):
    """Truncations and byte flips of every good format: a decoded RGB image or an ImageError."""
    rng = random.Random(1234)
    sources = []
    base = hc.photo((48, 32))
    for fmt, kw in [("JPEG", {}), ("PNG", {}), ("GIF", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {})]:
        buf = io.BytesIO()
        base.save(buf, fmt, **kw)
        sources.append(buf.getvalue())
    outcomes = {"ok": 0, "error": 0}
    for data in sources:
        for _ in range(40):
            mutated = bytearray(data)
            if rng.random() < 0.5:
                mutated = mutated[: rng.randrange(1, len(mutated))]
            else:
                for _ in range(rng.randrange(1, 8)):
                    i = rng.randrange(len(mutated))
                    mutated[i] = rng.randrange(256)
            try:
                im = open_image_bytes(bytes(mutated), max_pixels=1_000_000)
            except ImageError:
                outcomes["error"] += 1
            else:
                assert im.mode == "RGB"
                outcomes["ok"] += 1
    assert outcomes["error"] > 50


def test_decoding_from_many_threads_gives_the_same_results(corpus):
    images, good, hostile = corpus
    paths = [images / r for r in good] + [
        images / r for r, reason in hostile.items() if reason in DECODER_REASONS and reason != hc.NOT_REGULAR
    ]

    def outcome(path):
        try:
            im = open_image(path)
            return ("ok", im.size, int(np.asarray(im, dtype=np.int64).sum()))
        except ImageError as exc:
            return ("error", exc.reason)

    serial = [outcome(p) for p in paths]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            assert list(pool.map(outcome, paths)) == serial
