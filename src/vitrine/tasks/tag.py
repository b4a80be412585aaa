"""The ``tag`` job kind: run a detector over a project's images and keep its labels as tags
(resumable: a re-run carries on)."""

from __future__ import annotations

from vitrine.jobs import JobContext, register_kind
from vitrine.project import Project

TAG_JOB = "tag"


def run_tag_job(ctx: JobContext, params: dict) -> dict:
    """The ``tag`` job kind: run detector ``params["model"]`` over project ``params["project"]``
    at ``params["threshold"]`` and keep its labels as tags. Re-running it carries on where an
    interrupted run stopped."""
    from vitrine.tagging import DEFAULT_TAG_MODEL, DEFAULT_THRESHOLD

    st = ctx.services
    if st is not None:
        p = st.project(params["project"])
        workspace = st.settings.root  # detection runs of the served root, not of the working directory
    else:  # run outside a server: the project in the default workspace
        from vitrine.core.workspace import default_workspace

        workspace = default_workspace()
        p = Project(workspace / params["project"])
    report = p.tag(
        model=params.get("model") or DEFAULT_TAG_MODEL,
        threshold=params.get("threshold", DEFAULT_THRESHOLD),
        progress=ctx.progress,
        cancel=ctx.cancel_event,
        workspace=workspace,
    )
    return report.to_dict() | {"kind": "tag"}


register_kind(TAG_JOB, run_tag_job, resumable=True, concurrency=1, description="tag a project's images with a detector")
