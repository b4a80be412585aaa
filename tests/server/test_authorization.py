"""The authorization matrix: every route of the app, every object kind, every kind of caller.

A multi-user server holds projects, datasets, runs and jobs owned by alice: one private, one
shared with bob, one public of each kind. Then, for every route that names an object:

* anonymous callers get 401 (API) or a redirect to the login page (pages);
* bob gets 404 on alice's private objects (as if they did not exist), and on the shared and
  public ones the very answer the admin gets, except on routes that change the object (403);
* carol (the shared objects are not shared with her) gets 404 on private and shared objects;
* alice (the owner) and the admin get the same answer, never a policy refusal.

Routes that name no object are called by every user and must not show bob the names of alice's
private objects. Every route of the app must be listed here, as public, as an account route or
with a recipe: a route added later without a recipe makes :func:`test_every_route_is_covered` fail.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from argon2 import profiles
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from PIL import Image

from vitrine.auth import passwords
from vitrine.jobs import register_kind
from vitrine.server.app import create_app

VIS = ("private", "shared", "public")
KINDS = ("project", "dataset", "run", "job", "sweep")
IMG = "sub/a.png"
DENIED_HINT = "not shared with you"

PUBLIC = {
    ("GET", "/api/v1/health"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/static/{path}"),
    ("GET", "/static/vendor/plotly.min.js"),
    ("GET", "/docs-assets/{name}"),
}
# routes about the caller's own account, checked in tests/auth/test_web_auth.py and below
ACCOUNT = {("DELETE", "/api/v1/tokens/{token_id}")}


def noop_job(ctx, params: dict) -> dict:
    return {"ok": True}


register_kind("authz-noop", noop_job, description="does nothing (authorization tests)")


def png(colour=(200, 30, 30), size=(24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def upload() -> dict:
    return {"files": {"file": ("x.png", png(), "image/png")}}


# ------------------------------------------------------------------------------ recipes
def _access_cases(kind: str) -> dict:
    base = "/api/v1/access/{kind}/{key}"
    return {
        ("GET", base): lambda key, vis: ("GET", f"/api/v1/access/{kind}/{key}", {}),
        ("PUT", base): lambda key, vis: ("PUT", f"/api/v1/access/{kind}/{key}", {"json": {"visibility": vis}}),
        ("PUT", base + "/shares/{user}"): lambda key, vis: (
            "PUT",
            f"/api/v1/access/{kind}/{key}/shares/nobody",
            {},
        ),
        ("DELETE", base + "/shares/{user}"): lambda key, vis: (
            "DELETE",
            f"/api/v1/access/{kind}/{key}/shares/nobody",
            {},
        ),
    }


def _get(url: str):
    return lambda key, vis: ("GET", url.format(key=key), {})


RECIPES: dict[str, dict] = {
    "project": {
        ("GET", "/api/v1/projects/{name}"): _get("/api/v1/projects/{key}"),
        ("GET", "/api/v1/projects/{name}/check"): _get("/api/v1/projects/{key}/check"),
        ("GET", "/api/v1/projects/{name}/ontology"): _get("/api/v1/projects/{key}/ontology"),
        ("GET", "/api/v1/projects/{name}/ontology.csv"): _get("/api/v1/projects/{key}/ontology.csv"),
        ("GET", "/api/v1/projects/{name}/catalog.csv"): _get("/api/v1/projects/{key}/catalog.csv"),
        ("POST", "/api/v1/projects/{name}/index"): lambda key, vis: (
            "POST",
            f"/api/v1/projects/{key}/index",
            {"data": {"model": "no-such-model"}},
        ),
        ("GET", "/api/v1/projects/{name}/search"): _get("/api/v1/projects/{key}/search?q=cat"),
        ("POST", "/api/v1/projects/{name}/search/image"): lambda key, vis: (
            "POST",
            f"/api/v1/projects/{key}/search/image",
            upload(),
        ),
        ("POST", "/api/v1/projects/{name}/export"): lambda key, vis: (
            "POST",
            f"/api/v1/projects/{key}/export",
            {"json": {"paths": [IMG], "format": "csv"}},  # reading a project is enough to export from it
        ),
        ("GET", "/api/v1/projects/{name}/images"): _get("/api/v1/projects/{key}/images"),
        ("POST", "/api/v1/projects/{name}/tag"): lambda key, vis: (
            "POST",
            f"/api/v1/projects/{key}/tag",
            {"data": {"model": "no-such-model"}},  # refused by the handler: no job starts
        ),
        ("GET", "/api/v1/projects/{name}/tags"): _get("/api/v1/projects/{key}/tags"),
        ("POST", "/api/v1/projects/{name}/embedding-comparisons"): lambda key, vis: (
            "POST",
            f"/api/v1/projects/{key}/embedding-comparisons",
            {"json": {"models": ["no-such-model"]}},  # refused by the handler: no job starts
        ),
        # the 2-D map: starting its job is using the project (readers may); not indexed here: 404s
        ("POST", "/api/v1/projects/{name}/map"): lambda key, vis: (
            "POST",
            f"/api/v1/projects/{key}/map",
            {"json": {"model": "no-such-model"}},  # refused by the handler: no job starts
        ),
        ("GET", "/api/v1/projects/{name}/map"): _get("/api/v1/projects/{key}/map"),
        ("GET", "/api/v1/projects/{name}/map/points"): _get("/api/v1/projects/{key}/map/points"),
        ("GET", "/api/v1/projects/{name}/map/colors"): _get("/api/v1/projects/{key}/map/colors?by=cluster"),
        ("GET", "/api/v1/projects/{name}/map/query"): _get("/api/v1/projects/{key}/map/query?q=cat"),
        ("GET", "/p/{name}/map"): _get("/p/{key}/map"),
        ("GET", "/api/v1/projects/{name}/duplicates"): _get("/api/v1/projects/{key}/duplicates?threshold=0.9"),
        ("GET", "/api/v1/projects/{name}/outliers"): _get("/api/v1/projects/{key}/outliers?k=3"),
        ("GET", "/api/v1/projects/{name}/tags/{label}"): _get("/api/v1/projects/{key}/tags/cat"),
        ("GET", "/api/v1/projects/{name}/meta/{path}"): _get("/api/v1/projects/{key}/meta/" + IMG),
        ("GET", "/api/v1/projects/{name}/files/{path}"): _get("/api/v1/projects/{key}/files/" + IMG),
        ("GET", "/api/v1/projects/{name}/thumbs/{path}"): _get("/api/v1/projects/{key}/thumbs/" + IMG + "?size=64"),
        ("GET", "/api/v1/jobs"): _get("/api/v1/jobs?project={key}"),
        ("POST", "/api/v1/detect"): lambda key, vis: (
            "POST",
            "/api/v1/detect",
            {"data": {"project": key, "path": IMG, "model": "no-such-model"}},
        ),
        ("POST", "/api/v1/segment"): lambda key, vis: (
            "POST",
            "/api/v1/segment",
            {"data": {"project": key, "path": IMG, "model": "no-such-model"}},
        ),
        ("POST", "/api/v1/detect/overlay"): lambda key, vis: (
            "POST",
            "/api/v1/detect/overlay",
            {"data": {"project": key, "path": IMG, "model": "no-such-model"}},
        ),
        ("POST", "/api/v1/segment/overlay"): lambda key, vis: (
            "POST",
            "/api/v1/segment/overlay",
            {"data": {"project": key, "path": IMG, "model": "no-such-model"}},
        ),
        ("GET", "/p/{name}"): _get("/p/{key}"),
        ("GET", "/p/{name}/image/{path}"): _get("/p/{key}/image/" + IMG),
        ("GET", "/p/{name}/curate"): _get("/p/{key}/curate"),
        **_access_cases("project"),
    },
    "dataset": {
        ("GET", "/api/v1/datasets/{name}"): _get("/api/v1/datasets/{key}"),
        ("GET", "/api/v1/datasets/{name}/stats"): _get("/api/v1/datasets/{key}/stats?per_image=false"),
        # an unknown model: refused by the handler after authorization, so no model loads
        ("GET", "/api/v1/datasets/{name}/label-errors"): _get("/api/v1/datasets/{key}/label-errors?model=no-such"),
        ("GET", "/api/v1/datasets/{name}/duplicates"): _get("/api/v1/datasets/{key}/duplicates?model=no-such"),
        ("GET", "/api/v1/datasets/{name}/outliers"): _get("/api/v1/datasets/{key}/outliers?model=no-such"),
        ("POST", "/api/v1/datasets/{name}/map"): lambda key, vis: (
            "POST",
            f"/api/v1/datasets/{key}/map",
            {"json": {"model": "no-such-model"}},  # refused by the handler: no job starts
        ),
        ("GET", "/api/v1/datasets/{name}/map"): _get("/api/v1/datasets/{key}/map"),
        ("GET", "/api/v1/datasets/{name}/map/points"): _get("/api/v1/datasets/{key}/map/points"),
        ("GET", "/api/v1/datasets/{name}/map/colors"): _get("/api/v1/datasets/{key}/map/colors?by=split"),
        ("GET", "/api/v1/datasets/{name}/samples"): _get("/api/v1/datasets/{key}/samples"),
        ("GET", "/api/v1/datasets/{name}/images/{path}"): _get("/api/v1/datasets/{key}/images/" + IMG),
        ("GET", "/api/v1/datasets/{name}/thumbs/{path}"): _get("/api/v1/datasets/{key}/thumbs/" + IMG + "?size=64"),
        ("GET", "/api/v1/datasets/{name}/jobs"): _get("/api/v1/datasets/{key}/jobs"),
        ("POST", "/api/v1/datasets/{name}/train"): lambda key, vis: (
            "POST",
            f"/api/v1/datasets/{key}/train",
            {"json": {"method": "zero-shot", "epochs": 3}},  # refused by the handler: no job starts
        ),
        ("POST", "/api/v1/datasets/{name}/embedding-comparisons"): lambda key, vis: (
            "POST",
            f"/api/v1/datasets/{key}/embedding-comparisons",
            {"json": {"models": ["no-such-model"]}},  # refused by the handler: no job starts
        ),
        ("GET", "/api/v1/runs"): _get("/api/v1/runs?dataset={key}"),
        ("GET", "/api/v1/leaderboards/{board}"): _get("/api/v1/leaderboards/{key}"),
        ("POST", "/api/v1/detection/train"): lambda key, vis: (
            "POST",
            "/api/v1/detection/train",
            {"json": {"dataset": key, "config": {"epochs": 0}}},  # refused by the handler: no job starts
        ),
        ("GET", "/api/v1/runs/{run_id}/predict"): lambda key, vis: (
            "GET",
            f"/api/v1/runs/alice-public-run/predict?dataset={key}&sample={IMG}",
            {},
        ),
        ("GET", "/datasets/{name}"): _get("/datasets/{key}"),
        ("GET", "/datasets/{name}/curate"): _get("/datasets/{key}/curate"),
        ("GET", "/datasets/{name}/map"): _get("/datasets/{key}/map"),
        ("GET", "/leaderboards/{board}"): _get("/leaderboards/{key}"),
        ("GET", "/api/v1/datasets/{name}/board"): _get("/api/v1/datasets/{key}/board"),
        ("PUT", "/api/v1/datasets/{name}/board"): lambda key, vis: (
            "PUT",
            f"/api/v1/datasets/{key}/board",
            {"json": {"group": False}},  # what it already is: the matrix changes nothing
        ),
        ("GET", "/api/v1/datasets/{name}/annotations"): _get("/api/v1/datasets/{key}/annotations?split=train"),
        ("GET", "/api/v1/datasets/{name}/submission"): _get("/api/v1/datasets/{key}/submission"),
        ("GET", "/api/v1/datasets/{name}/submission/images.zip"): _get("/api/v1/datasets/{key}/submission/images.zip"),
        ("GET", "/api/v1/datasets/{name}/submission/images/{image_id}"): _get(
            "/api/v1/datasets/{key}/submission/images/img-0"
        ),
        ("POST", "/api/v1/datasets/{name}/submissions"): lambda key, vis: (
            "POST",
            f"/api/v1/datasets/{key}/submissions",
            {"files": {"file": ("s.csv", b"image,class\nimg-0,red\n", "text/csv")}},  # 422: no such image
        ),
        ("GET", "/api/v1/datasets/{name}/submissions"): _get("/api/v1/datasets/{key}/submissions"),
        **_access_cases("dataset"),
    },
    "run": {
        ("GET", "/api/v1/runs/{run_id}"): _get("/api/v1/runs/{key}"),
        ("GET", "/api/v1/runs/{run_id}/confusion.csv"): _get("/api/v1/runs/{key}/confusion.csv"),
        ("GET", "/api/v1/runs/{run_id}/per_class.csv"): _get("/api/v1/runs/{key}/per_class.csv"),
        # alice's runs were never evaluated here: 404 no_predictions to everyone who may read them
        ("GET", "/api/v1/runs/{run_id}/predictions"): _get("/api/v1/runs/{key}/predictions?true=red"),
        ("POST", "/api/v1/runs/{run_id}/evaluate"): lambda key, vis: (
            "POST",
            f"/api/v1/runs/{key}/evaluate",
            {"json": {"split": "val"}},  # the dataset has no val split: refused by the handler, no job starts
        ),
        ("GET", "/api/v1/runs/{run_id}/predict"): _get("/api/v1/runs/{key}/predict?sample=" + IMG),
        ("POST", "/api/v1/runs/{run_id}/predict"): lambda key, vis: ("POST", f"/api/v1/runs/{key}/predict", upload()),
        ("POST", "/api/v1/detect"): lambda key, vis: ("POST", "/api/v1/detect", {"data": {"model": key}, **upload()}),
        ("GET", "/runs/{run_id}"): _get("/runs/{key}"),
        ("GET", "/runs/{run_id}/predict"): _get("/runs/{key}/predict"),
        # detection runs (alice's runs here are classifiers: the API refuses them with a 400)
        ("GET", "/api/v1/detection/runs/{run_id}"): _get("/api/v1/detection/runs/{key}"),
        ("GET", "/api/v1/detection/runs/{run_id}/pr-curves"): _get("/api/v1/detection/runs/{key}/pr-curves"),
        ("GET", "/api/v1/detection/runs/{run_id}/errors"): _get("/api/v1/detection/runs/{key}/errors?iou=0.5"),
        ("GET", "/api/v1/detection/runs/{run_id}/images/{image_id}"): _get("/api/v1/detection/runs/{key}/images/1"),
        # alice's runs are classifiers: refused (400) before any job starts
        ("POST", "/api/v1/detection/runs/{run_id}/evaluate"): lambda key, vis: (
            "POST",
            f"/api/v1/detection/runs/{key}/evaluate",
            {},
        ),
        ("GET", "/detection/runs/{run_id}"): _get("/detection/runs/{key}"),
        **_access_cases("run"),
    },
    "sweep": {
        ("GET", "/api/v1/sweeps/{sweep_id}"): _get("/api/v1/sweeps/{key}"),
        ("POST", "/api/v1/sweeps/{sweep_id}/cancel"): lambda key, vis: ("POST", f"/api/v1/sweeps/{key}/cancel", {}),
        **_access_cases("sweep"),
    },
    "job": {
        ("GET", "/api/v1/jobs/{job_id}"): _get("/api/v1/jobs/{key}"),
        ("POST", "/api/v1/jobs/{job_id}/cancel"): lambda key, vis: ("POST", f"/api/v1/jobs/{key}/cancel", {}),
        **_access_cases("job"),
    },
}
# routes that change the object named in their path: readers get 403 there
WRITES = {
    ("POST", "/api/v1/projects/{name}/index"),
    ("POST", "/api/v1/projects/{name}/tag"),
    ("POST", "/api/v1/jobs/{job_id}/cancel"),
    ("POST", "/api/v1/sweeps/{sweep_id}/cancel"),
    ("POST", "/api/v1/detection/runs/{run_id}/evaluate"),
    ("POST", "/api/v1/runs/{run_id}/evaluate"),
    ("PUT", "/api/v1/datasets/{name}/board"),
    ("PUT", "/api/v1/access/{kind}/{key}"),
    ("PUT", "/api/v1/access/{kind}/{key}/shares/{user}"),
    ("DELETE", "/api/v1/access/{kind}/{key}/shares/{user}"),
}


def app_routes(app) -> set[tuple[str, str]]:
    out = set()
    for ctx in iter_route_contexts(app.routes):
        for method in ctx.methods or ():
            if method != "HEAD":
                out.add((method, ctx.path_format))
    return out


def object_routes() -> set[tuple[str, str]]:
    return {route for cases in RECIPES.values() for route in cases}


def has_path_params(route: tuple[str, str]) -> bool:
    return "{" in route[1]


# ------------------------------------------------------------------------------ the server
def _project(root: Path, name: str) -> None:
    from vitrine.collection.layout import init_project
    from vitrine.collection.scan import scan_project
    from vitrine.store.catalog import Catalog  # noqa: F401  (the project opens its own)

    paths = init_project(root / name, keywords={"Cat": "a cat"})
    (paths.images_dir / "sub").mkdir(parents=True, exist_ok=True)
    (paths.images_dir / IMG).write_bytes(png())
    (paths.images_dir / "sub" / "b.png").write_bytes(png((20, 200, 40)))
    from vitrine.project import Project

    proj = Project(paths.project_dir)
    scan_project(proj.paths, proj.catalog)
    proj.close()


def _dataset(root: Path, name: str) -> None:
    from vitrine.core.workspace import Workspace
    from vitrine.data.dataset import ClassificationDataset, Sample

    images = root / f"{name}-images"
    samples = []
    for i, (label, colour) in enumerate((("red", (200, 30, 30)), ("green", (30, 200, 40)))):
        for split in ("train", "test"):
            rel = IMG if (i, split) == (0, "train") else f"{label}/{split}.png"
            (images / rel).parent.mkdir(parents=True, exist_ok=True)
            (images / rel).write_bytes(png(colour))
            samples.append(Sample(rel, label, split))
    ds = ClassificationDataset(name=name, root=images, samples=samples, source={"kind": "test"})
    ds.save(Workspace(root).dataset_dir(name))


def _sweep(root: Path, sweep_id: str) -> None:
    """A sweep record that has ended (its cancel route answers 409 to whoever may change it)."""
    from vitrine.core.workspace import Workspace
    from vitrine.experiments.sweep import Sweep, SweepSpec

    spec = SweepSpec.build("classify", "alice-public-dataset", grid={"lr": [0.01, 0.1]}, name=sweep_id)
    Sweep.create(Workspace(root), spec).update(state="done", owner="alice")


def _run(root: Path, run_id: str, task: str | None = None) -> None:
    from vitrine.core.atomic import atomic_write_json
    from vitrine.core.workspace import Workspace

    directory = Workspace(root).run_dir(run_id)
    directory.mkdir(parents=True)
    record = {
        "id": run_id,
        "kind": "linear-probe",
        "dataset": "alice-public-dataset",
        "model": "offline-concepts",
        "config": {"task": task} if task else {},
        "state": "done",
        "progress": {},
        "metrics": {"test": {"accuracy": 0.5, "macro_f1": 0.5}},
        "classes": ["green", "red"],
        "created_at": 1.0,
        "updated_at": 1.0,
    }
    atomic_write_json(directory / "run.json", record)


class World:
    def __init__(self, app, keys: dict[tuple[str, str], str], tokens: dict[str, str]):
        self.app = app
        self.keys = keys  # (kind, visibility) -> key
        self.tokens = tokens
        self.clients = {name: self.client(tok) for name, tok in tokens.items()}
        self.clients["anonymous"] = self.client(None)

    def client(self, token: str | None) -> TestClient:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return TestClient(self.app, raise_server_exceptions=False, follow_redirects=False, headers=headers)

    def call(self, who: str, request: tuple[str, str, dict]):
        method, url, kwargs = request
        return self.clients[who].request(method, url, **kwargs)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory) -> World:
    """The server, on SQLite and on a real PostgreSQL (tests/pg.py)."""
    passwords.use_profile(profiles.CHEAPEST)
    root = tmp_path_factory.mktemp("authz")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'server.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database()
    for vis in VIS:
        _project(root, f"alice-{vis}-project")
        _dataset(root, f"alice-{vis}-dataset")
        _run(root, f"alice-{vis}-run")
        _sweep(root, f"alice-{vis}-sweep")
    _project(root, "found-on-disk")  # no record: the admins'
    _run(root, "alice-private-detector", task="detection")  # listed by GET /api/v1/detectors
    app = create_app(root, multi_user=True, database_url=url)
    store = app.state.auth.store
    users = {
        n: store.add_user(n, f"{n}-password", role="admin" if n == "root" else "member")
        for n in ("root", "alice", "bob", "carol")
    }
    tokens = {n: store.create_token(n, "tests")[1] for n in users}
    keys: dict[tuple[str, str], str] = {}
    for vis in VIS:
        for kind in ("project", "dataset", "run", "sweep"):
            keys[(kind, vis)] = f"alice-{vis}-{kind}"
        job = app.state.vitrine.jobs.submit("authz-noop", f"authz-{vis}", {}, owner="alice")
        keys[("job", vis)] = job.id
    assert store.claim("run", "alice-private-detector", users["alice"].id)
    for (kind, vis), key in keys.items():
        assert store.claim(kind, key, users["alice"].id)
        if vis == "shared":
            store.share(kind, key, "bob")
        elif vis == "public":
            store.set_access(kind, key, visibility="public")
    import time

    deadline = time.time() + 30
    while time.time() < deadline and any(
        app.state.vitrine.jobs.get(keys[("job", v)]).state not in ("done", "failed") for v in VIS
    ):
        time.sleep(0.05)
    yield World(app, keys, tokens)
    app.state.vitrine.close()
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


def is_denied(response, kind: str, key: str) -> bool:
    if response.status_code != 404:
        return False
    if response.headers.get("content-type", "").startswith("application/json"):
        error = response.json()["error"]
        return error["message"] == f"no {kind} {key!r}" and DENIED_HINT in (error["hint"] or "")
    return DENIED_HINT in response.text


def is_forbidden(response) -> bool:
    return response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def wait_done(world: World, job_id: str, timeout: float = 30.0) -> str:
    """The job's final state (the no-op kinds must have run before they are put back)."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        state = world.app.state.vitrine.jobs.get(job_id).state
        if state in ("done", "failed", "cancelled"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {state} after {timeout} s")


def describe(response) -> str:
    return f"{response.request.method} {response.request.url} -> {response.status_code} {response.text[:200]}"


# ------------------------------------------------------------------------------ the tests
def test_every_route_is_covered(world):
    """Every route is public, an account route, exercised per object kind, or names no object
    (then :func:`test_routes_without_objects` calls it). A new route with path parameters and no
    recipe fails here."""
    routes = app_routes(world.app)
    covered = PUBLIC | ACCOUNT | object_routes()
    missing = sorted(r for r in routes - covered if has_path_params(r))
    assert not missing, f"routes with path parameters and no authorization recipe: {missing}"
    stale = sorted(r for r in object_routes() | PUBLIC | ACCOUNT if r not in routes)
    assert not stale, f"recipes for routes the app no longer has: {stale}"


@pytest.mark.parametrize("kind", KINDS)
def test_matrix(world, kind):
    failures = []
    for route, recipe in RECIPES[kind].items():
        writes = route in WRITES
        for vis in VIS:
            key = world.keys[(kind, vis)]
            request = recipe(key, vis)
            admin = world.call("root", request)
            if admin.status_code in (401, 403) or is_denied(admin, kind, key):
                failures.append(f"admin refused: {describe(admin)}")
                continue
            owner = world.call("alice", request)
            if owner.status_code != admin.status_code:
                failures.append(f"owner {describe(owner)} but admin {admin.status_code}")
            anonymous = world.call("anonymous", request)
            page = route[1].startswith(("/p/", "/datasets/", "/runs/", "/detection/runs/", "/leaderboards/"))
            if page:
                if not (anonymous.status_code == 303 and "/login?next=" in anonymous.headers["location"]):
                    failures.append(f"anonymous page not sent to login: {describe(anonymous)}")
            elif anonymous.status_code != 401:
                failures.append(f"anonymous not 401: {describe(anonymous)}")
            for who in ("bob", "carol"):
                r = world.call(who, request)
                readable = vis == "public" or (vis == "shared" and who == "bob")
                if not readable:
                    ok = is_denied(r, kind, key)
                elif writes:
                    ok = is_forbidden(r)
                else:
                    ok = r.status_code == admin.status_code and not is_denied(r, kind, key)
                if not ok:
                    failures.append(f"{who} on {vis} (admin {admin.status_code}): {describe(r)}")
    assert not failures, "\n".join(failures)


def test_objects_found_on_disk_belong_to_the_admins(world):
    assert world.call("root", ("GET", "/api/v1/projects/found-on-disk", {})).status_code == 200
    for who in ("alice", "bob"):
        assert is_denied(world.call(who, ("GET", "/api/v1/projects/found-on-disk", {})), "project", "found-on-disk")
        names = [p["name"] for p in world.call(who, ("GET", "/api/v1/projects", {})).json()]
        assert "found-on-disk" not in names


def test_routes_without_objects(world):
    """Called by everyone: anonymous is refused, users are answered, and nothing they get names
    alice's private objects (nor, for carol, the ones shared with bob only)."""
    routes = sorted(r for r in app_routes(world.app) - PUBLIC - ACCOUNT if not has_path_params(r))
    assert ("GET", "/api/v1/projects") in routes and ("GET", "/api/v1/me") in routes
    secret = {who: [world.keys[(k, "private")] for k in KINDS] + ["alice-private-detector"] for who in ("bob", "carol")}
    secret["carol"] += [world.keys[(k, "shared")] for k in KINDS]
    failures = []
    for method, path in routes:
        kwargs = {"json": {"name": "from the matrix"}} if path == "/api/v1/tokens" else {}
        anonymous = world.call("anonymous", (method, path, kwargs))
        if anonymous.status_code not in (401, 303):
            failures.append(f"anonymous: {describe(anonymous)}")
        for who in ("bob", "carol"):
            r = world.call(who, (method, path, kwargs))
            if r.status_code in (401, 500):
                failures.append(f"{who}: {describe(r)}")
            leaked = [k for k in secret[who] if k in r.text]
            if leaked:
                failures.append(f"{who} sees {leaked} in {method} {path}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("path", "field", "kind"),
    [
        ("/api/v1/projects", "name", "project"),
        ("/api/v1/datasets", "name", "dataset"),
        ("/api/v1/runs", "id", "run"),
        ("/api/v1/jobs", "id", "job"),
        ("/api/v1/sweeps", "id", "sweep"),
    ],
)
def test_lists_show_what_each_user_may_read(world, path, field, kind):
    def seen(who: str) -> set[str]:
        r = world.call(who, ("GET", path, {}))
        assert r.status_code == 200, describe(r)
        return {row[field] for row in r.json()}

    mine = {world.keys[(kind, v)] for v in VIS}
    assert seen("root") >= mine and seen("alice") >= mine
    assert seen("bob") & mine == {world.keys[(kind, "shared")], world.keys[(kind, "public")]}
    assert seen("carol") & mine == {world.keys[(kind, "public")]}


def test_pages_list_only_readable_objects(world):
    home = world.call("carol", ("GET", "/", {}))
    datasets = world.call("carol", ("GET", "/datasets", {}))
    assert home.status_code == datasets.status_code == 200
    assert "alice-public-project" in home.text and "alice-shared-project" not in home.text
    assert "alice-public-dataset" in datasets.text and "alice-private-dataset" not in datasets.text


def test_sharing_and_unsharing_through_the_api(world):
    key = world.keys[("dataset", "private")]
    url = f"/api/v1/access/dataset/{key}"
    assert is_denied(world.call("carol", ("GET", f"/api/v1/datasets/{key}", {})), "dataset", key)
    r = world.call("alice", ("PUT", f"{url}/shares/carol", {}))
    assert r.status_code == 200 and r.json()["visibility"] == "shared" and r.json()["shared_with"] == ["carol"]
    assert world.call("carol", ("GET", f"/api/v1/datasets/{key}", {})).status_code == 200
    info = world.call("carol", ("GET", url, {})).json()
    assert info["owner"] == "alice" and info["shared_with"] == []  # the owner's business
    assert is_forbidden(world.call("carol", ("PUT", f"{url}/shares/bob", {})))
    assert is_forbidden(world.call("alice", ("PUT", url, {"json": {"owner": "bob"}})))  # admins only
    r = world.call("alice", ("DELETE", f"{url}/shares/carol", {}))
    assert r.status_code == 200 and r.json()["visibility"] == "private"
    assert is_denied(world.call("carol", ("GET", f"/api/v1/datasets/{key}", {})), "dataset", key)
    r = world.call("root", ("PUT", f"{url}/shares/nobody", {}))
    assert r.status_code == 404 and "no user" in r.json()["error"]["message"]


def test_tokens_route_is_per_user(world):
    store = world.app.state.auth.store
    info, _ = store.create_token("alice", "to revoke")
    assert world.call("bob", ("DELETE", f"/api/v1/tokens/{info.id}", {})).status_code == 404
    r = world.call("alice", ("DELETE", f"/api/v1/tokens/{info.id}", {}))
    assert r.status_code == 200 and r.json()["active"] is False
    assert world.call("anonymous", ("DELETE", f"/api/v1/tokens/{info.id}", {})).status_code == 401


def test_jobs_started_through_the_api_belong_to_their_user(world):
    """A job a request submits (and the run its params name) is its user's."""
    from vitrine.server import security
    from vitrine.server.security import RequestAuth

    store = world.app.state.auth.store
    bob = store.user("bob").principal("token")
    reset = security._current.set(RequestAuth(bob, world.app.state.auth))
    try:
        job = world.app.state.vitrine.jobs.submit("authz-noop", "bob's", {"run_id": "bobs-new-run"})
    finally:
        security._current.reset(reset)
    assert job.owner == "bob"
    assert store.access("job", job.id).owner == "bob"
    assert store.access("run", "bobs-new-run").owner == "bob"
    assert world.call("bob", ("GET", f"/api/v1/jobs/{job.id}", {})).status_code == 200
    assert is_denied(world.call("alice", ("GET", f"/api/v1/jobs/{job.id}", {})), "job", job.id)
    assert json.loads(world.call("root", ("GET", f"/api/v1/jobs/{job.id}", {})).text)["id"] == job.id


@pytest.fixture
def noop_training():
    """The ``train`` and ``index`` job kinds replaced by a no-op while the test runs (the routes,
    the policy and the job store are the real ones; no model is trained)."""
    from vitrine.jobs.kinds import get_kind

    saved = [get_kind("train"), get_kind("index")]
    for kind in saved:
        register_kind(kind.name, noop_job, description="no-op (authorization tests)")
    yield
    for kind in saved:
        register_kind(kind.name, kind.handler, resumable=kind.resumable, concurrency=kind.concurrency)


def test_training_on_a_shared_dataset_makes_the_trainers_own_run(world, noop_training):
    """bob trains on the dataset alice shares with him: the job and the run are bob's, not alice's."""
    shared = world.keys[("dataset", "shared")]
    r = world.call("bob", ("POST", f"/api/v1/datasets/{shared}/train", {"json": {"method": "zero-shot"}}))
    assert r.status_code == 202, describe(r)
    job_id, run_id = r.json()["id"], r.json()["run_id"]
    assert wait_done(world, job_id) == "done"
    store = world.app.state.auth.store
    assert store.access("job", job_id).owner == "bob"
    assert store.access("run", run_id).owner == "bob"
    assert world.call("bob", ("GET", f"/api/v1/jobs/{job_id}", {})).status_code == 200
    assert is_denied(world.call("alice", ("GET", f"/api/v1/jobs/{job_id}", {})), "job", job_id)
    assert job_id in {j["id"] for j in world.call("bob", ("GET", f"/api/v1/datasets/{shared}/jobs", {})).json()}
    assert job_id not in {j["id"] for j in world.call("alice", ("GET", f"/api/v1/datasets/{shared}/jobs", {})).json()}
    assert is_denied(world.call("alice", ("PUT", f"/api/v1/access/run/{run_id}/shares/carol", {})), "run", run_id)
    assert world.call("bob", ("PUT", f"/api/v1/access/run/{run_id}/shares/carol", {})).status_code == 200
    # carol may not train on it at all (not shared with her)
    r = world.call("carol", ("POST", f"/api/v1/datasets/{shared}/train", {"json": {"method": "zero-shot"}}))
    assert is_denied(r, "dataset", shared)


def test_a_dataset_exported_from_search_results_belongs_to_its_exporter(world):
    """bob exports results of the project alice made public as a new dataset: the dataset is bob's,
    private to him; carol cannot export from alice's shared project at all."""
    public, shared = world.keys[("project", "public")], world.keys[("project", "shared")]
    body = {"paths": [IMG, "sub/b.png"], "format": "dataset", "dataset_name": "bobs-picks", "label": "red"}
    r = world.call("bob", ("POST", f"/api/v1/projects/{public}/export", {"json": body}))
    assert r.status_code == 200, describe(r)
    assert r.json() == {"dataset": "bobs-picks", "samples": 2, "classes": ["red"]}
    assert world.app.state.auth.store.access("dataset", "bobs-picks").owner == "bob"
    assert world.call("bob", ("GET", "/api/v1/datasets/bobs-picks", {})).status_code == 200
    assert is_denied(world.call("alice", ("GET", "/api/v1/datasets/bobs-picks", {})), "dataset", "bobs-picks")
    again = world.call("alice", ("POST", f"/api/v1/projects/{public}/export", {"json": body}))
    assert again.status_code == 400 and "already exists" in again.text, describe(again)
    body["dataset_name"] = "carols-picks"
    r = world.call("carol", ("POST", f"/api/v1/projects/{shared}/export", {"json": body}))
    assert is_denied(r, "project", shared)
    assert world.app.state.auth.store.access("dataset", "carols-picks") is None


def test_indexing_is_for_the_projects_owner(world, noop_training):
    public = world.keys[("project", "public")]
    assert is_forbidden(world.call("bob", ("POST", f"/api/v1/projects/{public}/index", {})))
    r = world.call("alice", ("POST", f"/api/v1/projects/{public}/index", {}))
    assert r.status_code == 202, describe(r)
    assert wait_done(world, r.json()["id"]) == "done"
    assert world.app.state.auth.store.access("job", r.json()["id"]).owner == "alice"


def test_a_shared_run_does_not_open_its_private_dataset(world):
    """Predicting on "the run's own dataset" checks that dataset too: sharing a run shares the
    model, not the images it was trained on."""
    from vitrine.core.workspace import Workspace
    from vitrine.runs import Run

    root = world.app.state.auth.root
    run_id = "alice-shared-run-on-private-data"
    if not (Workspace(root).run_dir(run_id) / "run.json").exists():
        _run(root, run_id)
        run = Run.load(Workspace(root), run_id)
        run.update(dataset=world.keys[("dataset", "private")])
        store = world.app.state.auth.store
        store.claim("run", run_id, store.user("alice").id)
        store.share("run", run_id, "bob")
    request = ("GET", f"/api/v1/runs/{run_id}/predict?sample={IMG}", {})
    admin = world.call("root", request)
    assert not is_denied(admin, "dataset", world.keys[("dataset", "private")])
    assert world.call("alice", request).status_code == admin.status_code
    assert world.call("bob", ("GET", f"/api/v1/runs/{run_id}", {})).status_code == 200  # the run: shared
    assert is_denied(world.call("bob", request), "dataset", world.keys[("dataset", "private")])


def test_jobs_through_the_api_have_their_owner_column(world, noop_training, monkeypatch):
    """A job started over HTTP in multi-user mode has ``owner`` filled in the jobs table (not only an
    access record): another user can neither see nor cancel it, and `vitrine jobs list` shows it."""
    from typer.testing import CliRunner

    from vitrine.cli import app as cli_app

    shared = world.keys[("dataset", "shared")]
    r = world.call("bob", ("POST", f"/api/v1/datasets/{shared}/train", {"json": {"method": "zero-shot"}}))
    assert r.status_code == 202, describe(r)
    job_id = r.json()["id"]
    assert r.json()["owner"] == "bob"
    assert world.app.state.vitrine.jobs.get(job_id).owner == "bob"
    assert job_id in {j.id for j in world.app.state.vitrine.jobs.list(owner="bob")}
    for who in ("alice", "carol"):
        assert is_denied(world.call(who, ("GET", f"/api/v1/jobs/{job_id}", {})), "job", job_id)
        assert is_denied(world.call(who, ("POST", f"/api/v1/jobs/{job_id}/cancel", {})), "job", job_id)
    wait_done(world, job_id)
    url = world.app.state.vitrine.db.url.render_as_string(hide_password=False)
    monkeypatch.setenv("VITRINE_DATABASE_URL", url)
    out = CliRunner().invoke(cli_app, ["jobs", "list", "--owner", "bob", "--json"])
    assert out.exit_code == 0, out.output
    listed = json.loads(out.stdout)
    assert job_id in {j["id"] for j in listed} and {j["owner"] for j in listed} == {"bob"}
    table = CliRunner().invoke(cli_app, ["jobs", "list", "--limit", "500"], terminal_width=200)
    assert table.exit_code == 0 and "owner" in table.stdout and "bob" in table.stdout


def test_an_admins_object_shared_with_a_member_opens_for_them(world):
    """An object found on disk (no owner: the admins') that an admin shares is readable by that user,
    as the lists already showed it: sharing must not answer 200 and leave the object closed."""
    root = world.clients["root"]
    assert is_denied(world.call("bob", ("GET", "/api/v1/projects/found-on-disk", {})), "project", "found-on-disk")
    assert root.put("/api/v1/access/project/found-on-disk/shares/bob").status_code == 200
    try:
        assert world.call("bob", ("GET", "/api/v1/projects/found-on-disk", {})).status_code == 200
        assert "found-on-disk" in {p["name"] for p in world.call("bob", ("GET", "/api/v1/projects", {})).json()}
        assert is_denied(world.call("carol", ("GET", "/api/v1/projects/found-on-disk", {})), "project", "found-on-disk")
        assert is_forbidden(world.call("bob", ("POST", "/api/v1/projects/found-on-disk/index", {})))
    finally:
        assert root.delete("/api/v1/access/project/found-on-disk/shares/bob").status_code == 200
        root.put("/api/v1/access/project/found-on-disk", json={"visibility": "private"})
    assert is_denied(world.call("bob", ("GET", "/api/v1/projects/found-on-disk", {})), "project", "found-on-disk")


# ------------------------------------------------------------------------------ never a 500
def _requests_that_load_models(world: World) -> list[tuple[str, tuple[str, str, dict]]]:
    """Requests with good input that reach a model: detection (upload and collection image, the
    default model), image search, classification prediction, tagging."""
    public_project = world.keys[("project", "public")]
    public_run = world.keys[("run", "public")]
    return [
        ("root", ("POST", "/api/v1/detect", upload())),
        ("bob", ("POST", "/api/v1/detect", {"data": {"project": public_project, "path": IMG}})),
        ("bob", ("POST", "/api/v1/detect/overlay", upload())),
        ("bob", ("POST", f"/api/v1/projects/{public_project}/search/image", upload())),
        ("bob", ("GET", f"/api/v1/projects/{public_project}/search?q=cat", {})),
        ("bob", ("POST", f"/api/v1/runs/{public_run}/predict", upload())),
        ("bob", ("GET", f"/api/v1/runs/{public_run}/predict?sample={IMG}", {})),
        ("alice", ("POST", f"/api/v1/projects/{world.keys[('project', 'private')]}/tag", {})),
    ]


@pytest.fixture(params=["models load", "models cannot load"])
def model_condition(request, monkeypatch) -> str:
    """Either the environment as installed, or one where no model can load: OpenCV without its
    TensorFlow importer (as OpenCV 5 is) and every registry model's loader failing as a missing
    library would (the registry's caches emptied for the test, put back after)."""
    if request.param == "models cannot load":
        import dataclasses

        import cv2

        from vitrine.models import registry

        def missing_library(weights=None, device=None, **_):
            raise ImportError("libsimulated.so.1: cannot open shared object file")

        registry.list_models()
        monkeypatch.delattr(cv2.dnn, "readNetFromTensorflow")
        broken = {n: dataclasses.replace(s, loader=missing_library) for n, s in registry._REGISTRY.items()}
        monkeypatch.setattr(registry, "_REGISTRY", broken)
        monkeypatch.setattr(registry, "_LOADED", {})
        monkeypatch.setattr(registry, "_FAILED", {})
    return request.param


def test_no_route_answers_5xx(world, model_condition):
    """Every route of the app, as every kind of caller, with the objects of the matrix, then the
    requests that reach a model: never a 500. Where a model cannot load, the answer is a 503 that
    names the reason (a JSON error), and only there."""
    broken = model_condition == "models cannot load"
    failures, unavailable = [], 0

    def check(who: str, request: tuple[str, str, dict]) -> None:
        nonlocal unavailable
        r = world.call(who, request)
        if r.status_code < 500:
            if r.status_code == 202 and "id" in r.json():  # a job started: let it finish before the next test
                wait_done(world, r.json()["id"], timeout=120)
            return
        if r.status_code == 503 and r.headers.get("content-type", "").startswith("application/json"):
            error = r.json()["error"]
            if error["code"] == "model_unavailable" and error["message"].strip():
                unavailable += 1
                return
        failures.append(f"{who}: {describe(r)}")

    for kind, recipes in RECIPES.items():
        for recipe in recipes.values():
            for vis in VIS:
                for who in ("root", "bob", "anonymous"):
                    check(who, recipe(world.keys[(kind, vis)], vis))
    for method, path in sorted(r for r in app_routes(world.app) - PUBLIC - ACCOUNT if not has_path_params(r)):
        kwargs = {"json": {"name": "from the 5xx check"}} if path == "/api/v1/tokens" else {}
        for who in ("root", "bob"):
            check(who, (method, path, kwargs))
    for who, request in _requests_that_load_models(world):
        check(who, request)
    assert not failures, "\n".join(failures)
    if broken:
        assert unavailable >= 3, "the broken models were never reached: the check proves nothing"
    else:
        assert world.call("root", ("POST", "/api/v1/detect", upload())).status_code == 200


def test_a_public_projects_status_shows_no_private_job_of_another_user(world):
    project = world.keys[("project", "public")]
    store = world.app.state.auth.store
    job = world.app.state.vitrine.jobs.submit("authz-noop", project, {"secret": "alice's params"}, owner="alice")
    assert store.claim("job", job.id, store.user("alice").id)  # private
    wait_done(world, job.id)
    assert world.call("bob", _get(f"/api/v1/jobs/{job.id}")(None, None)).status_code == 404
    seen = world.call("bob", _get(f"/api/v1/projects/{project}")(None, None))
    assert seen.status_code == 200, describe(seen)
    assert job.id not in seen.text and "alice's params" not in seen.text
    assert world.call("alice", _get(f"/api/v1/projects/{project}")(None, None)).json()["job"]["id"] == job.id


def test_bodies_members_read_carry_no_absolute_server_paths(world):
    """The project folder, its ontology file and a dataset's source folder are shown relative to
    the served root, never as the server's absolute paths."""
    root = str(world.app.state.vitrine.settings.root)
    urls = [
        "/api/v1/projects/{project}",
        "/api/v1/projects/{project}/ontology",
        "/api/v1/projects/{project}/check",
        "/api/v1/datasets",
        "/api/v1/datasets/{dataset}",
        "/api/v1/runs",
        "/api/v1/runs/{run}",
        "/api/v1/jobs",
    ]
    keys = {kind: world.keys[(kind, "public")] for kind in ("project", "dataset", "run")}
    for url in urls:
        r = world.call("bob", ("GET", url.format(**keys), {}))
        assert r.status_code == 200, describe(r)
        assert root not in r.text and "/tmp/" not in r.text, describe(r)
    status = world.call("bob", ("GET", f"/api/v1/projects/{keys['project']}", {})).json()
    assert status["project_dir"] == keys["project"]
    assert status["ontology"]["file"].startswith(keys["project"] + "/")


def test_a_name_with_a_nul_byte_is_no_such_object(world):
    """A NUL byte in an object named by a request's body (PostgreSQL refuses it in a query) is a 404
    like any other unknown name, not a 503 "database unreachable" (found by the fuzzer)."""
    r = world.call("bob", ("POST", "/api/v1/detection/train", {"json": {"dataset": "alice\x00-dataset"}}))
    assert r.status_code == 404, describe(r)
    assert r.json()["error"]["code"] == "not_found"
