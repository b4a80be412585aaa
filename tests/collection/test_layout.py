from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from PIL import Image

from vitrine.collection.layout import (
    discover_projects,
    init_project,
    is_project,
    project_paths,
    resolve_inside,
    validate_layout,
)
from vitrine.collection.ontology import load_ontology
from vitrine.core.errors import LayoutError, VitrineError


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch):
    monkeypatch.delenv("VITRINE_DATA_DIR", raising=False)


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)


def _good_project(root: Path, name: str = "abbaye") -> Path:
    project = root / name
    init_project(project, {"Église": "photographie d'une église"})
    _image(project / "images" / "nef" / "a.jpg")
    return project


def test_project_paths_default_data_dir(tmp_path):
    p = project_paths(tmp_path / "abbaye")
    assert p.name == "abbaye"
    assert p.project_dir == tmp_path / "abbaye"
    assert p.images_dir == tmp_path / "abbaye" / "images"
    assert p.ontology_dir == tmp_path / "abbaye" / "ontology"
    assert p.ontology_file == tmp_path / "abbaye" / "ontology" / "abbaye_ontology.txt"
    assert p.data_dir == tmp_path / "abbaye" / ".vitrine"
    assert p.catalog_db == p.data_dir / "catalog.db"
    assert p.indexes_dir == p.data_dir / "indexes"
    assert p.thumbs_dir == p.data_dir / "thumbs"


def test_project_paths_relative_and_dot(tmp_path, monkeypatch):
    (tmp_path / "abbaye").mkdir()
    monkeypatch.chdir(tmp_path / "abbaye")
    assert project_paths(".").name == "abbaye"
    monkeypatch.chdir(tmp_path)
    assert project_paths("abbaye").project_dir == tmp_path / "abbaye"


def test_data_dir_from_env_or_argument(tmp_path, monkeypatch):
    project = tmp_path / "a" / "abbaye"
    project.mkdir(parents=True)
    digest = hashlib.sha1(str(project.resolve()).encode()).hexdigest()[:8]
    monkeypatch.setenv("VITRINE_DATA_DIR", str(tmp_path / "state"))
    assert project_paths(project).data_dir == tmp_path / "state" / f"abbaye-{digest}"
    monkeypatch.delenv("VITRINE_DATA_DIR")
    assert project_paths(project, data_dir=tmp_path / "other").data_dir == tmp_path / "other" / f"abbaye-{digest}"
    # same name elsewhere: different state folder
    twin = tmp_path / "b" / "abbaye"
    twin.mkdir(parents=True)
    assert project_paths(twin, tmp_path / "s").data_dir != project_paths(project, tmp_path / "s").data_dir


def test_init_project_creates_layout_and_writes_entries(tmp_path):
    paths = init_project(tmp_path / "abbaye", {"Église": 'dite "la grande"', "Cœur": "chœur"})
    assert paths.images_dir.is_dir()
    assert paths.ontology_file.is_file()
    ont = load_ontology(paths.ontology_file)
    assert ont.problems == []
    assert [(e.keyword, e.description) for e in ont.entries] == [
        ("Église", 'dite "la grande"'),
        ("Cœur", "chœur"),
    ]
    assert "Église" in paths.ontology_file.read_text(encoding="utf-8")  # written as UTF-8, unescaped


def test_init_project_without_keywords_writes_a_template_that_parses(tmp_path):
    paths = init_project(tmp_path / "abbaye")
    ont = load_ontology(paths.ontology_file)
    assert ont.problems == [] and len(ont) == 0


def test_init_project_never_overwrites(tmp_path):
    project = _good_project(tmp_path)
    ontology = project / "ontology" / "abbaye_ontology.txt"
    before = ontology.read_bytes()
    image = (project / "images" / "nef" / "a.jpg").read_bytes()
    init_project(project, {"Autre": "chose"})
    assert ontology.read_bytes() == before
    assert (project / "images" / "nef" / "a.jpg").read_bytes() == image


def test_init_project_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(LayoutError):
        init_project(tmp_path / "f")


def test_valid_project_has_no_problems(tmp_path):
    assert validate_layout(_good_project(tmp_path)) == []


def _only(problems, severity):
    assert len(problems) == 1, problems
    assert problems[0].severity == severity
    return problems[0]


def test_missing_project(tmp_path):
    p = _only(validate_layout(tmp_path / "nope"), "error")
    assert "does not exist" in p.message


def test_project_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    assert "not a project folder" in _only(validate_layout(tmp_path / "f"), "error").message


def test_missing_images(tmp_path):
    project = _good_project(tmp_path)
    for f in (project / "images" / "nef").iterdir():
        f.unlink()
    (project / "images" / "nef").rmdir()
    (project / "images").rmdir()
    p = _only(validate_layout(project), "error")
    assert "images/ folder is missing" in p.message
    assert p.path == str(project / "images")


def test_missing_ontology_names_the_expected_file(tmp_path):
    project = _good_project(tmp_path)
    (project / "ontology" / "abbaye_ontology.txt").unlink()
    p = _only(validate_layout(project), "error")
    assert "abbaye_ontology.txt" in p.message
    (project / "ontology").rmdir()
    p = _only(validate_layout(project), "error")
    assert "abbaye_ontology.txt" in p.message


def test_wrongly_named_ontology(tmp_path):
    project = _good_project(tmp_path)
    (project / "ontology" / "abbaye_ontology.txt").rename(project / "ontology" / "Abbey_ontology.txt")
    p = _only(validate_layout(project), "error")
    assert "abbaye_ontology.txt" in p.message and "Abbey_ontology.txt" in p.message
    assert "rename" in p.hint


def test_empty_images_is_a_warning(tmp_path):
    project = _good_project(tmp_path)
    (project / "images" / "nef" / "a.jpg").unlink()
    (project / "images" / "nef" / "notes.txt").write_text("pas une image")
    p = _only(validate_layout(project), "warning")
    assert "no supported images" in p.message


def test_images_directly_in_images_is_a_warning(tmp_path):
    project = _good_project(tmp_path)
    _image(project / "images" / "loose.jpg")
    p = _only(validate_layout(project), "warning")
    assert "directly in images/" in p.message and "loose.jpg" in p.message


def test_empty_ontology_is_a_warning(tmp_path):
    project = _good_project(tmp_path)
    (project / "ontology" / "abbaye_ontology.txt").write_bytes(b"")
    assert "empty" in _only(validate_layout(project), "warning").message


def test_is_project_and_discover(tmp_path):
    root = tmp_path / "fonds"
    _good_project(root, "zeta")
    _good_project(root, "alpha")
    (root / "not-a-project").mkdir()
    _good_project(root, ".hidden")
    assert is_project(root / "alpha") and not is_project(root / "not-a-project")
    assert [p.name for p in discover_projects(root)] == ["alpha", "zeta"]
    assert [p.name for p in discover_projects(root / "zeta")] == ["zeta"]
    with pytest.raises(LayoutError):
        discover_projects(tmp_path / "missing")


@pytest.mark.parametrize(
    "relpath",
    [
        "/etc/passwd",
        "../x.jpg",
        "a/../../x.jpg",
        "a/../b.jpg",
        "..",
        "C:\\Windows\\x.jpg",
        "\\\\srv\\share\\x",
        "a\\..\\..\\x",
        "a\x00.jpg",
        "C:x.jpg",
    ],
)
def test_resolve_inside_refuses_escapes(tmp_path, relpath):
    with pytest.raises(VitrineError) as info:
        resolve_inside(tmp_path, relpath)
    assert info.value.status == 400


def test_resolve_inside_accepts_paths_inside_and_checks_symlinks(tmp_path):
    base = tmp_path / "images"
    (base / "nef").mkdir(parents=True)
    (base / "nef" / "a b.jpg").write_bytes(b"x")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    assert resolve_inside(base, "nef/a b.jpg") == base / "nef" / "a b.jpg"
    assert resolve_inside(base, "./nef//a b.jpg") == base / "nef" / "a b.jpg"
    assert resolve_inside(base, "") == base
    assert resolve_inside(base, "nef/missing.jpg") == base / "nef" / "missing.jpg"  # existence is not checked
    os.symlink(outside, base / "leak.jpg")
    os.symlink(tmp_path, base / "up")
    os.symlink(base / "nef", base / "alias")
    with pytest.raises(VitrineError):
        resolve_inside(base, "leak.jpg")
    with pytest.raises(VitrineError):
        resolve_inside(base, "up/secret.txt")
    assert resolve_inside(base, "alias/a b.jpg") == base / "alias" / "a b.jpg"
