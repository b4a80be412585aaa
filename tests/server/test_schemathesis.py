"""API fuzzing: schemathesis generates requests from the app's own ``/openapi.json`` for every
operation, valid ones and invalid ones (wrong types, out-of-range numbers, missing fields), and
sends them to the app in process (ASGI), in single-user mode and as a member and an admin of a
multi-user server.

Each answer must be no server error (5xx), a status the operation documents, and a body of a
media type documented for that status. Path parameters are tried both as generated and as the
names of objects that exist (a project with images, a job), so the handlers run, not only the
404s. The numbers of operations and examples are printed (``-s``) for the record.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import schemathesis

# schemathesis imports its OpenAPI modules on first use, and pytest rewrites their asserts (it is a
# plugin) by parsing them with `ast`; CPython 3.11 before 3.11.8 can fail such a parse with
# "SystemError: AST constructor recursion depth mismatch" when another thread builds an AST at the
# same moment (gh-106905; seen once in CI). Importing them here, at collection, parses them before
# any test has started a thread.
import schemathesis.specs.openapi.schemas  # noqa: E402, F401
from argon2 import profiles
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from PIL import Image

from vitrine.auth import passwords
from vitrine.jobs import register_kind
from vitrine.server.app import create_app

EXAMPLES = 6  # per operation, per generation mode, per caller
IMG = "sub/a.png"


def _noop(ctx, params: dict) -> dict:
    return {"ok": True}


register_kind("fuzz-noop", _noop, description="does nothing (API fuzzing)")


def _png(colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), colour).save(buf, "PNG")
    return buf.getvalue()


def _root(tmp: Path) -> Path:
    from vitrine.collection.layout import init_project
    from vitrine.collection.scan import scan_project
    from vitrine.project import Project

    paths = init_project(tmp / "demo", keywords={"Cat": "a cat"})
    (paths.images_dir / "sub").mkdir(parents=True, exist_ok=True)
    (paths.images_dir / IMG).write_bytes(_png())
    (paths.images_dir / "sub" / "b.png").write_bytes(_png((20, 200, 40)))
    proj = Project(paths.project_dir)
    scan_project(proj.paths, proj.catalog)
    proj.close()
    return tmp


def _media_ok(ctype: str, documented: list[str]) -> bool:
    return any(m == ctype or (m.endswith("/*") and ctype.startswith(m[:-1])) for m in documented)


def _checker(report: dict, responses: dict, headers: dict, real: dict[str, str]):
    """The test body for one operation: send the case (and the same on existing objects), record
    server errors, undocumented statuses and undocumented media types."""

    def check(case) -> None:
        for swap in (False, True):
            if swap:  # the same request on objects that exist
                names = {k: real[k] for k in (case.path_parameters or {}) if k in real}
                if not names:
                    continue
                case.path_parameters = {**case.path_parameters, **names}
            r = case.call(headers=headers)
            report["examples"] += 1
            where = (case.method.upper(), case.formatted_path, r.status_code, r.content[:160])
            status = str(r.status_code)
            if r.status_code >= 500:
                report["server_errors"].append(where)
            elif status not in responses and "default" not in responses:
                report["undocumented"].append(where)
            else:
                media = list(responses.get(status, {}).get("content", {}))
                ctype = (r.headers.get("content-type") or [""])[0].split(";")[0].strip()
                if r.content and media and not _media_ok(ctype, media):
                    report["media"].append((*where[:3], ctype, media))

    return check


def fuzz(app, headers: dict, real: dict[str, str]) -> dict:
    """Every operation of the app's schema, EXAMPLES positive and EXAMPLES negative cases each;
    returns the counts and the problems found."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=headers)
    report = {"operations": 0, "examples": 0, "server_errors": [], "undocumented": [], "media": []}
    for result in schema.get_all_operations():
        op = result.ok()
        report["operations"] += 1
        responses = op.definition.raw.get("responses", {})

        check = _checker(report, responses, headers, real)

        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            run = settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(case=op.as_strategy(generation_mode=mode))(check))
            try:
                run()
            except Unsatisfiable:  # nothing in the operation can be made invalid (no parameters)
                pass
    return report


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return _root(tmp_path_factory.mktemp("fuzz"))


def _assert_clean(report: dict, app) -> None:
    documented = sum(
        1 for item in app.openapi()["paths"].values() for m in item if m in ("get", "post", "put", "delete", "patch")
    )
    print(
        f"\nschemathesis: {report['operations']} operations, {report['examples']} examples, "
        f"{len(report['server_errors'])} server errors, {len(report['undocumented'])} undocumented status codes"
    )
    assert report["operations"] == documented > 50
    assert report["examples"] >= report["operations"] * EXAMPLES
    assert report["server_errors"] == []
    assert report["undocumented"] == []
    assert report["media"] == []


@pytest.mark.slow
def test_fuzz_single_user(root):
    app = create_app(root, multi_user=False)
    job = app.state.vitrine.jobs.submit("fuzz-noop", "fuzz", {})
    try:
        report = fuzz(app, {}, {"name": "demo", "job_id": job.id, "path": IMG})
    finally:
        app.state.vitrine.close()  # jobs the fuzzer started stop here
    _assert_clean(report, app)


@pytest.mark.slow
@pytest.mark.parametrize(("who", "database"), [("bob", "sqlite"), ("root", "sqlite"), ("bob", "postgresql")])
def test_fuzz_multi_user(root, who, database, tmp_path, request):
    """As a member (alice's private job is hidden from bob) and as an admin; the member's run also
    on PostgreSQL, which refuses strings that SQLite takes (NUL bytes)."""
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'server.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database()
    passwords.use_profile(profiles.CHEAPEST)
    app = create_app(root, multi_user=True, database_url=url)
    try:
        store = app.state.auth.store
        store.add_user("root", "root-password", role="admin")
        alice = store.add_user("alice", "alice-password")
        store.add_user("bob", "bob-password")
        token = store.create_token(who, "fuzz")[1]
        job = app.state.vitrine.jobs.submit("fuzz-noop", "fuzz", {}, owner="alice")
        store.claim("job", job.id, alice.id)  # alice's private job: bob gets 404s on it
        report = fuzz(app, {"authorization": f"Bearer {token}"}, {"name": "demo", "job_id": job.id, "path": IMG})
    finally:
        passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)
        app.state.vitrine.close()
    _assert_clean(report, app)
