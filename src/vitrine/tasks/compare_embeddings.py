"""The ``compare-embeddings`` job kind: embedding models scored side by side on a dataset of the
workspace or a project (:func:`vitrine.experiments.embeddings.compare_embeddings`), each model's
scores recorded as an ``embedding`` run whose id the job's params fix in advance (so the server
can make the runs the user's before they exist).

Params: ``target`` (``{"kind": "dataset" | "project", "name"}``), ``models``, ``k``, ``limit``,
``exclude_splits`` (the hidden splits a member's view leaves out: never embedded nor scored) and
``run_ids`` (one per model). Run again after a restart, models whose run is finished are not
scored again; a model's half-written run is started over (its vectors are cached)."""

from __future__ import annotations

import shutil

from vitrine.core.workspace import Workspace
from vitrine.jobs import JobContext, register_kind

COMPARE_EMBEDDINGS_JOB = "compare-embeddings"


def _target(ctx: JobContext, ws: Workspace, params: dict):
    from vitrine.data.importers import load_dataset
    from vitrine.experiments.embeddings import dataset_target, project_target

    target = params["target"]
    if target["kind"] == "project":
        st = ctx.services
        if st is not None:
            directory = st.project(target["name"]).paths.project_dir
        else:  # run outside a server: the project in the default workspace
            from vitrine.core.workspace import default_workspace

            directory = default_workspace() / target["name"]
        return project_target(directory)
    return dataset_target(ws, load_dataset(ws, target["name"]), params.get("exclude_splits") or ())


def _finished(ws: Workspace, run_id: str) -> dict | None:
    """The entry of a model already scored (its run finished), or None (its partial run removed)."""
    from vitrine.runs import Run

    directory = ws.run_dir(run_id)
    if not (directory / "run.json").is_file():
        return None
    run = Run.load(ws, run_id)
    if run.record.get("state") != "done":
        shutil.rmtree(directory, ignore_errors=True)
        return None
    metrics = run.record.get("metrics") or {}
    scores = {k: v for k, v in (metrics.get("all") or {}).items() if k not in ("split", "fingerprint", "images")}
    return {
        "model": run.record.get("model"),
        "run_id": run.id,
        "random_weights": bool((run.record.get("config") or {}).get("random_weights")),
        "scores": scores,
        "images": (metrics.get("all") or {}).get("images"),
        "resumed": True,
    }


def run_compare_embeddings_job(ctx: JobContext, params: dict) -> dict:
    """Score ``params["models"]`` on the target; see the module docstring."""
    from vitrine.experiments.embeddings import compare_embeddings

    st = ctx.services
    ws = Workspace(st.settings.root) if st is not None else Workspace()
    models, run_ids = list(params["models"]), list(params["run_ids"])
    done = {i: _finished(ws, rid) for i, rid in enumerate(run_ids)}
    todo = [i for i, entry in done.items() if entry is None]
    target = _target(ctx, ws, params)

    def progress(stage: str, done_n: int, total: int, info=None) -> None:
        ctx.check_cancel("the comparison was cancelled")
        ctx.progress(stage, int(done_n or 0), int(total or 0), message=f"{stage}: {done_n}/{total}")

    result = (
        compare_embeddings(
            ws,
            target,
            [models[i] for i in todo],
            k=int(params.get("k") or 10),
            limit=params.get("limit"),
            run_ids=[run_ids[i] for i in todo],
            progress=progress,
            cancel=ctx.cancel_event,
        )
        if todo
        else {"target": target.name, "kind": target.kind, "models": []}
    )
    fresh = iter(result["models"])
    result["models"] = [done[i] if done[i] is not None else next(fresh) for i in range(len(models))]
    return result


register_kind(
    COMPARE_EMBEDDINGS_JOB,
    run_compare_embeddings_job,
    resumable=True,
    concurrency=1,
    description="compare embedding models on a dataset or a project",
)
