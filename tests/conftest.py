"""Shared fixtures. Tests run offline: no model hub is contacted (HF_HUB_OFFLINE)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VITRINE_OFFLINE", "1")


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory) -> Path:
    """The demo project (real photos from scikit-image/scikit-learn), built once, never indexed."""
    from vitrine.demo import build_demo

    return build_demo(tmp_path_factory.mktemp("demo-source"))


@pytest.fixture(scope="session")
def indexed_demo(tmp_path_factory, demo_source) -> Path:
    """A copy of the demo project indexed with offline-concepts. Tests must not modify it."""
    import vitrine

    root = tmp_path_factory.mktemp("indexed-root")
    project_dir = root / demo_source.name
    shutil.copytree(demo_source, project_dir)
    vitrine.open_project(project_dir).index(model="offline-concepts")
    return project_dir


@pytest.fixture
def fresh_demo(tmp_path, demo_source) -> Path:
    """A private, unindexed copy of the demo project that a test may change."""
    project_dir = tmp_path / demo_source.name
    shutil.copytree(demo_source, project_dir)
    return project_dir
