"""What the web layer holds: the root folder, its projects (opened once), jobs, settings."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from vitrine.collection.layout import discover_projects, is_project
from vitrine.errors import NotFound
from vitrine.jobs.manager import JobManager
from vitrine.project import Project


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class Settings:
    root: Path
    root_path: str = ""
    max_upload_bytes: int = field(default_factory=lambda: _env_int("VITRINE_MAX_UPLOAD_BYTES", 20 * 1024 * 1024))
    data_dir: Path | None = None


class AppState:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.jobs = JobManager()
        self._projects: dict[str, Project] = {}
        self._lock = threading.Lock()

    def project_dirs(self) -> dict[str, Path]:
        """Projects under the root, found afresh on each call (new folders appear without restart)."""
        root = self.settings.root
        if is_project(root):
            return {root.name: root}
        return {p.name: p.project_dir for p in discover_projects(root)}

    def project(self, name: str) -> Project:
        dirs = self.project_dirs()
        if name not in dirs:
            raise NotFound(f"no project {name!r}", hint="known projects: " + (", ".join(sorted(dirs)) or "none"))
        with self._lock:
            proj = self._projects.get(name)
            if proj is None or proj.paths.project_dir != dirs[name]:
                proj = Project(dirs[name], data_dir=self.settings.data_dir)
                self._projects[name] = proj
            return proj
