"""What the web layer holds: the root folder, its projects (opened once), the server database
and its jobs, settings."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

from vitrine.collection.layout import discover_projects, is_project
from vitrine.core.errors import NotFound
from vitrine.jobs.manager import JobManager
from vitrine.project import Project
from vitrine.store import db as store_db


class Recent:
    """Values computed on demand by key, the ``size`` most recently used kept. Thread-safe; a value
    is computed outside the lock (two requests may compute it at once: the last one is kept)."""

    def __init__(self, size: int):
        self.size = size
        self.lock = threading.Lock()
        self.items: OrderedDict[Hashable, object] = OrderedDict()

    def get(self, key: Hashable, compute: Callable[[], object]):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = compute()
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


_PER_APP_LOCK = threading.Lock()


def per_app(app_state, name: str, make: Callable[[], object]):
    """``app_state.<name>``, made by ``make()`` the first time: what one app keeps for its own
    workspace (two apps in one process, as in the tests, keep theirs apart)."""
    with _PER_APP_LOCK:
        found = getattr(app_state, name, None)
        if found is None:
            found = make()
            setattr(app_state, name, found)
        return found


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
    database_url: str | None = None  # default: VITRINE_DATABASE_URL, else <root>/.vitrine/server.db
    # server mode: every request needs an account (`vitrine serve --multi-user`, VITRINE_MULTI_USER=1)
    multi_user: bool = field(
        default_factory=lambda: os.environ.get("VITRINE_MULTI_USER", "").strip().lower() in ("1", "true", "yes", "on")
    )


class AppState:
    def __init__(self, settings: Settings):
        self.settings = settings
        # the server database, migrated to the latest schema; its jobs run in this process
        url = settings.database_url or store_db.database_url(settings.root)
        if not settings.database_url and not os.environ.get(store_db.ENV_URL) and not settings.root.is_dir():
            url = "sqlite://"  # the root is missing (an error on every page): do not create it for the database
        self.db = store_db.open_database(url)
        self.jobs = JobManager(self.db, services=self)
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

    def start(self) -> dict:
        """At server start: recover the jobs a stopped server left, run the queued ones."""
        return self.jobs.startup()

    def close(self) -> None:
        """At server stop: interrupt running jobs (resumable ones resume at the next start)."""
        self.jobs.close()
