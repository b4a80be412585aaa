"""Where labelled datasets and training runs live.

A workspace is a folder (the same root ``vitrine serve`` is given): ``datasets/<name>/`` holds a
dataset's manifest, ``runs/<id>/`` a trained classifier with its config, checkpoints, metrics and
TensorBoard logs. Projects (collections) sit beside them as ``<name>/images``.
The default workspace is ``$VITRINE_HOME`` or the current folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vitrine.core.errors import VitrineError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def default_workspace() -> Path:
    return Path(os.environ.get("VITRINE_HOME") or ".").resolve()


def check_name(name: str, what: str = "name") -> str:
    """Dataset and run names become folder names: keep them simple and safe."""
    if not _NAME.match(name or "") or ".." in name:
        raise VitrineError(
            f"invalid {what} {name!r}",
            hint="use letters, digits, '.', '_' or '-' (at most 100 characters, not starting with '.')",
        )
    return name


class Workspace:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).resolve() if root else default_workspace()

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def dataset_dir(self, name: str) -> Path:
        return self.datasets_dir / check_name(name, "dataset name")

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / check_name(run_id, "run id")

    def dataset_names(self) -> list[str]:
        if not self.datasets_dir.is_dir():
            return []
        return sorted(p.name for p in self.datasets_dir.iterdir() if (p / "dataset.json").is_file())

    def run_ids(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if (p / "run.json").is_file())
