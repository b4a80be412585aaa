"""Text queries on an indexed project use the text tower its index run exported (ONNX Runtime, no
torch) and give the torch model's hits; a missing, corrupt or stale export falls back to torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
import cli_helpers as cli  # noqa: E402

from vitrine.demo import ONTOLOGY  # noqa: E402
from vitrine.models.embedders import text_runtime  # noqa: E402
from vitrine.models.embedders.text_runtime import RuntimeTextEncoder  # noqa: E402
from vitrine.project import open_project  # noqa: E402

MODEL = "offline-concepts"
KEY = f"text_encoder:{MODEL}"


def _imported(stderr: str) -> set[str]:
    """Modules listed by ``python -X importtime``."""
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def _torch_hits(project_dir, monkeypatch, **query):
    monkeypatch.setenv(text_runtime.TEXT_RUNTIME_ENV, "torch")
    try:
        return _search(project_dir, **query)
    finally:
        monkeypatch.delenv(text_runtime.TEXT_RUNTIME_ENV)


def _search(project_dir, text=None, keyword=None, k=10):
    p = open_project(project_dir)
    result = p.search(text, k=k) if text is not None else p.search_keyword(keyword, k=k)
    return [(h.path, h.score) for h in result.hits]


def test_the_index_run_records_a_usable_text_tower(indexed_demo):
    rec = open_project(indexed_demo).catalog.get_meta(KEY)
    assert rec and text_runtime.stale_reason(rec) is None
    assert (rec["space"], rec["dim"]) == ("concepts", 384)
    assert rec["weights"] and Path(rec["weights"][0][0]).is_file()


@pytest.mark.parametrize("query", [["a cat"], ["--keyword", "Fusée"]], ids=["text", "keyword"])
def test_cli_search_imports_no_torch_and_gives_the_torch_hits(indexed_demo, monkeypatch, query):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vitrine.cli", "search", str(indexed_demo), *query, "--json"],
        env=cli.cli_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = _imported(proc.stderr)
    assert "onnxruntime" in modules and "tokenizers" in modules
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}, "the CLI search imported torch"
    hits = [(h["path"], h["score"]) for h in json.loads(proc.stdout)]
    assert len(hits) == 10
    ask = {"text": query[0]} if len(query) == 1 else {"keyword": query[1]}
    ref = _torch_hits(indexed_demo, monkeypatch, **ask)
    assert [p for p, _ in hits] == [p for p, _ in ref]
    np.testing.assert_allclose([s for _, s in hits], [s for _, s in ref], atol=2e-3)


def test_query_vectors_match_the_torch_model_in_the_concepts_space(indexed_demo, monkeypatch):
    from vitrine.models import registry

    p = open_project(indexed_demo)
    encoder, space, dim = p._text_encoder(MODEL)
    assert isinstance(encoder, RuntimeTextEncoder) and (space, dim) == ("concepts", 384)
    texts = list(ONTOLOGY.values()) + list(ONTOLOGY) + ["a dog on grass", "the moon at night", "café"]
    got, ref = encoder.embed_texts(texts), registry.load(MODEL).embed_texts(texts)
    assert (got * ref).sum(axis=1).min() >= 0.999
    for text in list(ONTOLOGY.values())[:4]:  # the same top-10 as the torch model's
        ref = _torch_hits(indexed_demo, monkeypatch, text=text)
        assert [h for h, _ in _search(indexed_demo, text)] == [h for h, _ in ref]


@pytest.fixture
def demo_copy(indexed_demo, tmp_path) -> Path:
    """A private copy of the indexed demo, whose catalog record a test may break."""
    dest = tmp_path / indexed_demo.name
    shutil.copytree(indexed_demo, dest)
    return dest


def _set_record(project_dir, rec) -> None:
    p = open_project(project_dir)
    p.catalog.set_meta(KEY, rec)
    p.close()


@pytest.mark.parametrize("damage", ["missing", "corrupt", "stale", "none"])
def test_text_search_falls_back_to_torch(demo_copy, tmp_path, monkeypatch, damage):
    rec = open_project(demo_copy).catalog.get_meta(KEY)
    expected = _torch_hits(demo_copy, monkeypatch, text="a horse")
    if damage == "missing":
        rec = {**rec, "folder": str(tmp_path / "gone")}
    elif damage == "corrupt":
        broken = tmp_path / "broken"
        shutil.copytree(rec["folder"], broken)
        (broken / "text.onnx").write_bytes(b"\0" * 64)
        rec = {**rec, "folder": str(broken)}
    elif damage == "stale":
        rec = {**rec, "weights": [[rec["weights"][0][0], 1, 1]]}  # another size and time than the file's
    else:
        rec = None
    _set_record(demo_copy, rec)
    p = open_project(demo_copy)
    encoder, _, _ = p._text_encoder(MODEL)
    assert not isinstance(encoder, RuntimeTextEncoder)  # the torch model answers
    assert _search(demo_copy, "a horse") == expected
    # indexing again records a usable export
    open_project(demo_copy).index()
    fresh = open_project(demo_copy).catalog.get_meta(KEY)
    assert text_runtime.stale_reason(fresh) is None
    assert isinstance(open_project(demo_copy)._text_encoder(MODEL)[0], RuntimeTextEncoder)


def test_api_text_and_similar_searches_load_no_model(demo_copy, monkeypatch):
    """Through the API, a text, keyword or more-like-this query answers without loading the model."""
    from fastapi.testclient import TestClient

    from vitrine.models import registry
    from vitrine.server.app import create_app

    def no_load(name, *args, **kwargs):
        raise AssertionError(f"a query loaded {name}")

    monkeypatch.setattr(registry, "load", no_load)
    with TestClient(create_app(demo_copy.parent, multi_user=False)) as client:
        url = f"/api/v1/projects/{demo_copy.name}/search"
        for params in ({"q": "a cat"}, {"keyword": "Chat"}, {"similar": "animaux/chat.jpg"}):
            r = client.get(url, params={**params, "k": 5})
            assert r.status_code == 200, r.text
            hits = [h["path"] for h in r.json()["hits"]]
            assert len(hits) == 5
            if "similar" not in params:
                assert hits[0] == "animaux/chat.jpg"
            else:
                assert "animaux/chat.jpg" not in hits


def test_the_index_time_line_names_the_text_export():
    from vitrine.cli.project import stage_line

    assert stage_line({"load_seconds": 1.0, "text_export_seconds": 6.24}).endswith("text tower 6.2 s")
    assert "text tower" not in stage_line({"load_seconds": 1.0, "text_export_seconds": 0.01})  # cached already
