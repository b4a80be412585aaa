"""The ``index`` job kind: index a project's images (resumable: a re-run carries on)."""

from __future__ import annotations

from vitrine.jobs import JobContext, register_kind
from vitrine.project import Project

INDEX_JOB = "index"


def run_index_job(ctx: JobContext, params: dict) -> dict:
    """The ``index`` job kind: index project ``params["project"]`` with ``params["model"]`` (None:
    the model it was indexed with). Re-running it carries on where an interrupted run stopped."""
    st = ctx.services
    if st is not None:
        p = st.project(params["project"])
    else:  # run outside a server: the project in the default workspace
        from vitrine.core.workspace import default_workspace

        p = Project(default_workspace() / params["project"])
    return p.index(model=params.get("model"), progress=ctx.progress, cancel=ctx.cancel_event).to_dict()


register_kind(INDEX_JOB, run_index_job, resumable=True, concurrency=2, description="index a project's images")
