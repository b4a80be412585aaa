"""The ``map`` job kind: the 2-D map of a project's images (UMAP of its stored vectors), computed
in the background and cached per model and catalog generation: a job on an unchanged catalog
returns the cached map at once."""

from __future__ import annotations

from vitrine.jobs import JobContext, register_kind
from vitrine.project import Project
from vitrine.search.map2d import MapParams

MAP_JOB = "map"


def map_target(project: str, model: str) -> str:
    """A map job's target: one map job per project and model at a time (a second request
    follows the running one); not the project's name alone, which the index job's box shows."""
    return f"{project}/map/{model}"


def run_map_job(ctx: JobContext, params: dict) -> dict:
    """Compute (or find cached) the map of project ``params["project"]`` for ``params["model"]``
    (None: the project's model) with UMAP options ``params["umap"]``."""
    st = ctx.services
    if st is not None:
        p = st.project(params["project"])
    else:  # run outside a server: the project in the default workspace
        from vitrine.core.workspace import default_workspace

        p = Project(default_workspace() / params["project"])
    options = MapParams(**(params.get("umap") or {}))
    summary = p.map2d(model=params.get("model"), params=options, progress=ctx.progress, cancel=ctx.cancel_event)
    return summary | {"kind": MAP_JOB, "project": p.name}


register_kind(
    MAP_JOB,
    run_map_job,
    resumable=True,  # computed again from the catalog after a restart (or found cached)
    concurrency=1,  # UMAP takes the CPU: one map at a time
    description="compute the 2-D map (UMAP) of a project's images",
)
