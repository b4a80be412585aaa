"""A labelled classification dataset: images (by path) with a class and a split.

Stored as ``<workspace>/datasets/<name>/dataset.json`` (name, classes, image root, source,
problems found at import) and ``samples.csv`` (path relative to the image root, label, split),
both written atomically. The images themselves stay where they are.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vitrine.core.atomic import atomic_write_text
from vitrine.core.errors import NotFound, VitrineError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset's image root (POSIX)
    label: str
    split: str = ""  # "train" | "val" | "test" | "" (not assigned yet)


@dataclass(frozen=True)
class RowProblem:
    """A row (or file) skipped at import, with why. ``row`` is 1-based (CSV: header is row 1)."""

    source: str
    row: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.row}: {self.message}"


@dataclass
class ClassificationDataset:
    name: str
    root: Path  # images are root / sample.path
    samples: list[Sample]
    classes: list[str] = field(default_factory=list)  # sorted label names; index = class id
    source: dict = field(default_factory=dict)  # how it was imported (kind, path, options)
    problems: list[RowProblem] = field(default_factory=list)

    def __post_init__(self):
        self.root = Path(self.root)
        if not self.classes:
            self.classes = sorted({s.label for s in self.samples})

    # --- views ------------------------------------------------------------------------------
    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def class_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {class: n}} including every class (0 when absent)."""
        out = {sp: dict.fromkeys(self.classes, 0) for sp in (*SPLITS, "")}
        for s in self.samples:
            out.setdefault(s.split, dict.fromkeys(self.classes, 0))[s.label] += 1
        return {sp: c for sp, c in out.items() if sp or any(c.values())}

    def path_of(self, sample: Sample) -> Path:
        return self.root / sample.path

    def summary(self) -> dict:
        per_split = Counter(s.split or "unassigned" for s in self.samples)
        return {
            "name": self.name,
            "root": str(self.root),
            "classes": self.classes,
            "samples": len(self.samples),
            "splits": dict(per_split),
            "source": self.source,
            "problems": [asdict(p) for p in self.problems],
        }

    # --- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["path", "label", "split"])
        for s in self.samples:
            writer.writerow([s.path, s.label, s.split])
        atomic_write_text(directory / "samples.csv", buf.getvalue())
        meta = {
            "format": 1,
            "name": self.name,
            "root": str(self.root),
            "classes": self.classes,
            "source": self.source,
            "problems": [asdict(p) for p in self.problems],
        }
        atomic_write_text(directory / "dataset.json", json.dumps(meta, ensure_ascii=False, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ClassificationDataset:
        directory = Path(directory)
        meta_path = directory / "dataset.json"
        if not meta_path.is_file():
            raise NotFound(f"no dataset at {directory}", hint="import one with `vitrine data import`")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            with open(directory / "samples.csv", newline="", encoding="utf-8") as fh:
                samples = [Sample(r["path"], r["label"], r.get("split", "")) for r in csv.DictReader(fh)]
        except (OSError, ValueError, KeyError) as exc:
            raise VitrineError(f"dataset {directory.name!r} is damaged: {exc}") from None
        return cls(
            name=meta["name"],
            root=Path(meta["root"]),
            samples=samples,
            classes=meta.get("classes") or [],
            source=meta.get("source", {}),
            problems=[RowProblem(**p) for p in meta.get("problems", [])],
        )
