"""The registry imports no model; the catalog registers the built-ins, with their weights as data."""

from __future__ import annotations

import ast
from pathlib import Path

import vitrine.models.registry as registry


def test_registry_imports_no_model_at_run_time():
    tree = ast.parse(Path(registry.__file__).read_text(encoding="utf-8"))
    runtime = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    modules = [n.module for n in runtime if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in runtime if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in modules if m and m.startswith("vitrine.models")]


def test_builtins_registered_in_listing_order():
    names = [s.name for s in registry.list_models()]
    assert names[:4] == ["ssd-mobilenet-v2-coco", "maskrcnn-r50-fpn", "maskrcnn-r50-fpn-v2", "fasterrcnn-r50-fpn"]
    assert names.index("offline-concepts") < names.index("efficientnet-lite0")


def test_reference_metrics_are_numbers_and_cards_are_written_from_them():
    mask = registry.get("maskrcnn-r50-fpn")
    assert dict(mask.weights.metrics) == {"coco_box_ap": 37.9, "coco_mask_ap": 34.6}
    assert mask.card.notes.startswith("COCO box AP 37.9, mask AP 34.6. ")
    faster = registry.get("fasterrcnn-r50-fpn")
    assert faster.card.notes.startswith("COCO box AP 37.0. ")
    ssd = registry.get("ssd-mobilenet-v2-coco")
    assert "COCO mAP 22." in ssd.card.notes and ssd.weights.metrics["coco_map"] == 22
    assert len(ssd.weights.get_categories()) == 80
    b0 = registry.get("efficientnet-b0")
    assert b0.weights.transforms.data_config()["mean"] == [0.485, 0.456, 0.406]
    assert b0.weights.metrics["imagenet_top1"] > 77
