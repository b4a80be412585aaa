"""Login rate limiting: at most N failed attempts per window, per user name and per client address.

Kept in the server process (one sliding window per key). A blocked key answers with the seconds
until its oldest failure leaves the window (for ``Retry-After``).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable


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
    ):
        self.max_failures = max_failures or _env_int("VITRINE_LOGIN_MAX_FAILURES", 5)
        self.window = window_seconds or _env_int("VITRINE_LOGIN_WINDOW_SECONDS", 300)
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(name: str, address: str | None) -> list[str]:
        out = [f"user:{(name or '').strip().lower()}"]
        if address:
            out.append(f"addr:{address}")
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
            for key in self.keys(name, address):
                q = self._prune(key, now)
                if q is not None and len(q) >= self.max_failures:
                    wait = max(wait, q[0] + self.window - now)
        return wait

    def failure(self, name: str, address: str | None) -> None:
        now = self.clock()
        with self._lock:
            for key in self.keys(name, address):
                self._prune(key, now)
                self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > 100_000:  # bounded memory under a spray of names
                for key in list(self._failures)[:50_000]:
                    self._failures.pop(key, None)

    def success(self, name: str, address: str | None) -> None:
        """A good password clears that user name's failures (not the address's)."""
        with self._lock:
            self._failures.pop(self.keys(name, address)[0], None)
