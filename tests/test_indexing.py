"""Indexing through the Python API and the CLI: incremental runs, hostile files, ontology edits,
model mismatch, interruption (SIGKILL, Ctrl-C) and resumption, and the per-project lock.

The model is offline-concepts (loaded once per process). Subprocess tests use the ``vitrine``
command next to the running Python and read the catalog (``<project>/.vitrine/catalog.db``)
read-only while the indexing runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vitrine
from vitrine.core.errors import Cancelled, IndexMismatch, NotFound, VitrineError
from vitrine.index.faiss_index import VectorIndex
from vitrine.index.maintain import forget_cached, index_path
from vitrine.models import registry
from vitrine.project import Project

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "collection"))
import cli_helpers as cli  # noqa: E402
import hostile_corpus as hc  # noqa: E402

OFFLINE = cli.OFFLINE
N_DEMO = 20
QUERIES = [
    "a cat",
    "a rocket launch",
    "a cup of coffee",
    "a page of printed text",
    "a flower",
    "a motorcycle",
]


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch):
    monkeypatch.delenv("VITRINE_DATA_DIR", raising=False)
    monkeypatch.delenv("VITRINE_PROGRESS", raising=False)


def _copy(src: Path, dest_root: Path) -> Path:
    dest = dest_root / src.name
    shutil.copytree(src, dest, symlinks=True)
    return dest


def _skimage_photo(name: str, mirrored: bool = True) -> Image.Image:
    """A real photo from scikit-image, mirrored: new content (new hash) showing the same thing."""
    from skimage import data

    im = Image.fromarray(getattr(data, name)())
    return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else im


def _paths(result) -> list[str]:
    return [h.path for h in result.hits]


def _all_paths(result) -> set[str]:
    return {p for h in result.hits for p in [h.path, *h.duplicates]}


def _disk_index(p: Project, space: str) -> VectorIndex:
    return VectorIndex.load(index_path(p.paths.indexes_dir, OFFLINE, space))


def _spaces() -> list[str]:
    return list(registry.load(OFFLINE).spaces.dims)


def _assert_index_files_sound(p: Project) -> None:
    """Every index file there is loads and matches its sidecar (a kill never leaves half a file)."""
    for path in p.paths.indexes_dir.glob("*/*.faiss"):
        VectorIndex.load(path)  # raises IndexFileError on a half-written or mismatched file


# --------------------------------------------------------------------------- incremental runs


def test_incremental_reindex_add_change_remove(fresh_demo):
    p = Project(fresh_demo)
    images = p.paths.images_dir

    first = p.index(model=OFFLINE)
    assert (first.embedded, first.unchanged, first.removed, first.failed) == (N_DEMO, 0, 0, [])
    assert first.files == N_DEMO
    assert first.model == OFFLINE and first.model_reason == "chosen by the user"

    second = p.index()
    assert (second.embedded, second.unchanged, second.removed, second.failed) == (0, N_DEMO, 0, [])
    assert second.model == OFFLINE and "indexed with" in second.model_reason
    assert p.search("a cat", k=1).hits[0].path == "animaux/chat.jpg"

    # ADD, same content under a new name in a new folder: recorded once (by hash), not embedded
    (images / "copies").mkdir()
    shutil.copy2(images / "animaux" / "chat.jpg", images / "copies" / "minou.jpg")
    dup = p.index()
    assert (dup.embedded, dup.unchanged, dup.removed, dup.files) == (0, N_DEMO + 1, 0, N_DEMO + 1)
    hit = p.search("a cat", k=3).hits[0]
    assert {hit.path, *hit.duplicates} == {"animaux/chat.jpg", "copies/minou.jpg"}
    assert p.image_info("copies/minou.jpg")["duplicates"] == ["animaux/chat.jpg"]
    assert p.search("a cat", k=5, folder="copies").hits[0].path == "copies/minou.jpg"
    assert p.catalog.counts()["contents"] == N_DEMO

    # ADD a genuinely new image
    (images / "nouveau").mkdir()
    _skimage_photo("rocket").save(images / "nouveau" / "fusée-miroir.jpg", quality=90)
    new = p.index()
    assert (new.embedded, new.unchanged, new.removed, new.files) == (1, N_DEMO + 1, 0, N_DEMO + 2)
    assert set(_paths(p.search("a rocket launch", k=2))) == {"espace/fusée.jpg", "nouveau/fusée-miroir.jpg"}
    assert p.search_similar("espace/fusée.jpg", k=1).hits[0].path == "nouveau/fusée-miroir.jpg"
    n_before = {space: _disk_index(p, space).ntotal for space in _spaces()}
    assert set(n_before.values()) == {N_DEMO + 1}

    # CHANGE an image's content in place: the brick wall becomes a cat
    brick = images / "textures" / "brique.png"
    assert "textures/brique.png" not in _paths(p.search("a cat", k=3))
    old_sha = p.image_info("textures/brique.png")["sha256"]
    st = brick.stat()
    _skimage_photo("chelsea").save(brick)
    os.utime(brick, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    changed = p.index()
    assert (changed.embedded, changed.removed, changed.unchanged, changed.failed) == (1, 0, N_DEMO + 1, [])
    info = p.image_info("textures/brique.png")
    assert info["sha256"] != old_sha and info["sha256"] == hashlib.sha256(brick.read_bytes()).hexdigest()
    cat_hits = p.search("a cat", k=3)
    assert set(_paths(cat_hits)[:2]) == {"textures/brique.png", "animaux/chat.jpg"}
    assert {h.path: h.score for h in cat_hits.hits}["textures/brique.png"] > 0.5
    assert p.catalog.counts()["contents"] == N_DEMO + 1  # the old brick content is gone, vectors too
    assert {space: _disk_index(p, space).ntotal for space in _spaces()} == n_before

    # REMOVE an image
    gone = "objets/café.jpg"
    assert p.search("a cup of coffee", k=1).hits[0].path == gone
    gone_id = p.image_info(gone)["content_id"]
    (images / gone).unlink()
    removed = p.index()
    assert (removed.embedded, removed.removed, removed.files) == (0, 1, N_DEMO + 1)
    with pytest.raises(NotFound):
        p.image_info(gone)
    for q in QUERIES:
        assert gone not in _all_paths(p.search(q, k=100))
    for kw in p.ontology.keywords:
        assert gone not in _all_paths(p.search_keyword(kw, k=100))
    assert gone not in _all_paths(p.search_similar("animaux/chat.jpg", k=100))
    for space in _spaces():
        on_disk = _disk_index(p, space)
        assert on_disk.ntotal == n_before[space] - 1
        assert gone_id not in on_disk
        np.testing.assert_array_equal(on_disk.ids(), p.catalog.vector_ids(OFFLINE, space))
        meta = VectorIndex.read_meta(index_path(p.paths.indexes_dir, OFFLINE, space))
        assert meta["generation"] == p.catalog.generation(OFFLINE)
    p.close()

    # a fresh Project, with the in-process index cache dropped, reads the same state from disk
    fresh = vitrine.open_project(fresh_demo)
    forget_cached(fresh.paths.indexes_dir)
    assert fresh.status()["files"] == N_DEMO + 1
    for q in QUERIES:
        assert gone not in _all_paths(fresh.search(q, k=100))
    assert fresh.search("a cat", k=1).hits[0].path in {"textures/brique.png", "animaux/chat.jpg"}
    again = fresh.index()
    assert (again.embedded, again.unchanged, again.removed, again.failed) == (0, N_DEMO + 1, 0, [])


def test_data_dir_deleted_and_rebuilt_in_the_same_process(indexed_demo, tmp_path):
    """Deleting .vitrine resets the catalog (content ids and generations start again): an index
    cached in this process for the old catalog must not answer for the new one."""
    project_dir = _copy(indexed_demo, tmp_path)
    p = Project(project_dir)
    assert _paths(p.search("a rocket launch", k=1)) == ["espace/fusée.jpg"]
    generation = p.catalog.generation(OFFLINE)
    p.close()
    shutil.rmtree(p.paths.data_dir)
    (p.paths.images_dir / "animaux" / "cheval.png").unlink()  # so that content ids shift

    q = Project(project_dir)
    assert q.index(model=OFFLINE).embedded == N_DEMO - 1
    assert q.catalog.generation(OFFLINE) == generation  # the case the cache could confuse
    assert _paths(q.search("a rocket launch", k=1)) == ["espace/fusée.jpg"]
    assert _paths(q.search("a cat", k=1)) == ["animaux/chat.jpg"]
    for space in _spaces():
        assert _disk_index(q, space).ntotal == N_DEMO - 1
        np.testing.assert_array_equal(_disk_index(q, space).ids(), q.catalog.vector_ids(OFFLINE, space))


def test_interrupted_first_run_resumes_with_its_model(fresh_demo, monkeypatch):
    """A first run stopped part-way records its model as soon as it is loaded (so status shows it);
    a plain re-run resumes with that model, not whatever the default is now."""
    p = Project(fresh_demo)
    cancel = threading.Event()

    def progress(stage, done, total):
        if stage == "embed" and done >= 4:
            cancel.set()

    with pytest.raises(Cancelled):
        p.index(model=OFFLINE, progress=progress, cancel=cancel, batch_size=2)
    assert p.model_name == OFFLINE
    committed = p.catalog.models()[OFFLINE]
    assert 4 <= committed < N_DEMO

    def other_default(probe_hub=True):
        return "clip-vit-b-32", "pretend its weights are available"

    monkeypatch.setattr(registry, "default_embedding_model", other_default)
    report = p.index()
    assert report.model == OFFLINE and "indexed with" in report.model_reason
    assert "chosen by the user" in report.model_reason  # the first reason is kept
    assert (report.embedded, report.unchanged) == (N_DEMO - committed, committed)
    assert p.model_name == OFFLINE


@pytest.mark.slow
def test_a_first_run_stopped_before_embedding_reports_nothing_indexed(fresh_demo):
    """Stopped while scanning: the model is recorded, but no image has a vector. Status and search
    say so ("not indexed yet"), and the interruption message says nothing was kept."""
    from vitrine.cli.project import _index_interrupted

    p = Project(fresh_demo)
    cancel = threading.Event()

    def progress(stage, done, total):
        if stage == "scan":
            cancel.set()

    with pytest.raises(Cancelled):
        p.index(model=OFFLINE, progress=progress, cancel=cancel)
    assert _index_interrupted(p) == f"nothing was embedded yet with {OFFLINE}"
    st = p.status()
    assert st["model"] == OFFLINE and st["indexed"] == 0
    assert st["pending"] == st["contents"]
    for search in (lambda: p.search("a cat"), lambda: p.search_keyword("Chat")):
        with pytest.raises(NotFound) as info:
            search()
        assert "not been indexed yet" in info.value.message and "vitrine index" in info.value.hint

    # stopped after some batches: the message gives the number really committed
    cancel.clear()

    def later(stage, done, total):
        if stage == "embed" and done >= 4:
            cancel.set()

    with pytest.raises(Cancelled):
        p.index(progress=later, cancel=cancel, batch_size=2)
    committed = p.catalog.models()[OFFLINE]
    kept = f"the images embedded so far are kept: {committed} of {N_DEMO} indexed with {OFFLINE}"
    assert _index_interrupted(p) == kept
    st = p.status()
    assert (st["indexed"], st["pending"]) == (committed, N_DEMO - committed)
    assert p.search("a cat", k=1).hits  # what is indexed can be searched


@pytest.mark.slow
def test_index_and_status_count_the_same_failures(tmp_path):
    """One broken content in two files, and an empty file: three images that cannot be indexed,
    in the index report, the status count and the status list alike."""
    project = tmp_path / "p"
    images = project / "images" / "a"
    images.mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 10, 10)).save(images / "red.jpg")
    Image.new("RGB", (64, 48), (10, 200, 10)).save(images / "green.png")
    data = (images / "red.jpg").read_bytes()
    (images / "broken.jpg").write_bytes(data[: len(data) // 3])
    shutil.copy(images / "broken.jpg", images / "broken-copy.jpg")
    (images / "empty.jpg").write_bytes(b"")
    p = vitrine.open_project(project)
    report = p.index(model=OFFLINE)
    st = p.status()
    assert [f["path"] for f in report.failed] == ["a/broken-copy.jpg", "a/broken.jpg", "a/empty.jpg"]
    assert st["failed"] == len(report.failed) == 3
    assert st["failures"] == report.failed
    assert (st["indexed"], st["pending"]) == (2, 0)
    said = cli.flat(cli.run("status", project).stdout)
    assert "3 failed" in said and "2 indexed with model offline-concepts" in said, said
    assert all(f"{f['path']}: {f['reason']}" in said for f in report.failed)

    # fixed on disk: the next run and the status agree again
    (images / "empty.jpg").unlink()
    shutil.copy(images / "red.jpg", images / "broken.jpg")
    report = p.index()
    assert [f["path"] for f in report.failed] == ["a/broken-copy.jpg"]
    assert p.status()["failed"] == 1 and p.status()["failures"] == report.failed


def test_a_query_in_a_language_the_model_does_not_read_says_so(indexed_demo):
    p = Project(indexed_demo)
    for query in ("une fusée", "un chat"):
        note = p.search(query, k=3).language_note
        assert note is not None and note["language"] == "fr", query
        assert "French" in note["message"] and OFFLINE in note["message"]
        assert note["models"] == ["clip-multilingual"] and "clip-multilingual" in note["hint"]
        assert "fr" in registry.get("clip-multilingual").card.languages  # named because its card says so
    assert p.search("a rocket launch", k=3).language_note is None
    assert p.search_keyword("Fusée", k=3).language_note is None  # its description is English


def test_the_demo_says_why_its_model_was_chosen(fresh_demo):
    from vitrine.demo import DEMO_MODEL, DEMO_MODEL_REASON

    report = Project(fresh_demo).index(model=DEMO_MODEL, reason=DEMO_MODEL_REASON)
    assert report.model_reason == DEMO_MODEL_REASON and "user" not in report.model_reason
    again = Project(fresh_demo).index()
    assert again.model_reason == f"the model this project was indexed with; first chosen because {DEMO_MODEL_REASON}"


# --------------------------------------------------------------------------- hostile files


@pytest.mark.slow
def test_hostile_and_tricky_files(fresh_demo, tmp_path):
    p = Project(fresh_demo)
    assert p.index(model=OFFLINE).embedded == N_DEMO
    images = p.paths.images_dir
    expected = hc.make_hostile_corpus(images, tmp_path / "outside")
    # a second file with the same broken content: both must be reported, not only the one decoded
    shutil.copy(images / "hostile" / "truncated.jpg", images / "hostile" / "truncated-copy.jpg")
    expected["hostile/truncated-copy.jpg"] = hc.TRUNCATED
    good = hc.make_good_corpus(images)
    assert len(expected) >= 12 and good
    good_contents = {hashlib.sha256((images / rel).read_bytes()).hexdigest() for rel in good}

    # the CLI run: exit 0 although files failed, every hostile file reported with its reason
    result = cli.run("index", fresh_demo, "--json")
    assert result.returncode == 0, cli.describe(result)
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    failed = {f["path"]: f["reason"] for f in report["failed"]}
    assert set(failed) == set(expected), cli.describe(result)
    for rel, reason in expected.items():
        assert reason in failed[rel], (rel, failed[rel])
    # the same content, the same reason, which names neither file
    assert failed["hostile/truncated.jpg"] == failed["hostile/truncated-copy.jpg"]
    assert "truncated" in failed["hostile/truncated.jpg"] and ".jpg" not in failed["hostile/truncated.jpg"]
    assert report["embedded"] == len(good_contents)
    assert report["unchanged"] == N_DEMO and report["removed"] == 0

    # the API on the same project: never raises, same verdicts, nothing new to embed
    again = p.index()
    assert again.embedded == 0 and again.unchanged == N_DEMO + len(good)
    failed_again = {f["path"]: f["reason"] for f in again.failed}
    assert set(failed_again) == set(expected)
    for rel, reason in expected.items():
        assert reason in failed_again[rel], (rel, failed_again[rel])

    # every good tricky file is embedded, with the size it decodes to, and can be searched from
    vector_ids = set(p.catalog.vector_ids(OFFLINE, "visual").tolist())
    for rel in good:
        info = p.image_info(rel)
        assert info["error"] is None, (rel, info["error"])
        assert info["content_id"] in vector_ids, rel
        assert (info["width"], info["height"]) == hc.GOOD_EXPECTED[rel]["size"], rel
        assert p.search_similar(rel, k=3).hits, rel
    assert set(good) <= _all_paths(p.search("an astronaut", k=200))
    # hostile files never show up in results
    everything = _all_paths(p.search("a photo", k=200))
    assert not everything & set(expected)

    # the images indexed before are still found
    assert p.search("a cat", k=1).hits[0].path == "animaux/chat.jpg"
    assert p.search_keyword("Fusée", k=1).hits[0].path == "espace/fusée.jpg"
    assert p.search("a cat", k=5, folder="animaux").hits[0].path == "animaux/chat.jpg"


# --------------------------------------------------------------------------- ontology, models


def test_ontology_edit_is_picked_up_without_restart(indexed_demo, tmp_path):
    project_dir = _copy(indexed_demo, tmp_path)
    p = Project(project_dir)
    assert p.check().ok
    with pytest.raises(NotFound):
        p.search_keyword("Tasse")

    ontology = p.paths.ontology_file
    lines = ontology.read_text(encoding="utf-8").splitlines()
    with open(ontology, "a", encoding="utf-8") as fh:
        fh.write('"Tasse": "a cup of coffee"\n')
    assert p.search_keyword("Tasse", k=1).hits[0].path == "objets/café.jpg"
    assert p.search_keyword("tasse", k=1).hits[0].path == "objets/café.jpg"
    assert p.check().ok

    with open(ontology, "a", encoding="utf-8") as fh:
        fh.write('Lune: "la lune"\n')  # keyword not quoted
        fh.write('"Théière": "a teapot"\n')  # fine
        fh.write('"Brique" "a brick wall"\n')  # no colon
    bad_unquoted, bad_colon = len(lines) + 2, len(lines) + 4
    report = p.check()
    assert not report.ok
    problems = report.ontology.problems
    assert [(pr.line, pr.severity) for pr in problems] == [(bad_unquoted, "error"), (bad_colon, "error")]
    assert "quotes" in problems[0].message and "colon" in problems[1].message
    assert problems[0].text.startswith("Lune")
    as_dict = report.to_dict()
    assert [pr["line"] for pr in as_dict["ontology"]["problems"]] == [bad_unquoted, bad_colon]
    # the good lines around the bad ones are still used, on the same object
    assert p.search_keyword("Tasse", k=1).hits[0].path == "objets/café.jpg"
    assert "Théière" in p.ontology and "Brique" not in p.ontology


def test_search_with_another_model_is_a_mismatch(indexed_demo, tmp_path):
    p = Project(indexed_demo)
    assert p.model_name == OFFLINE
    cat_copy = tmp_path / "minou.jpg"
    shutil.copy(indexed_demo / "images" / "animaux" / "chat.jpg", cat_copy)
    calls = [
        lambda: p.search("a cat", model="clip-vit-b-32"),
        lambda: p.search_keyword("Chat", model="clip-vit-b-32"),
        lambda: p.search_similar("animaux/chat.jpg", model="clip-vit-b-32"),
        lambda: p.search_image(cat_copy, model="clip-vit-b-32"),
    ]
    for call in calls:
        with pytest.raises(IndexMismatch) as info:
            call()
        assert OFFLINE in info.value.message and "clip-vit-b-32" in info.value.message
        assert info.value.hint
    # the right model, named explicitly, is fine
    assert p.search("a cat", k=1, model=OFFLINE).hits[0].path == "animaux/chat.jpg"


# --------------------------------------------------------------------------- interruption


def _start_index(project_dir: Path, *extra):
    # a pause after each batch of 2 keeps the run going long enough to be interrupted part-way,
    # however fast or loaded the machine is (the vectors and results do not depend on it)
    env = cli.cli_env() | {"VITRINE_THROTTLE_BATCH_SECONDS": "0.3"}
    # a shell running this suite in the background (`cmd &` without job control) starts it with
    # SIGINT ignored, and children inherit that: give the CLI the default Ctrl-C behaviour back
    return cli.start(
        "index",
        project_dir,
        "--batch-size",
        "2",
        *extra,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(demo_source, indexed_demo, tmp_path):
    project_dir = _copy(demo_source, tmp_path)
    p = Project(project_dir)
    proc = _start_index(project_dir)
    try:
        cli.wait_for_vectors(proc, p.paths.catalog_db, at_least=4)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    committed = cli.committed_vectors(p.paths.catalog_db)
    assert 4 <= committed < N_DEMO, f"{committed} vectors: the run was not stopped part-way"
    _assert_index_files_sound(p)

    result = cli.run("index", project_dir, "--json")
    assert result.returncode == 0, cli.describe(result)
    report = json.loads(result.stdout)
    assert report["model"] == OFFLINE
    assert (report["embedded"], report["unchanged"], report["removed"], report["failed"]) == (
        N_DEMO - committed,
        committed,
        0,
        [],
    )
    _assert_index_files_sound(p)

    # the same as the uninterrupted run (the session's indexed_demo): contents, vectors, results
    ref = Project(indexed_demo)

    def groups(proj: Project) -> set[tuple[str, ...]]:
        by_id: dict[int, list[str]] = {}
        for rel, row in proj.catalog.files().items():
            by_id.setdefault(row.content_id, []).append(rel)
        return {tuple(sorted(v)) for v in by_id.values()}

    assert groups(p) == groups(ref) and len(groups(p)) == N_DEMO
    ids_p = {rel: row.content_id for rel, row in p.catalog.files().items()}
    ids_r = {rel: row.content_id for rel, row in ref.catalog.files().items()}
    for space in _spaces():
        assert _disk_index(p, space).ntotal == N_DEMO
        for rel in ids_p:
            _, a = p.catalog.vectors_for(OFFLINE, space, [ids_p[rel]])
            _, b = ref.catalog.vectors_for(OFFLINE, space, [ids_r[rel]])
            assert a.shape == b.shape == (1, registry.load(OFFLINE).spaces.dims[space])
            # stored as float16: two runs' float32 outputs a hair apart may round one step apart
            assert np.allclose(a, b, atol=2e-4), (space, rel)
    results = [(p.search(q, k=N_DEMO), ref.search(q, k=N_DEMO)) for q in QUERIES]
    results += [(p.search_keyword("Chat", k=N_DEMO), ref.search_keyword("Chat", k=N_DEMO))]
    results += [(p.search_similar("lieux/fleur.jpg", k=10), ref.search_similar("lieux/fleur.jpg", k=10))]
    for mine, theirs in results:
        assert _paths(mine) == _paths(theirs), mine.query
        for a, b in zip(mine.hits, theirs.hits, strict=True):
            assert abs(a.score - b.score) < 1e-5, (mine.query, a.path, a.score, b.score)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_resume_works(demo_source, tmp_path):
    project_dir = _copy(demo_source, tmp_path)
    p = Project(project_dir)
    proc = _start_index(project_dir)
    try:
        cli.wait_for_vectors(proc, p.paths.catalog_db, at_least=4)
        proc.send_signal(signal.SIGINT)
        result = cli.finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result.returncode == 130, cli.describe(result)
    assert "Traceback" not in result.stderr
    message = cli.flat(result.stderr)
    assert "interrupted" in message and "run the same command to resume" in message
    committed = cli.committed_vectors(p.paths.catalog_db)
    assert 4 <= committed < N_DEMO, f"{committed} vectors: the run was not stopped part-way"
    # it says what was really kept (read back from the catalog)
    assert f"kept: {committed} of {N_DEMO} indexed with {OFFLINE}" in message, message
    _assert_index_files_sound(p)
    assert p.model_name == OFFLINE  # recorded as soon as the model was loaded

    report = p.index()  # the lock was released: resuming works at once
    assert report.model == OFFLINE
    assert (report.embedded, report.unchanged, report.failed) == (N_DEMO - committed, committed, [])
    assert p.search("a cat", k=1).hits[0].path == "animaux/chat.jpg"
    assert _disk_index(p, "concepts").ntotal == N_DEMO


@pytest.mark.slow
def test_second_indexing_process_is_refused(demo_source, tmp_path):
    project_dir = _copy(demo_source, tmp_path)
    p = Project(project_dir)
    lock_file = p.paths.data_dir / "index.lock"
    first = _start_index(project_dir)
    try:
        cli.wait_for_lock(first, lock_file, p.paths.catalog_db)
        os.kill(first.pid, signal.SIGSTOP)  # it keeps the lock while the second one tries
        second = cli.run("index", project_dir, "--json", timeout=120)
    finally:
        first.kill()  # SIGKILL works on a stopped process; its work is not needed here
        first.communicate(timeout=60)
    assert second.returncode == 2, cli.describe(second)
    assert "Traceback" not in second.stderr and second.stdout == ""
    message = cli.flat(second.stderr)
    assert f"project '{project_dir.name}' is already being indexed or tagged by another process" in message
    assert "hint:" in message

    # the lock died with its holder; the API refuses too while someone else holds it
    with open(lock_file, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(VitrineError, match="already being indexed"):
            p.index(model=OFFLINE)
        fcntl.flock(fh, fcntl.LOCK_UN)
    report = p.index(model=OFFLINE)
    assert report.embedded + report.unchanged == N_DEMO and not report.failed
