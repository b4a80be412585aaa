"""Vectors in the catalog: stored as float16 (half the bytes), read back as unit float32 rows whose
cosines match the originals to about 1e-3; a catalog written as float32 by an earlier vitrine is
read as it is and converted in the transaction of its next write."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import delete, select

from vitrine.store.catalog import Catalog, embeddings, meta


def unit(rng, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def catalog(tmp_path):
    cat = Catalog(tmp_path / "catalog.db")
    cids = cat.apply_scan([(f"a/{i}.jpg", "a", 10 + i, 1, f"{i:064x}") for i in range(50)], [])
    assert cids == []
    yield cat
    cat.close()


def ids_of(cat: Catalog) -> list[int]:
    return sorted(r.content_id for r in cat.files().values())


def blobs(cat: Catalog) -> list[bytes]:
    with cat.engine.connect() as conn:
        return [r[0] for r in conn.execute(select(embeddings.c.vector))]


def test_float16_storage_round_trip(catalog):
    rng = np.random.default_rng(0)
    ids = ids_of(catalog)
    joint, other = unit(rng, len(ids), 512), unit(rng, len(ids), 64)
    catalog.add_vectors("m", ids, {"joint": joint, "small": other})
    assert catalog.vector_dtype("m") == "float16"
    assert {len(b) for b in blobs(catalog)} == {512 * 2, 64 * 2}  # 1 KiB for a 512-d vector
    got_ids = np.concatenate([c[0] for c in catalog.iter_vectors("m", "joint")])
    got = np.concatenate([c[1] for c in catalog.iter_vectors("m", "joint", batch=7)])  # chunked reads agree
    assert got_ids.tolist() == ids and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert np.abs(got - joint).max() < 2e-3
    # cosines between stored vectors: what search ranks by
    assert np.abs(got @ got.T - joint @ joint.T).max() < 2e-3
    some = ids[3:9]
    ids_out, part = catalog.vectors_for("m", "small", some)
    assert ids_out.tolist() == some and np.abs(part - other[3:9]).max() < 2e-3


def test_a_float32_catalog_is_read_then_converted_on_the_next_write(catalog, monkeypatch):
    rng = np.random.default_rng(1)
    ids = ids_of(catalog)
    old = unit(rng, len(ids), 32)
    # what an earlier vitrine wrote: float32 rows, no vector_dtype key
    with catalog.engine.begin() as conn:
        conn.execute(
            embeddings.insert(),
            [{"content_id": c, "model": "m", "space": "s", "vector": old[n].tobytes()} for n, c in enumerate(ids)],
        )
    assert catalog.vector_dtype("m") == "float32"
    _, read = catalog.vectors_for("m", "s", ids)
    assert np.array_equal(read, old)  # exactly as stored
    import vitrine.store.catalog as module

    monkeypatch.setattr(module, "CONVERT_BATCH", 7)  # several statements, a batch boundary inside the rows
    new = unit(rng, 2, 32)
    catalog.add_vectors("m", ids[:2], {"s": new})
    assert catalog.vector_dtype("m") == "float16"
    assert {len(b) for b in blobs(catalog)} == {32 * 2}
    _, read = catalog.vectors_for("m", "s", ids)
    assert np.abs(read[:2] - new).max() < 2e-3 and np.abs(read[2:] - old[2:]).max() < 2e-3
    # another model in the same catalog keeps its own encoding
    assert catalog.vector_dtype("other") == "float32"
    with catalog.engine.begin() as conn:
        conn.execute(delete(meta).where(meta.c.key == "vector_dtype:m"))
        conn.execute(delete(embeddings))
    catalog.add_vectors("m", ids[:1], {"s": new[:1]})  # nothing to convert: marked at once
    assert catalog.vector_dtype("m") == "float16"


def test_has_vectors_agrees_with_models(catalog):
    assert not catalog.has_vectors("m") and catalog.models() == {}
    ids = ids_of(catalog)
    catalog.add_vectors("m", ids[:3], {"joint": unit(np.random.default_rng(2), 3, 8)})
    assert catalog.has_vectors("m") and not catalog.has_vectors("other")
    assert catalog.models() == {"m": 3}
