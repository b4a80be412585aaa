"""What one search asks for, checked once: a :class:`Query` (text, ontology keyword, a collection
image or an example image; the model; the page) with its :class:`Filters` (folder, detector tags).

The Python API (``Project.search*``), the CLI (``vitrine search``) and the REST API
(``/projects/{name}/search``) each build one ``Query`` from their own inputs and hand it to
``Project.query``; the engine (``search/engine.py``) reads its page and filters. Invalid input
fails here, with the same :class:`~vitrine.core.errors.VitrineError` wherever it came from, before any
model is loaded.

>>> Query(text="a cat", k=5, filters=Filters(folder="animals", tags=("Cat",)))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vitrine.core.errors import VitrineError

Kind = Literal["text", "keyword", "similar", "image"]
KINDS: tuple[Kind, ...] = ("text", "keyword", "similar", "image")
Sort = Literal["score", "name", "date"]
SORTS: tuple[Sort, ...] = ("score", "name", "date")  # best first; by path; newest file first


def normalize_tags(tags: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Tag names as stored: stripped, lower case, without duplicates or empty ones."""
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for t in tags:
        name = str(t).strip().lower()
        if name and name not in out:
            out.append(name)
    return out


@dataclass(frozen=True)
class Filters:
    """Which images a search may return: those under ``folder`` (None: every folder; "/" or ".":
    the files directly under images/) having every one of ``tags`` (detector tags, from any tagging
    model or only from ``tag_model``). Tags are kept as stored: lower case, no duplicates."""

    folder: str | None = None
    tags: tuple[str, ...] = ()
    tag_model: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(normalize_tags(self.tags)))


@dataclass(frozen=True)
class Query:
    """One search: exactly one of ``text`` (free text), ``keyword`` (an ontology keyword),
    ``similar`` (a collection image, relative to images/) or ``image`` (an example image: a file
    path or uploaded bytes); ``model`` (None: the project's); the page (``k`` hits after skipping
    ``offset``); and the :class:`Filters`.

    ``min_score`` keeps only hits whose cosine similarity (in the model's space, -1..1) is at least
    that, so a query stops where the matches stop instead of ranking the whole collection;
    ``within`` keeps only hits scoring at most that much below the best hit (a cut-off relative to
    the query, useful because a model's raw cosine scale differs from one model to another).
    ``sort`` orders the kept hits of the page: by ``score`` (best first), ``name`` (path) or
    ``date`` (newest file first)."""

    text: str | None = None
    keyword: str | None = None
    similar: str | None = None
    image: str | Path | bytes | None = None
    model: str | None = None
    k: int = 20
    offset: int = 0
    filters: Filters = field(default_factory=Filters)
    min_score: float | None = None
    within: float | None = None
    sort: Sort = "score"

    def __post_init__(self) -> None:
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise VitrineError("give exactly one of text, keyword, similar (an image path) or image")
        if self.text is not None:
            text = str(self.text).strip()
            if not text:
                raise VitrineError("the search text is empty", hint="type a few words, e.g. 'a cat'")
            object.__setattr__(self, "text", text)
        if self.k < 1 or self.offset < 0:
            raise VitrineError(f"bad page: offset {self.offset}, k {self.k}", hint="offset >= 0 and k >= 1")
        if self.min_score is not None and not -1.0 <= float(self.min_score) <= 1.0:
            raise VitrineError(
                f"min_score {self.min_score} is out of range",
                hint="scores are cosine similarities: give a value between -1 and 1, e.g. 0.2",
            )
        if self.within is not None and not 0.0 <= float(self.within) <= 2.0:
            raise VitrineError(
                f"within {self.within} is out of range",
                hint="how far below the best score a hit may be: between 0 and 2, e.g. 0.05",
            )
        if self.sort not in SORTS:
            raise VitrineError(f"unknown sort {self.sort!r}", hint="sort by one of: " + ", ".join(SORTS))

    @property
    def kind(self) -> Kind:
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    @classmethod
    def one_of(
        cls,
        asked: str,
        *,
        text: str | None = None,
        keyword: str | None = None,
        similar: str | None = None,
        image: str | Path | bytes | None = None,
        model: str | None = None,
        k: int = 20,
        offset: int = 0,
        folder: str | None = None,
        tags: str | list[str] | tuple[str, ...] | None = None,
        tag_model: str | None = None,
        min_score: float | None = None,
        within: float | None = None,
        sort: str = "score",
    ) -> Query:
        """A query from a caller's own inputs, flat as the CLI and the API take them; when not
        exactly one of the four queries is given the error says ``give exactly one <asked>``, in
        the caller's words (its argument and option names)."""
        if sum(x is not None for x in (text, keyword, similar, image)) != 1:
            raise VitrineError(f"give exactly one {asked}")
        return cls(
            text=text,
            keyword=keyword,
            similar=similar,
            image=image,
            model=model,
            k=k,
            offset=offset,
            filters=Filters(folder=folder, tags=tuple(normalize_tags(tags)), tag_model=tag_model),
            min_score=min_score,
            within=within,
            sort=sort,  # type: ignore[arg-type]  # checked in __post_init__
        )
