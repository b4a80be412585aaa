"""Login rate limiting, without a lock-out anyone can trigger.

Failures are counted in a sliding window (``VITRINE_LOGIN_WINDOW_SECONDS``, 300 s) per key:

* per (client address, user name): ``VITRINE_LOGIN_MAX_FAILURES`` (5) failures block that name
  *from that address* only. A known user cannot be locked out by someone else: their own address
  still signs in (a per-name lock would let anyone block anyone by guessing five times).
* per client address: ``VITRINE_LOGIN_MAX_FAILURES_PER_ADDRESS`` (20) failures block the address
  for every name (one client spraying passwords over many accounts).
* per user name, from all addresses together: no block, a slow-down. Each failure beyond the
  limit adds half a second (at most 5 s) before the answer to every attempt at that name, so a
  guesser spread over many addresses is slowed while the owner still signs in.

The client address is the peer of the connection, or the one a configured trusted proxy forwards
(:mod:`vitrine.server.security`, ``VITRINE_TRUSTED_PROXIES``). A blocked key answers with the
seconds until its oldest failure leaves the window (for ``Retry-After``).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable

SLOWDOWN_STEP = 0.5  # seconds per failure over the limit, for one name from all addresses
SLOWDOWN_MAX = 5.0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


class LoginLimiter:
    def __init__(
        self,
        max_failures: int | None = None,
        window_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_per_address: int | None = None,
    ):
        self.max_failures = max_failures or _env_int("VITRINE_LOGIN_MAX_FAILURES", 5)
        self.window = window_seconds or _env_int("VITRINE_LOGIN_WINDOW_SECONDS", 300)
        self.max_per_address = max_per_address or _env_int(
            "VITRINE_LOGIN_MAX_FAILURES_PER_ADDRESS", 4 * self.max_failures
        )
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _name(name: str) -> str:
        return (name or "").strip().lower()

    def keys(self, name: str, address: str | None) -> list[tuple[str, int | None]]:
        """``(key, limit)`` counted for an attempt; a limit of None only slows down."""
        addr = address or "?"
        out: list[tuple[str, int | None]] = [(f"pair:{addr}|{self._name(name)}", self.max_failures)]
        if address:
            out.append((f"addr:{address}", self.max_per_address))
        out.append((f"user:{self._name(name)}", None))
        return out

    def _prune(self, key: str, now: float) -> deque[float] | None:
        q = self._failures.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q

    def retry_after(self, name: str, address: str | None) -> float:
        """Seconds to wait before another attempt is allowed (0 when allowed now)."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key, limit in self.keys(name, address):
                q = self._prune(key, now)
                if limit is not None and q is not None and len(q) >= limit:
                    wait = max(wait, q[0] + self.window - now)
        return wait

    def slowdown(self, name: str) -> float:
        """Seconds to wait before checking a password for ``name``: grows with the failures at that
        name from all addresses beyond the limit (a distributed guesser), never a block."""
        now = self.clock()
        with self._lock:
            q = self._prune(f"user:{self._name(name)}", now)
            over = (len(q) - self.max_failures + 1) if q is not None else 0
        return min(SLOWDOWN_MAX, max(0, over) * SLOWDOWN_STEP)

    def failure(self, name: str, address: str | None) -> None:
        now = self.clock()
        with self._lock:
            for key, _limit in self.keys(name, address):
                self._prune(key, now)
                self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > 100_000:  # bounded memory under a spray of names
                for key in list(self._failures)[:50_000]:
                    self._failures.pop(key, None)

    def success(self, name: str, address: str | None) -> None:
        """A good password clears that name's failures from that address (not the address's own)."""
        with self._lock:
            self._failures.pop(self.keys(name, address)[0][0], None)
