from __future__ import annotations

from vitrine.auth.ratelimit import LoginLimiter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_block_the_name_from_that_address_until_the_window_passes():
    clock = Clock()
    limiter = LoginLimiter(max_failures=5, window_seconds=300, clock=clock)
    for _ in range(4):
        limiter.failure("alice", "10.0.0.1")
        assert limiter.retry_after("alice", "10.0.0.1") == 0
    limiter.failure("alice", "10.0.0.1")
    assert limiter.retry_after("alice", "10.0.0.1") == 300
    assert limiter.retry_after("alice", "10.0.0.2") == 0  # not from elsewhere: no lock-out by others
    assert limiter.retry_after("bob", "10.0.0.1") == 0  # nor for other names from that address
    clock.now += 120
    assert limiter.retry_after("alice", "10.0.0.1") == 180
    clock.now += 181
    assert limiter.retry_after("alice", "10.0.0.1") == 0


def test_an_address_spraying_many_names_is_blocked_for_all():
    clock = Clock()
    limiter = LoginLimiter(max_failures=5, window_seconds=60, clock=clock, max_per_address=3)
    for name in ("a", "b", "c"):
        limiter.failure(name, "10.0.0.9")
    assert limiter.retry_after("d", "10.0.0.9") == 60
    assert limiter.retry_after("d", "10.0.0.8") == 0


def test_success_clears_the_name_from_that_address_not_the_address():
    clock = Clock()
    limiter = LoginLimiter(max_failures=3, window_seconds=60, clock=clock, max_per_address=5)
    for _ in range(2):
        limiter.failure("alice", "10.0.0.9")
    limiter.success("alice", "10.0.0.9")
    for _ in range(2):
        limiter.failure("alice", "10.0.0.9")
    assert limiter.retry_after("alice", "10.0.0.9") == 0
    limiter.failure("bob", "10.0.0.9")
    assert limiter.retry_after("anyone", "10.0.0.9") > 0  # the address's 5 failures stay


def test_names_are_case_insensitive():
    limiter = LoginLimiter(max_failures=2, window_seconds=60, clock=Clock())
    limiter.failure("Alice", "10.0.0.1")
    limiter.failure("alice ", "10.0.0.1")
    assert limiter.retry_after("ALICE", "10.0.0.1") > 0
