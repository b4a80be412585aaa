"""Fixtures of the account tests: a migrated server database and an account store on it."""

from __future__ import annotations

import pytest
from argon2 import profiles

from vitrine.auth import passwords


@pytest.fixture(autouse=True)
def cheap_hashes():
    """argon2 with the cheapest parameters: the tests check behaviour, not cost."""
    passwords.use_profile(profiles.CHEAPEST)
    yield
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


@pytest.fixture
def store(db_engine):
    """An AuthStore on a fresh server database (SQLite and PostgreSQL: ``db_engine`` is
    parametrized over both), upgraded by the real Alembic migrations."""
    from vitrine.auth.service import AuthStore

    return AuthStore(db_engine)
