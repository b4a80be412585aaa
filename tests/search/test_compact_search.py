"""A project whose index holds compact codes searches by the catalog's stored vectors: the same
results and scores as the exact index (every list probed here), the codes' own scores never
shown. The collection is made "large" by lowering the size limits."""

from __future__ import annotations

import shutil

import pytest

import vitrine
import vitrine.index.faiss_index as fi


@pytest.fixture
def project(tmp_path, indexed_demo):
    project_dir = tmp_path / indexed_demo.name
    shutil.copytree(indexed_demo, project_dir)
    p = vitrine.open_project(project_dir)
    yield p
    p.close()


def test_compact_index_reranks_from_the_catalog(project, monkeypatch):
    queries = ["a cat", "the moon", "coffee"]
    exact = [[(h.path, h.score) for h in project.search(q, k=8).hits] for q in queries]
    similar = [(h.path, h.score) for h in project.search_similar("animaux/chat.jpg", k=5).hits]
    monkeypatch.setattr(fi, "EXACT_MAX", 4)
    monkeypatch.setattr(fi, "COMPACT_MIN", 4)
    shutil.rmtree(project.paths.indexes_dir)  # rebuilt at the next search, by the lowered limits
    fetched = []
    real = project.catalog.vectors_for

    def spy(model, space, ids):
        fetched.append(len(ids))
        return real(model, space, ids)

    monkeypatch.setattr(project.catalog, "vectors_for", spy)
    compact = [[(h.path, h.score) for h in project.search(q, k=8).hits] for q in queries]
    from vitrine.index import VectorIndex
    from vitrine.index.maintain import index_path

    index = VectorIndex.load(index_path(project.paths.indexes_dir, project.model_name, "concepts"))
    assert index.plan.factory.endswith(",SQ4") and index.plan.rerank == fi.RERANK
    assert fetched  # the candidates' vectors came from the catalog
    for mine, theirs in zip(compact, exact, strict=True):
        assert [p for p, _ in mine] == [p for p, _ in theirs]
        assert [s for _, s in mine] == pytest.approx([s for _, s in theirs], abs=1e-5)
    again = [(h.path, h.score) for h in project.search_similar("animaux/chat.jpg", k=5).hits]
    assert [p for p, _ in again] == [p for p, _ in similar]
