"""Authentication and the one authorization layer of the web app.

Two modes, one code path. In single-user mode (the default) every request acts as an implicit
local admin and nothing is looked up. In multi-user mode (``vitrine serve --multi-user`` or
``VITRINE_MULTI_USER=1``):

* :class:`AuthMiddleware` (every request, every route, mounted or not) finds who is calling, from
  ``Authorization: Bearer <token>`` or the session cookie of the login page. Anonymous requests get
  401 JSON (the API) or a redirect to ``/login`` (pages), except on the public paths: the health
  check, the login page, static assets.
* :func:`authorize`, a dependency of every route of the app, checks CSRF tokens on unsafe requests
  authenticated by cookie (Bearer requests are exempt), then reads the objects the request names
  (path parameters such as ``/projects/{name}``, ``/datasets/{name}``, ``/runs/{run_id}``,
  ``/jobs/{job_id}``, ``/sweeps/{sweep_id}``; query and form/JSON fields ``project``, ``dataset``,
  ``run_id``, ``job_id``, and ``model`` when it names a run) and asks
  :func:`vitrine.auth.policy.check` before the handler runs. A user who may not read an object
  gets 404 (as if it did not exist), one who may read it but not change it gets 403.
* List routes keep what the caller may read with :func:`visible`; jobs submitted during a request
  belong to its user (:class:`OwnedJobs`), as does the run a job's params name; a job that writes
  a new run (training) is refused first when its user is over their storage quota
  (:mod:`vitrine.auth.quota`).

POST routes change the object in their path unless listed in :data:`USE_ROUTES` (search by
upload, predict, train on a dataset: using an object one may read) or marked with
``openapi_extra={"x-vitrine-action": "use"}``.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from vitrine.auth import tokens
from vitrine.auth.policy import LOCAL_ADMIN, Forbidden, Principal, can, check
from vitrine.auth.ratelimit import LoginLimiter
from vitrine.auth.service import DEFAULT_SESSION_SECONDS, AuthStore

log = logging.getLogger("vitrine.server.security")

SESSION_COOKIE = "vitrine_session"
LOGIN_CSRF_COOKIE = "vitrine_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

PUBLIC_PATHS = frozenset({"/api/v1/health", "/login", "/logout", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/", "/docs-assets/")

# The literal segment before a path parameter says what kind of object it names.
SEGMENT_KINDS = {
    "projects": "project",
    "p": "project",
    "datasets": "dataset",
    "runs": "run",
    "jobs": "job",
    "sweeps": "sweep",
}
# Parameters (path, query, form or JSON body) that name an object whatever their place.
PARAM_KINDS = {
    "project": "project",
    "dataset": "dataset",
    "run_id": "run",
    "run": "run",
    "job_id": "job",
    "sweep_id": "sweep",
}
CREATES = frozenset({"run_id"})  # body fields that may name a new object (checked only when it exists)
USE_ROUTES = frozenset(
    {
        ("POST", "/api/v1/projects/{name}/search/image"),
        ("POST", "/api/v1/runs/{run_id}/predict"),
        ("POST", "/api/v1/datasets/{name}/train"),
    }
)


TRUSTED_PROXIES_ENV = "VITRINE_TRUSTED_PROXIES"


def trusted_proxies() -> list[str]:
    """The addresses (or CIDR networks) of the reverse proxies whose ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` are believed, from ``VITRINE_TRUSTED_PROXIES`` (comma-separated). None by
    default: the client address is the connection's peer, whatever headers a client sends."""
    return [p.strip() for p in os.environ.get(TRUSTED_PROXIES_ENV, "").split(",") if p.strip()]


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


@dataclass
class AuthRuntime:
    """What the security layer holds per app: the mode, the account store, the login limiter."""

    multi_user: bool
    store: AuthStore | None
    root: Path
    cookie_secure: bool | None = None  # None: Secure when the request came over https
    session_seconds: float = DEFAULT_SESSION_SECONDS
    limiter: LoginLimiter = field(default_factory=LoginLimiter)

    def secure_cookies(self, request: Request) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return request.url.scheme == "https"


@dataclass(frozen=True)
class RequestAuth:
    principal: Principal
    runtime: AuthRuntime


_current: contextvars.ContextVar[RequestAuth | None] = contextvars.ContextVar("vitrine_auth", default=None)


def current() -> RequestAuth | None:
    """Who the request being served acts for (None outside a request)."""
    return _current.get()


def principal_of(request: Request) -> Principal | None:
    return request.scope.get("state", {}).get("principal")


def runtime_of(request: Request) -> AuthRuntime:
    return request.app.state.auth


# ------------------------------------------------------------------------------ authentication
def route_path(scope: Scope) -> str:
    """The request's path without the app's root path (prefix)."""
    path, root = scope.get("path", ""), (scope.get("root_path") or "").rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def wants_page(scope: Scope, path: str) -> bool:
    """A browser asking for a page (redirected to the login page) rather than an API client (401)."""
    if scope.get("method") not in ("GET", "HEAD") or path.startswith("/api/") or path == "/openapi.json":
        return False
    accept = Headers(scope=scope).get("accept", "")
    return "text/html" in accept or "*/*" in accept or not accept


def unauthorized(message: str, hint: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": "unauthorized", "message": message, "hint": hint}},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


class AuthMiddleware:
    """Resolve the caller of every request; refuse anonymous ones in multi-user mode."""

    def __init__(self, app: ASGIApp, runtime: AuthRuntime):
        self.app = app
        self.runtime = runtime

    async def _principal(self, scope: Scope) -> tuple[Principal | None, str | None]:
        store = self.runtime.store
        headers = Headers(scope=scope)
        header = headers.get("authorization")
        if header:
            scheme, _, credential = header.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                return None, "the Authorization header must be 'Bearer <token>'"
            user = await run_in_threadpool(store.user_for_token, credential.strip())
            if user is None:
                return None, "the API token is invalid, expired or revoked"
            return user.principal("token"), None
        session_id = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
        if session_id:
            found = await run_in_threadpool(store.session_user, session_id)
            if found is not None:
                user, csrf = found
                return user.principal("session", csrf_token=csrf, session_id=session_id), None
            return None, "your session has expired"
        return None, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not self.runtime.multi_user:
            principal: Principal | None = LOCAL_ADMIN
        else:
            path = route_path(scope)
            try:
                principal, problem = await self._principal(scope)
            except SQLAlchemyError as exc:  # the database is down: a 503 the client can read, not a 500
                log.warning("cannot check credentials: %s", exc)
                if scope["type"] == "websocket":
                    await WebSocketClose(code=1011)(scope, receive, send)
                    return
                response = JSONResponse(
                    {
                        "error": {
                            "code": "database_unavailable",
                            "message": "the server database cannot be reached to check who you are",
                            "hint": "try again shortly; the admin should check the database (VITRINE_DATABASE_URL)",
                        }
                    },
                    status_code=503,
                    headers={"Retry-After": "5"},
                )
                await response(scope, receive, send)
                return
            if principal is None and not is_public(path):
                if scope["type"] == "websocket":
                    await WebSocketClose(code=1008)(scope, receive, send)
                    return
                if wants_page(scope, path):
                    root = (scope.get("root_path") or "").rstrip("/")
                    target = path + (
                        ("?" + scope["query_string"].decode("latin-1")) if scope.get("query_string") else ""
                    )
                    response = RedirectResponse(f"{root}/login?next={quote(target, safe='')}", status_code=303)
                else:
                    response = unauthorized(
                        problem or "sign in first: this server needs an account",
                        hint="send 'Authorization: Bearer <token>' (ask an admin for `vitrine users reset-token`) "
                        "or sign in on the login page",
                    )
                await response(scope, receive, send)
                return
        scope.setdefault("state", {})["principal"] = principal
        reset = _current.set(RequestAuth(principal, self.runtime) if principal else None)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(reset)


# ------------------------------------------------------------------------------ authorization
def route_action(request: Request) -> str:
    route = request.scope.get("route")
    extra = getattr(route, "openapi_extra", None) or {}
    if extra.get("x-vitrine-action") in ("read", "use", "write", "manage"):
        return extra["x-vitrine-action"]
    method = request.method
    if method in SAFE_METHODS:
        return "read"
    if (method, getattr(route, "path_format", "")) in USE_ROUTES:
        return "use"
    return "write"


def _path_kinds(path_format: str) -> dict[str, str]:
    """``{param: kind}`` for the parameters of a route path that name objects."""
    out: dict[str, str] = {}
    previous = ""
    for segment in path_format.split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            param = segment[1:-1].split(":", 1)[0]
            kind = PARAM_KINDS.get(param) or SEGMENT_KINDS.get(previous)
            if kind:
                out[param] = kind
        previous = segment
    return out


def _exists(request: Request, kind: str, key: str) -> bool:
    from vitrine.core.workspace import Workspace

    ws = Workspace(runtime_of(request).root)
    try:
        if kind == "run":
            return (ws.run_dir(key) / "run.json").is_file()
        if kind == "dataset":
            return (ws.dataset_dir(key) / "dataset.json").is_file()
    except Exception:  # an invalid name: no such object
        return False
    return True


async def _body_fields(request: Request) -> dict[str, str]:
    """Top-level string fields of a form or JSON body (FastAPI has already read and cached it)."""
    ctype = request.headers.get("content-type", "")
    try:
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            return {k: v for k, v in form.items() if isinstance(v, str)}
        if ctype.startswith("application/json"):
            data = await request.json()
            return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
    except Exception:  # an unreadable body is the handler's 4xx to give
        return {}
    return {}


async def named_objects(request: Request) -> list[tuple[str, str, str]]:
    """``(kind, key, action)`` for every object the request names: the route's own (with the
    route's action), and those named in its query or body (to read or use)."""
    route = request.scope.get("route")
    action = route_action(request)
    params = request.path_params
    out: list[tuple[str, str, str]] = []
    if "kind" in params and "key" in params:  # the access routes: /access/{kind}/{key}
        out.append((str(params["kind"]), str(params["key"]), action))
    for param, kind in _path_kinds(getattr(route, "path_format", "")).items():
        if param in params:
            out.append((kind, str(params[param]), action))
    used = "read" if request.method in SAFE_METHODS else "use"
    fields = {k: v for k, v in request.query_params.items()}
    if request.method not in SAFE_METHODS:
        fields.update(await _body_fields(request))
    for name, value in fields.items():
        if not value:
            continue
        kind = PARAM_KINDS.get(name)
        if kind is None and name == "model" and _exists(request, "run", value):
            kind = "run"
        if kind is None:
            continue
        if name in CREATES and request.method not in SAFE_METHODS and not _exists(request, kind, value):
            continue  # a new object's name: the caller will own it
        out.append((kind, value, used))
    return out


async def _check_csrf(request: Request, principal: Principal) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        sent = (await _body_fields(request)).get(CSRF_FIELD)
    if not tokens.same(sent, principal.csrf_token):
        raise Forbidden(
            "missing or wrong CSRF token",
            hint=f"send the page's token in the {CSRF_HEADER} header or the {CSRF_FIELD} form field, "
            "or use an API token (Authorization: Bearer) instead of the session cookie",
        )


async def authorize(request: Request) -> None:
    """The dependency of every route: CSRF for cookie sessions, then the ownership policy."""
    principal = principal_of(request)
    if principal is None:  # a public path reached anonymously: it names no objects
        return
    route = request.scope.get("route")
    own_csrf = (getattr(route, "openapi_extra", None) or {}).get("x-vitrine-csrf") == "own"
    if principal.via == "session" and request.method not in SAFE_METHODS and not own_csrf:
        await _check_csrf(request, principal)
    if principal.is_admin:
        return
    wanted = await named_objects(request)
    if not wanted:
        return
    store = runtime_of(request).store

    def decide() -> None:
        for kind, key, action in wanted:
            check(principal, action, kind, key, _access_record(store, kind, key))

    try:
        await run_in_threadpool(decide)
    except SQLAlchemyError as exc:
        from vitrine.store.db import DatabaseError

        log.warning("cannot check access: %s", exc)
        raise DatabaseError("the server database cannot be reached to check access", hint="try again shortly") from None


def _access_record(store, kind: str, key: str):
    """The access record of an object, or None. A name holding a NUL byte names nothing (no object
    name can hold one, and PostgreSQL refuses it in a query): it is "no such object", not a
    database error."""
    if store is None or "\x00" in key:
        return None
    return store.access(kind, key)


# ------------------------------------------------------------------------------ helpers for routes
def visible(kind: str, keys: Iterable[str]) -> list[str]:
    """The ``keys`` (objects of one kind) the current user may read, in their order. Outside a
    request, or for an admin, all of them."""
    keys = list(keys)
    ctx = _current.get()
    if ctx is None or ctx.principal.is_admin:
        return keys
    if ctx.runtime.store is None:
        return []
    allowed = ctx.runtime.store.readable_keys(ctx.principal, kind, keys)
    return [k for k in keys if k in allowed]


def require(kind: str, key: str, action: str = "read") -> None:
    """The policy check for an object a handler reaches indirectly (not named by the request),
    e.g. the dataset of a run: :class:`Hidden` (404) or :class:`Forbidden` (403) when not allowed."""
    ctx = _current.get()
    if ctx is None or ctx.principal.is_admin:
        return
    store = ctx.runtime.store
    check(ctx.principal, action, kind, key, _access_record(store, kind, key))


def may(kind: str, key: str, action: str) -> bool:
    """Whether the current user may ``action`` the object (outside a request, or as an admin: yes)."""
    ctx = _current.get()
    if ctx is None or ctx.principal.is_admin:
        return True
    return can(ctx.principal, action, _access_record(ctx.runtime.store, kind, key))


def claim(kind: str, key: str) -> None:
    """Record the current user as the owner of a new object (no-op for the local admin)."""
    ctx = _current.get()
    if ctx is None or ctx.runtime.store is None or ctx.principal.id is None:
        return
    ctx.runtime.store.claim(kind, key, ctx.principal.id)


def _accepts_owner(func) -> bool:
    try:
        return "owner" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


class OwnedJobs:
    """The app's job manager, with the jobs a request submits owned by its user (and the run a
    job's params name, ``run_id``). Everything else goes to the manager unchanged."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def submit(self, *args, **kwargs):
        ctx = _current.get()
        user = ctx.principal if ctx else None
        if user is not None and user.id is not None and "owner" not in kwargs and _accepts_owner(self._inner.submit):
            kwargs["owner"] = user.name
        kind = kwargs.get("kind", args[0] if args else "")
        params = kwargs.get("params")
        if params is None:
            params = next((a for a in args if isinstance(a, dict)), None)
        if ctx is not None and user is not None and user.id is not None and ctx.runtime.store is not None:
            from vitrine.auth import quota

            if quota.creates_storage(str(kind), params):  # the user's storage quota, before the job exists
                quota.service_for(ctx.runtime.store.engine, ctx.runtime.root).enforce(user.name, f"a new {kind} job")
        job = self._inner.submit(*args, **kwargs)
        job_id = getattr(job, "id", None)
        if job_id is not None:
            claim("job", str(job_id))
        if isinstance(params, dict) and isinstance(params.get("run_id"), str):
            claim("run", params["run_id"])
        return job


def template_context(request: Request) -> dict:
    """What every page template gets: the signed-in user and the CSRF token of the session."""
    principal = principal_of(request)
    runtime = getattr(request.app.state, "auth", None)
    multi = bool(runtime and runtime.multi_user)
    return {
        "auth_user": principal if (multi and principal) else None,
        "csrf_token": principal.csrf_token if (principal and principal.via == "session") else None,
        "multi_user": multi,
    }


def install_security(app: FastAPI, multi_user: bool | None = None) -> AuthRuntime:
    """Wire authentication and the policy into ``app`` (its ``app.state.vitrine`` made). Call it
    before the routers are included: the policy dependency applies to the routes added after it.
    ``multi_user`` defaults to the settings' (``VITRINE_MULTI_USER``)."""
    st = app.state.vitrine
    if multi_user is None:
        multi_user = bool(getattr(st.settings, "multi_user", False))
    store = AuthStore(st.db) if multi_user else None
    runtime = AuthRuntime(
        multi_user=multi_user, store=store, root=st.settings.root, cookie_secure=_env_flag("VITRINE_COOKIE_SECURE")
    )
    hours = os.environ.get("VITRINE_SESSION_HOURS")
    if hours:
        try:
            runtime.session_seconds = float(hours) * 3600
        except ValueError:
            log.warning("VITRINE_SESSION_HOURS=%r is not a number; sessions last 12 h", hours)
    app.state.auth = runtime
    app.add_middleware(AuthMiddleware, runtime=runtime)
    proxies = trusted_proxies()
    if proxies:  # outside the login check: the limiter and the cookies see the real client
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
    app.router.dependencies.append(Depends(authorize))
    if not isinstance(st.jobs, OwnedJobs):
        st.jobs = OwnedJobs(st.jobs)
    if store is not None and not store.list_users():
        log.warning("multi-user mode with no users: add an admin with `vitrine users add NAME --admin`")
    return runtime


# ------------------------------------------------------------------------------ server paths
def _looks_like_server_path(value: str, root: str) -> bool:
    if len(value) < 2 or not value.startswith(("/", "\\")) and not (len(value) > 2 and value[1] == ":"):
        return False
    if value.startswith(root):
        return True
    try:
        path = Path(value)
        return path.is_absolute() and (path.exists() or path.parent.exists())
    except (OSError, ValueError):
        return False


def _shown(value: str, root: Path) -> str:
    path = Path(value)
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return path.name


def hide_paths(data):
    """``data`` (JSON-able) with the absolute server paths in it made relative to the served root
    (or cut to their last part when outside it), on a multi-user server: what members read says
    nothing of the server's folders. Unchanged in single-user mode (the caller owns the machine)."""
    ctx = _current.get()
    if ctx is None or not ctx.runtime.multi_user:
        return data
    root = ctx.runtime.root
    prefix = str(root)

    def walk(value):
        if isinstance(value, str):
            return _shown(value, root) if _looks_like_server_path(value, prefix) else value
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        return value

    return walk(data)
