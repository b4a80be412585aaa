"""Where a model's weights come from: a local file, the Hugging Face cache, or a download.

Shared by every model whose weights live on a hub (CLIP today; classifiers and detectors later).
The order is always the same:

1. an explicit local path (``--weights PATH``, or the ``VITRINE_WEIGHTS_<NAME>`` environment
   variable), checked to exist;
2. the Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``), found without touching the network;
3. a download from the hub, only when it answers (``HF_HUB_OFFLINE`` / ``VITRINE_OFFLINE`` switch
   the network off entirely).

When none works, the error says so and names the way out: the offline model, or local weights.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from vitrine.errors import ModelError, ModelUnavailable

OFFLINE_MODEL = "offline-concepts"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
_REACHABLE_TTL_S = 60.0

_TRUE = {"1", "true", "yes", "on", "y"}

_reachable_cache: dict[str, tuple[float, bool]] = {}
_reachable_lock = threading.Lock()


# --------------------------------------------------------------------------------------------
# names and hints


def weights_env_var(model_name: str) -> str:
    """``clip-vit-b-32`` -> ``VITRINE_WEIGHTS_CLIP_VIT_B_32``."""
    return "VITRINE_WEIGHTS_" + re.sub(r"[^A-Za-z0-9]", "_", model_name).upper()


def local_weights_hint(model_name: str | None) -> str:
    """How to point vitrine at weights on disk (and at the offline model)."""
    env = weights_env_var(model_name) if model_name else "VITRINE_WEIGHTS_<MODEL>"
    return (
        f"use the model `{OFFLINE_MODEL}`, which works offline (`--model {OFFLINE_MODEL}`), or download "
        f"the weights on a connected machine and point at the file with `--weights PATH` or {env}=PATH"
    )


def hub_unreachable_error(model_name: str | None, what: str) -> ModelError:
    """The error raised when ``what`` (weights, a tokenizer...) is neither on disk nor downloadable."""
    why = "offline mode is on (HF_HUB_OFFLINE / VITRINE_OFFLINE)" if is_offline() else "the hub is unreachable"
    subject = f"model {model_name!r}: " if model_name else ""
    return ModelError(
        f"{subject}{what} not found locally or in the Hugging Face cache, and {why} ({hf_endpoint()})",
        hint=local_weights_hint(model_name),
    )


# --------------------------------------------------------------------------------------------
# 1. local override


def local_weights_override(model_name: str, weights: str | os.PathLike | None = None) -> Path | None:
    """The local weights path for ``model_name``, if the user gave one.

    An explicit ``weights`` argument wins over the ``VITRINE_WEIGHTS_<NAME>`` environment variable.
    A path that does not exist raises :class:`ModelError` naming it.
    """
    env = weights_env_var(model_name)
    if weights is not None and str(weights).strip():
        raw, origin = str(weights), "--weights"
    elif os.environ.get(env, "").strip():
        raw, origin = os.environ[env].strip(), env
    else:
        return None
    path = Path(os.path.expandvars(raw)).expanduser()
    if not path.exists():
        raise ModelError(
            f"weights for model {model_name!r} not found: {path} (given by {origin})",
            hint=(
                f"check the path, or unset {env} and drop --weights to use the Hugging Face cache "
                f"or a download; `{OFFLINE_MODEL}` works without any weights file"
            ),
        )
    return path


# --------------------------------------------------------------------------------------------
# 2. the Hugging Face cache


def is_offline() -> bool:
    """True when the user switched the network off (read at call time, not at import)."""
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE
        for v in ("VITRINE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")


def hf_cache_dir() -> Path:
    """The hub cache folder, resolved from the environment now (huggingface_hub reads it at import,
    so a later change of ``HF_HUB_CACHE`` / ``HF_HOME`` would otherwise be missed)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    if os.environ.get("HF_HOME"):
        home = Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = Path(xdg) / "huggingface"
    return home / "hub"


def _names(filename: str | Sequence[str]) -> list[str]:
    return [filename] if isinstance(filename, str) else list(filename)


def hf_cached_file(repo_id: str, filename: str | Sequence[str], revision: str | None = None) -> Path | None:
    """Path of ``filename`` of ``repo_id`` in the local hub cache, or None. Never touches the network.

    ``filename`` may be a list of candidates (e.g. safetensors first, then .bin): the first cached
    one is returned.
    """
    from huggingface_hub import try_to_load_from_cache

    for name in _names(filename):
        try:
            found = try_to_load_from_cache(repo_id, name, cache_dir=str(hf_cache_dir()), revision=revision)
        except Exception:  # invalid repo id or filename, unreadable cache...
            continue
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


# --------------------------------------------------------------------------------------------
# 3. the network


def _probe(url: str, timeout: float) -> bool:
    req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "vitrine"})
    try:
        with urllib.request.urlopen(req, timeout=timeout):
            return True
    except urllib.error.HTTPError as e:  # the server answered: the hub is there
        return e.code < 500
    except Exception:
        return False


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face endpoint (``HF_ENDPOINT``) answers a HEAD request within ``timeout``.

    False at once in offline mode. The answer is cached for about a minute. The probe runs in a
    daemon thread so that slow DNS resolution cannot hold the caller longer than ``timeout``.
    """
    if is_offline():
        return False
    endpoint = hf_endpoint()
    now = time.monotonic()
    with _reachable_lock:
        hit = _reachable_cache.get(endpoint)
        if hit is not None and now - hit[0] < _REACHABLE_TTL_S:
            return hit[1]

    result: list[bool] = []
    thread = threading.Thread(
        target=lambda: result.append(_probe(endpoint, timeout)), name="vitrine-hub-probe", daemon=True
    )
    thread.start()
    thread.join(timeout + 0.1)
    ok = bool(result and result[0])
    with _reachable_lock:
        _reachable_cache[endpoint] = (time.monotonic(), ok)
    return ok


def clear_reachability_cache() -> None:
    with _reachable_lock:
        _reachable_cache.clear()


def _is_network_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled | LocalEntryNotFoundError | ConnectionError | TimeoutError):
        return True
    name = type(exc).__name__
    return any(k in name for k in ("Connect", "Timeout", "Network", "Proxy", "SSL"))


def _sync_hf_offline_flag() -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import; make it follow the environment now
    (we only get here after checking that offline mode is off)."""
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = is_offline()


def download_hf_file(
    repo_id: str,
    filename: str | Sequence[str],
    model_name: str | None = None,
    revision: str | None = None,
) -> Path:
    """Download (or reuse from the cache) one file of a hub repository, with a progress bar.

    ``filename`` may be a list of candidates, tried in order; a candidate missing from the repo
    moves on to the next. A network failure raises :class:`ModelError` saying the hub is
    unreachable, with a hint naming ``offline-concepts`` and the local-weights options.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    names = _names(filename)
    cached = hf_cached_file(repo_id, names, revision=revision)
    if cached is not None:
        return cached
    what = f"{repo_id}/{names[0]}"
    if not hub_reachable():  # fail fast: hf_hub_download would retry with backoff for ~20 s
        raise hub_unreachable_error(model_name, what)
    _sync_hf_offline_flag()

    missing: list[str] = []
    for name in names:
        try:
            path = hf_hub_download(
                repo_id=repo_id,
                filename=name,
                revision=revision,
                cache_dir=str(hf_cache_dir()),
                endpoint=hf_endpoint(),
            )
            return Path(path)
        except RepositoryNotFoundError as e:
            raise ModelUnavailable(
                f"repository {repo_id!r} not found on the hub ({hf_endpoint()})",
                hint=local_weights_hint(model_name),
            ) from e
        except EntryNotFoundError as e:
            if _is_network_error(e):  # LocalEntryNotFoundError: not cached and no connection
                raise hub_unreachable_error(model_name, what) from e
            missing.append(name)
        except HfHubHTTPError as e:
            raise ModelUnavailable(
                f"downloading {repo_id}/{name} failed: {e}", hint=local_weights_hint(model_name)
            ) from e
        except Exception as e:
            if _is_network_error(e):
                raise hub_unreachable_error(model_name, what) from e
            raise ModelUnavailable(
                f"downloading {repo_id}/{name} failed: {type(e).__name__}: {e}",
                hint=local_weights_hint(model_name),
            ) from e
    raise ModelError(
        f"none of {', '.join(missing)} found in hub repository {repo_id!r}",
        hint=local_weights_hint(model_name),
    )
