"""REST API for comparing embedding models: start a comparison on a dataset or on a project (a
background ``compare-embeddings`` job, :mod:`vitrine.tasks.compare_embeddings`); follow it with
the jobs API (``GET /api/v1/jobs/{job_id}``: progress per model, then the comparison as its
result); its runs land on the leaderboard (``GET /api/v1/leaderboards/{board}?task=embedding``).

Both routes live under the object compared (``/datasets/{name}/...``, ``/projects/{name}/...``),
so the ownership policy checks that the caller may read it (action ``use``: a reader may
compare), and the runs the job will write are claimed for the caller before it starts. A dataset
is the caller's view of it (``DatasetDep``): a member of a dataset with a hidden split starts a
comparison that leaves that split out (the job's params say which), so no hidden image is
embedded or scored for them. Everything a request can get
wrong (an unknown model, a bad k, a dataset without labels) is refused before the job exists (400
or 422); a model that cannot load on this server (weights neither cached nor downloadable) is a 503
saying so.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from vitrine.core.errors import ModelUnavailable, VitrineError
from vitrine.experiments.embeddings import DEFAULT_K, MAX_K, MAX_MODELS, Target, parse_models
from vitrine.runs.record import new_run_id
from vitrine.server.api.classification import DatasetDep
from vitrine.server.api.responses import errors
from vitrine.server.deps import ProjectDep, StateDep, WorkspaceDep
from vitrine.server.security import claim, hide_paths
from vitrine.tasks.compare_embeddings import COMPARE_EMBEDDINGS_JOB

router = APIRouter(prefix="/api/v1", tags=["embedding comparisons"])
# comparing models on a collection uses it (reads its images, writes runs of the caller's): a
# reader may start one, as a reader may train on a dataset
USE = {"x-vitrine-action": "use"}


class ComparisonRequest(BaseModel):
    """Embedding models to compare on the same images."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(
        min_length=1,
        max_length=MAX_MODELS,
        description="registry names (GET /api/v1/models), timm:<name> or hf:<repo id>; "
        "'?weights=random' for a randomly initialised architecture (speed only)",
    )
    k: int = Field(DEFAULT_K, ge=1, le=MAX_K, description="results per query for retrieval mAP@k")
    limit: int | None = Field(None, ge=2, le=10_000_000, description="a seeded random sample of N images")


def _check(body: ComparisonRequest, target: Target) -> list[str]:
    """The models, checked (known, embedding models, loadable here) and the target's labels."""
    from vitrine.experiments.embeddings import _check_labels, chosen_samples, split_space
    from vitrine.models import registry

    for name in body.models:
        if len(name) > 500:
            raise VitrineError("a model name is at most 500 characters")
    names = parse_models(body.models)
    _check_labels(target, chosen_samples(target.dataset, body.limit))
    for entry in names:
        name = split_space(entry)[0]
        availability = registry.get(name).check(probe_hub=True)
        if not availability.ok:
            raise ModelUnavailable(
                f"model {name!r} cannot load on this server: {availability.detail}",
                hint="its weights must be in the server's Hugging Face cache (or the hub reachable from it); "
                f"{name.split('?')[0]}?weights=random times the architecture (speed only)",
            )
    return names


def _submit(st, target: Target, key: str, names: list[str], body: ComparisonRequest, exclude: list[str]) -> dict:
    """Submit the job on ``target`` (``key``: the name the server knows it by)."""
    run_ids = [new_run_id("embedding", target.name) for _ in names]
    params = {
        "target": {"kind": target.kind, "name": key},
        "models": names,
        "k": body.k,
        "limit": body.limit,
        "exclude_splits": exclude,
        "run_ids": run_ids,
    }
    for run_id in run_ids:  # the runs the job will write are the caller's
        claim("run", run_id)
    job = st.jobs.submit(COMPARE_EMBEDDINGS_JOB, f"{target.kind}:{key}", params, dedupe=False)
    return hide_paths({"job": job.to_dict(), "run_ids": run_ids, "board": target.name})


@router.post(
    "/datasets/{name}/embedding-comparisons", status_code=202, responses=errors(400, 404, 422, 503), openapi_extra=USE
)
def compare_on_dataset(d: DatasetDep, body: ComparisonRequest, st: StateDep, ws: WorkspaceDep):
    """Compare embedding models on the dataset's images (the caller's view: a hidden split is left
    out): kNN@1/@10, linear-probe, zero-shot accuracy, mAP@k, images/s, ms per text query, dimension
    and bytes per vector; each model becomes an ``embedding`` run on the dataset's leaderboard.
    Follow the job with GET /api/v1/jobs/{job_id}."""
    from vitrine.experiments.embeddings import dataset_target

    target = dataset_target(ws, d.dataset)
    names = _check(body, target)
    return _submit(st, target, d.name, names, body, sorted(d.hidden))


@router.post(
    "/projects/{name}/embedding-comparisons", status_code=202, responses=errors(400, 404, 422, 503), openapi_extra=USE
)
def compare_on_project(p: ProjectDep, body: ComparisonRequest, st: StateDep):
    """Compare embedding models on the project's images, labelled by their first-level folder;
    with an ontology, keyword → image agreement too. Each model becomes an ``embedding`` run on the
    board named after the project. Follow the job with GET /api/v1/jobs/{job_id}."""
    from vitrine.experiments.embeddings import project_target

    target = project_target(p.paths.project_dir)
    names = _check(body, target)
    return _submit(st, target, p.paths.project_dir.name, names, body, [])
