"""Queries against a project's index: free text, ontology keyword, or an example image.

Each query becomes one vector in a model space, is searched in that space's FAISS index
(optionally restricted to a subfolder), and comes back as hits with paths, scores and sizes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from vitrine.index.faiss_index import VectorIndex
from vitrine.store.catalog import Catalog

MAX_RESULTS = 1000  # deepest page a query can reach (offset + limit)


@dataclass
class Hit:
    path: str  # relative to the project's images/ folder, POSIX
    folder: str
    score: float
    content_id: int
    width: int | None = None
    height: int | None = None
    duplicates: list[str] = field(default_factory=list)  # other paths with the same content


@dataclass
class SearchResult:
    query: dict
    model: str
    space: str
    offset: int
    limit: int
    has_more: bool  # whether a next page exists
    hits: list[Hit]

    def to_dict(self) -> dict:
        return asdict(self)


def normalize_folder(folder: str | None) -> str | None:
    """None or "" mean every folder; "/" or "." mean the files directly under images/."""
    if folder is None or folder.strip() == "":
        return None
    folder = folder.strip()
    return "" if folder in ("/", ".") else folder.strip("/")


def run_query(
    index: VectorIndex,
    catalog: Catalog,
    vector: np.ndarray,
    *,
    limit: int = 20,
    offset: int = 0,
    folder: str | None = None,
    exclude: set[int] | None = None,
) -> tuple[bool, list[Hit]]:
    """Top results for one query vector: (whether a next page exists, hits of the requested page)."""
    exclude = exclude or set()
    folder = normalize_folder(folder)
    allowed = catalog.content_ids_in_folder(folder) if folder is not None else None
    if allowed is not None and len(allowed) == 0:
        return False, []
    depth = min(MAX_RESULTS, offset + limit + 1) + len(exclude)
    scores, ids = index.search(np.asarray(vector, np.float32).reshape(1, -1), depth, allowed_ids=allowed)
    ranked = [(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0 and int(i) not in exclude]
    ranked = ranked[:MAX_RESULTS]
    page = ranked[offset : offset + limit]
    paths = catalog.paths_for(i for i, _ in page)
    info = catalog.content_info(i for i, _ in page)
    hits = []
    for cid, score in page:
        cpaths = paths.get(cid) or []
        if not cpaths:
            continue  # removed between the search and this lookup
        if folder:
            cpaths = sorted(cpaths, key=lambda p: not p.startswith(folder + "/"))
        meta = info.get(cid, {})
        primary = cpaths[0]
        hits.append(
            Hit(
                path=primary,
                folder=primary.split("/", 1)[0] if "/" in primary else "",
                score=round(score, 6),
                content_id=cid,
                width=meta.get("width"),
                height=meta.get("height"),
                duplicates=cpaths[1:],
            )
        )
    return len(ranked) > offset + limit, hits
