"""The ``vitrine`` command line, run as a user runs it: in subprocesses, output parsed from --json.

Commands that load the model (index, search) cost about ten seconds each, so they are few and
run concurrently where they are independent. Error paths never load the model.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from vitrine.collection.layout import init_project, project_paths

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cli_helpers as cli  # noqa: E402

OFFLINE = cli.OFFLINE


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch):
    monkeypatch.delenv("VITRINE_DATA_DIR", raising=False)
    monkeypatch.delenv("VITRINE_PROGRESS", raising=False)


def _ok(result, code: int = 0):
    assert result.returncode == code, cli.describe(result)
    assert "Traceback" not in result.stderr, cli.describe(result)
    return result


# --------------------------------------------------------------------------- init and check


def test_init_then_check_good_and_bad_ontology(tmp_path):
    project = tmp_path / "abbaye"
    _ok(cli.run("init", project, "--keyword", "Église=une église", "-k", "Calvaire = croix en pierre"))
    paths = project_paths(project)
    assert paths.images_dir.is_dir()
    assert paths.ontology_file == project / "ontology" / "abbaye_ontology.txt"
    raw = paths.ontology_file.read_bytes()
    assert raw.decode("utf-8").splitlines() == ['"Église": "une église"', '"Calvaire": "croix en pierre"']
    (paths.images_dir / "nef").mkdir()
    Image.new("RGB", (32, 24), (90, 60, 30)).save(paths.images_dir / "nef" / "a.jpg")
    # a warning (empty description) is reported but does not make the check fail
    with open(paths.ontology_file, "a", encoding="utf-8") as fh:
        fh.write('"Vide": ""\n')
    good = json.loads(_ok(cli.run("check", project, "--json")).stdout)
    assert good["ok"] is True and good["layout"] == []
    assert good["ontology"]["entries"] == 3
    assert [(p["line"], p["severity"]) for p in good["ontology"]["problems"]] == [(3, "warning")]

    with open(paths.ontology_file, "a", encoding="utf-8") as fh:
        fh.write('Lune: "la lune"\n')  # line 4: keyword not quoted
        fh.write('"Croix": "une croix"\n')  # line 5: fine
        fh.write("\u201cTour\u201d: \u201cune tour\u201d\n")  # line 6: curly quotes
        fh.write('"Nef" "la nef"\n')  # line 7: no colon
    text, as_json = cli.run_many(("check", project), ("check", project, "--json"))
    _ok(text, 1)
    lines = text.stdout.splitlines()
    for n in (4, 6, 7):
        assert any(f"{paths.ontology_file}:{n}: " in line for line in lines), (n, text.stdout)
    assert f"{paths.ontology_file}:5:" not in text.stdout
    assert "problems found: 4 ontology entries" in text.stdout
    report = json.loads(_ok(as_json, 1).stdout)
    assert report["ok"] is False
    problems = report["ontology"]["problems"]
    assert [(p["line"], p["severity"]) for p in problems] == [(3, "warning"), (4, "error"), (6, "error"), (7, "error")]
    assert "curly" in problems[2]["message"] and "colon" in problems[3]["message"]
    assert problems[1]["text"] == 'Lune: "la lune"'


# --------------------------------------------------------------------------- index and status


@pytest.mark.slow
def test_index_json_reports_failures_and_exits_0(tmp_path, demo_source):
    project = tmp_path / "petit"
    init_project(project, {"Chat": "a cat"})
    images = project / "images"
    (images / "photos").mkdir()
    shutil.copy(demo_source / "images" / "animaux" / "chat.jpg", images / "photos" / "chat.jpg")
    shutil.copy(demo_source / "images" / "espace" / "fusée.jpg", images / "photos" / "fusée.jpg")
    data = (demo_source / "images" / "lieux" / "fleur.jpg").read_bytes()
    (images / "photos" / "coupée.jpg").write_bytes(data[: len(data) // 3])
    (images / "photos" / "vide.jpg").write_bytes(b"")
    (images / "photos" / "notes.txt").write_text("not an image, ignored")

    result = _ok(cli.run("index", project, "--json"))
    report = json.loads(result.stdout)
    assert {"embedded", "unchanged", "removed", "failed", "model", "model_reason", "files"} <= set(report)
    assert (report["embedded"], report["unchanged"], report["removed"]) == (2, 0, 0)
    assert report["model"] == OFFLINE and report["model_reason"]
    assert [f["path"] for f in report["failed"]] == ["photos/coupée.jpg", "photos/vide.jpg"]
    reasons = {f["path"]: f["reason"] for f in report["failed"]}
    assert "truncated or corrupt" in reasons["photos/coupée.jpg"]
    assert reasons["photos/vide.jpg"] == "empty file (0 bytes)"

    status = json.loads(_ok(cli.run("status", project, "--json")).stdout)
    assert status["model"] == OFFLINE and status["indexed_models"] == {OFFLINE: 2}
    # the same count and list as the index report (the empty file is never catalogued, but it failed)
    assert status["files"] == 3 and status["failed"] == 2 and status["failures"] == report["failed"]
    assert status["folders"] == {"photos": 3}
    assert status["last_index"]["embedded"] == 2
    assert status["ontology"]["entries"] == 1


# --------------------------------------------------------------------------- search


@pytest.mark.slow
def test_search_text_keyword_image_folder(indexed_demo, tmp_path):
    outside = tmp_path / "ailleurs" / "minou.jpg"
    outside.parent.mkdir()
    shutil.copy(indexed_demo / "images" / "animaux" / "chat.jpg", outside)
    text, keyword, image, folder = cli.run_many(
        ("search", indexed_demo, "a cat", "-k", "3", "--json"),
        ("search", indexed_demo, "--keyword", "Chat", "-k", "3", "--json"),
        ("search", indexed_demo, "--image", outside, "-k", "3", "--json"),
        ("search", indexed_demo, "a cat", "--folder", "animaux", "--json"),
    )
    hits = json.loads(_ok(text).stdout)
    assert len(hits) == 3
    assert hits[0]["path"] == "animaux/chat.jpg"
    for h in hits:
        assert {"path", "score"} <= set(h) and isinstance(h["score"], float)
        assert (indexed_demo / "images" / h["path"]).is_file()  # relative to images/
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)

    kw_hits = json.loads(_ok(keyword).stdout)
    assert kw_hits[0]["path"] == "animaux/chat.jpg"
    assert kw_hits == hits  # "Chat" is described as "a cat" in the demo ontology

    image_hits = json.loads(_ok(image).stdout)
    assert image_hits[0]["path"] == "animaux/chat.jpg" and image_hits[0]["score"] > 0.99

    folder_hits = json.loads(_ok(folder).stdout)
    assert [h["path"] for h in folder_hits] == ["animaux/chat.jpg", "animaux/cheval.png"]
    assert {h["folder"] for h in folder_hits} == {"animaux"}


def test_search_errors_are_clean(indexed_demo, tmp_path):
    unindexed = tmp_path / "neuf"
    init_project(unindexed, {"Chat": "a cat"})
    cases = {
        "no query": (("search", indexed_demo), "give exactly one query"),
        "two queries": (("search", indexed_demo, "a cat", "--keyword", "Chat"), "give exactly one query"),
        "unknown project": (("search", tmp_path / "nulle-part", "a cat"), "is not a vitrine project"),
        "unknown keyword": (("search", indexed_demo, "--keyword", "Licorne"), "unknown keyword 'Licorne'"),
        "bad model": (("search", indexed_demo, "a cat", "--model", "nada"), "unknown model 'nada'"),
        "other model": (("search", indexed_demo, "a cat", "--model", "clip-vit-b-32"), "not 'clip-vit-b-32'"),
        "not indexed": (("search", unindexed, "a cat"), "has not been indexed yet"),
        "missing image": (("search", indexed_demo, "--image", tmp_path / "absente.jpg"), "file not found"),
    }
    results = cli.run_many(*(args for args, _ in cases.values()), timeout=180)
    for (name, (_, words)), result in zip(cases.items(), results, strict=True):
        assert result.returncode == 2, (name, cli.describe(result))
        assert "Traceback" not in result.stderr, (name, cli.describe(result))
        assert result.stdout == "", (name, cli.describe(result))
        message = cli.flat(result.stderr)
        assert message.startswith("error: "), (name, message)
        assert words in message, (name, message)
    other = cli.flat(results[list(cases).index("other model")].stderr)
    assert OFFLINE in other
    assert "hint:" in cli.flat(results[list(cases).index("not indexed")].stderr)


# --------------------------------------------------------------------------- models, status, export


def test_models_status_export(indexed_demo, tmp_path):
    catalog_csv, ontology_csv = tmp_path / "catalogue.csv", tmp_path / "ontologie.csv"
    models, status, export_catalog, export_ontology, to_stdout, bad = cli.run_many(
        ("models", "--json"),
        ("status", indexed_demo, "--json"),
        ("export", indexed_demo, "catalog", "-o", catalog_csv),
        ("export", indexed_demo, "ontology", "-o", ontology_csv),
        ("export", indexed_demo, "ontology"),
        ("export", indexed_demo, "vecteurs"),
    )
    listed = {m["name"]: m for m in json.loads(_ok(models).stdout)}
    assert listed[OFFLINE]["available"] is True and listed[OFFLINE]["task"] == "embedding"
    assert "clip-vit-b-32" in listed
    for m in listed.values():
        assert {"weights_source", "available", "availability", "summary", "license"} <= set(m)

    st = json.loads(_ok(status).stdout)
    assert st["name"] == indexed_demo.name and st["model"] == OFFLINE
    assert st["files"] == 20 and st["failed"] == 0 and st["indexed_models"] == {OFFLINE: 20}
    assert st["folders"]["animaux"] == 2 and sum(st["folders"].values()) == 20
    assert st["ontology"]["entries"] == 12 and st["ontology"]["problems"] == 0
    assert st["last_index"]["embedded"] == 20

    _ok(export_catalog)
    rows = list(csv.DictReader(io.StringIO(catalog_csv.read_text(encoding="utf-8"))))
    assert len(rows) == 20
    assert {"path", "folder", "size_bytes", "sha256", "width", "height", "error"} <= set(rows[0])
    by_path = {r["path"]: r for r in rows}
    assert by_path["espace/fusée.jpg"]["folder"] == "espace"
    assert by_path["objets/pièces.png"]["error"] == ""
    assert len(by_path["animaux/chat.jpg"]["sha256"]) == 64

    _ok(export_ontology)
    entries = list(csv.DictReader(io.StringIO(ontology_csv.read_text(encoding="utf-8"))))
    assert {e["keyword"]: e["description"] for e in entries}["Fusée"] == "a rocket launch"
    assert "Pièces de monnaie" in {e["keyword"] for e in entries}
    assert [int(e["line"]) for e in entries] == list(range(1, 13))
    assert "Fusée" in _ok(to_stdout).stdout and "Texte imprimé" in to_stdout.stdout

    _ok(bad, 2)
    assert "cannot export 'vecteurs'" in cli.flat(bad.stderr)


def test_init_refuses_a_keyword_given_twice(tmp_path):
    project = tmp_path / "abbaye"
    twice = cli.run("init", project, "-k", "Chat=a cat", "-k", "Chien=a dog", "-k", "Chat=un chat")
    assert twice.returncode == 2 and "Traceback" not in twice.stderr, cli.describe(twice)
    message = cli.flat(twice.stderr)
    assert "--keyword 'Chat' is given twice ('a cat' and 'un chat')" in message and "hint:" in message
    assert not (project / "ontology").exists()  # nothing half-written
    # an existing ontology file is never overwritten, and init says so instead of ignoring the keywords
    _ok(cli.run("init", project, "-k", "Chat=a cat"))
    again = _ok(cli.run("init", project, "-k", "Chien=a dog"))
    assert "were not written" in cli.flat(again.stderr)
    assert "Chien" not in project_paths(project).ontology_file.read_text(encoding="utf-8")


@pytest.mark.slow
def test_models_and_runs_fit_an_80_column_terminal(tmp_path):
    """Names and run ids are what one copies: never cut nor wrapped, at 80 columns."""
    from vitrine.core.workspace import Workspace
    from vitrine.runs import Run

    ws = Workspace(tmp_path)
    long_id = "20261205-142233-finetune-paysages-de-bretagne-efficientnet-lite0-a1b2"
    Run.create(ws, "finetune", "paysages-de-bretagne", "efficientnet-lite0", {}, run_id=long_id)
    Run.create(ws, "linear-probe", "chats", "offline-concepts", {}, run_id="short-run")
    narrow = cli.cli_env(COLUMNS="80")
    procs = [cli.start(*cmd, env=narrow) for cmd in (("models",), ("runs", "-w", tmp_path), ("models", "--json"))]
    models, runs, models_json = (cli.finish(p) for p in procs)
    listed = {m["name"]: m["task"] for m in json.loads(_ok(models_json).stdout)}
    names = list(listed)
    table = _ok(models).stdout
    for name in names:  # one row each, the name whole, the row inside 80 columns
        row = [line for line in table.splitlines() if line.split()[:2] == [name, listed[name]]]
        assert len(row) == 1 and len(row[0]) <= 80, (name, table)
    for m in json.loads(models_json.stdout):
        if not m["available"]:  # why, below the table, whole
            assert f"{m['name']} is not available: {m['availability_detail']}" in cli.flat(table)
    listing = _ok(runs).stdout
    assert all(len(line) <= 80 for line in listing.splitlines()), listing
    assert any(long_id in line for line in listing.splitlines()), listing  # on one line, whole
    assert any("short-run" in line for line in listing.splitlines())


@pytest.mark.slow
def test_status_and_search_after_a_first_run_stopped_before_embedding(fresh_demo):
    """The model is recorded as soon as it is loaded; until an image is embedded, status says
    "not indexed yet" and search fails with that message (exit 2), not an empty table."""
    import threading

    from vitrine.core.errors import Cancelled
    from vitrine.project import Project

    cancel = threading.Event()
    with pytest.raises(Cancelled):
        Project(fresh_demo).index(model=OFFLINE, progress=lambda *_: cancel.set(), cancel=cancel)
    status, search = cli.run_many(("status", fresh_demo), ("search", fresh_demo, "a cat"))
    said = cli.flat(_ok(status).stdout)
    assert "not indexed yet" in said and OFFLINE in said and "vitrine index" in said, said
    assert search.returncode == 2 and search.stdout == "", cli.describe(search)
    assert "has not been indexed yet" in cli.flat(search.stderr)


@pytest.mark.slow
def test_a_french_query_is_answered_with_a_warning(indexed_demo):
    french, english = cli.run_many(
        ("search", indexed_demo, "une fusée", "-k", "3", "--json"), ("search", indexed_demo, "a rocket launch")
    )
    assert len(json.loads(_ok(french).stdout)) == 3  # the results, with a warning on stderr
    warning = cli.flat(french.stderr)
    assert "looks like French" in warning and OFFLINE in warning and "clip-multilingual" in warning
    assert "warning" not in cli.flat(_ok(english).stderr)


# --------------------------------------------------------------------------- serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _wait_until_up(proc, base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"vitrine serve exited with {proc.returncode}\n{out}\n{err}")
        try:
            if _get(base + "/api/v1/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"vitrine serve did not answer on {base} in {timeout} s")


@pytest.mark.slow
def test_serve_answers_health_with_and_without_root_path(indexed_demo):
    ports = _free_port(), _free_port()
    plain = cli.start("serve", indexed_demo, "--port", ports[0])
    proxied = cli.start("serve", indexed_demo, "--port", ports[1], "--root-path", "/proxy/8000")
    try:
        for proc, port in zip((plain, proxied), ports, strict=True):
            _wait_until_up(proc, f"http://127.0.0.1:{port}")
        assert _get(f"http://127.0.0.1:{ports[0]}/api/v1/health") == (200, '{"status":"ok"}')
        # behind a proxy that strips the prefix, and reached directly with the prefix
        base = f"http://127.0.0.1:{ports[1]}"
        assert json.loads(_get(base + "/api/v1/health")[1]) == {"status": "ok"}
        assert json.loads(_get(base + "/proxy/8000/api/v1/health")[1]) == {"status": "ok"}
        status, page = _get(base + "/")
        assert status == 200 and 'href="/proxy/8000/' in page
        status, listing = _get(base + "/api/v1/projects")
        assert status == 200 and json.loads(listing)[0]["name"] == indexed_demo.name
    finally:
        for proc in (plain, proxied):
            proc.terminate()
        results = [cli.finish(proc, timeout=60) for proc in (plain, proxied)]
    for result in results:
        assert "Traceback" not in result.stderr, cli.describe(result)
    assert f"http://127.0.0.1:{ports[1]}/proxy/8000/" in cli.flat(results[1].stderr)
