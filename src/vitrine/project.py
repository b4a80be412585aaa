"""A project: the Python API over one collection (``<project>/images`` + ontology).

>>> import vitrine
>>> p = vitrine.Project("archive")           # or vitrine.init_project("archive")
>>> report = p.index()                       # incremental; resumes after an interruption
>>> p.search("a cat", k=5).hits[0].path
>>> p.tag()                                  # detector labels as tags (incremental too)
>>> p.search("sleeping", tags=["cat"]); p.tags(); p.images_with_tag("cat")
>>> p.map2d(); p.map_points()["x"][:3]          # the 2-D map (UMAP), cached until the vectors change
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vitrine.collection.imageio import make_thumbnail, open_image, open_image_bytes
from vitrine.collection.layout import (
    Problem,
    ProjectPaths,
    init_project,
    project_paths,
    resolve_inside,
    validate_layout,
)
from vitrine.collection.ontology import Ontology, OntologyCache
from vitrine.collection.scan import scan_project
from vitrine.collection.signature import SIDE as SIGNATURE_SIDE
from vitrine.collection.signature import signatures_of
from vitrine.core.atomic import atomic_path
from vitrine.core.errors import IndexMismatch, LayoutError, NotFound, VitrineError
from vitrine.embed import runtime_choice
from vitrine.embed.distributed import RayOptions, ray_indexer
from vitrine.embed.pipeline import EmbedItem, StageTimes, embed_items
from vitrine.index.maintain import refresh_index
from vitrine.models import registry
from vitrine.models.base import Embedder, embed_images
from vitrine.models.embedders import text_runtime
from vitrine.models.preprocess import DECODE_MIN_SIDE
from vitrine.search import map2d, neighbours
from vitrine.search.engine import SearchResult, TagPage, run_query, tag_page
from vitrine.search.language import language_note
from vitrine.search.map2d import Map2D, MapNotReady, MapParams
from vitrine.search.neighbours import DuplicateGroup, Item, Outlier
from vitrine.search.query import Filters, Query
from vitrine.store.catalog import Catalog
from vitrine.tagging import DEFAULT_TAG_MODEL, DEFAULT_THRESHOLD, TagReport, check_threshold

Progress = Callable[[str, int, int], None]  # (stage, done, total); stages: scan, embed, index, tag

_ONTOLOGIES = OntologyCache()


@dataclass
class IndexReport:
    model: str
    model_reason: str
    embedded: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[dict] = field(default_factory=list)  # {"path", "reason"}
    files: int = 0
    seconds: float = 0.0  # the whole run: model load, scan, embedding, index update
    embed_seconds: float = 0.0  # decoding and embedding only
    # where the time went: load, scan, index (FAISS) seconds, and the embedding's stages
    # (vitrine.embed.pipeline.StageTimes: decode thread-seconds, waiting for decode, model, store)
    stages: dict = field(default_factory=dict)
    # what embedded the images: torch or a CPU runtime, and why (vitrine.embed.runtime_choice)
    runtime: dict = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["images_per_second"] = round(self.images_per_second, 2)
        d["seconds"] = round(self.seconds, 3)
        d["embed_seconds"] = round(self.embed_seconds, 3)
        return d


@dataclass
class CheckReport:
    layout: list[Problem]
    ontology: Ontology

    @property
    def ok(self) -> bool:
        # warnings (layout or ontology lines that were still used) do not make a project fail
        return not any(p.severity == "error" for p in self.layout) and self.ontology.ok

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "layout": [asdict(p) for p in self.layout],
            "ontology": {
                "file": self.ontology.source,
                "entries": len(self.ontology.entries),
                "problems": [asdict(p) for p in self.ontology.problems],
            },
        }


class Project:
    def __init__(self, project_dir: str | Path, data_dir: str | Path | None = None):
        self.paths: ProjectPaths = project_paths(project_dir, data_dir=data_dir)
        if not self.paths.images_dir.is_dir():
            raise LayoutError(
                f"{self.paths.project_dir} is not a vitrine project: no images/ folder",
                hint=f"run `vitrine init {self.paths.project_dir}` or `vitrine check` to see what is missing",
            )
        self._catalog: Catalog | None = None
        self._catalog_lock = threading.Lock()
        self._signatures: dict[tuple, np.ndarray] = {}  # pixel signatures read (fp16), by (content, size, mtime)
        self.index_in_progress: IndexReport | None = None

    @property
    def name(self) -> str:
        return self.paths.name

    @property
    def catalog(self) -> Catalog:
        with self._catalog_lock:
            if self._catalog is None:
                self._catalog = Catalog(self.paths.catalog_db)
            return self._catalog

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    # --- layout and ontology ----------------------------------------------------------------
    @property
    def ontology(self) -> Ontology:
        """Parsed afresh whenever the file changes, so edits need no restart."""
        return _ONTOLOGIES.get(self.paths.ontology_file)

    def check(self) -> CheckReport:
        return CheckReport(layout=validate_layout(self.paths.project_dir), ontology=self.ontology)

    # --- models -----------------------------------------------------------------------------
    @property
    def model_name(self) -> str | None:
        """The model the project's searches use (the one it was last indexed with)."""
        return self.catalog.get_meta("model")

    def _resolve_query_model(self, model: str | None) -> str:
        active = self.model_name
        if active is None:
            raise NotFound(
                f"project {self.name!r} has not been indexed yet",
                hint=f"run `vitrine index {self.paths.project_dir}` first",
            )
        if model is None or model == active:
            if not self.catalog.has_vectors(active):
                raise NotFound(
                    f"project {self.name!r} has not been indexed yet: no image has a vector for {active!r} "
                    "(an indexing run was stopped before it embedded any image)",
                    hint=f"run `vitrine index {self.paths.project_dir}` first",
                )
            return active
        registry.get(model)  # an unknown name is reported as such, with the known ones
        if not self.catalog.has_vectors(model):
            raise IndexMismatch(
                f"project {self.name!r} is indexed with {active!r}, not {model!r}: "
                "vectors of different models cannot be compared",
                hint=f"search with --model {active}, or re-index with `vitrine index --model {model}` "
                "(it builds a separate index)",
            )
        return model

    def _load_model(self, name: str) -> Embedder:
        weights = self.catalog.get_meta(f"weights:{name}")
        return registry.load(name, weights=weights)

    # --- indexing ---------------------------------------------------------------------------
    @contextmanager
    def _exclusive(self, doing: str = "indexed"):
        self.paths.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.paths.data_dir / "index.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise VitrineError(
                    f"project {self.name!r} is already being indexed or tagged by another process "
                    f"(it cannot be {doing} until that is done: indexing and tagging take turns)",
                    hint="wait for it to finish (its progress shows in the UI), or stop it",
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def index(
        self,
        model: str | None = None,
        weights: str | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        batch_size: int | None = None,
        reason: str | None = None,
        ray: RayOptions | None = None,
        runtime: str | None = None,
    ) -> IndexReport:
        """Scan images/, embed new or changed images, drop removed ones, update the index.

        ``reason`` says why ``model`` was chosen (default: "chosen by the user"). ``runtime``: what
        embeds the images (``auto``, ``torch``, ``openvino-int8``...; see
        :mod:`vitrine.embed.runtime_choice`).
        Safe to interrupt: vectors are committed batch by batch and the index file is replaced
        atomically, so the next run carries on where this one stopped. While it runs,
        :attr:`index_in_progress` is its report so far (what an interrupted run had committed).
        ``ray``: embed on a Ray cluster's actor pool (:mod:`vitrine.embed.distributed`), committing
        here batch by batch just the same; its pool is checked against the cluster before any work."""
        start = time.perf_counter()
        runtime = runtime_choice.requested_runtime(runtime)  # an unknown name fails before any work
        cat = self.catalog
        self.index_in_progress = None
        if model is not None:
            registry.get(model)  # unknown names fail before any work
            reason = reason or "chosen by the user"
        elif self.model_name is not None:
            model, reason = self.model_name, "the model this project was indexed with"
        else:
            model, reason = registry.default_embedding_model(probe_hub=True)
        first_reason = cat.get_meta(f"model_reason:{model}")
        if first_reason and reason not in ("chosen by the user", first_reason):
            reason = f"{reason}; first chosen because {first_reason}"
        with self._exclusive(), ray_indexer(ray) as cluster:
            t0 = time.perf_counter()
            embedder = registry.load(model, weights=weights)
            load_seconds = time.perf_counter() - t0
            if cluster is not None:
                cluster.prepare(embedder, model, weights, runtime)
            # recorded before any work: an interrupted or cancelled run still shows its model
            cat.set_meta("model", model)
            if first_reason is None:
                cat.set_meta(f"model_reason:{model}", reason)
            if weights:
                cat.set_meta(f"weights:{model}", weights)
            report = IndexReport(model=model, model_reason=reason)
            report.stages["load_seconds"] = round(load_seconds, 3)
            self.index_in_progress = report
            t0 = time.perf_counter()
            scan = scan_project(self.paths, cat, progress=_stage(progress, "scan"), cancel=cancel)
            report.stages["scan_seconds"] = round(time.perf_counter() - t0, 3)
            report.removed = len(scan.removed)
            report.failed = [{"path": s.relpath, "reason": s.reason} for s in scan.skipped]
            todo = cat.contents_to_embed(model)
            files = cat.files()
            report.files = len(files)
            todo_ids = {cid for cid, _ in todo}
            report.unchanged = sum(1 for f in files.values() if f.content_id not in todo_ids)
            failures: dict[int, str] = {}

            def on_failure(item: EmbedItem, reason: str) -> None:
                failures[item.content_id] = reason
                # every file with this content failed, not only the one that was decoded
                for rel in cat.paths_for([item.content_id])[item.content_id] or [item.relpath]:
                    report.failed.append({"path": rel, "reason": reason})

            def on_batch(ids, vectors, info):
                cat.add_vectors(model, ids, vectors, info)
                report.embedded += len(ids)

            items = [EmbedItem(cid, self.paths.images_dir / rel, rel) for cid, rel in todo]
            t0 = time.perf_counter()
            if cluster is None:
                decision = runtime_choice.select(embedder, items, runtime, say=_steps(progress, "runtime"))
            else:  # the actors load the model themselves; a runtime choice is measured per machine
                decision = runtime_choice.torch_decision(
                    embedder, "on the Ray actors (runtimes are chosen per machine)"
                )
            report.runtime = decision.to_dict()
            report.stages["runtime_seconds"] = round(time.perf_counter() - t0, 3)
            embedder = decision.embedder
            embed_start = time.perf_counter()
            times = StageTimes()
            try:
                (embed_items if cluster is None else cluster.embed)(
                    embedder,
                    items,
                    on_batch,
                    on_failure,
                    progress=_stage(progress, "embed"),
                    cancel=cancel,
                    batch_size=batch_size,
                    times=times,
                )
            finally:
                cat.record_failures(failures)
                report.embed_seconds = time.perf_counter() - embed_start
                report.stages.update(times.to_dict())
                if cluster is not None:
                    report.stages["ray"] = summary = cluster.summary()
                    if summary.get("runtimes"):
                        report.runtime["line"] = "Ray actors: " + "; ".join(summary["runtimes"])
            if progress:
                progress("index", 0, 1)
            t0 = time.perf_counter()
            cat.set_meta(f"image_space:{model}", embedder.spaces.image_space)
            for space, dim in embedder.spaces.dims.items():
                refresh_index(cat, self.paths.indexes_dir, model, space, dim)
            report.stages["index_seconds"] = round(time.perf_counter() - t0, 3)
            # the text tower on ONNX Runtime (cached per weights): text queries then skip torch;
            # a cancelled run stops without it (the record it may have is kept)
            if cancel is None or not cancel.is_set():
                t0 = time.perf_counter()
                cat.set_meta(f"text_encoder:{model}", text_runtime.export_for(embedder)[0])
                report.stages["text_export_seconds"] = round(time.perf_counter() - t0, 3)
            if progress:
                progress("index", 1, 1)
            report.failed.sort(key=lambda f: f["path"])
            report.seconds = time.perf_counter() - start
            cat.set_meta("last_index", report.to_dict() | {"finished_at": time.time()})
            return report

    # --- search -----------------------------------------------------------------------------
    def query(self, query: Query) -> SearchResult:
        """Run one :class:`~vitrine.search.query.Query` (text, keyword, collection image or example
        image, with its page and filters): what the CLI and the API call, and the search methods
        below with their keywords."""
        search = {
            "text": self._search_text,
            "keyword": self._search_keyword,
            "similar": self._search_similar,
            "image": self._search_image,
        }[query.kind]
        return search(query)

    def search(
        self,
        text: str,
        k: int = 20,
        offset: int = 0,
        folder: str | None = None,
        model: str | None = None,
        tags: list[str] | None = None,
        tag_model: str | None = None,
    ) -> SearchResult:
        """Free-text search; ``tags`` keeps images with every one of those detector tags (see
        :meth:`tag`), from any tagging model or from ``tag_model``."""
        filters = Filters(folder=folder, tags=tags or (), tag_model=tag_model)
        return self.query(Query(text=text or "", model=model, k=k, offset=offset, filters=filters))

    def search_keyword(
        self,
        keyword: str,
        k: int = 20,
        offset: int = 0,
        folder: str | None = None,
        model: str | None = None,
        tags: list[str] | None = None,
        tag_model: str | None = None,
    ) -> SearchResult:
        """Search with an ontology keyword: its description builds the query (``tags``: as in :meth:`search`)."""
        filters = Filters(folder=folder, tags=tags or (), tag_model=tag_model)
        return self.query(Query(keyword=keyword, model=model, k=k, offset=offset, filters=filters))

    def search_similar(
        self,
        relpath: str,
        k: int = 20,
        offset: int = 0,
        folder: str | None = None,
        model: str | None = None,
        tags: list[str] | None = None,
        tag_model: str | None = None,
    ) -> SearchResult:
        """More like this: images close to one of the collection's images (by its stored vector;
        ``tags``: as in :meth:`search`)."""
        filters = Filters(folder=folder, tags=tags or (), tag_model=tag_model)
        return self.query(Query(similar=relpath, model=model, k=k, offset=offset, filters=filters))

    def search_image(
        self,
        image: str | Path | bytes,
        k: int = 20,
        offset: int = 0,
        folder: str | None = None,
        model: str | None = None,
        tags: list[str] | None = None,
        tag_model: str | None = None,
    ) -> SearchResult:
        """Search by an example image given as a file path or as uploaded bytes (``tags``: as in :meth:`search`)."""
        filters = Filters(folder=folder, tags=tags or (), tag_model=tag_model)
        return self.query(Query(image=image, model=model, k=k, offset=offset, filters=filters))

    def _text_encoder(self, name: str):
        """``(encoder, space, dim)`` for text queries with ``name``: the text tower the index run
        exported (ONNX Runtime, no torch) when it is there and made from the same weights, else the
        torch model, as before the export existed."""
        encoder, _why = text_runtime.open_recorded(self.catalog.get_meta(f"text_encoder:{name}"))
        if encoder is not None:
            return encoder, encoder.space, encoder.dim
        embedder = self._load_model(name)
        space = self._text_space(name, embedder)
        return embedder, space, embedder.spaces.dims[space]

    def _search_text(self, query: Query) -> SearchResult:
        name = self._resolve_query_model(query.model)
        encoder, space, dim = self._text_encoder(name)
        vector = encoder.embed_texts([query.text])[0]
        result = self._search_vector(name, dim, space, vector, {"kind": "text", "text": query.text}, query)
        result.language_note = _language_note(query.text, name)
        return result

    def _search_keyword(self, query: Query) -> SearchResult:
        entry = self.ontology.get(query.keyword)
        text = entry.description or entry.keyword
        name = self._resolve_query_model(query.model)
        encoder, space, dim = self._text_encoder(name)
        vector = encoder.embed_texts([text])[0]
        asked = {"kind": "keyword", "keyword": entry.keyword, "description": entry.description, "text": text}
        result = self._search_vector(name, dim, space, vector, asked, query)
        result.language_note = _language_note(text, name)
        return result

    def _search_similar(self, query: Query) -> SearchResult:
        relpath = query.similar
        name = self._resolve_query_model(query.model)
        info = self.catalog.file_info(relpath)
        if info is None:
            raise NotFound(f"no image {relpath!r} in project {self.name!r}", hint="paths are relative to images/")
        # the space the index run recorded, and the stored vector: no model to load
        space = self.catalog.get_meta(f"image_space:{name}") or self._load_model(name).spaces.image_space
        _, vectors = self.catalog.vectors_for(name, space, [info["content_id"]])
        if len(vectors) == 0:
            raise NotFound(
                f"{relpath} has no vector for {name!r} ({info.get('error') or 'not indexed yet'})",
                hint="run `vitrine index` to embed it",
            )
        asked = {"kind": "image", "image": relpath}
        dim = int(vectors.shape[1])
        return self._search_vector(name, dim, space, vectors[0], asked, query, exclude={info["content_id"]})

    def _search_image(self, query: Query) -> SearchResult:
        image = query.image
        name = self._resolve_query_model(query.model)
        if isinstance(image, bytes):  # decoded first: a bad image fails without loading the model
            pil, label = open_image_bytes(image, min_side=DECODE_MIN_SIDE), "upload"
        else:
            pil, label = open_image(Path(image), min_side=DECODE_MIN_SIDE), str(image)
        embedder = self._load_model(name)
        space = embedder.spaces.image_space
        vector = embed_images(embedder, [pil])[space][0]
        asked = {"kind": "image", "image": label}
        return self._search_vector(name, embedder.spaces.dims[space], space, vector, asked, query)

    @staticmethod
    def _text_space(name: str, embedder: Embedder) -> str:
        space = embedder.spaces.text_space
        if space is None:
            raise VitrineError(f"model {name!r} cannot search by text", hint="search by image instead")
        return space

    def _search_vector(self, model_name, dim: int, space, vector, asked: dict, query: Query, exclude=None):
        """Search ``vector`` in ``space`` (of ``dim`` dimensions); ``asked`` is the query as the result reports it."""
        index = refresh_index(self.catalog, self.paths.indexes_dir, model_name, space, dim)
        filters = query.filters
        if filters.tags:
            asked = {**asked, "tags": list(filters.tags)} | (
                {"tag_model": filters.tag_model} if filters.tag_model else {}
            )
        cutoff = {k: v for k, v in (("min_score", query.min_score), ("within", query.within)) if v is not None}
        asked = asked | cutoff | ({"sort": query.sort} if query.sort != "score" else {})
        catalog = self.catalog

        def refine(ids):  # a compact index re-ranks its candidates by the stored vectors
            return catalog.vectors_for(model_name, space, ids.tolist())

        has_more, hits = run_query(index, catalog, vector, query, exclude=exclude, refine=refine)
        return SearchResult(
            query=asked,
            model=model_name,
            space=space,
            offset=query.offset,
            limit=query.k,
            has_more=has_more,
            hits=hits,
        )

    # --- duplicates and outliers -------------------------------------------------------------
    def _image_vectors(self, model: str | None) -> tuple[str, str, np.ndarray, np.ndarray]:
        """(model, space, content ids, vectors) of every stored vector in the model's image space."""
        name = self._resolve_query_model(model)
        space = self.catalog.get_meta(f"image_space:{name}")
        if space is None:  # indexed before the space was recorded: the model says
            space = self._load_model(name).spaces.image_space
        chunks = list(self.catalog.iter_vectors(name, space))
        if not chunks:
            raise NotFound(
                f"project {self.name!r} has no {space!r} vectors for {name!r}",
                hint=f"run `vitrine index {self.paths.project_dir}` first",
            )
        return name, space, np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])

    def _items(self, ids: np.ndarray) -> list[Item]:
        """What the keep rule reads of each content: pixels, bytes, its oldest file, its other paths."""
        by_content: dict[int, list] = {}
        for row in self.catalog.files().values():
            by_content.setdefault(row.content_id, []).append(row)
        info = self.catalog.content_info(ids.tolist())
        items = []
        for cid in ids.tolist():
            rows = sorted(by_content.get(cid, []), key=lambda r: (r.mtime_ns, r.relpath))
            meta = info.get(cid, {})
            items.append(
                Item(
                    key=cid,
                    path=rows[0].relpath if rows else f"#{cid}",
                    width=meta.get("width"),
                    height=meta.get("height"),
                    size=rows[0].size if rows else None,
                    mtime_ns=rows[0].mtime_ns if rows else None,
                    same_bytes=tuple(r.relpath for r in rows[1:]),
                )
            )
        return items

    def duplicates(
        self,
        threshold: float = neighbours.DEFAULT_THRESHOLD,
        model: str | None = None,
        pixels: bool = True,
        pixel_threshold: float = neighbours.DEFAULT_PIXEL_THRESHOLD,
    ) -> dict:
        """Near-duplicate groups of the collection: images whose vectors (the model's image space)
        are within cosine ``threshold`` of each other and, with ``pixels`` (the default), whose
        pixel signatures correlate by ``pixel_threshold`` or more (a copy, not another photo of
        the same thing: :mod:`vitrine.collection.signature`), transitively; each group names the
        image to keep (largest resolution, then largest file, then oldest file) and why. Files with
        the same bytes are one content, listed as its ``exact_duplicates``; ``exact`` lists every
        such content, also outside near-duplicate groups."""
        threshold = neighbours.check_threshold(threshold)
        pixel_threshold = neighbours.check_pixel_threshold(pixel_threshold)
        name, space, ids, vectors = self._image_vectors(model)
        items = self._items(ids)
        unreadable: list[dict] = []
        check = None
        if pixels:
            check = neighbours.PixelCheck(lambda rows: self._pixel_signatures(items, rows, unreadable), pixel_threshold)
        groups: list[DuplicateGroup] = neighbours.near_duplicate_groups(vectors, items, threshold, check)
        exact = [{"path": it.path, "exact_duplicates": list(it.same_bytes)} for it in items if it.same_bytes]
        return {
            "model": name,
            "space": space,
            "threshold": threshold,
            "pixel_check": check.to_dict() if check else None,
            "images": len(items),
            "groups": [g.to_dict() for g in groups],
            "exact": sorted(exact, key=lambda e: e["path"]),
            "unreadable": unreadable,
        }

    def _pixel_signatures(self, items: list[Item], rows: list[int], unreadable: list[dict]) -> np.ndarray:
        """The pixel signatures of ``items[rows]``, read once per content and file state (kept on
        this object: a server asking again at another threshold decodes nothing)."""
        keys = [(items[r].key, items[r].size, items[r].mtime_ns) for r in rows]
        missing = sorted({k: r for k, r in zip(keys, rows, strict=True) if k not in self._signatures}.items())
        if missing:
            paths = [resolve_inside(self.paths.images_dir, items[r].path) for _, r in missing]
            sigs, failed = signatures_of(paths)
            for n, ((key, r), sig) in enumerate(zip(missing, sigs, strict=True)):
                if n in failed:
                    unreadable.append({"path": items[r].path, "reason": failed[n]})
                else:
                    self._signatures[key] = sig.astype(np.float16)  # 512 bytes an image
        zero = np.zeros(SIGNATURE_SIDE * SIGNATURE_SIDE, np.float16)
        return np.stack([self._signatures.get(k, zero) for k in keys]).astype(np.float32)

    def outliers(self, k: int = neighbours.DEFAULT_K, top: int | None = None, model: str | None = None) -> dict:
        """Each image's mean cosine distance to its ``k`` nearest neighbours, most isolated first
        (``top``: only the first ones)."""
        k = neighbours.check_k(k)
        if top is not None and top < 1:
            raise VitrineError(f"top = {top} must be at least 1", hint="leave it out for every image")
        name, space, ids, vectors = self._image_vectors(model)
        items = self._items(ids)
        scores: list[Outlier] = neighbours.outlier_scores(vectors, ids.tolist(), [it.path for it in items], k)
        return {
            "model": name,
            "space": space,
            "k": k,
            "images": len(items),
            "outliers": [o.to_dict() for o in (scores[:top] if top else scores)],
        }

    # --- the 2-D map (UMAP of the stored vectors, cached per model and catalog generation) ---
    @property
    def maps_dir(self) -> Path:
        return self.paths.data_dir / "maps"

    def _map_target(self, model: str | None) -> tuple[str, str]:
        """(model, image space) of the map: the project's model by default."""
        name = self._resolve_query_model(model)
        space = self.catalog.get_meta(f"image_space:{name}")
        if space is None:  # indexed before the space was recorded: the model says
            space = self._load_model(name).spaces.image_space
        return name, space

    def map2d(
        self,
        model: str | None = None,
        params: MapParams | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> dict:
        """Compute the 2-D map of the images (UMAP of the model's image-space vectors), or keep the
        cached one when the catalog has not changed since and ``params`` are the same. Returns its
        summary, with ``computed`` saying which. Stages for ``progress``: ``read``, ``umap``."""
        params = (params or MapParams()).checked()
        name, space = self._map_target(model)
        m, computed = map2d.compute_map(
            self.catalog, self.maps_dir, name, space, params, progress=progress, cancel=cancel
        )
        return m.summary() | {"computed": computed}

    def map_state(self, model: str | None = None) -> dict:
        """The map of ``model`` as it stands: ``ready`` (up to date), ``stale`` (made before the
        catalog last changed) or neither (never computed), with its summary."""
        name, space = self._map_target(model)
        m = map2d.load_map(map2d.map_file(self.maps_dir, name, space))
        fresh = m is not None and map2d.is_fresh(m, self.catalog)
        return {
            "model": name,
            "space": space,
            "generation": self.catalog.generation(name),
            "ready": fresh,
            "stale": m is not None and not fresh,
            "map": m.summary() if m is not None else None,
        }

    def _ready_map(self, model: str | None) -> Map2D:
        name, space = self._map_target(model)
        m = map2d.load_map(map2d.map_file(self.maps_dir, name, space))
        if m is None:
            raise MapNotReady(
                f"project {self.name!r} has no map of {name!r} yet", hint="compute it first (the map job)"
            )
        if not map2d.is_fresh(m, self.catalog):
            raise MapNotReady(
                f"the map of {name!r} was made before the catalog last changed (images added, changed or removed)",
                hint="compute it again (the map job): the points would not match the images",
            )
        return m

    def map_points(self, model: str | None = None) -> dict:
        """The up-to-date map's points as columns (x, y, content id, path, folder code)."""
        return map2d.points_payload(self._ready_map(model), self.catalog)

    def map_colors(self, by: str, model: str | None = None, clusters: int = 8, tag_model: str | None = None) -> dict:
        """Each point's category (``folder``, ``tag`` or ``cluster``), in the order of :meth:`map_points`."""
        return map2d.colors_payload(self._ready_map(model), self.catalog, by, clusters=clusters, tag_model=tag_model)

    def map_query(self, text: str, model: str | None = None, k: int = 5) -> dict:
        """Where the text query falls on the map: its ``k`` best images (a text search) and their
        mean position, weighted by a softmax of their similarities."""
        m = self._ready_map(model)
        result = self.query(Query(text=text or "", model=m.model, k=k))
        placed = map2d.place_query(m, [(h.content_id, h.path, h.score) for h in result.hits])
        return {"query": text, "model": m.model, "space": result.space} | placed

    # --- detector tags ----------------------------------------------------------------------
    def tag(
        self,
        model: str = DEFAULT_TAG_MODEL,
        threshold: float = DEFAULT_THRESHOLD,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        batch_size: int | None = None,
        weights: str | None = None,
        workspace=None,
    ) -> TagReport:
        """Scan images/, then run detector ``model`` over every content it has not tagged yet at
        ``threshold`` and keep the labels it finds (score >= threshold) as tags.

        Incremental and resumable like :meth:`index`: each batch is committed, removed images'
        tags go with them, changed files are tagged again, unreadable ones are reported in
        ``failed`` and tried again next time. Tagging at another threshold re-tags everything
        for that model. Stages for ``progress``: ``scan``, ``tag``."""
        from vitrine.predict.detector import load_detector
        from vitrine.tagging import tag_contents

        start = time.perf_counter()
        threshold = check_threshold(threshold)
        name = (model or "").strip() or DEFAULT_TAG_MODEL
        # a run id is looked up in ``workspace`` (a server passes its root; default $VITRINE_HOME or cwd)
        detector = load_detector(name, weights=weights, workspace=workspace)  # unknown names fail before any work
        cat = self.catalog
        with self._exclusive("tagged"):
            scan = scan_project(self.paths, cat, progress=_stage(progress, "scan"), cancel=cancel)
            cat.set_meta(f"tag_threshold:{name}", threshold)
            report = tag_contents(
                detector,
                cat,
                self.paths.images_dir,
                name,
                threshold,
                progress=_stage(progress, "tag"),
                cancel=cancel,
                batch_size=batch_size or getattr(detector, "batch_size", None) or 8,
            )
            scan_failed = [{"path": s.relpath, "reason": s.reason} for s in scan.skipped]
            report.failed = sorted(scan_failed + report.failed, key=lambda f: f["path"])
            report.seconds = time.perf_counter() - start
            cat.set_meta("last_tag", report.to_dict() | {"removed": len(scan.removed), "finished_at": time.time()})
            return report

    def tags(self, model: str | None = None) -> dict[str, int]:
        """Detector tags: label -> number of images (contents) with it, most frequent first."""
        return self.catalog.tag_counts(model=model)

    def images_with_tag(
        self,
        label: str,
        model: str | None = None,
        folder: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> TagPage:
        """The images with detector tag ``label`` (case-insensitive), best score first, with their
        boxes; an unknown tag gives an empty page."""
        if offset < 0 or limit < 1:
            raise VitrineError(f"bad page: offset {offset}, limit {limit}", hint="offset >= 0 and limit >= 1")
        return tag_page(self.catalog, label, model=model, folder=folder, offset=offset, limit=limit)

    def tagging_status(self) -> dict:
        """Per tagging model: contents tagged, at which threshold, how many are still to tag; the
        number of distinct tags; and the last tagging run's report."""
        cat = self.catalog
        state = cat.tagging_state()
        models = {}
        for name, row in state.items():
            threshold = cat.get_meta(f"tag_threshold:{name}", row["thresholds"][0] if row["thresholds"] else None)
            pending = len(cat.contents_to_tag(name, threshold)) if threshold is not None else None
            models[name] = {
                "tagged": row["tagged"],
                "objects": row["objects"],
                "threshold": threshold,
                "pending": pending,
            }
        return {"models": models, "tags": len(cat.tag_counts()), "last_tag": cat.get_meta("last_tag")}

    # --- browsing ---------------------------------------------------------------------------
    def image_path(self, relpath: str) -> Path:
        """Absolute path of a catalogued image; refuses anything outside images/."""
        path = resolve_inside(self.paths.images_dir, relpath)
        if self.catalog.file_info(relpath) is None or not path.is_file():
            raise NotFound(f"no image {relpath!r} in project {self.name!r}")
        return path

    def image_info(self, relpath: str) -> dict:
        info = self.catalog.file_info(relpath)
        if info is None:
            raise NotFound(f"no image {relpath!r} in project {self.name!r}")
        info["duplicates"] = [
            p for p in self.catalog.paths_for([info["content_id"]])[info["content_id"]] if p != relpath
        ]
        info["tags"] = self.catalog.tags_for([info["content_id"]])[info["content_id"]]
        return info

    def thumbnail(self, relpath: str, size: int = 320) -> Path:
        """A cached JPEG thumbnail (made on first request) under the project's data dir."""
        info = self.image_info(relpath)
        path = self.image_path(relpath)
        st = path.stat()
        if (st.st_size, st.st_mtime_ns) == (info["size"], info["mtime_ns"]):
            key = info["sha256"]
        else:  # changed on disk since the last index: never show (or cache under) the old content
            key = hashlib.sha256(f"{relpath}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
        thumb = self.paths.thumbs_dir / key[:2] / f"{key}-{size}.jpg"
        if not thumb.exists():
            data = make_thumbnail(open_image(path, min_side=size), size=size)
            thumb.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(thumb, sync=False) as tmp:  # a cache: no fsync
                tmp.write_bytes(data)
        return thumb

    def failures(self) -> list[dict]:
        """Every image that cannot be indexed now, one row per file ({"path", "reason"}), sorted:
        files whose content failed to decode (each copy counts) and files the last scan skipped
        (empty, unreadable, unsafe). ``index`` reports the same list, so the counts agree."""
        cat = self.catalog
        rows = dict(cat.failures())
        last = cat.get_meta("last_index") or {}
        for f in last.get("failed") or []:
            # a scan skip is not catalogued; one that is catalogued now has been read since
            if f["path"] not in rows and os.path.lexists(self.paths.images_dir / f["path"]):
                if cat.file_info(f["path"]) is None:
                    rows[f["path"]] = f["reason"]
        return [{"path": p, "reason": r} for p, r in sorted(rows.items())]

    def status(self) -> dict:
        """What is true now: ``indexed`` images (contents with a vector for ``model``), ``pending``
        ones still to embed (an interrupted run leaves some), ``failed`` files (as ``index`` counts
        them, listed in ``failures``)."""
        cat = self.catalog
        counts = cat.counts()
        models = cat.models()
        model = self.model_name
        failures = self.failures()
        failed_contents = counts["failed"]
        indexed = models.get(model, 0) if model else 0
        pending = max(0, counts["contents"] - indexed - failed_contents) if model else counts["contents"]
        return {
            "name": self.name,
            "project_dir": str(self.paths.project_dir),
            "model": model,
            "indexed_models": models,
            "files": counts["files"],
            "contents": counts["contents"],
            "indexed": indexed,
            "pending": pending,
            "failed": len(failures),
            "failures": failures,
            "folders": cat.folders(),
            "last_index": cat.get_meta("last_index"),
            "tagging": self.tagging_status(),
            "ontology": {
                "file": str(self.paths.ontology_file),
                "entries": len(self.ontology.entries),
                "problems": len(self.ontology.problems),
            },
        }

    # --- exports ----------------------------------------------------------------------------
    def export_catalog_csv(self, fp) -> int:
        """Write relpath, folder, size, sha256, width, height, error as CSV; returns rows written."""
        import csv

        writer = csv.writer(fp)
        writer.writerow(["path", "folder", "size_bytes", "sha256", "width", "height", "error"])
        n, offset = 0, 0
        while True:
            _, rows = self.catalog.list_files(offset=offset, limit=5000)
            if not rows:
                return n
            for r in rows:
                writer.writerow(
                    [r["relpath"], r["folder"], r["size"], r["sha256"], r["width"], r["height"], r["error"] or ""]
                )
                n += 1
            offset += len(rows)

    # --- exporting chosen results -----------------------------------------------------------
    def selected_files(self, paths: list[str], *, allow_empty: bool = False) -> list[dict]:
        """Catalog rows (path, folder, size, mtime_ns, sha256, width, height) of ``paths``, images
        of this project given relative to images/, in the order given, each once. A path that is
        not one of the project's indexed images (outside it, absolute, with ``..``, removed since)
        is refused, naming it: nothing is read outside the project."""
        if not paths and not allow_empty:
            raise VitrineError("no images selected", hint="select at least one result to export")
        if len(paths) > MAX_EXPORT:
            raise VitrineError(f"{len(paths)} images selected: at most {MAX_EXPORT} per export")
        rows, missing = [], []
        for rel in dict.fromkeys(str(p) for p in paths):
            info = self.catalog.file_info(rel)
            if info is None:
                missing.append(rel)
            else:
                rows.append(info)
        if missing:
            shown = ", ".join(repr(m) for m in missing[:3])
            if len(missing) > 3:
                shown += f" and {len(missing) - 3} more"
            raise NotFound(
                f"not an image of project {self.name!r}: {shown}",
                hint="give paths relative to images/, as search results list them",
            )
        return rows

    def export_results_csv(
        self, fp, paths: list[str], scores: dict[str, float] | None = None, *, allow_empty: bool = False
    ) -> int:
        """Write the chosen results as CSV (path, score, folder, size_bytes, modified, width, height,
        sha256), in the order given; returns rows written. ``scores``: each path's search score."""
        import csv
        from datetime import UTC, datetime

        rows = self.selected_files(paths, allow_empty=allow_empty)
        scores = scores or {}
        writer = csv.writer(fp)
        writer.writerow(["path", "score", "folder", "size_bytes", "modified", "width", "height", "sha256"])
        for r in rows:
            score = scores.get(r["relpath"])
            modified = datetime.fromtimestamp(r["mtime_ns"] / 1e9, UTC).isoformat(timespec="seconds")
            writer.writerow(
                [
                    r["relpath"],
                    "" if score is None else f"{float(score):.6f}",
                    r["folder"],
                    r["size"],
                    modified,
                    r["width"] if r["width"] is not None else "",
                    r["height"] if r["height"] is not None else "",
                    r["sha256"],
                ]
            )
        return len(rows)

    def export_results_dataset(self, paths: list[str], name: str, label: str, workspace=None):
        """A new classification dataset ``name`` (in ``workspace``: default $VITRINE_HOME or the
        current folder) listing the chosen images, all with class ``label`` (e.g. the query). The
        images stay in the project (the dataset's root is its images/ folder): nothing is copied.
        Refuses an existing dataset name. Returns the :class:`~vitrine.data.dataset.ClassificationDataset`."""
        from vitrine.core.workspace import check_name
        from vitrine.data.dataset import ClassificationDataset, Sample
        from vitrine.data.importers import import_dataset

        check_name(name, "dataset name")
        label = (label or "").strip()
        if not label or len(label) > 200 or any(ord(c) < 32 for c in label):
            raise VitrineError(
                f"invalid label {label!r}", hint="a class name of 1 to 200 printable characters, e.g. the query"
            )
        rows = self.selected_files(paths)
        dataset = ClassificationDataset(
            name=name,
            root=self.paths.images_dir,
            samples=[Sample(r["relpath"], label) for r in rows],
            source={"kind": "search-results", "project": self.name, "label": label},
        )
        import_dataset(workspace, dataset)
        return dataset


MAX_EXPORT = 10_000  # images per export: the deepest search page is far shorter


def _language_note(text: str, model: str) -> dict | None:
    """A note when ``text`` looks written in a language ``model``'s text side does not read,
    naming the embedding models that read it (from the model cards)."""
    by_language: dict[str, list[str]] = {}
    for spec in registry.list_models("embedding"):
        for lang in spec.card.languages:
            by_language.setdefault(lang, []).append(spec.name)
    return language_note(text, model, registry.get(model).card.languages, by_language)


def _stage(progress: Progress | None, stage: str):
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


def _steps(progress: Progress | None, stage: str):
    """A ``say(message)`` that counts steps on ``stage``'s progress (the total is not known)."""
    if progress is None:
        return None
    count = [0]

    def say(_message: str) -> None:
        count[0] += 1
        progress(stage, count[0], 0)

    return say


def open_project(project_dir: str | Path, data_dir: str | Path | None = None) -> Project:
    return Project(project_dir, data_dir=data_dir)


def create_project(project_dir: str | Path, keywords: dict[str, str] | None = None) -> Project:
    init_project(project_dir, keywords=keywords)
    return Project(project_dir)


__all__ = ["Project", "IndexReport", "CheckReport", "TagReport", "TagPage", "open_project", "create_project"]
