from __future__ import annotations

import pytest
from argon2 import profiles

from vitrine.auth import passwords
from vitrine.core.errors import VitrineError


def test_hash_is_argon2id_and_verifies():
    h = passwords.hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert "correct horse" not in h
    assert passwords.verify_password(h, "correct horse")
    assert not passwords.verify_password(h, "correct horsE")
    assert not passwords.verify_password(h, "")


def test_same_password_hashes_differently():
    assert passwords.hash_password("same password") != passwords.hash_password("same password")


def test_default_profile_is_rfc9106_low_memory(cheap_hashes):
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)
    h = passwords.hash_password("a real password")
    assert "m=65536,t=3,p=4" in h
    assert passwords.verify_password(h, "a real password")
    passwords.use_profile(profiles.CHEAPEST)
    assert passwords.needs_rehash(h)  # parameters changed: the next login stores a new hash


@pytest.mark.parametrize("stored", [None, "", "not a hash", "$argon2id$v=19$m=8,t=1,p=1$broken"])
def test_damaged_or_missing_hash_never_verifies(stored):
    assert not passwords.verify_password(stored, "anything at all")


def test_short_password_is_refused():
    with pytest.raises(VitrineError, match="too short"):
        passwords.hash_password("short")
