from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hostile_corpus as hc  # noqa: E402

from vitrine.collection.imageio import open_image  # noqa: E402
from vitrine.collection.walk import FoundFile, SkippedFile, walk_images  # noqa: E402
from vitrine.core.errors import ImageError, LayoutError  # noqa: E402

WALK_REASONS = {hc.OUTSIDE, hc.BROKEN, hc.LOOP, hc.EMPTY, hc.NOT_REGULAR, hc.BAD_NAME}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("walk")
    images = root / "proj" / "images"
    hostile = hc.make_hostile_corpus(images, root / "outside")
    good = hc.make_good_corpus(images)
    return root, images, good, hostile


def test_good_and_hostile_corpus(corpus):
    root, images, good, hostile = corpus
    found, skipped = walk_images(images)
    found_by = {f.relpath: f for f in found}
    skipped_by = {s.relpath: s.reason for s in skipped}
    for relpath in good:
        assert relpath in found_by, relpath
    assert found_by["loose.png"].folder == ""
    assert found_by["good/église été.jpg"].folder == "good"
    assert found_by["good/UPPER.JPG"].path == images / "good" / "UPPER.JPG"
    f = found_by["good/plain.bmp"]
    st = (images / "good" / "plain.bmp").stat()
    assert (f.size, f.mtime_ns) == (st.st_size, st.st_mtime_ns)

    for relpath, reason in hostile.items():
        if reason in WALK_REASONS:
            assert relpath in skipped_by, relpath
            assert reason in skipped_by[relpath], (relpath, skipped_by[relpath])
            assert relpath not in found_by
        else:  # the decoder's job
            assert relpath in found_by, relpath
            with pytest.raises(ImageError) as info:
                open_image(found_by[relpath].path)
            assert reason in info.value.reason
    # nothing from outside the project, and nothing beyond what is expected
    assert all(f.path.resolve().is_relative_to(images.resolve()) for f in found)
    assert set(skipped_by) == {r for r, reason in hostile.items() if reason in WALK_REASONS}
    assert set(found_by) == set(good) | {r for r, reason in hostile.items() if reason not in WALK_REASONS}


def test_outside_target_is_named(corpus):
    root, images, _, _ = corpus
    _, skipped = walk_images(images)
    reason = {s.relpath: s.reason for s in skipped}["hostile/outside_link.jpg"]
    assert str((root / "outside" / "outside.jpg").resolve()) in reason


def test_symlinks_inside_are_followed_once(tmp_path):
    images = tmp_path / "images"
    (images / "nef").mkdir(parents=True)
    (images / "nef" / "a.jpg").write_bytes(b"jpeg")
    (images / "nef" / "sub").mkdir()
    (images / "nef" / "sub" / "b.png").write_bytes(b"png")
    os.symlink(images / "nef" / "a.jpg", images / "link.jpg")
    os.symlink("nef", images / "alias")
    os.symlink("nef", images / "alias2")
    os.symlink("..", images / "nef" / "sub" / "up")  # loop back to an ancestor
    found, skipped = walk_images(images)
    assert [f.relpath for f in found] == [
        "alias/a.jpg",
        "alias/sub/b.png",
        "link.jpg",
        "nef/a.jpg",
        "nef/sub/b.png",
    ]
    assert {f.relpath: f.folder for f in found}["alias/sub/b.png"] == "alias"
    reasons = {s.relpath: s.reason for s in skipped}
    assert "already walked" in reasons["alias2"]
    assert "symlink loop" in reasons["alias/sub/up"] and "symlink loop" in reasons["nef/sub/up"]


def test_hidden_and_other_files_are_ignored_silently(tmp_path):
    images = tmp_path / "images"
    (images / "nef" / ".thumbs").mkdir(parents=True)
    (images / "nef" / ".thumbs" / "x.jpg").write_bytes(b"x")
    (images / "nef" / ".hidden.jpg").write_bytes(b"x")
    (images / "nef" / "notes.txt").write_bytes(b"x")
    (images / "nef" / "Thumbs.db").write_bytes(b"x")
    (images / "nef" / "jpg").write_bytes(b"x")  # no suffix at all
    (images / "nef" / "scan.TIFF").write_bytes(b"x")
    (images / "nef" / "photo.Jpeg").write_bytes(b"x")
    os.symlink("nowhere.txt", images / "nef" / "dangling.txt")
    found, skipped = walk_images(images)
    assert [f.relpath for f in found] == ["nef/photo.Jpeg", "nef/scan.TIFF"]
    assert skipped == []


def test_permission_error_is_reported_not_raised(tmp_path, monkeypatch):
    images = tmp_path / "images"
    (images / "locked").mkdir(parents=True)
    (images / "open").mkdir()
    (images / "open" / "a.jpg").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found, skipped = walk_images(images)
    assert [f.relpath for f in found] == ["open/a.jpg"]
    assert skipped == [SkippedFile("locked", "permission denied: cannot list this folder")]


def test_missing_images_dir_raises_layout_error(tmp_path):
    with pytest.raises(LayoutError):
        walk_images(tmp_path / "images")


def test_order_is_deterministic_whatever_the_creation_order(tmp_path):
    names = ["b/2.jpg", "a b.jpg", "a/1.jpg", "A/0.jpg", "é/3.jpg", "b/10.jpg", "z.png"]
    results = []
    for attempt, order in enumerate([names, list(reversed(names))]):
        images = tmp_path / str(attempt) / "images"
        for name in order:
            (images / name).parent.mkdir(parents=True, exist_ok=True)
            (images / name).write_bytes(b"x")
        found, _ = walk_images(images)
        results.append([f.relpath for f in found])
        assert results[-1] == sorted(results[-1])
        assert walk_images(images)[0] == found
    assert results[0] == results[1]
    assert all(isinstance(f, FoundFile) for f in walk_images(tmp_path / "0" / "images")[0])


def test_many_files_are_walked_quickly(tmp_path):
    images = tmp_path / "images"
    count = 0
    for d in range(20):
        folder = images / f"folder{d:02d}" / "sub"
        folder.mkdir(parents=True)
        for i in range(250):
            (folder / f"img{i:04d}.jpg").write_bytes(b"x")
            count += 1
    start = time.perf_counter()
    found, skipped = walk_images(images)
    elapsed = time.perf_counter() - start
    assert len(found) == count and skipped == []
    assert elapsed < 1.5, elapsed  # ~0.05 s on a laptop; 100k files take about a second
