"""Accounts on the web: who am I, API tokens, sharing, and the login page.

    GET    /api/v1/me                               the caller (and the session's CSRF token), storage used
                                                    and quota, the objects the caller owns (multi-user)
    GET    /api/v1/tokens                           the caller's API tokens (never the secrets)
    POST   /api/v1/tokens                           a new token, shown once
    DELETE /api/v1/tokens/{token_id}                revoke one
    GET    /api/v1/users                            the accounts (admins)
    GET    /api/v1/access/{kind}/{key}              owner and visibility of an object
    PUT    /api/v1/access/{kind}/{key}              change its visibility (owner) or owner (admin)
    PUT    /api/v1/access/{kind}/{key}/shares/{user}  share with a user (owner)
    DELETE /api/v1/access/{kind}/{key}/shares/{user}  stop sharing (owner)
    POST   /api/v1/logout                           end the session
    GET, POST /login; POST /logout                  the login page and its form posts

Who may call which is decided by the policy layer (:mod:`vitrine.server.security`) before these
handlers run; they only add what is theirs (the caller's own tokens, owner-only changes).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from vitrine.auth import tokens
from vitrine.auth.policy import Forbidden, Principal, check
from vitrine.auth.service import check_kind
from vitrine.core.errors import VitrineError
from vitrine.server.api.responses import MAX_INT, errors
from vitrine.server.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    AuthRuntime,
    principal_of,
    runtime_of,
)

router = APIRouter(prefix="/api/v1", tags=["accounts"])
ui_router = APIRouter(include_in_schema=False)


class SingleUser(VitrineError):
    code = "single_user"


def _multi(request: Request) -> tuple[AuthRuntime, Principal]:
    runtime = runtime_of(request)
    principal = principal_of(request)
    if not runtime.multi_user or runtime.store is None or principal is None or principal.id is None:
        raise SingleUser(
            "accounts exist only on a multi-user server",
            hint="start the server with `vitrine serve --multi-user` (or VITRINE_MULTI_USER=1)",
        )
    return runtime, principal


def _cookie_path(request: Request) -> str:
    return (request.scope.get("root_path") or "").rstrip("/") or "/"


def _base(request: Request) -> str:
    return (request.scope.get("root_path") or "").rstrip("/")


# ------------------------------------------------------------------------------ me, tokens, users
@router.get("/me")
def me(request: Request):
    """Who the request acts for: ``via`` is ``local`` (single-user mode), ``token`` or ``session``."""
    runtime = runtime_of(request)
    principal = principal_of(request)
    out = {**principal.to_dict(), "multi_user": runtime.multi_user}
    if principal.via == "session":
        out["csrf_token"] = principal.csrf_token
    if runtime.multi_user and runtime.store is not None and principal.id is not None:
        from vitrine.auth.quota import service_for

        quotas = service_for(runtime.store.engine, runtime.root)
        out["storage"] = quotas.usage(principal.name).to_dict()
        out["owned"] = [{"kind": k, "key": key, "visibility": v} for k, key, v in quotas.owned(principal.name)]
    return out


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("default", min_length=1, max_length=100)
    expires: str | None = Field(None, description="lifetime such as 30d, 12h or 2w; none: never expires")


@router.get("/tokens", responses=errors(400))
def list_tokens(request: Request):
    runtime, principal = _multi(request)
    return [t.to_dict() for t in runtime.store.list_tokens(principal.name)]


@router.post("/tokens", status_code=201, responses=errors(400))
def create_token(request: Request, body: NewToken):
    """A new API token for the caller. The answer's ``token`` is shown this once and never again."""
    runtime, principal = _multi(request)
    lifetime = tokens.parse_duration(body.expires) if body.expires else None
    info, secret = runtime.store.create_token(principal.name, body.name, expires_in=lifetime)
    return {**info.to_dict(), "token": secret}


@router.delete("/tokens/{token_id}", responses=errors(400, 404))
def revoke_token(request: Request, token_id: Annotated[int, Path(ge=1, le=MAX_INT)]):
    """Revoke one of the caller's tokens (an admin may revoke anyone's)."""
    runtime, principal = _multi(request)
    owner = None if principal.is_admin else principal.id
    return runtime.store.revoke_token(token_id, user_id=owner).to_dict()


@router.get("/users", responses=errors(400, 403))
def list_users(request: Request):
    runtime, principal = _multi(request)
    if not principal.is_admin:
        raise Forbidden("only admins list the accounts", hint="ask an admin for the name of the user to share with")
    return [u.to_dict() for u in runtime.store.list_users()]


# ------------------------------------------------------------------------------ ownership and shares
Kind = Literal["project", "dataset", "run", "job"]


class AccessChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    visibility: Literal["private", "shared", "public"] | None = None
    owner: str | None = Field(None, min_length=1, max_length=64, description="a new owner (admins only)")


def _access(runtime: AuthRuntime, principal: Principal, kind: str, key: str, manage: bool) -> dict:
    check_kind(kind)
    access = runtime.store.access(kind, key)
    if manage:
        check(principal, "manage", kind, key, access)
    if access is None:
        return {"kind": kind, "key": key, "owner": None, "visibility": "private", "shared_with": []}
    out = access.to_dict()
    if not (principal.is_admin or access.owner_id == principal.id):
        out["shared_with"] = []  # who else it is shared with is the owner's business
    return out


@router.get("/access/{kind}/{key}", responses=errors(400, 404))
def get_access(request: Request, kind: Kind, key: str):
    """Owner (null: the admins), visibility and, for its owner, the users it is shared with."""
    runtime, principal = _multi(request)
    return _access(runtime, principal, kind, key, manage=False)


@router.put("/access/{kind}/{key}", responses=errors(400, 403, 404))
def set_access(request: Request, kind: Kind, key: str, body: AccessChange):
    runtime, principal = _multi(request)
    check(principal, "manage", kind, key, runtime.store.access(kind, key))
    if body.owner is not None and not principal.is_admin:
        raise Forbidden("only admins give an object to another owner")
    runtime.store.set_access(kind, key, visibility=body.visibility, owner=body.owner)
    return _access(runtime, principal, kind, key, manage=True)


@router.put("/access/{kind}/{key}/shares/{user}", responses=errors(400, 403, 404))
def share(request: Request, kind: Kind, key: str, user: str):
    """Share the object with a user (it becomes ``shared`` if it was private)."""
    runtime, principal = _multi(request)
    check(principal, "manage", kind, key, runtime.store.access(kind, key))
    runtime.store.share(kind, key, user)
    return _access(runtime, principal, kind, key, manage=True)


@router.delete("/access/{kind}/{key}/shares/{user}", responses=errors(400, 403, 404))
def unshare(request: Request, kind: Kind, key: str, user: str):
    runtime, principal = _multi(request)
    check(principal, "manage", kind, key, runtime.store.access(kind, key))
    runtime.store.unshare(kind, key, user)
    return _access(runtime, principal, kind, key, manage=True)


def _end_session(request: Request, response: Response) -> None:
    runtime = runtime_of(request)
    principal = principal_of(request)
    if runtime.store is not None and principal is not None and principal.session_id:
        runtime.store.delete_session(principal.session_id)
    response.delete_cookie(SESSION_COOKIE, path=_cookie_path(request))


@router.post("/logout", status_code=204, response_class=Response)
def api_logout(request: Request):
    """End the caller's session (its cookie stops working at once)."""
    response = Response(status_code=204)
    _end_session(request, response)
    return response


# ------------------------------------------------------------------------------ the login page
def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this app only (no other host, no scheme)."""
    value = (value or "").strip()
    if not value.startswith("/") or value.startswith(("//", "/\\")) or "\\" in value or any(ord(c) < 32 for c in value):
        return "/"
    return value


def _login_page(
    request: Request,
    status: int = 200,
    error: str | None = None,
    name: str = "",
    headers: dict | None = None,
    nxt: str | None = None,
):
    from vitrine.server.templates import make_templates

    csrf = request.cookies.get(LOGIN_CSRF_COOKIE) or tokens.new_secret()
    response = make_templates().TemplateResponse(
        request,
        "login.html",
        {
            "page": "login",
            "base": _base(request),
            "login_csrf": csrf,
            "login_error": error,
            "login_name": name,
            "next": nxt if nxt is not None else _safe_next(request.query_params.get("next")),
        },
        status_code=status,
        headers=headers,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        csrf,
        path=_cookie_path(request),
        httponly=True,
        samesite="lax",
        secure=runtime_of(request).secure_cookies(request),
    )
    return response


@ui_router.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    runtime = runtime_of(request)
    if not runtime.multi_user:
        return RedirectResponse(f"{_base(request)}/", status_code=303)
    return _login_page(request)


@ui_router.post("/login", openapi_extra={"x-vitrine-csrf": "own"})
async def login_submit(request: Request):
    """The login form: name, password, csrf_token (from the form's cookie), next."""
    runtime = runtime_of(request)
    if not runtime.multi_user:
        return RedirectResponse(f"{_base(request)}/", status_code=303)
    form = await request.form()
    name = str(form.get("username") or "")[:64]
    password = str(form.get("password") or "")
    nxt = _safe_next(str(form.get("next") or ""))
    if not tokens.same(str(form.get("csrf_token") or ""), request.cookies.get(LOGIN_CSRF_COOKIE)):
        return _login_page(request, 403, "the form had expired: please sign in again", name, nxt=nxt)
    address = request.client.host if request.client else None
    wait = runtime.limiter.retry_after(name, address)
    if wait > 0:
        seconds = int(wait) + 1
        return _login_page(
            request,
            429,
            f"too many failed sign-ins: try again in {seconds} s",
            name,
            headers={"Retry-After": str(seconds)},
            nxt=nxt,
        )
    delay = runtime.limiter.slowdown(name)
    if delay > 0:  # many failures at this name from many addresses: slower, never locked
        await asyncio.sleep(delay)
    user = await run_in_threadpool(runtime.store.authenticate, name, password)
    if user is None:
        runtime.limiter.failure(name, address)
        return _login_page(request, 401, "wrong user name or password (or the account is disabled)", name, nxt=nxt)
    runtime.limiter.success(name, address)
    session_id, _csrf = await run_in_threadpool(runtime.store.create_session, user, runtime.session_seconds)
    response = RedirectResponse(_base(request) + nxt, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(runtime.session_seconds),
        path=_cookie_path(request),
        httponly=True,
        samesite="lax",
        secure=runtime.secure_cookies(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=_cookie_path(request))
    return response


@ui_router.post("/logout")
def logout_submit(request: Request):
    """The page's sign-out button (the form carries the session's CSRF token)."""
    response = RedirectResponse(f"{_base(request)}/login", status_code=303)
    _end_session(request, response)
    return response
