"""Password hashing with argon2id (argon2-cffi, RFC 9106 low-memory profile by default).

Hashes carry their own parameters, so changing the profile later still verifies old hashes and
:func:`needs_rehash` says when to store a fresh one.
"""

from __future__ import annotations

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from vitrine.core.errors import VitrineError

MIN_LENGTH = 8
MAX_LENGTH = 1024

_hasher = PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)


def use_profile(parameters) -> None:
    """Use other argon2 parameters for new hashes (tests use ``argon2.profiles.CHEAPEST``)."""
    global _hasher
    _hasher = PasswordHasher.from_parameters(parameters)


def check_password_policy(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise VitrineError(
            f"the password is too short (at least {MIN_LENGTH} characters)", hint="choose a longer password"
        )
    if len(password) > MAX_LENGTH:
        raise VitrineError(f"the password is longer than {MAX_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    """An argon2id hash (``$argon2id$v=19$m=...``) of a password that meets the policy."""
    return _hasher.hash(check_password_policy(password))


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored_hash``; False for a mismatch, an empty or damaged hash."""
    if not stored_hash or not isinstance(password, str) or len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True


_DUMMY: str | None = None


def burn_time(password: str) -> None:
    """Verify against a throwaway hash: an unknown user name takes as long as a wrong password."""
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = _hasher.hash("vitrine-dummy-password")
    verify_password(_DUMMY, password)
