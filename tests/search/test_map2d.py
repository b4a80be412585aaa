"""The 2-D map on a catalog made by hand: UMAP keeps clusters apart and is repeatable, the map is
cached per model and catalog generation (a second call does not run UMAP) and computed again when
the vectors change, a big collection is subsampled with a note, the payloads the page reads.

UMAP runs on a few hundred points with few epochs (numba compiles its functions once per
process, about 10 s, shared by the tests of this module)."""

from __future__ import annotations

import numpy as np
import pytest

from vitrine.search import map2d
from vitrine.search.map2d import BadMapParameter, MapParams
from vitrine.store.catalog import Catalog

MODEL, SPACE = "clip-vit-b-32", "joint"
FAST = MapParams(n_neighbors=10, n_epochs=30)


def blobs(n_per: int = 60, centres: int = 3, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``centres`` tight clusters of unit vectors (label of each)."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim))
    labels = np.repeat(np.arange(centres), n_per)
    x = c[labels] + 0.05 * rng.normal(size=(len(labels), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def make_catalog(tmp_path, vectors: np.ndarray, folders=("a", "b", "c")) -> Catalog:
    cat = Catalog(tmp_path / "catalog.db")
    n = len(vectors)
    upserts = [
        (f"{folders[i % len(folders)]}/img{i:04d}.jpg", folders[i % len(folders)], 10 + i, 1, f"{i:064x}")
        for i in range(n)
    ]
    cat.apply_scan(upserts, [])
    ids = sorted(cat.content_ids_by_sha([u[4] for u in upserts]).values())
    cat.add_vectors(MODEL, ids, {SPACE: vectors})
    return cat


@pytest.fixture
def catalog(tmp_path):
    x, _ = blobs()
    cat = make_catalog(tmp_path, x)
    yield cat
    cat.close()


@pytest.mark.slow  # the first UMAP of a process: numba compiles it (about 10 s)
def test_umap_keeps_clusters_apart_and_is_repeatable():
    x, labels = blobs()
    a = map2d.embed_2d(x, FAST)
    b = map2d.embed_2d(x, FAST)
    assert a.dtype == np.float32 and a.shape == (len(x), 2)
    np.testing.assert_array_equal(a, b)  # fixed random_state: the same map every time
    centres = np.array([a[labels == k].mean(axis=0) for k in range(3)])
    spread = max(np.linalg.norm(a[labels == k] - centres[k], axis=1).mean() for k in range(3))
    gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 3 * spread  # three islands, not one cloud


def test_tiny_collections():
    one = map2d.embed_2d(np.ones((1, 4), np.float32), FAST)
    two = map2d.embed_2d(np.eye(2, 4, dtype=np.float32), FAST)
    assert one.tolist() == [[0.0, 0.0]] and two.tolist() == [[-1.0, 0.0], [1.0, 0.0]]
    x, _ = blobs(n_per=2, centres=2)  # 4 points: UMAP from a random start
    assert map2d.embed_2d(x, FAST).shape == (4, 2)


def test_cached_per_generation_and_computed_again_when_vectors_change(catalog, tmp_path, monkeypatch):
    maps = tmp_path / "maps"
    calls = []
    real = map2d.embed_2d
    monkeypatch.setattr(map2d, "embed_2d", lambda v, p: calls.append(len(v)) or real(v, p))
    first, computed = map2d.compute_map(catalog, maps, MODEL, SPACE, FAST)
    assert computed and calls == [180]
    assert first.generation == catalog.generation(MODEL) and first.total == 180 and first.note is None
    saved = map2d.map_file(maps, MODEL, SPACE)
    assert saved.is_file() and saved.suffix == ".npz"
    again, computed = map2d.compute_map(catalog, maps, MODEL, SPACE, FAST)
    assert not computed and calls == [180]  # the cache: UMAP did not run again
    np.testing.assert_array_equal(again.coords, first.coords)
    np.testing.assert_array_equal(again.ids, first.ids)
    # other options: computed again
    _, computed = map2d.compute_map(catalog, maps, MODEL, SPACE, MapParams(n_neighbors=5, n_epochs=30))
    assert computed and len(calls) == 2
    # a new image's vector bumps the generation: the saved map is stale, then computed again
    catalog.apply_scan([("c/new.jpg", "c", 5, 1, "f" * 64)], [])
    (new_id,) = catalog.content_ids_by_sha(["f" * 64]).values()
    catalog.add_vectors(MODEL, [new_id], {SPACE: blobs(n_per=1, centres=1)[0]})
    assert not map2d.is_fresh(map2d.load_map(saved), catalog)
    fresh, computed = map2d.compute_map(catalog, maps, MODEL, SPACE, FAST)
    assert computed and fresh.total == 181 and new_id in fresh.ids.tolist()
    # a removed image (its content and vector deleted) too
    catalog.apply_scan([], ["c/new.jpg"])
    assert not map2d.is_fresh(map2d.load_map(saved), catalog)


def test_a_damaged_cache_file_is_computed_again(catalog, tmp_path):
    maps = tmp_path / "maps"
    path = map2d.map_file(maps, MODEL, SPACE)
    path.parent.mkdir()
    path.write_bytes(b"not a zip")
    assert map2d.load_map(path) is None
    m, computed = map2d.compute_map(catalog, maps, MODEL, SPACE, FAST)
    assert computed and map2d.load_map(path).ids.tolist() == m.ids.tolist()


def test_above_the_limit_a_subsample_with_a_note(catalog, tmp_path):
    m, _ = map2d.compute_map(
        catalog, tmp_path / "maps", MODEL, SPACE, MapParams(n_neighbors=10, n_epochs=30, max_points=50)
    )
    assert len(m.ids) == 50 and m.total == 180
    assert m.note.startswith("50 of 180 images drawn at random (seed 42)")
    assert np.all(np.diff(m.ids) > 0)  # in id order
    rows, note = map2d.subsample(np.arange(180), 50, 42)
    assert rows.tolist() == map2d.subsample(np.arange(180), 50, 42)[0].tolist()  # seeded


def test_payloads(catalog, tmp_path):
    m, _ = map2d.compute_map(catalog, tmp_path / "maps", MODEL, SPACE, FAST)
    pts = map2d.points_payload(m, catalog)
    assert len(pts["x"]) == len(pts["y"]) == len(pts["id"]) == len(pts["path"]) == len(pts["folder"]) == 180
    assert pts["folders"] == ["a", "b", "c"] and pts["path"][0] == "a/img0000.jpg" and pts["folder"][:4] == [0, 1, 2, 0]
    assert all(round(v, 3) == v for v in pts["x"][:20])
    by_folder = map2d.colors_payload(m, catalog, "folder")
    assert by_folder["codes"] == pts["folder"] and by_folder["counts"] == [60, 60, 60]
    clusters = map2d.colors_payload(m, catalog, "cluster", clusters=3)
    assert clusters["categories"] == ["cluster 1", "cluster 2", "cluster 3"] and sorted(clusters["counts"]) == [
        60,
        60,
        60,
    ]
    # the blobs were made 0,0,...,1,1,...: each KMeans cluster of the map is one blob
    codes = np.array(clusters["codes"])
    assert all(len(set(codes[k * 60 : (k + 1) * 60])) == 1 for k in range(3))
    tags = map2d.colors_payload(m, catalog, "tag")
    assert tags["categories"] == ["(no tag)"] and tags["counts"] == [180]
    with pytest.raises(BadMapParameter, match="cannot colour by 'size'"):
        map2d.colors_payload(m, catalog, "size")
    with pytest.raises(BadMapParameter, match="clusters = 1 is out of range"):
        map2d.colors_payload(m, catalog, "cluster", clusters=1)
    # a query sits among its neighbours
    ids = m.ids.tolist()
    placed = map2d.place_query(m, [(ids[0], "a/img0000.jpg", 0.9), (ids[1], "b/img0001.jpg", 0.1)])
    x0, x1 = round(float(m.coords[0][0]), 3), round(float(m.coords[1][0]), 3)
    assert placed["x"] == pytest.approx(x0, abs=2e-3)  # 0.8 less similar: weighs e^-16 of the best
    even = map2d.place_query(m, [(ids[0], "a/img0000.jpg", 0.5), (ids[1], "b/img0001.jpg", 0.5)])
    assert even["x"] == pytest.approx((x0 + x1) / 2, abs=2e-3)
    assert [n["path"] for n in placed["neighbours"]] == ["a/img0000.jpg", "b/img0001.jpg"]
    assert map2d.place_query(m, [(10**9, "gone.jpg", 0.5)]) == {"x": None, "y": None, "neighbours": []}


@pytest.mark.parametrize(
    "params, words",
    [
        (MapParams(n_neighbors=1), "n_neighbors = 1 is out of range"),
        (MapParams(n_neighbors=True), "n_neighbors = True"),
        (MapParams(min_dist=1.5), "min_dist = 1.5 is out of range"),
        (MapParams(min_dist=float("nan")), "min_dist = nan"),
        (MapParams(n_epochs=0), "n_epochs = 0"),
        (MapParams(max_points=5), "max_points = 5"),
    ],
)
def test_bad_options(params, words):
    with pytest.raises(BadMapParameter, match=words) as info:
        params.checked()
    assert info.value.status == 422 and info.value.hint


def test_a_copy_in_another_folder_keeps_the_map_and_moves_the_point(catalog, tmp_path):
    """A new file with a content already mapped changes no vector: the map stays up to date, and
    its point now shows the new first path and folder (the files are read afresh, not cached)."""
    m, _ = map2d.compute_map(catalog, tmp_path / "maps", MODEL, SPACE, FAST)
    before = map2d.points_payload(m, catalog)
    assert before["path"][0] == "a/img0000.jpg"
    catalog.apply_scan([("0-copies/img0000.jpg", "0-copies", 10, 2, f"{0:064x}")], [])
    assert map2d.is_fresh(m, catalog)
    after = map2d.points_payload(m, catalog)
    assert after["path"][0] == "0-copies/img0000.jpg" and after["folders"][after["folder"][0]] == "0-copies"
    assert after["path"][1:] == before["path"][1:]
    by_folder = map2d.colors_payload(m, catalog, "folder")
    assert by_folder["categories"] == ["0-copies", "a", "b", "c"] and by_folder["counts"] == [1, 59, 60, 60]
