"""Queries against a project's index: free text, ontology keyword, or an example image.

Each query becomes one vector in a model space, is searched in that space's FAISS index
(optionally restricted to a subfolder and to images with given detector tags, through FAISS's
id selector), and comes back as hits with paths, scores and sizes.

A score cut-off (``Query.min_score``, ``Query.within``) is a post-filter on the ranked list: the
index answers best first, so the hits above a cut-off are a prefix of it, and a page never looks
deeper than ``MAX_RESULTS``; a FAISS range search would instead gather every vector above the
threshold (the whole collection for a low one) only to keep one page of it. Measured on 100k
random clustered 512-d vectors (exact index, 2 threads): a range search at 0.6 took 8.6 ms, the
top-1001 search 32 ms and with the cut-off applied 36 ms, both 9 ms with a folder's id selector;
the post-filter returns exactly the same hits as a range search truncated to the page, works the
same on the IVF index, and keeps one code path. Sorting by name or date reorders the hits kept on
the page, after the cut-off and ``k``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from vitrine.index.faiss_index import VectorIndex
from vitrine.search.query import Query
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
    size: int | None = None  # bytes of the file at ``path``
    mtime: float | None = None  # its modification time, seconds since the epoch


@dataclass
class TagHit(Hit):
    """An image listed for a tag: ``score`` is the detector's best score for that label."""

    label: str = ""
    model: str = ""  # the tagging model
    count: int = 0  # boxes with that label
    boxes: list[list[float]] = field(default_factory=list)  # [x1, y1, x2, y2, score], pixels of the file


@dataclass
class TagPage:
    """One page of the images with a tag, best score first."""

    label: str
    model: str | None  # None: any tagging model
    total: int
    offset: int
    limit: int
    has_more: bool
    hits: list[TagHit]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchResult:
    query: dict
    model: str
    space: str
    offset: int
    limit: int
    has_more: bool  # whether a next page exists
    hits: list[Hit]
    # set when the query looks written in a language the model does not read (search/language.py):
    # {"language", "message", "hint", "models"}; the results are then unlikely to match it
    language_note: dict | None = None

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
    query: Query,
    *,
    exclude: set[int] | None = None,
    refine=None,
) -> tuple[bool, list[Hit]]:
    """Top results for one query vector: (whether a next page exists, hits of the page ``query``
    asks for).

    ``query.filters.folder`` keeps one subfolder's images; ``query.filters.tags`` keeps the images
    that have every one of those detector tags (from any tagging model, or from ``tag_model``).
    ``refine``: the exact vectors of candidates, for an index that re-ranks (see
    :meth:`vitrine.index.VectorIndex.search`)."""
    limit, offset = query.k, query.offset
    tags, tag_model = query.filters.tags, query.filters.tag_model
    exclude = exclude or set()
    folder = normalize_folder(query.filters.folder)
    allowed = catalog.content_ids_in_folder(folder) if folder is not None else None
    if tags:
        tagged = catalog.content_ids_with_tags(list(tags), model=tag_model)
        allowed = tagged if allowed is None else np.intersect1d(allowed, tagged)
    if allowed is not None and len(allowed) == 0:
        return False, []
    depth = min(MAX_RESULTS, offset + limit + 1) + len(exclude)
    scores, ids = index.search(np.asarray(vector, np.float32).reshape(1, -1), depth, allowed_ids=allowed, refine=refine)
    ranked = [(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0 and int(i) not in exclude]
    ranked = ranked[:MAX_RESULTS]
    ranked = cut(ranked, query.min_score, query.within)
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
    add_file_stats(catalog, hits)
    return len(ranked) > offset + limit, sort_hits(hits, query.sort)


def cut(ranked: list[tuple[int, float]], min_score: float | None, within: float | None) -> list[tuple[int, float]]:
    """The prefix of ``ranked`` (best first) that passes the cut-offs: a score of at least
    ``min_score``, and at most ``within`` below the best score."""
    if not ranked:
        return ranked
    floor = -np.inf
    if min_score is not None:
        floor = max(floor, float(min_score))
    if within is not None:
        floor = max(floor, round(ranked[0][1], 6) - float(within))
    if floor == -np.inf:
        return ranked
    # compared as hits report scores (6 decimals): a hit showing the cut-off's score passes it
    floor = round(floor, 6)
    return [(i, s) for i, s in ranked if round(s, 6) >= floor]


def add_file_stats(catalog: Catalog, hits: list[Hit]) -> None:
    """Fill each hit's file size and modification time from the catalog."""
    stats = catalog.file_stats(h.path for h in hits)
    for h in hits:
        st = stats.get(h.path)
        if st:
            h.size, h.mtime = st["size"], st["mtime_ns"] / 1e9


def sort_hits(hits: list[Hit], sort: str) -> list[Hit]:
    """``hits`` by score (as ranked), name (path) or date (newest first, then by path)."""
    if sort == "name":
        return sorted(hits, key=lambda h: h.path)
    if sort == "date":
        return sorted(hits, key=lambda h: (-(h.mtime or 0.0), h.path))
    return hits


def hits_for(catalog: Catalog, ids: list[int], folder: str | None = None) -> dict[int, tuple[str, list[str], dict]]:
    """content id -> (primary path, other paths, content info), for contents that still have a file."""
    paths = catalog.paths_for(ids)
    info = catalog.content_info(ids)
    out = {}
    for cid in ids:
        cpaths = paths.get(cid) or []
        if not cpaths:
            continue
        if folder:
            cpaths = sorted(cpaths, key=lambda p: not p.startswith(folder + "/"))
        out[cid] = (cpaths[0], cpaths[1:], info.get(cid, {}))
    return out


def tag_page(
    catalog: Catalog,
    label: str,
    *,
    model: str | None = None,
    folder: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> TagPage:
    """The images with detector tag ``label`` (case-insensitive), best score first."""
    label = str(label or "").strip().lower()
    folder = normalize_folder(folder)
    rows = catalog.tagged_contents(label, model=model) if label else []
    if folder is not None:
        keep = set(catalog.content_ids_in_folder(folder).tolist())
        rows = [r for r in rows if r["content_id"] in keep]
    page = rows[offset : offset + limit]
    found = hits_for(catalog, [r["content_id"] for r in page], folder)
    hits = []
    for r in page:
        if r["content_id"] not in found:
            continue  # removed between the two lookups
        primary, others, meta = found[r["content_id"]]
        hits.append(
            TagHit(
                path=primary,
                folder=primary.split("/", 1)[0] if "/" in primary else "",
                score=round(float(r["score"]), 6),
                content_id=r["content_id"],
                width=meta.get("width"),
                height=meta.get("height"),
                duplicates=others,
                label=r["label"],
                model=r["model"],
                count=r["count"],
                boxes=r["boxes"],
            )
        )
    return TagPage(
        label=label,
        model=model,
        total=len(rows),
        offset=offset,
        limit=limit,
        has_more=len(rows) > offset + limit,
        hits=hits,
    )
