"""Importing classification datasets: ImageFolder, CSV, collections; writers; Fashion-MNIST."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrine.core.errors import NotFound, VitrineError
from vitrine.data import (
    ClassificationDataset,
    Sample,
    from_collection,
    from_csv,
    from_imagefolder,
    import_dataset,
    load_dataset,
    to_csv,
    to_imagefolder,
)
from vitrine.data.fashion_mnist import (
    DEFAULT_SOURCE,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FOLDERS,
    export_fashion_mnist,
    png_gray,
    read_idx,
)
from vitrine.data.importers import safe_folder_name


def img(path: Path, size=(8, 6), fmt=None) -> Path:
    """A small image whose pixels depend on its path (so no two test images are identical)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = int(hashlib.sha1(str(path).encode()).hexdigest()[:8], 16)
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, fmt)
    return path


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return path


def triples(ds: ClassificationDataset) -> set[tuple[str, str, str]]:
    return {(s.path, s.label, s.split) for s in ds.samples}


# --- ImageFolder --------------------------------------------------------------------------------


def test_imagefolder_without_split(tmp_path):
    root = tmp_path / "flowers"
    img(root / "daisy" / "a.png")
    img(root / "daisy" / "nested" / "b.jpg", fmt="JPEG")
    img(root / "rose" / "c.png")
    img(root / "loose.png")  # not in a class folder
    img(root / ".hidden" / "x.png")  # hidden: ignored
    (root / "rose" / "notes.txt").write_text("not an image")  # not an image suffix: ignored
    (root / "rose" / "empty.png").write_bytes(b"")
    corrupt(root / "rose" / "bad.png")

    ds = from_imagefolder(root, "flowers")
    assert triples(ds) == {
        ("daisy/a.png", "daisy", ""),
        ("daisy/nested/b.jpg", "daisy", ""),
        ("rose/c.png", "rose", ""),
    }
    assert ds.classes == ["daisy", "rose"]
    assert ds.root == root.resolve() or ds.root == Path(os.path.abspath(root))
    problems = {p.source: p for p in ds.problems}
    assert set(problems) == {"loose.png", "rose/bad.png", "rose/empty.png"}
    assert all(p.row == 0 for p in ds.problems)
    assert "class folder" in problems["loose.png"].message
    assert "empty" in problems["rose/empty.png"].message
    assert "corrupt" in problems["rose/bad.png"].message or "truncated" in problems["rose/bad.png"].message
    assert ds.source["kind"] == "imagefolder" and ds.source["split_dirs"] is False


def test_imagefolder_keeps_split_folders(tmp_path):
    root = tmp_path / "ds"
    img(root / "train" / "cat" / "1.png")
    img(root / "train" / "dog" / "2.png")
    img(root / "valid" / "cat" / "3.png")
    img(root / "test" / "dog" / "4.png")
    img(root / "train" / "5.png")  # a file in a split folder: no class

    ds = from_imagefolder(root, "pets")
    assert triples(ds) == {
        ("train/cat/1.png", "cat", "train"),
        ("train/dog/2.png", "dog", "train"),
        ("valid/cat/3.png", "cat", "val"),
        ("test/dog/4.png", "dog", "test"),
    }
    assert [p.source for p in ds.problems] == ["train/5.png"]

    plain = from_imagefolder(root, "pets", split_dirs=False)  # split folders read as classes
    assert set(plain.classes) == {"train", "valid", "test"}
    assert {s.split for s in plain.samples} == {""}


def test_imagefolder_errors(tmp_path):
    with pytest.raises(NotFound):
        from_imagefolder(tmp_path / "nope", "x")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(VitrineError, match="no usable image"):
        from_imagefolder(tmp_path / "empty", "x")
    with pytest.raises(VitrineError, match="invalid dataset name"):
        from_imagefolder(tmp_path / "empty", "../evil")


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_bad_rows_are_reported_with_their_line(tmp_path):
    base = tmp_path / "shop"
    img(base / "img" / "good1.png")
    img(base / "img" / "good2.png")
    img(base / "img" / "good3.png")
    img(base / "img" / "nolabel.png")
    corrupt(base / "img" / "broken.png")
    img(base / "img" / "badsplit.png")
    img(tmp_path / "outside.png")  # exists, but outside the root
    lines = [
        "file,category,part,note",  # 1
        "img/good1.png,Curtains,train,",  # 2
        "img/missing.png,Curtains,train,",  # 3
        "img/nolabel.png,  ,train,",  # 4
        "img/broken.png,Rugs,test,",  # 5
        "../outside.png,Rugs,train,",  # 6
        "/etc/passwd,Rugs,train,",  # 7
        "img/badsplit.png,Rugs,holdout,",  # 8
        "",  # 9 (blank: ignored)
        'img/good2.png,Rugs,Valid,"two',  # 10
        'lines"',  # 11
        "img/good3.png,Curtains,,",  # 12
        "img/good1.png,Rugs,train,",  # 13: same image again
        "img/short.png",  # 14: too few fields
    ]
    (base / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    ds = from_csv(base / "labels.csv", "shop", image_column="file", label_column="category", split_column="part")
    assert triples(ds) == {
        ("img/good1.png", "Curtains", "train"),
        ("img/good2.png", "Rugs", "val"),
        ("img/good3.png", "Curtains", ""),
    }
    assert ds.root == Path(os.path.abspath(base))
    rows = {p.row: p for p in ds.problems}
    assert sorted(rows) == [3, 4, 5, 6, 7, 8, 13, 14]
    assert all(p.source == "labels.csv" for p in ds.problems)
    assert "file not found" in rows[3].message and "img/missing.png" in rows[3].message
    assert "empty label" in rows[4].message
    assert "corrupt" in rows[5].message or "truncated" in rows[5].message
    assert "leaves the image root" in rows[6].message
    assert "absolute path" in rows[7].message
    assert "invalid split value 'holdout'" in rows[8].message
    assert "same image as row 2" in rows[13].message
    assert "fields" in rows[14].message
    assert str(rows[3]) == f"labels.csv:3: {rows[3].message}"


def test_csv_category_depth(tmp_path):
    for n in "abcd":
        img(tmp_path / f"{n}.png")
    (tmp_path / "cat.csv").write_text(
        "image,category\n"
        'a.png,"Home Furnishing >> Curtains >> Door"\n'
        "b.png,Home Furnishing>>Curtains\n"
        "c.png, Home Furnishing  >>  Rugs >> Round \n"
        "d.png,Kitchen\n",
        encoding="utf-8",
    )
    kw = dict(image_column="image", label_column="category")
    two = from_csv(tmp_path / "cat.csv", "c", label_depth=2, **kw)
    assert {s.path: s.label for s in two.samples} == {
        "a.png": "Home Furnishing >> Curtains",
        "b.png": "Home Furnishing >> Curtains",
        "c.png": "Home Furnishing >> Rugs",
        "d.png": "Kitchen",
    }
    one = from_csv(tmp_path / "cat.csv", "c", label_depth=1, **kw)
    assert one.classes == ["Home Furnishing", "Kitchen"]
    full = from_csv(tmp_path / "cat.csv", "c", **kw)  # no depth: labels as written
    assert {s.label for s in full.samples} >= {"Home Furnishing >> Curtains >> Door", "Home Furnishing>>Curtains"}
    slash = tmp_path / "slash.csv"
    slash.write_text("image,category\na.png,Home/Curtains/Door\n", encoding="utf-8")
    assert from_csv(slash, "c", label_depth=2, separator="/", **kw).samples[0].label == "Home / Curtains"


def test_csv_unknown_column_lists_the_columns(tmp_path):
    img(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("Path,Label\na.png,x\n", encoding="utf-8")
    with pytest.raises(VitrineError) as info:
        from_csv(tmp_path / "l.csv", "d", image_column="path", label_column="Label")
    assert "no column 'path'" in info.value.message
    assert "'Path'" in info.value.message and "'Label'" in info.value.message
    assert "did you mean 'Path'" in info.value.hint
    with pytest.raises(NotFound):
        from_csv(tmp_path / "missing.csv", "d", image_column="Path", label_column="Label")


def test_csv_semicolons_bom_and_root(tmp_path):
    images = tmp_path / "pics"
    img(images / "x" / "1.png")
    img(images / "x" / "2.png")
    csv_file = tmp_path / "meta" / "list.csv"
    csv_file.parent.mkdir()
    csv_file.write_text("\ufeffname;label\nx/1.png;one\nx\\2.png;two\n", encoding="utf-8")
    ds = from_csv(csv_file, "d", image_column="name", label_column="label", root=images)
    assert triples(ds) == {("x/1.png", "one", ""), ("x/2.png", "two", "")}
    assert ds.source["delimiter"] == ";"


def test_csv_absolute_paths_inside_the_root_are_accepted(tmp_path):
    a = img(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text(f"p,l\n{a},x\n", encoding="utf-8")
    ds = from_csv(tmp_path / "l.csv", "d", image_column="p", label_column="l")
    assert [s.path for s in ds.samples] == ["a.png"]


def test_csv_all_rows_bad_is_an_error(tmp_path):
    (tmp_path / "l.csv").write_text("p,l\nmissing.png,x\n", encoding="utf-8")
    with pytest.raises(VitrineError, match=r"l\.csv:2: missing\.png: file not found"):
        from_csv(tmp_path / "l.csv", "d", image_column="p", label_column="l")


# --- collection ---------------------------------------------------------------------------------


def test_collection_subfolders_are_labels(tmp_path):
    project = tmp_path / "archive"
    img(project / "images" / "churches" / "a.png")
    img(project / "images" / "churches" / "romanesque" / "b.png")
    img(project / "images" / "bridges" / "c.jpg", fmt="JPEG")
    img(project / "images" / "top.png")
    ds = from_collection(project, "archive")
    assert ds.root == project / "images"
    assert triples(ds) == {
        ("churches/a.png", "churches", ""),
        ("churches/romanesque/b.png", "churches", ""),
        ("bridges/c.jpg", "bridges", ""),
    }
    assert [(p.source, p.row) for p in ds.problems] == [("top.png", 0)]
    deep = from_collection(project, "archive", depth=2)
    assert triples(deep) == {("churches/romanesque/b.png", "churches/romanesque", "")}
    assert {p.source for p in deep.problems} == {"top.png", "churches/a.png", "bridges/c.jpg"}


# --- writers and round trips --------------------------------------------------------------------


def _split_tree(root: Path) -> ClassificationDataset:
    for split in ("train", "val", "test"):
        for label in ("cat", "dog"):
            for i in range(2):
                img(root / split / label / f"{split}{i}.png")
    return from_imagefolder(root, "tree")


def _content(ds: ClassificationDataset) -> set[tuple[str, str, str]]:
    """(split, label, sha1 of the file) of every sample: what a round trip must preserve."""
    return {(s.split, s.label, hashlib.sha1(ds.path_of(s).read_bytes()).hexdigest()) for s in ds.samples}


@pytest.mark.parametrize("link", ["copy", "symlink", "hardlink"])
def test_imagefolder_round_trip(tmp_path, link):
    ds = _split_tree(tmp_path / "src")
    out = to_imagefolder(ds, tmp_path / "out", link=link)
    back = from_imagefolder(out, "tree")
    assert len(back.samples) == len(ds.samples) == 12
    assert _content(back) == _content(ds)
    assert not back.problems
    if link == "symlink":
        assert (out / "train" / "cat" / "train0.png").is_symlink()


def test_to_imagefolder_flat_unsafe_names_and_collisions(tmp_path):
    a = img(tmp_path / "src" / "one" / "x.png")
    b = img(tmp_path / "src" / "two" / "x.png")
    ds = ClassificationDataset(
        "d", tmp_path / "src", [Sample("one/x.png", "T-shirt/top"), Sample("two/x.png", "T-shirt/top")]
    )
    out = to_imagefolder(ds, tmp_path / "out", link="copy")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert len(files) == 2 and all(f.startswith("T-shirt_top/") for f in files)
    assert {(out / f).read_bytes() for f in files} == {a.read_bytes(), b.read_bytes()}
    with pytest.raises(VitrineError, match="not an empty folder"):
        to_imagefolder(ds, out)
    mixed = ClassificationDataset("d", tmp_path / "src", [Sample("one/x.png", "a", "train"), Sample("two/x.png", "a")])
    with pytest.raises(VitrineError, match="no split"):
        to_imagefolder(mixed, tmp_path / "out2")
    assert safe_folder_name("..a/b:c ") == "a_b_c"


def test_csv_round_trip(tmp_path):
    ds = _split_tree(tmp_path / "src")
    ds.samples.append(Sample("train/cat/extra.png", "Home >> Rugs, round", ""))  # no split; a comma
    img(ds.path_of(ds.samples[-1]))
    inside = to_csv(ds, tmp_path / "src" / "labels.csv")  # inside the image root: default root works
    back = from_csv(inside, "tree", image_column="path", label_column="label", split_column="split")
    assert len(back.samples) == len(ds.samples) == 13 and not back.problems
    assert triples(back) == triples(ds)
    assert _content(back) == _content(ds)

    elsewhere = to_csv(ds, tmp_path / "meta" / "labels.csv")  # outside: relative to the dataset root
    back2 = from_csv(elsewhere, "tree", image_column="path", label_column="label", split_column="split", root=ds.root)
    assert triples(back2) == triples(back)


def test_import_and_load_in_workspace(tmp_path):
    ds = _split_tree(tmp_path / "src")
    ws = tmp_path / "ws"
    directory = import_dataset(ws, ds)
    assert (directory / "dataset.json").is_file() and (directory / "samples.csv").is_file()
    loaded = load_dataset(ws, "tree")
    assert triples(loaded) == triples(ds) and loaded.classes == ds.classes
    with pytest.raises(VitrineError, match="already exists"):
        import_dataset(ws, ds)
    (directory / "stats.json").write_text("{}")
    import_dataset(ws, ds, overwrite=True)
    assert not (directory / "stats.json").exists()  # stale statistics are dropped
    with pytest.raises(NotFound) as info:
        load_dataset(ws, "other")
    assert "tree" in info.value.hint


# --- Fashion-MNIST ------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_fashion_mnist(folder: Path, n_train: int = 40, n_test: int = 20) -> Path:
    """Four small IDX files in the Fashion-MNIST layout (labels cycle through the 10 classes)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{stem}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


def test_read_idx(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", a)), a)
    assert np.array_equal(read_idx(write_idx(tmp_path / "raw", a, gz=False)), a)
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01" + b"\0" * 8)
    with pytest.raises(VitrineError, match="not an IDX file: magic number 0x12340801"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(struct.pack(">HBBI", 0, 8, 1, 10) + b"\0" * 3)
    with pytest.raises(VitrineError, match="3 bytes of data where its header announces 10"):
        read_idx(tmp_path / "short")
    (tmp_path / "gz").write_bytes(gzip.compress(b"x" * 100)[:20])
    with pytest.raises(VitrineError, match="cannot decompress"):
        read_idx(tmp_path / "gz")


def test_png_gray_reads_back_exactly():
    a = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    import io

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_gray(a)))), a)


def test_export_fashion_mnist_layouts(tmp_path):
    source = fake_fashion_mnist(tmp_path / "idx")
    out = export_fashion_mnist(tmp_path / "fm", source_dir=source, train_per_class=3)
    assert len(list((out / "train").rglob("*.png"))) == 30  # 3 of the 4 per class
    assert len(list((out / "test").rglob("*.png"))) == 20  # all
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(FASHION_MNIST_FOLDERS)
    ds = from_imagefolder(out, "fm")
    assert {s.split for s in ds.samples} == {"train", "test"} and len(ds.classes) == 10
    again = export_fashion_mnist(tmp_path / "fm2", source_dir=source, train_per_class=3)  # seeded subset
    assert sorted(p.relative_to(again) for p in again.rglob("*.png")) == sorted(
        p.relative_to(out) for p in out.rglob("*.png")
    )

    csv_out = export_fashion_mnist(tmp_path / "fmcsv", source_dir=source, layout="csv", test_per_class=1)
    ds = from_csv(csv_out / "labels.csv", "fm", image_column="path", label_column="label", split_column="split")
    assert len(ds.samples) == 40 + 10 and not ds.problems
    assert set(ds.classes) == set(FASHION_MNIST_CLASSES)  # display names, "T-shirt/top" included

    with pytest.raises(VitrineError, match="not an empty folder"):
        export_fashion_mnist(out, source_dir=source)
    with pytest.raises(NotFound, match="dataset-fashion-mnist"):
        export_fashion_mnist(tmp_path / "x", source_dir=tmp_path / "nothing")


@pytest.mark.skipif(not Path(DEFAULT_SOURCE, "train-labels-idx1-ubyte.gz").is_file(), reason="no Fashion-MNIST")
def test_export_real_fashion_mnist_subset(tmp_path):
    out = export_fashion_mnist(tmp_path / "fm", train_per_class=20, test_per_class=5)
    ds = from_imagefolder(out, "fashion-mnist")
    counts = ds.counts()
    assert all(n == 20 for n in counts["train"].values()) and all(n == 5 for n in counts["test"].values())
    assert ds.classes == sorted(FASHION_MNIST_FOLDERS)
    with Image.open(ds.path_of(ds.samples[0])) as im:
        assert im.size == (28, 28) and im.mode == "L"
