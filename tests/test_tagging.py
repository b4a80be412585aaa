"""Detector tags (vitrine.tagging): the real offline SSD over the demo collection, tag filters on
search, incremental re-tagging, bad input, the CLI, the API routes and the project page's chips."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vitrine.core.errors import Cancelled, ModelError, NotFound, VitrineError
from vitrine.project import Project
from vitrine.server.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cli_helpers as cli  # noqa: E402

SSD = "ssd-mobilenet-v2-coco"
API = "/api/v1"
NAME = "demo-photos"
P = f"{API}/projects/{NAME}"
CAT = "animaux/chat.jpg"


def _copy(src: Path, dest_root: Path) -> Path:
    dest = dest_root / src.name
    shutil.copytree(src, dest, symlinks=True)
    return dest


def _photo(name: str, mirrored: bool = True) -> Image.Image:
    """A real photo from scikit-image, mirrored: new content (new hash) showing the same thing."""
    from skimage import data

    im = Image.fromarray(getattr(data, name)()).convert("RGB")
    return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else im


def _wait(client: TestClient, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"{API}/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, indexed_demo) -> tuple[Path, dict]:
    """A copy of the indexed demo tagged once with the real SSD; tests must not change it."""
    import cv2

    cv2.setNumThreads(1)
    project_dir = _copy(indexed_demo, tmp_path_factory.mktemp("tagged"))
    stages: list[tuple[str, int, int]] = []
    report = Project(project_dir).tag(SSD, threshold=0.5, progress=lambda *a: stages.append(a))
    return project_dir, {"report": report, "stages": stages}


# ------------------------------------------------------------------------------ Python API
def test_ssd_tags_the_demo_and_finds_the_cat(tagged):
    project_dir, run = tagged
    report = run["report"]
    assert (report.model, report.threshold) == (SSD, 0.5)
    assert report.tagged == 20 and report.unchanged == 0 and report.failed == []
    tag_stages = [s for s in run["stages"] if s[0] == "tag"]
    assert tag_stages[0] == ("tag", 0, 20) and tag_stages[-1] == ("tag", 20, 20) and len(tag_stages) >= 3
    p = Project(project_dir)
    counts = p.tags()
    assert counts["cat"] >= 1 and counts == report.labels
    assert list(counts.values()) == sorted(counts.values(), reverse=True)  # most frequent first
    page = p.images_with_tag("  CaT ")  # case-insensitive
    assert page.label == "cat" and page.total == counts["cat"]
    best = page.hits[0]
    assert best.path == CAT and best.score >= 0.5 and best.count >= 1 and best.model == SSD
    x1, y1, x2, y2, score = best.boxes[0]
    with Image.open(project_dir / "images" / CAT) as im:
        w, h = im.size
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and score == best.score
    assert (x2 - x1) * (y2 - y1) > 0.3 * w * h  # Chelsea fills most of the photo
    assert (best.width, best.height) == (w, h)
    assert [h.score for h in page.hits] == sorted((h.score for h in page.hits), reverse=True)
    # the motorcycle photo is a motorcycle; the tags are on the image's details too
    assert p.images_with_tag("motorcycle").hits[0].path == "objets/moto.jpg"
    info = p.image_info(CAT)
    assert any(t["label"] == "cat" and t["model"] == SSD for t in info["tags"])
    assert p.images_with_tag("unicorn").to_dict()["hits"] == []
    st = p.status()["tagging"]
    assert st["models"][SSD] == {"tagged": 20, "objects": report.objects, "threshold": 0.5, "pending": 0}
    assert st["tags"] == len(counts) and st["last_tag"]["tagged"] == 20


def test_search_with_tag_filter_returns_only_tagged_images(tagged):
    project_dir, _ = tagged
    p = Project(project_dir)
    counts = p.tags()
    for label in counts:
        with_tag = {h.path for h in p.images_with_tag(label).hits}
        result = p.search("a photo", k=50, tags=[label.upper()])
        assert {h.path for h in result.hits} == with_tag, label  # every tagged image, nothing else
        assert result.query["tags"] == [label]
    # unfiltered, the rocket ranks before the cat; with the cat tag only the cat is left
    assert p.search("a rocket launch", k=1).hits[0].path != CAT
    assert [h.path for h in p.search("a rocket launch", k=10, tags=["cat"]).hits] == [CAT]
    assert [h.path for h in p.search_keyword("Chat", tags=["cat"]).hits] == [CAT]
    # several tags: images with all of them
    pairs = [(a, b) for a in counts for b in counts if a < b]
    for a, b in pairs:
        both = {h.path for h in p.images_with_tag(a).hits} & {h.path for h in p.images_with_tag(b).hits}
        assert {h.path for h in p.search("a photo", k=50, tags=[a, b]).hits} == both, (a, b)
    # folder and tag filters together
    assert p.search("a photo", k=50, folder="objets", tags=["cat"]).hits == []
    # more like this, restricted to a tag; the image itself is left out
    similar = p.search_similar("objets/moto.jpg", k=50, tags=["person"])
    assert {h.path for h in similar.hits} == {h.path for h in p.images_with_tag("person").hits} - {"objets/moto.jpg"}
    # unknown tag or another tagging model: nothing
    assert p.search("a cat", tags=["unicorn"]).hits == []
    assert p.search("a cat", tags=["cat"], tag_model="another-detector").hits == []
    assert [h.path for h in p.search("a cat", tags=["cat"], tag_model=SSD).hits] == [CAT]


def test_retag_is_incremental_added_changed_removed_broken(tagged, tmp_path):
    project_dir = _copy(tagged[0], tmp_path)
    p = Project(project_dir)
    again = p.tag(SSD)
    assert (again.tagged, again.unchanged) == (0, 20)  # nothing new: the detector does not run
    images = project_dir / "images"
    _photo("chelsea").save(images / "animaux" / "chat-miroir.jpg", quality=90)  # added: a second cat
    (images / "objets" / "moto.jpg").unlink()  # removed: its motorcycle tag goes with it
    _photo("chelsea", mirrored=False).save(images / "objets" / "café.jpg", quality=90)  # changed: now a cat
    (images / "objets" / "cassé.jpg").write_bytes(b"not a jpeg at all")  # unreadable
    old_coffee = p.catalog.file_info("objets/café.jpg")["content_id"]
    report = p.tag(SSD)
    assert report.tagged == 2 and report.unchanged == 18  # 20 - 1 removed - 1 changed
    assert [f["path"] for f in report.failed] == ["objets/cassé.jpg"] and report.failed[0]["reason"]
    assert {h.path for h in p.images_with_tag("cat").hits} == {CAT, "animaux/chat-miroir.jpg", "objets/café.jpg"}
    assert p.images_with_tag("motorcycle").hits == [] and "motorcycle" not in p.tags()
    assert "cup" not in p.tags()  # the old coffee content is gone with its tags
    with sqlite3.connect(p.paths.catalog_db) as db:
        assert db.execute("SELECT count(*) FROM tags WHERE content_id = ?", (old_coffee,)).fetchone()[0] == 0
        orphans = "SELECT count(*) FROM {} WHERE content_id NOT IN (SELECT id FROM contents)"
        assert db.execute(orphans.format("tags")).fetchone()[0] == 0
        assert db.execute(orphans.format("tagged")).fetchone()[0] == 0
    # the unreadable file is tried again (and reported again) by the next run
    third = p.tag(SSD)
    assert third.tagged == 0 and [f["path"] for f in third.failed] == ["objets/cassé.jpg"]
    # another threshold re-tags everything for that model, and keeps fewer boxes
    strict = p.tag(SSD, threshold=0.9)
    assert strict.tagged == 20 and strict.threshold == 0.9
    assert all(h.score >= 0.9 for label in p.tags() for h in p.images_with_tag(label).hits)
    assert p.status()["tagging"]["models"][SSD]["threshold"] == 0.9


def test_a_cancelled_run_keeps_its_batches_and_resumes(indexed_demo, tmp_path):
    p = Project(_copy(indexed_demo, tmp_path))
    cancel = threading.Event()

    def progress(stage, done, total):
        if stage == "tag" and done >= 4:
            cancel.set()  # after the first batch of 4 is committed

    with pytest.raises(Cancelled, match="tagging was cancelled"):
        p.tag(SSD, progress=progress, cancel=cancel, batch_size=4)
    kept = p.status()["tagging"]["models"][SSD]
    assert kept["tagged"] == 4 and kept["pending"] == 16
    resumed = p.tag(SSD, batch_size=8)
    assert (resumed.tagged, resumed.unchanged) == (16, 4)
    assert p.images_with_tag("cat").hits[0].path == CAT


def test_bad_model_or_threshold_is_a_clear_error(fresh_demo):
    p = Project(fresh_demo)
    with pytest.raises(ModelError) as exc:
        p.tag("no-such-detector")
    assert "unknown detection model 'no-such-detector'" in exc.value.message and SSD in exc.value.hint
    with pytest.raises(ModelError, match="not a detector"):
        p.tag("offline-concepts")
    for bad in (1.5, -0.1, "high"):
        with pytest.raises(VitrineError, match="threshold"):
            p.tag(SSD, threshold=bad)
    assert p.status()["tagging"] == {"models": {}, "tags": 0, "last_tag": None}
    with pytest.raises(NotFound):
        p.search("a cat", tags=["cat"])  # not indexed: the search itself says so
    with pytest.raises(VitrineError, match="bad page"):
        p.images_with_tag("cat", limit=0)


# ------------------------------------------------------------------------------ CLI
@pytest.mark.slow  # five command-line runs, each importing torch
def test_cli_tag_status_and_search_with_tag(tagged, tmp_path):
    project_dir = _copy(tagged[0], tmp_path)
    (project_dir / "images" / "objets" / "cassé.jpg").write_bytes(b"\xff\xd8 broken")
    r = cli.run("tag", str(project_dir), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == SSD and out["tagged"] == 0 and out["unchanged"] == 20
    assert out["failed"][0]["path"] == "objets/cassé.jpg" and out["tags"]["cat"] == 1
    r = cli.run("search", str(project_dir), "a rocket launch", "--tag", "Cat", "--json")
    assert r.returncode == 0, r.stderr
    assert [h["path"] for h in json.loads(r.stdout)] == [CAT]
    r = cli.run("search", str(project_dir), "a rocket launch", "--tag", "cat", "--tag", "unicorn", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == []
    r = cli.run("status", str(project_dir))
    assert r.returncode == 0 and re.search(rf"tags by {SSD} \(threshold 0\.5\): 20 images tagged", r.stdout)
    r = cli.run("tag", str(project_dir), "--model", "no-such-detector")
    assert r.returncode == 2 and "error:" in r.stderr and "no-such-detector" in r.stderr
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------------------------ REST API
@pytest.fixture(scope="module")
def client(tagged) -> TestClient:
    with TestClient(create_app(tagged[0].parent), raise_server_exceptions=False) as c:
        yield c


def test_api_tags_and_images_with_tag(client):
    data = client.get(f"{P}/tags").json()
    counts = {t["label"]: t["count"] for t in data["tags"]}
    assert counts["cat"] == 1 and data["tagging"]["models"][SSD]["tagged"] == 20
    assert client.get(f"{P}/tags", params={"model": "other"}).json()["tags"] == []
    page = client.get(f"{P}/tags/CAT").json()
    assert page["label"] == "cat" and page["total"] == 1 and page["hits"][0]["path"] == CAT
    assert page["hits"][0]["boxes"][0][4] == page["hits"][0]["score"]
    assert client.get(f"{P}/tags/unicorn").json()["hits"] == []  # unknown tag: an empty list
    assert client.get(f"{P}/tags/dining%20table").status_code == 200
    assert client.get(f"{P}/tags/cat", params={"limit": 0}).status_code == 422
    assert any(t["label"] == "cat" for t in client.get(f"{P}/meta/{CAT}").json()["tags"])


def test_api_search_with_tag(client):
    hits = client.get(f"{P}/search", params={"q": "a rocket launch", "tag": "cat"}).json()["hits"]
    assert [h["path"] for h in hits] == [CAT]
    r = client.get(f"{P}/search", params=[("q", "a photo"), ("tag", "cat"), ("tag", "unicorn")])
    assert r.status_code == 200 and r.json()["hits"] == []
    r = client.get(f"{P}/search", params={"keyword": "Chat", "tag": "cat", "tag_model": SSD})
    assert [h["path"] for h in r.json()["hits"]] == [CAT]
    upload = _photo("rocket", mirrored=False)
    buf = io.BytesIO()
    upload.save(buf, "JPEG")
    r = client.post(f"{P}/search/image", files={"file": ("x.jpg", buf.getvalue(), "image/jpeg")}, data={"tag": "cat"})
    assert r.status_code == 200 and [h["path"] for h in r.json()["hits"]] == [CAT]


def test_api_unknown_project_and_bad_input(client):
    for method, url in [
        ("get", f"{API}/projects/nope/tags"),
        ("get", f"{API}/projects/nope/tags/cat"),
        ("post", f"{API}/projects/nope/tag"),
        ("get", f"{API}/projects/nope/search?q=a+cat&tag=cat"),
    ]:
        r = getattr(client, method)(url)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", url
    r = client.post(f"{P}/tag", data={"model": "no-such-detector"})
    assert r.status_code == 400 and "no-such-detector" in r.json()["error"]["message"]
    assert client.post(f"{P}/tag", data={"threshold": "2"}).status_code == 422
    assert client.get(f"{API}/jobs", params={"project": NAME}).json() == []  # nothing was started


def test_api_tag_job(indexed_demo, tmp_path):
    root = tmp_path / "root"
    project_dir = _copy(indexed_demo, root)
    for rel in list((project_dir / "images").rglob("*.*")):
        if rel.relative_to(project_dir / "images").as_posix() not in (CAT, "objets/moto.jpg"):
            rel.unlink()  # two photos: a fast job
    with TestClient(create_app(root), raise_server_exceptions=False) as c:
        r = c.post(f"{P}/tag", data={"threshold": "0.4"})
        assert r.status_code == 202
        job = r.json()
        assert (job["kind"], job["target"]) == ("tag", NAME)
        done = _wait(c, job["id"])
        assert done["state"] == "done", done
        assert done["result"]["tagged"] == 2 and done["result"]["threshold"] == 0.4
        assert {"cat", "motorcycle"} <= set(done["result"]["labels"])
        assert c.get(P).json()["tagging"]["models"][SSD]["tagged"] == 2
        assert {t["label"] for t in c.get(f"{P}/tags").json()["tags"]} >= {"cat", "motorcycle"}


# ------------------------------------------------------------------------------ web UI
def _chromium() -> str | None:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "server"))
    from ui_helpers import chromium_path

    return chromium_path()


@pytest.mark.ui
@pytest.mark.slow
def test_ui_tag_chip_filters_results(tagged):
    chromium = _chromium()
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium and playwright are required for the UI tests in CI")
        pytest.skip("Chromium or playwright is not installed")
    from ui_helpers import CHROMIUM_ARGS, ServerThread

    with ServerThread(create_app(tagged[0].parent), health_path="/api/v1/health") as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{srv.url}/p/{NAME}")
        chip = page.locator('#tag-chips .chip[data-tag="cat"]')
        expect(chip).to_be_visible()
        expect(chip.locator(".count")).to_have_text("1")
        chip.click()
        expect(page).to_have_url(re.compile(r"\?tag=cat$"))
        expect(page.locator("#results-tag")).to_have_text("cat")
        expect(page.locator("#results .result .caption")).to_have_text([CAT])
        expect(chip).to_have_class(re.compile(r"\bactive\b"))
        # a text search keeps the tag: only the cat, whatever the text
        page.fill("#search-input", "a rocket launch")
        page.click("#search-button")
        expect(page).to_have_url(re.compile(r"q=a\+rocket\+launch&tag=cat"))
        expect(page.locator("#results-query")).to_have_text("a rocket launch")
        expect(page.locator("#results .result .caption")).to_have_text([CAT])
        # a second click on the chip clears the filter
        chip.click()
        expect(page).not_to_have_url(re.compile(r"tag=cat"))
        expect(page.locator("#results .result")).not_to_have_count(1)
        # the button runs a tagging job and shows its outcome (nothing new here)
        page.click("#tag-button")
        expect(page.locator("#job-text")).to_contain_text("Tagged with ssd-mobilenet-v2-coco: 0 new, 20 unchanged")
        browser.close()
    assert not errors, errors
