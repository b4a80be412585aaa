"""The UI's pages as HTTP answers (no browser): error pages with the right status for page URLs
while API URLs keep JSON, the datasets page's empty state (its command is run as printed), and
the Plotly bundle compressed and cached."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from vitrine.server.app import create_app
from vitrine.server.templates import plotly_version

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cli_helpers as cli  # noqa: E402


def _client(root: Path) -> TestClient:
    return TestClient(create_app(root), raise_server_exceptions=False)


# --------------------------------------------------------------------------- error pages
def test_page_urls_get_html_error_pages_and_api_urls_json(tmp_path):
    (tmp_path / "demo" / "images").mkdir(parents=True)
    Image.new("RGB", (20, 10), (1, 2, 3)).save(tmp_path / "demo" / "images" / "a.png")
    client = _client(tmp_path)

    r = client.get("/no/such/page")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert 'id="page-error"' in r.text and "no page at /no/such/page" in r.text

    # an image the collection does not have: 404 with an error page, not a 200 with a broken picture
    r = client.get("/p/demo/image/missing.jpg")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "no image &#39;missing.jpg&#39;" in r.text and 'id="main-image"' not in r.text

    # the API keeps JSON for the same kinds of mistakes
    for url in ("/api/v1/no/such/route", "/api/v1/projects/nope", "/static/nope.js"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert r.headers["content-type"].startswith("application/json"), url
        assert r.json()["error"]["message"], url
    r = client.post("/no/such/page")  # not a page view: JSON like the API
    assert r.status_code in (404, 405) and r.headers["content-type"].startswith("application/json")


def test_error_pages_keep_the_path_prefix(tmp_path):
    client = TestClient(create_app(tmp_path, root_path="/proxy/8000"), raise_server_exceptions=False)
    r = client.get("/proxy/8000/nothing-here")
    assert r.status_code == 404 and 'href="/proxy/8000/"' in r.text
    r = client.get("/proxy/8000/api/v1/nothing-here")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")


# --------------------------------------------------------------------------- datasets empty state
def test_the_empty_datasets_page_gives_a_command_that_works(tmp_path):
    root = tmp_path / "server-root"
    root.mkdir()
    client = _client(root)
    page = client.get("/datasets")
    assert page.status_code == 200
    command = unescape(re.search(r'<code id="import-command">(.*?)</code>', page.text).group(1))
    assert f"-w {root}" in command

    # run it as printed, from another folder, on a real ImageFolder tree
    folder = tmp_path / "shapes"
    for label, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), colour).save(folder / label / f"{i}.png")
    args = command.split()[1:]  # after "vitrine"
    args = [str(folder) if a == "<folder>" else "shapes" if a == "<name>" else a for a in args]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = cli.cli_env()
    env.pop("VITRINE_HOME", None)
    result = subprocess.run(
        [*cli.vitrine_command(), *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert not os.listdir(elsewhere)  # nothing landed in the current folder
    listed = client.get("/datasets")
    assert 'data-dataset="shapes"' in listed.text


def test_the_multi_user_empty_state_shows_no_server_path(tmp_path):
    client = TestClient(create_app(tmp_path, multi_user=True, database_url=f"sqlite:///{tmp_path / 's.db'}"))
    store = client.app.state.auth.store
    from argon2 import profiles

    from vitrine.auth import passwords

    passwords.use_profile(profiles.CHEAPEST)
    try:
        store.add_user("ann", "ann-password-1")
        form = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        data = {"csrf_token": token, "username": "ann", "password": "ann-password-1", "next": "/datasets"}
        client.post("/login", data=data)
        page = client.get("/datasets").text
    finally:
        passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)
    assert "import-command" in page and str(tmp_path) not in page


# --------------------------------------------------------------------------- Plotly, compressed
def test_plotly_is_compressed_and_cached_under_a_versioned_url(tmp_path):
    client = _client(tmp_path)
    url = f"/static/vendor/plotly.min.js?v={plotly_version()}"
    with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as r:
        plain = b"".join(r.iter_raw())
        assert r.status_code == 200 and "content-encoding" not in r.headers
    with client.stream("GET", url, headers={"Accept-Encoding": "gzip, deflate, br"}) as r:
        sent = b"".join(r.iter_raw())
        assert r.headers["content-encoding"] == "gzip"
        assert "immutable" in r.headers["cache-control"] and "max-age=31536000" in r.headers["cache-control"]
        assert r.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(sent) == plain
    assert len(sent) < 0.4 * len(plain), (len(sent), len(plain))  # measured: about 4.8 MB -> 1.4 MB
    # an unversioned URL is not cached for a year (it could outlive an upgrade)
    r = client.get("/static/vendor/plotly.min.js")
    assert "immutable" not in r.headers["cache-control"]


def test_pages_ask_for_the_versioned_plotly_url(tmp_path):
    from vitrine.core.workspace import Workspace
    from vitrine.data.dataset import ClassificationDataset, Sample

    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    ws = Workspace(tmp_path)
    ClassificationDataset(name="d", root=images, samples=[Sample("a.png", "x", "train")], source={}).save(
        ws.dataset_dir("d")
    )
    page = _client(tmp_path).get("/datasets/d").text
    assert f'/static/vendor/plotly.min.js?v={plotly_version()}"' in page


def test_leaderboard_page_for_datasets_and_runs_and_a_404_otherwise(tmp_path):
    """/leaderboards/{dataset}: the page of a dataset of the workspace, or of a dataset only runs name
    (an imported detector scored on a COCO file); a name that is neither is a 404 page."""
    from vitrine.core.workspace import Workspace
    from vitrine.data.dataset import ClassificationDataset, Sample
    from vitrine.runs import Run

    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    ws = Workspace(tmp_path)
    ClassificationDataset(name="d", root=images, samples=[Sample("a.png", "x", "train")], source={}).save(
        ws.dataset_dir("d")
    )
    Run.create(ws, "detection", "coco-file", "m.onnx", {}, run_id="r1")
    client = _client(tmp_path)
    for name in ("d", "coco-file"):
        r = client.get(f"/leaderboards/{name}")
        assert r.status_code == 200 and f'data-dataset="{name}"' in r.text, name
        assert "/static/leaderboard.js" in r.text and f"/static/vendor/plotly.min.js?v={plotly_version()}" in r.text
    r = client.get("/leaderboards/nope")
    assert r.status_code == 404 and 'id="page-error"' in r.text and "no dataset &#39;nope&#39;" in r.text
    prefixed = TestClient(create_app(tmp_path, root_path="/proxy/8000"), raise_server_exceptions=False)
    assert 'src="/proxy/8000/static/leaderboard.js' in prefixed.get("/proxy/8000/leaderboards/d").text
    assert 'href="/leaderboards/d"' in client.get("/datasets/d").text  # linked from the dataset page


# --------------------------------------------------------------------------- models page
def test_the_models_page_renders_its_shell_and_is_in_the_navigation(tmp_path):
    client = _client(tmp_path)
    r = client.get("/models")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="models"' in r.text and "/static/models.js?v=" in r.text
    assert re.search(r'<a id="nav-models" href="/models" class="active" aria-current="true">Models</a>', r.text)
    assert client.get("/static/models.js").status_code == 200
    home = client.get("/").text  # every page links to it; only the models page marks it current
    assert '<a id="nav-models" href="/models">Models</a>' in home
