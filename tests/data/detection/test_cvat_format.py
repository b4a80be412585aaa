"""CVAT for images 1.1: reading a real-looking export, writing, broken and hostile files."""

from __future__ import annotations

import pytest
from det_helpers import assert_same_annotations

from vitrine.core.errors import VitrineError
from vitrine.data.detection.cvat import from_cvat, to_cvat
from vitrine.data.detection.geometry import segmentation_to_mask

SAMPLE = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>3</id>
      <name>pets</name>
      <labels>
        <label><name>cat</name><color>#ff0000</color><attributes>
          <attribute><name>color</name><input_type>text</input_type></attribute></attributes></label>
        <label><name>dog</name><attributes/></label>
      </labels>
    </task>
  </meta>
  <image id="0" name="a.png" width="100" height="80" subset="Train">
    <box label="cat" occluded="1" source="manual" xtl="10.5" ytl="20" xbr="40" ybr="60" z_order="0">
      <attribute name="color">black</attribute>
    </box>
    <polygon label="dog" occluded="0" source="manual" points="50,10;90,10;90,50;50,50" z_order="0"/>
    <polyline label="dog" occluded="0" source="manual" points="1,1;5,5" z_order="0"/>
    <box label="bird" occluded="0" source="manual" xtl="1" ytl="1" xbr="5" ybr="5" z_order="0"/>
    <polygon label="cat" occluded="0" source="manual" points="1,1;5,5" z_order="0"/>
    <box label="cat" occluded="0" source="manual" xtl="90" ytl="70" xbr="120" ybr="90" z_order="0"/>
    <polygon label="dog" source="manual" points="1,1;2,x;3,3" z_order="0"/>
  </image>
  <image id="1" name="b.png" width="50" height="50">
    <polygon label="cat" occluded="0" source="manual" points="0,0;10,0;10,10;0,10" z_order="0" group_id="4"/>
    <polygon label="cat" occluded="0" source="manual" points="20,20;30,20;30,30;20,30" z_order="0" group_id="4"/>
    <box label="cat" occluded="0" source="manual" xtl="40" ytl="40" xbr="40" ybr="45" z_order="0"/>
  </image>
  <image id="2" name="c.png" height="50"/>
</annotations>
"""


def test_read_sample(tmp_path):
    (tmp_path / "ann.xml").write_text(SAMPLE)
    ds = from_cvat(tmp_path / "ann.xml")
    assert ds.category_names() == ["cat", "dog"]
    assert [(im.file_name, im.width, im.height, im.split) for im in ds.images] == [
        ("a.png", 100, 80, "train"),
        ("b.png", 50, 50, None),
    ]
    a = ds.annotations
    assert len(a) == 4
    assert a[0].bbox == (10.5, 20, 29.5, 40) and a[0].attributes == {"color": "black", "occluded": "1"}
    assert a[1].segmentation == [[50, 10, 90, 10, 90, 50, 50, 50]] and a[1].bbox == (50, 10, 40, 40)
    assert a[1].area == 1600
    assert a[2].bbox == (90, 70, 10, 10)  # clipped
    merged = a[3]  # two polygons of group 4: one object
    assert len(merged.segmentation) == 2 and merged.bbox == (0, 0, 30, 30) and merged.area == 200
    file = str(tmp_path / "ann.xml")
    got = [(p.file, p.where, p.message) for p in ds.problems]
    assert (file, "line 20: <image name='a.png'> / <polyline> 3", "<polyline> shapes are not supported: skipped") in got
    assert (file, "line 21: <image name='a.png'> / <box> 4", "label 'bird' is not declared in <meta>: skipped") in got
    assert (
        file,
        "line 22: <image name='a.png'> / <polygon> 5",
        "polygon with 2 point(s), at least 3 needed: skipped",
    ) in got
    assert any(w == "line 23: <image name='a.png'> / <box> 6" and "clipped to (90, 70, 10, 10)" in m for _, w, m in got)
    assert any(w == "line 24: <image name='a.png'> / <polygon> 7" and "'1,1;2,x;3,3'" in m for _, w, m in got)
    assert any(w == "line 29: <image name='b.png'> / <box> 3" and "no width or height" in m for _, w, m in got)
    assert (file, "line 31: <image> 3", "image without name, width and height: skipped") in got


def test_write_read(tmp_path, handmade):
    assert to_cvat(handmade, tmp_path / "out.xml") == []
    text = (tmp_path / "out.xml").read_text()
    assert "<version>1.1</version>" in text and 'subset="train"' in text and 'group_id="1"' in text
    back = from_cvat(tmp_path / "out.xml", images_root=handmade.root)
    assert not back.problems
    assert_same_annotations(handmade, back, min_iou=1.0)
    crowd = next(a for a in back.annotations if a.iscrowd)  # kept through an attribute
    assert crowd.segmentation is not None
    assert next(a for a in back.annotations if a.segmentation is None).attributes == {"difficult": "1"}


def test_broken_and_hostile_files(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text('<annotations>\n  <image id="0" name="a.png" width="5" height="5">\n  </imag>\n</annotations>\n')
    with pytest.raises(VitrineError, match=r"bad\.xml: not well-formed XML: mismatched tag at line 3, column 5"):
        from_cvat(bad)
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x "xxxxxxxx"><!ENTITY y "&x;&x;&x;">]>\n<a>&y;</a>\n')
    with pytest.raises(VitrineError, match="document type declaration"):
        from_cvat(bomb)
    voc = tmp_path / "voc.xml"
    voc.write_text("<annotation><filename>a.png</filename></annotation>")
    with pytest.raises(VitrineError, match=r"line 1: root element <annotation>, expected <annotations>"):
        from_cvat(voc)
    video = tmp_path / "video.xml"
    video.write_text('<annotations><track id="0" label="cat"/></annotations>')
    with pytest.raises(VitrineError, match="video export"):
        from_cvat(video)


def test_cvat_masks(tmp_path):
    xml = """<annotations><version>1.1</version>
<image id="0" name="m.png" width="20" height="10">
  <mask label="cat" source="manual" rle="2, 2, 1, 3, 2" left="10" top="5" width="5" height="2" z_order="0"/>
  <mask label="cat" source="manual" occluded="0" rle="2, 2" left="0" top="0" width="5" height="2" z_order="0"/>
  <mask label="dog" source="manual" rle="0, 4" left="18" top="8" width="2" height="2" group_id="2"/>
  <polygon label="dog" source="manual" points="0,0;4,0;4,4;0,4" group_id="2"/>
</image></annotations>"""
    (tmp_path / "m.xml").write_text(xml)
    ds = from_cvat(tmp_path / "m.xml")
    cat, dog = ds.annotations
    m = segmentation_to_mask(cat.segmentation, 10, 20)
    assert cat.bbox == (10, 5, 4, 2) and cat.area == 5 == m.sum()
    assert m[5, 12:14].all() and m[6, 10:13].all()
    assert dog.bbox == (0, 0, 20, 10) and dog.area == 16 + 4  # a mask and a polygon in one group: united
    (problem,) = ds.problems
    assert problem.where == "line 4: <image name='m.png'> / <mask> 2"
    assert problem.message == "mask rle covers 4 pixels, not its 5 x 2 box: skipped"
    # written back as polygons, read back the same
    to_cvat(ds, tmp_path / "back.xml")
    back = from_cvat(tmp_path / "back.xml")
    assert [a.area for a in back.annotations] == [5, 20]
