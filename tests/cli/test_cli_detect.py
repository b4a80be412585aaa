"""``vitrine detect``, ``vitrine segment`` and ``vitrine eval --model M --data D``.

The real offline detector (``ssd-mobilenet-v2-coco``) on scikit-image photos, in a folder that
also holds a corrupt JPEG (reported, skipped, exit 1). Segmentation uses the fake disc segmenter of
the API tests, registered in this process (the commands run in-process through Typer's runner; one
test runs the installed command in a subprocess).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
import cli_helpers as cli  # noqa: E402
from test_detection_api import FAKE_SEG, DiscSegmenter, register_fake_segmenter, unregister_fake_segmenter  # noqa: E402
from ui_helpers import demo_photo  # noqa: E402

from vitrine.cli import app  # noqa: E402

SSD = "ssd-mobilenet-v2-coco"
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def fake_segmenter():
    register_fake_segmenter()
    yield
    unregister_fake_segmenter()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """chelsea (a cat) and coffee in a folder and a subfolder, plus a corrupt JPEG."""
    folder = tmp_path_factory.mktemp("photos") / "in"
    (folder / "sub").mkdir(parents=True)
    demo_photo("chelsea").save(folder / "chelsea.jpg", quality=90)
    demo_photo("coffee").save(folder / "sub" / "coffee.jpg", quality=90)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG " * 16)
    return folder


def invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_detect_a_folder_with_a_corrupt_file(photos, tmp_path):
    from pycocotools.coco import COCO

    out = tmp_path / "out"
    result = invoke("detect", "--model", SSD, photos, "--out", out)
    assert result.exit_code == 1, result.output  # one file skipped
    assert "broken.jpg" in result.output and "skipped" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["chelsea.png", "coffee.png", "detections.json"]
    for name, source in (("chelsea.png", "chelsea"), ("coffee.png", "coffee")):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size == demo_photo(source).size
    doc = json.loads((out / "detections.json").read_text(encoding="utf-8"))
    files = {im["id"]: im["file_name"] for im in doc["images"]}
    assert sorted(Path(f).name for f in files.values()) == ["chelsea.jpg", "coffee.jpg"]
    assert [s["path"] for s in doc["info"]["skipped"]] == [str(photos / "broken.jpg")]
    assert doc["info"]["model"] == SSD and doc["info"]["threshold"] == 0.5
    coco = COCO(str(out / "detections.json"))  # loads as a COCO file as it is
    cat_id = coco.getCatIds(catNms=["cat"])[0]
    chelsea_id = next(i for i, f in files.items() if f.endswith("chelsea.jpg"))
    cats = coco.loadAnns(coco.getAnnIds(imgIds=[chelsea_id], catIds=[cat_id]))
    assert cats and cats[0]["score"] >= 0.5 and cats[0]["bbox"][2] * cats[0]["bbox"][3] > 0.5 * 451 * 300
    assert all(a["score"] >= 0.5 and "segmentation" not in a for a in doc["annotations"])
    # the overlay differs from the photo where the cat's box is drawn
    drawn = np.asarray(Image.open(out / "chelsea.png").convert("RGB"), dtype=np.int16)
    assert (np.abs(drawn - np.asarray(demo_photo("chelsea"), dtype=np.int16)).sum(axis=2) > 30).mean() > 0.01


def test_detect_json_and_exit_0_when_all_are_read(photos, tmp_path):
    out = tmp_path / "out"
    result = invoke("detect", "-m", SSD, photos / "chelsea.jpg", "--out", out, "--threshold", "0.05", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["failed"] == 0 and data["processed"] == 1 and data["threshold"] == 0.05
    (row,) = data["images"]
    assert row["overlay"] == "chelsea.png" and row["classes"]["cat"] == 1 and row["objects"] > 1


def test_same_names_get_distinct_overlays(photos, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    demo_photo("coffee").save(other / "chelsea.jpg")
    result = invoke("detect", "-m", SSD, photos / "chelsea.jpg", other / "chelsea.jpg", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert {"chelsea.png", "chelsea-2.png"} <= {p.name for p in (tmp_path / "out").iterdir()}


def test_segment_writes_masks(photos, tmp_path):
    from pycocotools import mask as mask_utils

    out = tmp_path / "seg"
    result = invoke("segment", "--model", FAKE_SEG, photos / "chelsea.jpg", "--out", out)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "detections.json").read_text(encoding="utf-8"))
    (ann,) = doc["annotations"]  # the disc; the square scores under 0.5
    seg = ann["segmentation"]
    mask = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
    expected = DiscSegmenter().predict(demo_photo("chelsea")).masks[0]
    assert (mask == expected).all() and ann["area"] == expected.sum()
    drawn = np.asarray(Image.open(out / "chelsea.png").convert("RGB"), dtype=np.int16)
    original = np.asarray(Image.open(photos / "chelsea.jpg").convert("RGB"), dtype=np.int16)
    assert np.abs(drawn[150, 225] - original[150, 225]).sum() > 30  # the mask is drawn


def test_usage_errors_exit_2(photos, tmp_path):
    out = tmp_path / "out"
    unknown = invoke("detect", "--model", "no-such-model", photos, "--out", out)
    assert unknown.exit_code == 2 and "no-such-model" in unknown.output and SSD in unknown.output
    boxes_only = invoke("segment", "--model", SSD, photos, "--out", out)
    assert boxes_only.exit_code == 2 and "only detects boxes" in boxes_only.output and FAKE_SEG in boxes_only.output
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = invoke("detect", "--model", SSD, empty, "--out", out)
    assert nothing.exit_code == 2 and "no images found" in nothing.output
    assert invoke("detect", "--model", SSD, photos, "--out", out, "--threshold", "1.5").exit_code == 2
    assert invoke("detect", photos, "--out", out).exit_code == 2  # no --model
    assert not out.exists() or not any(out.iterdir())


def test_a_detector_that_cannot_load_here_is_exit_2_with_the_reason(
    photos, tmp_path, fresh_demo, opencv_without_tf_importer
):
    """On an OpenCV without the TensorFlow importer (OpenCV 5): `vitrine models` says the SSD is not
    available and why; `vitrine detect` and `vitrine tag` print that reason and exit 2, no traceback."""
    listed = invoke("models", "--json")
    assert listed.exit_code == 0
    ssd = next(r for r in json.loads(listed.stdout) if r["name"] == SSD)
    assert ssd["available"] is False and "readNetFromTensorflow" in ssd["availability_detail"]
    out = tmp_path / "out"
    result = invoke("detect", "--model", SSD, photos / "chelsea.jpg", "--out", out)
    assert result.exit_code == 2, result.output
    assert "OpenCV 5" in result.output and "Traceback" not in result.output
    tagged = invoke("tag", fresh_demo)
    assert tagged.exit_code == 2 and "OpenCV 5" in tagged.output, tagged.output


def cat_dataset(folder: Path) -> Path:
    """A one-image COCO dataset: chelsea with its cat box (and a category the model never finds)."""
    folder.mkdir(parents=True, exist_ok=True)
    demo_photo("chelsea").save(folder / "chelsea.jpg", quality=92)
    doc = {
        "images": [{"id": 1, "file_name": "chelsea.jpg", "width": 451, "height": 300}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 0, 398, 297], "area": 398 * 297, "iscrowd": 0}
        ],
    }
    path = folder / "annotations.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_eval_a_detector_on_coco_annotations(tmp_path):
    pytest.importorskip("vitrine.data.detection.convert")
    data = cat_dataset(tmp_path / "ds")
    out = tmp_path / "report"
    result = invoke("eval", "--model", SSD, "--data", data, "--out", out)
    assert result.exit_code == 0, result.output
    assert "mAP@.5" in result.output and "cat" in result.output
    report = json.loads((out / "detection_metrics.json").read_text(encoding="utf-8"))
    assert report["bbox"]["map50"] == pytest.approx(1.0)
    assert (out / "per_class_bbox.csv").is_file() and (out / "pr_curves.html").is_file()
    as_json = invoke("eval", "--model", SSD, "--data", data, "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["bbox"]["map50"] == pytest.approx(1.0)


def test_eval_ignores_difficult_objects_of_voc_data(tmp_path):
    """VOC's protocol by default on VOC data: a 'difficult' object the model misses is not a miss."""
    pytest.importorskip("vitrine.data.detection.convert")
    from vitrine.data.detection.coco import from_coco
    from vitrine.data.detection.model import Annotation
    from vitrine.data.detection.voc import to_voc

    ds = from_coco(cat_dataset(tmp_path / "ds"))
    ds.annotations.append(Annotation(2, 1, 1, (420.0, 270.0, 25.0, 25.0), attributes={"difficult": 1}))  # no cat
    to_voc(ds, tmp_path / "voc", images="copy")
    voc = json.loads(invoke("eval", "--model", SSD, "--data", tmp_path / "voc", "--json").stdout)
    assert voc["ignore_difficult"] is True and voc["difficult_ignored"] == 1 and voc["gt_objects"] == 1
    assert voc["bbox"]["map50"] == pytest.approx(1.0) and voc["bbox"]["fn"] == 0
    counted = invoke("eval", "--model", SSD, "--data", tmp_path / "voc", "--count-difficult", "--json")
    counted = json.loads(counted.stdout)
    assert counted["ignore_difficult"] is False and counted["gt_objects"] == 2
    assert counted["bbox"]["map50"] < 0.6 and counted["bbox"]["fn"] == 1
    shown = invoke("eval", "--model", SSD, "--data", tmp_path / "voc")
    assert shown.exit_code == 0 and "1 difficult object(s) ignored (VOC protocol)" in " ".join(shown.output.split())


def test_eval_usage_errors(tmp_path):
    assert invoke("eval", "--model", SSD).exit_code == 2  # no --data
    assert invoke("eval").exit_code == 2  # neither a run nor --model/--data
    pytest.importorskip("vitrine.data.detection.convert")
    missing = invoke("eval", "--model", SSD, "--data", tmp_path / "nope.json")
    assert missing.exit_code == 2 and "nope.json" in missing.output


@pytest.mark.slow
def test_installed_command_end_to_end(photos, tmp_path):
    args = ("detect", "--model", SSD, photos / "chelsea.jpg", photos / "broken.jpg", "--out", tmp_path / "o")
    done = cli.run(*args, env=cli.cli_env(COLUMNS="250"))
    assert done.returncode == 1, done.stderr
    assert "chelsea.jpg" in done.stdout and "broken.jpg" in cli.flat(done.stderr)
    assert (tmp_path / "o" / "chelsea.png").is_file() and (tmp_path / "o" / "detections.json").is_file()
