"""What the API answers besides its 2xx, documented in the OpenAPI schema.

Every error is one JSON body, ``{"error": {"code", "message", "hint"}}`` (:class:`ErrorBody`).
Routes declare the errors their handler gives (``responses=errors(400, 404)``: a bad value, a
missing image, a model that cannot load here...). The errors that come from the layers around
every route are added to each operation by :func:`document_common`, from what the operation is:

* 401 and 503 on every non-public operation (multi-user mode: no or bad credentials, the server
  database unreachable while checking them);
* 403 on unsafe methods (CSRF token of a cookie session) and 404 on operations that name an object
  (the ownership policy answers 404 for what the caller may not read);
* 413 on operations with a request body (the body limit); 400 (a value the handler cannot use, a
  NUL byte in the URL) and 422 (a value of the wrong type or out of bounds) on operations with
  parameters or a body.

Bodies other than JSON are declared with their media type: CSV exports (:data:`CSV`), images
(:data:`IMAGE`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, Field

# the largest integer a query may carry where the schema has no smaller natural bound (SQLite and
# PostgreSQL BIGINT hold 2**63 - 1; offsets and ids never come near this)
MAX_INT = 2**31 - 1


class ErrorDetail(BaseModel):
    code: str = Field(description="a stable machine-readable code, e.g. not_found, bad_request")
    message: str = Field(description="what was wrong")
    hint: str | None = Field(None, description="what to do about it")
    details: list[dict[str, Any]] | None = Field(None, description="422: each invalid field, where and why")


class ErrorBody(BaseModel):
    error: ErrorDetail


DESCRIPTIONS = {
    400: "The request cannot be carried out as asked (the message says why, the hint what to do).",
    401: "Multi-user server: no credentials, or an invalid, expired or revoked token or session.",
    403: "Not allowed: a missing CSRF token (cookie sessions), or an object the caller may read but not change.",
    404: "No such object, or one the caller may not see.",
    409: "The request conflicts with the object's state (e.g. a model mismatch, a finished job).",
    413: "The request body or upload is over the server's limit, or the user's storage quota is used up.",
    422: "A parameter or a body field is missing or invalid.",
    429: "Too many attempts: try again after Retry-After seconds.",
    503: "The server cannot do it now: a model that cannot load here, or the server database unreachable.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: these statuses, each with the error body."""
    return {code: {"model": ErrorBody, "description": DESCRIPTIONS[code]} for code in codes}


class CSVResponse(Response):
    media_type = "text/csv"


CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "A CSV file (UTF-8)."}
}
IMAGE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The image file.",
    }
}
JPEG: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        "description": "A JPEG thumbnail.",
    }
}

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def _ensure(op: dict, code: int) -> None:
    responses = op.setdefault("responses", {})
    key = str(code)
    if key not in responses:
        responses[key] = {"description": DESCRIPTIONS[code], "content": {"application/json": {"schema": _ERROR_REF}}}


def _names_objects(path: str, op: dict) -> bool:
    from vitrine.server.security import PARAM_KINDS, SEGMENT_KINDS

    previous = ""
    for segment in path.split("/"):
        if segment.startswith("{") and (segment[1:-1] in PARAM_KINDS or previous in SEGMENT_KINDS):
            return True
        previous = segment
    names = {p.get("name") for p in op.get("parameters", [])}
    for media in op.get("requestBody", {}).get("content", {}).values():
        ref = media.get("schema", {}).get("$ref")
        names |= set(_schema_properties(op, ref))
    return bool(names & (set(PARAM_KINDS) | {"model"}))


_COMPONENTS: dict = {}


def _schema_properties(_op: dict, ref: str | None) -> list[str]:
    if not ref:
        return []
    schema = _COMPONENTS.get(ref.rsplit("/", 1)[-1], {})
    return list(schema.get("properties", {}))


def document_common(app: FastAPI) -> None:
    """Make ``app.openapi()`` add the responses of the layers around the routes (see the module),
    and give 422 the body the app really sends (the error body, not FastAPI's ``detail`` list)."""
    from vitrine.server.security import is_public

    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, model in (("ErrorBody", ErrorBody), ("ErrorDetail", ErrorDetail)):
            if name not in components:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                body.pop("$defs", None)
                components[name] = body
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        _COMPONENTS.clear()
        _COMPONENTS.update(components)
        for path, item in schema.get("paths", {}).items():
            for method, op in item.items():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                responses = op["responses"]
                if "422" in responses:
                    responses["422"] = {
                        "description": DESCRIPTIONS[422],
                        "content": {"application/json": {"schema": _ERROR_REF}},
                    }
                if not is_public(path):
                    _ensure(op, 401)
                    _ensure(op, 503)
                if method.upper() not in ("GET", "HEAD", "OPTIONS"):
                    _ensure(op, 403)
                if _names_objects(path, op):
                    _ensure(op, 404)
                if "requestBody" in op:
                    _ensure(op, 413)
                if op.get("parameters") or "requestBody" in op:
                    _ensure(op, 400)  # a value the handler cannot use; a control character in the URL
                    _ensure(op, 422)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
