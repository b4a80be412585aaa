"""Importing ``vitrine.tasks`` registers every job kind without the web layer, so a worker can run
jobs (training included) without FastAPI."""

from __future__ import annotations

import json
import subprocess
import sys

KINDS = {
    "index",
    "tag",
    "train",
    "train-detector",
    "sweep",
    "evaluate-run",
    "compare-embeddings",
    "score-submission",
    "map",
}

PROGRAM = """
import json, sys
import vitrine.tasks
from vitrine.jobs import registered_kinds
web = sorted(m for m in sys.modules if m.split(".")[0] in ("fastapi", "starlette") or m.startswith("vitrine.server"))
print(json.dumps({"kinds": sorted(registered_kinds()), "web": web, "fastapi": "fastapi" in sys.modules,
                  "ray": "ray" in sys.modules, "umap": "umap" in sys.modules}))
"""


def test_importing_tasks_registers_every_kind_without_fastapi():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert KINDS <= set(found["kinds"]), found["kinds"]
    assert not found["fastapi"]
    assert not found["ray"]  # the sweep kind runs Ray in a child process: importing it starts nothing
    assert not found["umap"]  # the map kind imports umap-learn (and numba) when a map is computed
    assert found["web"] == []


def test_every_kind_has_a_module_level_handler_in_tasks():
    program = (
        "import json, vitrine.tasks\n"
        "from vitrine.jobs import registered_kinds\n"
        "print(json.dumps({n: k.handler.__module__ for n, k in registered_kinds().items()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True)
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    assert {name: modules[name] for name in KINDS} == {
        "index": "vitrine.tasks.index",
        "tag": "vitrine.tasks.tag",
        "train": "vitrine.tasks.train_classifier",
        "train-detector": "vitrine.tasks.train_detector",
        "sweep": "vitrine.tasks.sweep",
        "evaluate-run": "vitrine.tasks.evaluate_run",
        "compare-embeddings": "vitrine.tasks.compare_embeddings",
        "score-submission": "vitrine.tasks.score_submission",
        "map": "vitrine.tasks.map2d",
    }
