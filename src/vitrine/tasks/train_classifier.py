"""The ``train`` job kind: train a classifier (fine-tuning, linear probe or zero-shot) on a
dataset of the workspace into a run; a fine-tuning resumes from its last.pt after a restart.

:class:`TrainRequest` is what a training asks for (the REST API's request body and the job's
stored params)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vitrine.core.errors import Cancelled, VitrineError
from vitrine.core.jsonio import jsonable
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset
from vitrine.jobs import JobContext, register_kind
from vitrine.runs.summary import summarize
from vitrine.tasks.common import describe_progress

TRAIN_JOB = "train"


class TrainRequest(BaseModel):
    """What to train. ``backbone`` is for fine-tuning; ``embedding_model`` for the linear probe and
    the zero-shot classifier. Options left out take the method's defaults."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["finetune", "linear-probe", "zero-shot"]
    backbone: str | None = Field(None, min_length=1, max_length=200)
    embedding_model: str | None = Field(None, min_length=1, max_length=200)
    epochs: int | None = Field(None, ge=1, le=1000)
    batch_size: int | None = Field(None, ge=1, le=4096)
    lr: float | None = Field(None, gt=0, le=10)
    image_size: int | None = Field(None, ge=32, le=1024)
    max_minutes: float | None = Field(None, gt=0, le=7 * 24 * 60)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    C: float | None = Field(None, gt=0, description="linear probe: inverse regularisation (default: picked on val)")
    prompts: Literal["names", "ontology"] | None = None
    run_id: str | None = Field(None, min_length=1, max_length=100, description="the new run's id (default: made up)")


FINETUNE_ONLY = ("backbone", "epochs", "batch_size", "lr", "image_size", "max_minutes", "seed")
EMBEDDING_ONLY = ("embedding_model",)
PROBE_ONLY = ("C",)
ZERO_SHOT_ONLY = ("prompts",)


def finetune_config(body: TrainRequest):
    """The FinetuneConfig a request asks for; an option fine-tuning lacks is a VitrineError (400)."""
    try:
        from vitrine.train.classification.finetune import FinetuneConfig
    except ImportError as exc:
        raise VitrineError(f"fine-tuning is not available on this server ({exc})") from None

    known = {f.name for f in dataclasses.fields(FinetuneConfig)}
    wanted = {k: getattr(body, k) for k in FINETUNE_ONLY if getattr(body, k) is not None}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise VitrineError(f"fine-tuning has no option {', '.join(unknown)}", hint=f"its options: {', '.join(known)}")
    return FinetuneConfig(**wanted)


def _train(
    ws: Workspace,
    dataset: ClassificationDataset,
    body: TrainRequest,
    run_id: str,
    ctx: JobContext,
    resume: bool = False,
) -> dict:
    def progress(stage: str, done: int = 0, total: int = 0, info: dict | None = None, **extra) -> None:
        details = {**(info or {}), **extra}
        message = describe_progress(stage, done, total, details)
        ctx.progress(stage, int(done or 0), int(total or 0), jsonable(details), message=message)

    common = {"progress": progress, "cancel": ctx.cancel_event, "run_id": run_id}
    if body.method == "finetune":
        from vitrine.train.classification.finetune import train_finetune

        ctx.set_checkpoint(ws.run_dir(run_id) / "checkpoints" / "last.pt")
        run = train_finetune(ws, dataset, finetune_config(body), **common, **({"resume": True} if resume else {}))
    elif body.method == "linear-probe":
        from vitrine.train.classification.linear_probe import train_linear_probe

        config = {k: v for k, v in {"C": body.C, "batch_size": body.batch_size}.items() if v is not None}
        kwargs = {"embedding_model": body.embedding_model} if body.embedding_model else {}
        run = train_linear_probe(ws, dataset, config=config, **kwargs, **common)
    else:
        from vitrine.train.classification.zero_shot import make_zero_shot

        kwargs = {"embedding_model": body.embedding_model} if body.embedding_model else {}
        run = make_zero_shot(ws, dataset, prompts=body.prompts or "names", **kwargs, **common)
    record = run.record
    if record.get("state") == "cancelled":
        raise Cancelled(f"training was cancelled; run {run.id} keeps what it had done")
    return {"run_id": run.id, "state": record.get("state"), **summarize(run)}


def run_train_job(ctx: JobContext, params: dict) -> dict:
    """The ``train`` job kind: train a classifier on dataset ``params["dataset"]`` as
    ``params["request"]`` (a TrainRequest) asks, into run ``params["run_id"]``. Run again after an
    interruption, a fine-tuning resumes from the run's last.pt; the other methods (seconds to
    minutes) and a fine-tuning stopped before its first checkpoint start over."""
    from vitrine.data.importers import load_dataset

    st = ctx.services
    ws = Workspace(st.settings.root) if st is not None else Workspace()
    body = TrainRequest(**params["request"])
    run_id = params["run_id"]
    run_dir = ws.run_dir(run_id)
    resume = False
    if ctx.resumed and (run_dir / "run.json").exists():
        if body.method == "finetune" and (run_dir / "checkpoints" / "last.pt").is_file():
            resume = True
            ctx.log(f"resuming run {run_id} from its last checkpoint")
        else:
            import shutil

            shutil.rmtree(run_dir)  # this job's own partial run, which cannot resume: start it over
            ctx.log(f"run {run_id} had no checkpoint to resume from: starting it over")
    return _train(ws, load_dataset(ws, params["dataset"]), body, run_id, ctx, resume=resume)


register_kind(TRAIN_JOB, run_train_job, resumable=True, concurrency=1, description="train a classifier")
