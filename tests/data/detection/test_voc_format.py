"""Pascal VOC: 1-based inclusive boxes, attributes, masks reported, broken files skipped with their line."""

from __future__ import annotations

import pytest
from det_helpers import assert_same_annotations
from PIL import Image

from vitrine.core.errors import VitrineError
from vitrine.data.detection.voc import from_voc, to_voc

XML = """<annotation>
  <folder>VOC2007</folder>
  <filename>{name}</filename>
  <size><width>60</width><height>40</height><depth>3</depth></size>
  <object>
    <name>cat</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>
    <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>40</ymax></bndbox>
  </object>
  <object>
    <name>dog</name>
    <bndbox><xmin>50</xmin><ymin>1</ymin><xmax>70</xmax><ymax>10</ymax></bndbox>
  </object>
  <object>
    <name>cat</name>
    <bndbox><xmin>5</xmin><ymin>zero</ymin><xmax>7</xmax><ymax>9</ymax></bndbox>
  </object>
  <object><name>bird</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
</annotation>
"""


def _voc(tmp_path):
    root = tmp_path / "VOC"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for name in ("000001", "000002"):
        (root / "Annotations" / f"{name}.xml").write_text(XML.format(name=f"{name}.jpg"))
        Image.new("RGB", (60, 40)).save(root / "JPEGImages" / f"{name}.jpg")
    (root / "ImageSets" / "Main" / "train.txt").write_text("000001\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("000002\n")
    return root


def test_read(tmp_path):
    root = _voc(tmp_path)
    ds = from_voc(root)
    assert ds.root == root / "JPEGImages"
    assert [(im.file_name, im.split) for im in ds.images] == [("000001.jpg", "train"), ("000002.jpg", "val")]
    assert ds.category_names() == ["cat", "dog", "bird"]  # no labels.txt: every name found is a class
    first = ds.annotations_by_image()[1]
    assert first[0].bbox == (10, 20, 30, 20)  # xmin 11 (1-based) .. xmax 40 inclusive
    assert first[0].attributes == {"truncated": 1, "difficult": 0, "pose": "Left"}
    assert first[1].bbox == (49, 0, 11, 10)  # clipped at the right border
    file = str(root / "Annotations" / "000001.xml")
    got = {(p.file, p.where): p.message for p in ds.problems}
    assert (
        got[(file, "line 9: <object> 2")]
        == "box (49, 0, 21, 10) extends outside the 60x40 image: clipped to (49, 0, 11, 10)"
    )
    assert got[(file, "line 13: <object> 3")] == "no <bndbox> with numeric xmin, ymin, xmax, ymax: skipped"


def test_labels_txt_and_broken_files(tmp_path):
    root = _voc(tmp_path)
    (root / "labels.txt").write_text("cat\ndog\n")
    (root / "Annotations" / "000003.xml").write_text("<annotation>\n<filename>x.jpg</filename>\n<size>\n</annotation>")
    ds = from_voc(root)
    assert ds.category_names() == ["cat", "dog"]
    messages = [str(p) for p in ds.problems]
    assert any("000001.xml: line 17: <object> 4: label 'bird' is not in labels.txt: skipped" in m for m in messages)
    assert any("000003.xml: file:" in m and "mismatched tag at line 4, column 3" in m for m in messages)
    assert len(ds.images) == 2
    for xml in (root / "Annotations").glob("*.xml"):
        xml.write_text("<annotation><oops></annotation>")
    with pytest.raises(VitrineError, match="not well-formed XML"):
        from_voc(root)


def test_write_read(tmp_path, handmade):
    problems = to_voc(handmade, tmp_path / "voc")
    assert sorted(p.message for p in problems) == [
        "1 crowd flag(s) not representable in VOC: dropped",
        "3 mask(s) not representable in VOC (boxes only): boxes kept",
    ]
    out = tmp_path / "voc"
    assert (out / "JPEGImages" / "sub" / "b.png").samefile(handmade.root / "sub" / "b.png")
    assert (out / "ImageSets" / "Main" / "val.txt").read_text() == "sub/b\n"
    xml = (out / "Annotations" / "a.xml").read_text()
    assert "<xmin>5.5</xmin>" in xml and "<xmax>24.5</xmax>" in xml and "<difficult>1</difficult>" in xml
    back = from_voc(out)
    assert not back.problems
    assert [im.split for im in back.images] == ["train", "val"]
    assert_same_annotations(handmade, back, masks=False)
    assert all(a.segmentation is None for a in back.annotations)
