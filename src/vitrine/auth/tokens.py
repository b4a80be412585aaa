"""API tokens and session ids: random secrets, stored only as SHA-256 hashes.

A token reads ``vit_<prefix>_<secret>``: the 8-character prefix is public (listed, to tell tokens
apart), the whole string is the secret. The server keeps ``sha256(token)``; a leaked database
gives no usable token. Session ids (cookies) are stored the same way.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_PREFIX = "vit_"
_TOKEN = re.compile(r"^vit_([a-z0-9]{8})_([A-Za-z0-9_-]{20,100})$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def digest(secret: str) -> str:
    """The SHA-256 hex digest stored for a token or session id."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh API token and its public prefix."""
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def token_prefix(token: str) -> str | None:
    """The public prefix of a well-formed token, None for anything else."""
    m = _TOKEN.match(token or "")
    return m.group(1) if m else None


def new_secret(nbytes: int = 32) -> str:
    """A random URL-safe string (session ids, CSRF tokens)."""
    return secrets.token_urlsafe(nbytes)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two secrets (False when either is missing)."""
    if not a or not b:
        return False
    return secrets.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, None: 86400}
MAX_DURATION_DAYS = 3650  # ten years: longer is "never expires", which is said by giving no expiry


def parse_duration(text: str) -> float:
    """Seconds in ``"30d"``, ``"12h"``, ``"90m"``, ``"2w"`` or a bare number of days, at most
    :data:`MAX_DURATION_DAYS`."""
    from vitrine.core.errors import VitrineError

    m = _DURATION.match(str(text)[:64])
    if not m or float(m.group(1)) <= 0:
        raise VitrineError(f"cannot read the duration {str(text)[:64]!r}", hint="write e.g. 30d, 12h, 90m or 2w")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not seconds <= MAX_DURATION_DAYS * 86400:  # also inf and nan
        raise VitrineError(
            f"the duration {str(text)[:64]!r} is longer than {MAX_DURATION_DAYS} days",
            hint="give a shorter lifetime (e.g. 52w), or none for a token that never expires",
        )
    return seconds
