"""Errors a user can act on: what was wrong, where, and what to do.

Every error vitrine raises on purpose derives from :class:`VitrineError`. The CLI prints
``message`` (and ``hint`` when there is one) without a traceback and exits non-zero; the REST API
turns it into a 4xx JSON body ``{"error": {"code", "message", "hint"}}``.
"""

from __future__ import annotations


class VitrineError(Exception):
    """Base class: a problem the user can fix. ``status`` is the HTTP status the API answers with."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class NotFound(VitrineError):
    status = 404
    code = "not_found"


class LayoutError(VitrineError):
    """The project folder does not have the expected layout."""

    code = "bad_layout"


class OntologyError(VitrineError):
    """The ontology file has lines that cannot be parsed."""

    code = "bad_ontology"


class ImageError(VitrineError):
    """An image file cannot be used (corrupt, truncated, too large, not an image...)."""

    code = "bad_image"


class ModelError(VitrineError):
    """A model is unknown, or the request asked it for something it cannot do (a 400)."""

    code = "model_unavailable"


class ModelUnavailable(ModelError):
    """A known model cannot load in this environment: its weights are not installed and the hub is
    unreachable, or a library it needs is missing or the wrong version. Not the request's fault: the
    API answers 503 with the reason, the CLI prints it and exits 2."""

    status = 503


class IndexMismatch(VitrineError):
    """A query used a model other than the one the project's index was built with."""

    status = 409
    code = "model_mismatch"


class PayloadTooLarge(VitrineError):
    status = 413
    code = "payload_too_large"


class Cancelled(VitrineError):
    """Long work was cancelled by the user (Ctrl-C, API or UI)."""

    status = 409
    code = "cancelled"
