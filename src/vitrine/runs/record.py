"""A training run: one folder under ``<workspace>/runs/<id>/`` with everything it produced.

    run.json          id, kind, dataset, model, config, state, progress, metrics, classes, times
    checkpoints/      last.pt and best.pt (fine-tuning), written atomically
    classifier.*      what a linear probe or zero-shot classifier needs to predict
    metrics.json, per_class.csv, per_class.json, confusion.csv   (evaluation)
    tb/               TensorBoard event files

``run.json`` is rewritten atomically on every update, so a crashed run keeps a readable record
and its last good checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from vitrine.core.atomic import atomic_write_json
from vitrine.core.errors import NotFound, VitrineError
from vitrine.core.workspace import Workspace, check_name

CLASSIFICATION_RUN_KINDS = ("finetune", "linear-probe", "zero-shot")
DETECTION_RUN_KINDS = ("detection", "segmentation")
SUBMISSION_KIND = "submission"  # a classification submission: predictions scored, no model
EMBEDDING_KIND = "embedding"  # an embedding model scored on a labelled collection (compare-embeddings)
RUN_KINDS = CLASSIFICATION_RUN_KINDS + DETECTION_RUN_KINDS + (SUBMISSION_KIND, EMBEDDING_KIND)
RUN_STATES = ("created", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
ARTIFACTS_ENV = "VITRINE_ARTIFACTS_URL"

log = logging.getLogger("vitrine.runs")
_STORES: dict[str, object] = {}
_STORES_LOCK = threading.Lock()


def artifact_store():
    """The artifact store runs are published to (``VITRINE_ARTIFACTS_URL``), or None (local only)."""
    url = os.environ.get(ARTIFACTS_ENV, "").strip()
    if not url:
        return None
    with _STORES_LOCK:
        store = _STORES.get(url)
        if store is None:
            from vitrine.store.artifacts import ArtifactStore

            store = _STORES[url] = ArtifactStore(url)
        return store


def new_run_id(kind: str, dataset: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{dataset}-{uuid.uuid4().hex[:4]}"[:100]


@dataclass
class Run:
    dir: Path
    record: dict

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def kind(self) -> str:
        return self.record["kind"]

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def tensorboard_dir(self) -> Path:
        return self.dir / "tb"

    def update(self, **fields) -> None:
        self.record.update(fields)
        self.record["updated_at"] = time.time()
        atomic_write_json(self.dir / "run.json", self.record)
        if fields.get("state") in FINAL_STATES:
            self.publish()  # everything the run wrote: metrics, reports, TensorBoard events
        else:
            self.publish("run.json")

    def save_checkpoint(self, name: str, state: dict) -> Path:
        """Write ``checkpoints/<name>`` atomically, and publish it to the artifact store."""
        from vitrine.runs.checkpoint import save_checkpoint  # torch, only when a trainer saves

        path = save_checkpoint(self.checkpoints_dir / name, state)
        self.publish(f"checkpoints/{name}")
        return path

    def publish(self, *relpaths: str) -> None:
        """Copy files of the run (all of them when none is named) to the artifact store set by
        ``VITRINE_ARTIFACTS_URL`` (``s3://bucket/prefix``, a folder, ...), under ``<run id>/``. The
        run folder on local disk stays the working copy (resume reads it); the store is where runs,
        checkpoints and metric files are kept and shared. A store that fails is logged and recorded
        in the run (``artifacts_error``), never a reason to lose the training."""
        store = artifact_store()
        if store is None:
            return
        from vitrine.store.artifacts import export_tree

        try:
            if relpaths:
                for rel in relpaths:
                    store.put_file(f"{self.id}/{rel}", self.dir / rel)
            else:
                export_tree(self.dir, store, self.id)
        except Exception as exc:  # noqa: BLE001 (any store failure: keep training, say so)
            message = f"{type(exc).__name__}: {exc}"
            log.warning("run %s: could not publish to %s: %s", self.id, store, message)
            if self.record.get("artifacts_error") != message:
                self.record["artifacts_error"] = message
                atomic_write_json(self.dir / "run.json", self.record)

    @classmethod
    def create(
        cls,
        workspace: Workspace,
        kind: str,
        dataset: str,
        model: str,
        config: dict,
        run_id: str | None = None,
        extra: dict | None = None,
    ) -> Run:
        """A new run folder with its first ``run.json`` (``extra``: more fields of the record)."""
        if kind not in RUN_KINDS:
            raise VitrineError(f"unknown run kind {kind!r}", hint=f"one of {', '.join(RUN_KINDS)}")
        run_id = check_name(run_id or new_run_id(kind, dataset), "run id")
        directory = workspace.run_dir(run_id)
        if (directory / "run.json").exists():
            raise VitrineError(f"run {run_id!r} already exists", hint="pick another --name, or --resume it")
        directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        run = cls(
            directory,
            {
                "id": run_id,
                "kind": kind,
                "dataset": dataset,
                "model": model,
                "config": config,
                "state": "created",
                "progress": {},
                "metrics": {},
                "classes": [],
                "created_at": now,
                "updated_at": now,
                **(extra or {}),
            },
        )
        run.update()
        return run

    @classmethod
    def load(cls, workspace: Workspace, run_id: str) -> Run:
        directory = workspace.run_dir(run_id)
        try:
            record = json.loads((directory / "run.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f"no run {run_id!r}", hint="see `vitrine runs` for the list") from None
        except ValueError as exc:
            raise VitrineError(f"run {run_id!r} has a damaged run.json: {exc}") from None
        return cls(directory, record)


def list_runs(workspace: Workspace) -> list[Run]:
    runs = []
    for run_id in workspace.run_ids():
        try:
            runs.append(Run.load(workspace, run_id))
        except VitrineError:
            continue
    return sorted(runs, key=lambda r: r.record.get("created_at", 0), reverse=True)
