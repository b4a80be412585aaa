"""Fixtures of the command-line tests that the tests of the packages beside them also have:
cheap password hashes (as in tests/auth) and Fashion-MNIST's presence (as in tests/data/detection)."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import profiles

from vitrine.auth import passwords
from vitrine.data.fashion_mnist import DEFAULT_SOURCE


@pytest.fixture(autouse=True)
def cheap_hashes():
    """argon2 with the cheapest parameters: the tests check behaviour, not cost."""
    passwords.use_profile(profiles.CHEAPEST)
    yield
    passwords.use_profile(profiles.RFC_9106_LOW_MEMORY)


@pytest.fixture(scope="session")
def fmnist_available() -> None:
    if not Path(DEFAULT_SOURCE, "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
