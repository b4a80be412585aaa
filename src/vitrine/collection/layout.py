"""Project layout: where a project's images, ontology and generated state live.

::

    <root>/<project>/images/<subfolder>/<...image files>
    <root>/<project>/ontology/<project>_ontology.txt
    <root>/<project>/.vitrine/            generated state (catalog, indexes, thumbnails)

Generated state never goes into ``images/``. When ``VITRINE_DATA_DIR`` (or the ``data_dir``
argument) is set, it goes to ``<data dir>/<project>-<8 hex chars>`` instead, the hex being the
start of the SHA-1 of the project's resolved path, so that two projects with the same name in
different places never share state (and read-only project folders can be indexed).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from vitrine.collection.imageio import SUPPORTED_SUFFIXES
from vitrine.collection.walk import FoundFile, iter_images
from vitrine.core.errors import LayoutError, OntologyError, VitrineError

__all__ = [
    "ONTOLOGY_SUFFIX",
    "Problem",
    "ProjectPaths",
    "discover_projects",
    "init_project",
    "is_project",
    "project_paths",
    "resolve_inside",
    "validate_layout",
]

ONTOLOGY_SUFFIX = "_ontology.txt"
DATA_DIR_ENV = "VITRINE_DATA_DIR"


@dataclass(frozen=True)
class ProjectPaths:
    project_dir: Path
    name: str
    images_dir: Path
    ontology_dir: Path
    ontology_file: Path
    data_dir: Path

    @property
    def catalog_db(self) -> Path:
        return self.data_dir / "catalog.db"

    @property
    def indexes_dir(self) -> Path:
        return self.data_dir / "indexes"

    @property
    def thumbs_dir(self) -> Path:
        return self.data_dir / "thumbs"

    def to_dict(self) -> dict:
        return {k: str(v) for k, v in asdict(self).items()}


def _data_dir_setting(data_dir: str | os.PathLike | None) -> Path | None:
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else None


def project_paths(project_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> ProjectPaths:
    """The paths of a project (nothing is created or checked)."""
    project = Path(os.path.abspath(Path(project_dir).expanduser()))  # absolute, symlinks kept
    name = project.name
    base = _data_dir_setting(data_dir)
    if base is None:
        state = project / ".vitrine"
    else:
        digest = hashlib.sha1(str(project.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:8]
        state = Path(os.path.abspath(base)) / f"{name}-{digest}"
    ontology_dir = project / "ontology"
    return ProjectPaths(
        project_dir=project,
        name=name,
        images_dir=project / "images",
        ontology_dir=ontology_dir,
        ontology_file=ontology_dir / f"{name}{ONTOLOGY_SUFFIX}",
        data_dir=state,
    )


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" | "warning"
    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.severity}: {self.path}: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text

    def to_dict(self) -> dict:
        return asdict(self)


def _has_any_image(images_dir: Path) -> bool:
    try:
        return any(isinstance(item, FoundFile) for item in iter_images(images_dir))
    except LayoutError:
        return False


def _loose_images(images_dir: Path) -> list[str]:
    try:
        with os.scandir(images_dir) as it:
            return sorted(
                e.name
                for e in it
                if not e.name.startswith(".") and Path(e.name).suffix.lower() in SUPPORTED_SUFFIXES and e.is_file()
            )
    except OSError:
        return []


def validate_layout(project_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> list[Problem]:
    """Everything wrong with a project's layout (empty list: all good). Never raises."""
    paths = project_paths(project_dir, data_dir)
    project = paths.project_dir
    problems: list[Problem] = []

    def error(path: Path, message: str, hint: str = "") -> None:
        problems.append(Problem("error", str(path), message, hint))

    def warning(path: Path, message: str, hint: str = "") -> None:
        problems.append(Problem("warning", str(path), message, hint))

    if not project.exists():
        error(project, "project folder does not exist", "check the path, or create it with `vitrine init`")
        return problems
    if not project.is_dir():
        error(project, "this is a file, not a project folder", "give the project's folder")
        return problems

    expected_ontology = paths.ontology_file.name
    layout_hint = (
        f"a project looks like {paths.name}/images/<subfolder>/<images> and {paths.name}/ontology/{expected_ontology}"
    )

    # --- images/
    images = paths.images_dir
    if not images.exists():
        error(images, "the images/ folder is missing", layout_hint)
    elif not images.is_dir():
        error(images, "images is a file; it must be a folder of image subfolders", layout_hint)
    else:
        if not os.access(images, os.R_OK | os.X_OK):
            error(images, "the images/ folder cannot be read (permission denied)")
        elif not _has_any_image(images):
            warning(
                images,
                "no supported images found in images/",
                "supported: " + ", ".join(sorted(SUPPORTED_SUFFIXES)) + " (in subfolders of images/)",
            )
        else:
            loose = _loose_images(images)
            if loose:
                shown = ", ".join(loose[:5]) + (f", ... ({len(loose)} in all)" if len(loose) > 5 else "")
                warning(
                    images,
                    f"{len(loose)} image(s) directly in images/ rather than in a subfolder: {shown}",
                    "they are indexed with an empty folder name; move them into a subfolder "
                    "(e.g. images/misc/) to filter them by folder",
                )

    # --- ontology
    ont_dir = paths.ontology_dir
    ont_file = paths.ontology_file
    if not ont_dir.exists():
        error(
            ont_file,
            f"ontology file missing: expected ontology/{expected_ontology} (the ontology/ folder does not exist)",
            'create it with one line per keyword, e.g. "Église": "photographie d\'une église"',
        )
    elif not ont_dir.is_dir():
        error(ont_dir, "ontology is a file; it must be a folder containing " + expected_ontology, layout_hint)
    elif not ont_file.is_file():
        try:
            others = sorted(p.name for p in ont_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        except OSError:
            others = []
        named = [n for n in others if n.lower().endswith(ONTOLOGY_SUFFIX)]
        candidates = named or [n for n in others if n.lower().endswith(".txt")]
        if ont_file.exists():
            error(ont_file, f"{expected_ontology} is not a regular file")
        elif candidates:
            found = ", ".join(candidates)
            error(
                ont_file,
                f"ontology file missing: expected ontology/{expected_ontology} but found {found}",
                f"rename it to {expected_ontology} (the project folder's name, {paths.name!r}, "
                f"followed by {ONTOLOGY_SUFFIX})",
            )
        else:
            error(
                ont_file,
                f"ontology file missing: expected ontology/{expected_ontology}",
                'create it with one line per keyword, e.g. "Église": "photographie d\'une église"',
            )
    else:
        try:
            if ont_file.stat().st_size == 0:
                warning(
                    ont_file,
                    "the ontology file is empty (no keywords)",
                    'add one line per keyword, e.g. "Église": "photographie d\'une église"',
                )
        except OSError:
            pass

    # --- generated state
    state = paths.data_dir
    if state.exists() and not state.is_dir():
        error(state, "the data folder is a file; it must be a folder (or not exist yet)")
    elif not state.exists():
        parent = state.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not os.access(parent, os.W_OK | os.X_OK):
            warning(
                state,
                "cannot create the data folder here (no write permission)",
                f"set {DATA_DIR_ENV} to a writable folder: vitrine then keeps its files there",
            )
    elif not os.access(state, os.W_OK | os.X_OK):
        warning(state, "the data folder is not writable", f"set {DATA_DIR_ENV} to a writable folder")
    return problems


def _ontology_line(keyword: str, description: str) -> str:
    return f"{json.dumps(keyword, ensure_ascii=False)}: {json.dumps(description, ensure_ascii=False)}\n"


_TEMPLATE = (
    "# One keyword per line, then a colon, then its description, both in straight double quotes:\n"
    '# "Église": "photographie d\'une église romane"\n'
    "# Lines starting with # are comments.\n"
)


def init_project(project_dir: str | os.PathLike, keywords: dict[str, str] | None = None) -> ProjectPaths:
    """Create ``images/`` and the ontology file when absent; never overwrites anything."""
    paths = project_paths(project_dir)
    if paths.project_dir.exists() and not paths.project_dir.is_dir():
        raise LayoutError(f"{paths.project_dir} is a file, not a folder", hint="choose another path")
    for key in keywords or {}:
        if not isinstance(key, str) or not key.strip():
            raise OntologyError("empty keyword in the keywords to write", hint="every keyword needs a name")
    try:
        paths.images_dir.mkdir(parents=True, exist_ok=True)
        paths.ontology_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise LayoutError(f"{exc.filename} exists and is not a folder") from None
    except OSError as exc:
        raise LayoutError(f"cannot create the project folders: {exc.strerror or exc}") from None
    if keywords:
        body = "".join(_ontology_line(k.strip(), str(v).strip()) for k, v in keywords.items())
    else:
        body = _TEMPLATE
    try:
        with open(paths.ontology_file, "x", encoding="utf-8", newline="\n") as fh:  # never overwrite
            fh.write(body)
    except FileExistsError:
        pass
    except OSError as exc:
        raise LayoutError(f"cannot write {paths.ontology_file}: {exc.strerror or exc}") from None
    return paths


def is_project(path: str | os.PathLike) -> bool:
    """True when ``path`` has an ``images/`` folder."""
    return Path(path, "images").is_dir()


def discover_projects(root: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> list[ProjectPaths]:
    """``root`` itself when it is a project, else its direct (non-hidden) children that are."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise LayoutError(
            f"folder not found: {root}" if not root.exists() else f"not a folder: {root}",
            hint="give a project folder, or a folder whose subfolders are projects",
        )
    if is_project(root):
        return [project_paths(root, data_dir)]
    try:
        children = [p for p in root.iterdir() if not p.name.startswith(".") and p.is_dir() and is_project(p)]
    except OSError as exc:
        raise LayoutError(f"cannot list {root}: {exc.strerror or exc}") from None
    return sorted((project_paths(p, data_dir) for p in children), key=lambda pp: pp.name)


def resolve_inside(base: str | os.PathLike, relpath: str) -> Path:
    """``base / relpath`` for a user-given relative path, refusing anything that leaves ``base``.

    Raises :class:`~vitrine.core.errors.VitrineError` (HTTP 400) for absolute paths, ``..`` components,
    NUL bytes, and symlinks that resolve outside ``base``. Returns ``base / relpath`` normalised
    (not resolved, so it stays relative-to-able against ``base``).
    """
    base = Path(base)
    if not isinstance(relpath, str):
        raise VitrineError("invalid path: expected text")
    if "\x00" in relpath:
        raise VitrineError("invalid path: contains a NUL character")
    if (
        PurePosixPath(relpath).is_absolute()
        or PureWindowsPath(relpath).is_absolute()
        or PureWindowsPath(relpath).drive
        or relpath.startswith(("\\", "/"))
    ):
        raise VitrineError(
            f"invalid path {relpath!r}: absolute paths are not allowed",
            hint="give a path relative to the project",
        )
    if ".." in relpath.replace("\\", "/").split("/"):
        raise VitrineError(f"invalid path {relpath!r}: '..' is not allowed", hint="give a path inside the project")
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    candidate = base.joinpath(*parts) if parts else base
    try:
        base_real = base.resolve()
        real = candidate.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise VitrineError(f"invalid path {relpath!r}: {exc}") from None
    if real != base_real and not real.is_relative_to(base_real):
        raise VitrineError(
            f"invalid path {relpath!r}: it leads outside the project (through a symbolic link)",
            hint="only files inside the project can be used",
        )
    return candidate
