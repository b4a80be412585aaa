"""The allocator tuning of batch runs: on by default on glibc, off when the user tuned malloc."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vitrine.core import allocator

PROBE = "from vitrine.core.allocator import keep_batch_memory as k; print(k(), k())"


def _probe(**env) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != allocator.TUNING_ENV}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.mark.skipif(allocator._libc() is None, reason="not glibc")
def test_batch_memory_is_kept_once_per_process_unless_told_otherwise():
    assert _probe() == "True True"
    assert _probe(**{allocator.TUNING_ENV: "0"}) == "False False"
    assert _probe(MALLOC_MMAP_THRESHOLD_="1048576") == "False False"  # the user's own setting stands
    allocator.give_back()  # harmless at any time
