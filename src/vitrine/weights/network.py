"""Whether the network may be used, and the one reachability probe every weights source shares.

``is_offline()`` reads ``VITRINE_OFFLINE`` / ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` at call
time. ``reachable(url)`` sends one HEAD request in a daemon thread (slow DNS cannot hold the caller
longer than ``timeout``) and remembers the answer for about a minute, per URL: the Hugging Face
endpoint and download.pytorch.org are probed the same way.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request

_REACHABLE_TTL_S = 60.0
_TRUE = {"1", "true", "yes", "on", "y"}

_reachable_cache: dict[str, tuple[float, bool]] = {}
_reachable_lock = threading.Lock()


def is_offline() -> bool:
    """True when the user switched the network off (read at call time, not at import)."""
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE
        for v in ("VITRINE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _probe(url: str, timeout: float) -> bool:
    req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "vitrine"})
    try:
        with urllib.request.urlopen(req, timeout=timeout):
            return True
    except urllib.error.HTTPError as e:  # the server answered: it is there
        return e.code < 500
    except Exception:
        return False


def reachable(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url``'s server answers a HEAD request within ``timeout``.

    False at once in offline mode. The answer is cached for about a minute.
    """
    if is_offline():
        return False
    now = time.monotonic()
    with _reachable_lock:
        hit = _reachable_cache.get(url)
        if hit is not None and now - hit[0] < _REACHABLE_TTL_S:
            return hit[1]

    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(_probe(url, timeout)), name="vitrine-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.1)
    ok = bool(result and result[0])
    with _reachable_lock:
        _reachable_cache[url] = (time.monotonic(), ok)
    return ok


def clear_reachability_cache() -> None:
    with _reachable_lock:
        _reachable_cache.clear()
