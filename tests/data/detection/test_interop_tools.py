"""vitrine's annotation files opened by the tools people already use, and theirs opened by vitrine.

Ultralytics' dataset check (``check_det_dataset``), datumaro, supervision and globox run here on
small generated scenes. Ultralytics is kept offline and out of the home folder: its settings go
to a temporary ``YOLO_CONFIG_DIR`` (set before it is imported), ``YOLO_OFFLINE`` is set, and the
font its check looks for (``Arial.ttf``, for plots) is put there from matplotlib's own fonts, so
the check never tries to download it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datumaro
import pytest
import yaml

from vitrine.data.detection.coco import from_coco, to_coco
from vitrine.data.detection.convert import detect_format, read_any
from vitrine.data.detection.cvat import from_cvat, to_cvat
from vitrine.data.detection.model import DetectionDataset
from vitrine.data.detection.voc import from_voc, to_voc
from vitrine.data.detection.yolo import from_yolo, to_yolo


def check_det_dataset(tmp_path: Path, *yamls: Path) -> list[dict]:
    """Ultralytics' ``check_det_dataset`` on each data.yaml, in a child process: importing
    ultralytics patches ``PIL.Image.open`` (and more) process-wide, which must not leak into other
    tests. Its settings go to ``tmp_path``; offline; the font it wants is found there."""
    import matplotlib

    config = tmp_path / "ultralytics-config"
    (config / "Ultralytics").mkdir(parents=True, exist_ok=True)
    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    shutil.copyfile(font, config / "Ultralytics" / "Arial.ttf")
    code = (
        "import json, sys\n"
        "from ultralytics.data.utils import check_det_dataset\n"
        "for p in sys.argv[1:]:\n"
        "    d = check_det_dataset(p, autodownload=False)\n"
        "    print(json.dumps({k: d.get(k) for k in ('train', 'val', 'test', 'nc', 'names')}, default=str))\n"
    )
    env = {**os.environ, "YOLO_CONFIG_DIR": str(config), "YOLO_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, yamls)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _dm(path, fmt: str):
    """datumaro's import (it logs a warning per item without an image: quiet while it runs)."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return datumaro.Dataset.import_from(str(path), fmt)
    finally:
        root.setLevel(level)


def _split_counts(ds: DetectionDataset) -> dict:
    out: dict = {}
    for im in ds.images:
        out[im.split] = out.get(im.split, 0) + 1
    return out


# ---------------------------------------------------------------------------------------------- item 1


@pytest.mark.slow  # ultralytics' import: about 4 s
def test_every_data_yaml_passes_ultralytics_check(scenes, tmp_path):
    from typer.testing import CliRunner

    from vitrine.cli import app

    out = scenes.root.parent
    cases = {
        "generator": out / "yolo",
        "train only": read_any(out / "annotations" / "instances_train.json"),
        "val only": read_any(out / "annotations" / "instances_val.json"),
        "test only": read_any(out / "annotations" / "instances_test.json"),
        "no split": DetectionDataset(
            [im.__class__(im.id, im.file_name, im.width, im.height, None) for im in scenes.images],
            scenes.categories,
            scenes.annotations,
            scenes.root,
        ),
    }
    folders = []
    for name, case in cases.items():
        folder = case if isinstance(case, Path) else tmp_path / name.replace(" ", "-")
        if not isinstance(case, Path):
            to_yolo(case, folder, task="detect")
        back = from_yolo(folder)
        expected = _split_counts(case) if not isinstance(case, Path) else _split_counts(scenes)
        assert _split_counts(back) == expected, name  # the split is not lost nor invented
        assert not back.problems, name
        folders.append(folder)
    # the README's own command: one COCO split to YOLO
    src = out / "annotations" / "instances_train.json"
    result = CliRunner().invoke(app, ["data", "convert", str(src), str(tmp_path / "cli"), "--to", "yolo"])
    assert result.exit_code == 0, result.output
    assert set(yaml.safe_load((tmp_path / "cli" / "data.yaml").read_text())) >= {"train", "val", "names"}
    folders.append(tmp_path / "cli")

    checked = check_det_dataset(tmp_path, *(f / "data.yaml" for f in folders))
    assert len(checked) == len(folders)
    for folder, data in zip(folders, checked, strict=True):
        assert data["nc"] == 10 and Path(data["train"]).is_dir() and Path(data["val"]).is_dir(), folder


# ---------------------------------------------------------------------------------------------- item 2


def _with_images(ds: DetectionDataset, folder: Path) -> None:
    for im in ds.images:
        (folder / "images" / im.file_name).parent.mkdir(parents=True, exist_ok=True)
        os.link(ds.root / im.file_name, folder / "images" / im.file_name)


def test_cvat_task_and_project_files_load_in_datumaro(scenes, tmp_path):
    out = scenes.root.parent
    train = from_coco(out / "annotations" / "instances_train.json")
    _with_images(train, tmp_path / "task")
    to_cvat(train, tmp_path / "task" / "annotations.xml")
    text = (tmp_path / "task" / "annotations.xml").read_text()
    assert "<task>" in text and "<subset>train</subset>" in text and 'subset="' not in text  # as CVAT writes
    loaded = _dm(tmp_path / "task", "cvat")
    assert len(loaded) == len(train.images)  # was 0, silently
    assert {it.id for it in loaded} == {Path(im.file_name).stem for im in train.images}
    assert sum(len(it.annotations) for it in loaded) >= len(train.annotations)
    back = from_cvat(tmp_path / "task" / "annotations.xml")
    assert _split_counts(back) == {"train": len(train.images)} and len(back.annotations) == len(train.annotations)

    # several splits: a project export, one task per subset, each image's subset
    to_cvat(scenes, out / "project.xml")
    loaded = _dm(out / "project.xml", "cvat")
    assert {name: len(s) for name, s in loaded.subsets().items()} == _split_counts(scenes)
    back = from_cvat(out / "project.xml")
    assert _split_counts(back) == _split_counts(scenes) and len(back.annotations) == len(scenes.annotations)
    (out / "project.xml").unlink()


def test_cvat_files_written_by_datumaro_read_with_their_splits(scenes, tmp_path):
    loaded = _dm(scenes.root.parent, "coco_instances")
    loaded.export(str(tmp_path / "cvat"), "cvat", save_media=True)
    for split, n in _split_counts(scenes).items():
        ds = from_cvat(tmp_path / "cvat" / f"{split}.xml")
        assert _split_counts(ds) == {split: n}
        assert all((ds.root / im.file_name).is_file() for im in ds.images)


# ---------------------------------------------------------------------------------------------- items 3, 4


def test_voc_export_loads_in_datumaro_with_its_labels(scenes, tmp_path):
    problems = to_voc(scenes, tmp_path / "voc")
    assert (tmp_path / "voc" / "labelmap.txt").is_file()
    loaded = _dm(tmp_path / "voc", "voc_detection")  # was: "Undeclared label"
    labels = [c.name for c in loaded.categories()[datumaro.AnnotationType.label]]
    assert labels == ["background", *scenes.category_names()]
    assert {name: len(s) for name, s in loaded.subsets().items()} == _split_counts(scenes)
    assert sum(len(it.annotations) for it in loaded) == len(scenes.annotations)
    assert [p.where for p in problems] == ["Annotations"]  # the masks, kept as boxes


def test_voc_written_by_datumaro_keeps_class_order_and_empty_classes(scenes, tmp_path):
    val = scenes.split("val")
    loaded = _dm(scenes.root.parent / "annotations" / "instances_val.json", "coco_instances")
    loaded.export(str(tmp_path / "voc"), "voc_detection", save_media=True)
    ds = from_voc(tmp_path / "voc")
    used = {ds.categories[a.category_id - 1].name for a in ds.annotations}
    assert used < set(scenes.category_names())  # some classes have no object here...
    assert ds.category_names() == scenes.category_names()  # ...and are kept, in the source's order
    assert [c.id for c in ds.categories] == list(range(1, 11))  # the VOC label indexes (0: background)
    assert len(ds.images) == len(val.images) and len(ds.annotations) == len(val.annotations) and not ds.problems
    names = {c.id: c.name for c in scenes.categories}
    assert sorted(ds.categories[a.category_id - 1].name for a in ds.annotations) == sorted(
        names[a.category_id] for a in val.annotations
    )


# ---------------------------------------------------------------------------------------------- item 5


def test_darknet_yolo_layout_from_datumaro(scenes, tmp_path):
    loaded = _dm(scenes.root.parent, "coco_instances")
    loaded.export(str(tmp_path / "dn"), "yolo", save_media=True)  # its boxes (one per object)
    assert (tmp_path / "dn" / "obj.data").is_file() and (tmp_path / "dn" / "obj.names").is_file()
    assert detect_format(tmp_path / "dn") == "yolo" and detect_format(tmp_path / "dn" / "obj.data") == "yolo"
    ds = read_any(tmp_path / "dn")
    assert ds.category_names() == scenes.category_names()  # not '0'...'9'
    assert _split_counts(ds) == _split_counts(scenes)  # splits kept
    assert len(ds.annotations) == len(scenes.annotations) and not ds.problems
    by_name = {Path(im.file_name).name: im for im in ds.images}
    for im in scenes.images:  # every box where it was (to the pixel: 6 decimals of 96 px)
        mine = sorted(a.bbox for a in ds.annotations if a.image_id == by_name[Path(im.file_name).name].id)
        theirs = sorted(a.bbox for a in scenes.annotations if a.image_id == im.id)
        assert [v for b in mine for v in b] == pytest.approx([v for b in theirs for v in b], abs=0.01)


# ---------------------------------------------------------------------------------------------- item 6


def test_scenes_coco_layout_reads_in_datumaro_and_supervision(scenes):
    import supervision as sv

    out = scenes.root.parent
    loaded = _dm(out, "coco_instances")
    assert len(loaded) == len(scenes.images)
    assert all(it.media is not None and Path(it.media.path).is_file() for it in loaded)  # was images/train/train/
    for split, n in _split_counts(scenes).items():
        ds = sv.DetectionDataset.from_coco(
            images_directory_path=str(out / "images" / split),
            annotations_path=str(out / "annotations" / f"instances_{split}.json"),
        )
        assert len(ds) == n and all(Path(p).is_file() for p in ds.image_paths)


def test_training_discovery_merges_the_split_folders(scenes):
    from vitrine.data.detection.resolve import resolve_dataset

    out = scenes.root.parent
    ds, name, _ = resolve_dataset(out, None)
    assert name == out.name and _split_counts(ds) == _split_counts(scenes)
    assert all((Path(ds.root) / im.file_name).is_file() for im in ds.images)
    assert sorted(im.file_name for im in ds.images) == sorted(im.file_name for im in scenes.images)


# ---------------------------------------------------------------------------------------------- item 7


def test_coco_written_by_globox_keeps_its_ids(scenes, tmp_path):
    from globox import AnnotationSet

    out = scenes.root.parent
    AnnotationSet.from_coco(out / "annotations" / "instances_val.json").save_coco(tmp_path / "globox.json")
    raw = json.loads((tmp_path / "globox.json").read_text())
    assert min(a["id"] for a in raw["annotations"]) == 0  # globox counts from 0
    ds = from_coco(tmp_path / "globox.json", images_root=out / "images" / "val")
    assert not ds.problems  # was: every annotation "used twice", renumbered
    assert [a.id for a in ds.annotations] == [a["id"] for a in raw["annotations"]]
    assert len(ds.annotations) == len(scenes.split("val").annotations)


def test_repeated_coco_ids_are_still_renumbered(tmp_path, handmade):
    to_coco(handmade, tmp_path / "a.json")
    raw = json.loads((tmp_path / "a.json").read_text())
    for a in raw["annotations"]:
        a["id"] = 0
    (tmp_path / "a.json").write_text(json.dumps(raw))
    ds = from_coco(tmp_path / "a.json", images_root=handmade.root)
    assert [a.id for a in ds.annotations] == [0, 1, 2, 3]
    assert [p.message for p in ds.problems] == ["annotation id 0 used twice: given a new id"] * 3


# ---------------------------------------------------------------------------------------------- supervision


def test_supervision_reads_vitrine_yolo_and_vitrine_reads_supervision_voc(scenes, tmp_path):
    import supervision as sv

    to_yolo(scenes, tmp_path / "y", task="detect")
    ds = sv.DetectionDataset.from_yolo(
        images_directory_path=str(tmp_path / "y" / "images" / "val"),
        annotations_directory_path=str(tmp_path / "y" / "labels" / "val"),
        data_yaml_path=str(tmp_path / "y" / "data.yaml"),
    )
    assert ds.classes == scenes.category_names() and len(ds) == len(scenes.split("val").images)
    assert sum(len(d) for _, _, d in ds) == len(scenes.split("val").annotations)
    ds.as_pascal_voc(
        images_directory_path=str(tmp_path / "sv" / "JPEGImages"),
        annotations_directory_path=str(tmp_path / "sv" / "Annotations"),
    )
    back = from_voc(tmp_path / "sv")
    assert len(back.images) == len(ds) and len(back.annotations) == len(scenes.split("val").annotations)
