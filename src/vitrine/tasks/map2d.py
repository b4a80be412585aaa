"""The ``map`` job kind: the 2-D map (UMAP) of a project's images (its stored vectors) or of a
classification dataset's (its embeddings cache), computed in the background and cached: a job on
an unchanged catalog or dataset returns the cached map at once. ``params`` say which: a
``project``, or a ``dataset`` with the splits hidden from whoever asked (``hidden``), whose
images the map leaves out."""

from __future__ import annotations

from collections.abc import Sequence

from vitrine.dataset_map import dataset_map, view_name
from vitrine.jobs import JobContext, register_kind
from vitrine.project import Project
from vitrine.search.map2d import MapParams

MAP_JOB = "map"


def map_target(project: str, model: str) -> str:
    """A map job's target: one map job per project and model at a time (a second request
    follows the running one); not the project's name alone, which the index job's box shows."""
    return f"{project}/map/{model}"


def dataset_map_target(dataset: str, model: str, hidden: Sequence[str] = ()) -> str:
    """A dataset's map job target (``dataset:`` keeps it apart from a project of the same name),
    per view: a member's request never follows the owner's job (nor the reverse)."""
    return f"dataset:{dataset}/map/{model}/{view_name(hidden)}"


def run_map_job(ctx: JobContext, params: dict) -> dict:
    """Compute (or find cached) the map of project ``params["project"]`` or dataset
    ``params["dataset"]`` for ``params["model"]`` (None: the project's model, or the dataset's
    default) with UMAP options ``params["umap"]``."""
    options = MapParams(**(params.get("umap") or {}))
    if params.get("dataset"):
        return _dataset_job(ctx, params, options)
    st = ctx.services
    if st is not None:
        p = st.project(params["project"])
    else:  # run outside a server: the project in the default workspace
        from vitrine.core.workspace import default_workspace

        p = Project(default_workspace() / params["project"])
    summary = p.map2d(model=params.get("model"), params=options, progress=ctx.progress, cancel=ctx.cancel_event)
    return summary | {"kind": MAP_JOB, "project": p.name}


def _dataset_job(ctx: JobContext, params: dict, options: MapParams) -> dict:
    import dataclasses

    from vitrine.core.workspace import Workspace
    from vitrine.data.importers import load_dataset

    st = ctx.services
    ws = Workspace(st.settings.root if st is not None else None)
    name = params["dataset"]
    hidden = tuple(params.get("hidden") or ())
    dataset = load_dataset(ws, name)
    if hidden:  # the view of whoever started it: the hidden splits' images are not mapped
        dataset = dataclasses.replace(dataset, samples=[s for s in dataset.samples if s.split not in hidden])
    summary = dataset_map(
        ws, dataset, params.get("model"), options, hidden=hidden, progress=ctx.progress, cancel=ctx.cancel_event
    )
    summary["skipped"] = len(summary["skipped"])  # a count: paths stay with the dataset's pages
    return summary | {"kind": MAP_JOB, "dataset": name}


register_kind(
    MAP_JOB,
    run_map_job,
    resumable=True,  # computed again from the catalog or the dataset after a restart (or found cached)
    concurrency=1,  # UMAP takes the CPU: one map at a time
    description="compute the 2-D map (UMAP) of a project's or a dataset's images",
)
