"""The Hugging Face hub as a weights source: its cache, its endpoint, and downloads from it.

Found without touching the network: ``hf_cached_file`` (``HF_HUB_CACHE`` / ``HF_HOME``, read now).
``hub_reachable`` asks the one probe of :mod:`vitrine.weights.network` about ``HF_ENDPOINT``;
``download_hf_file`` fails fast, with a hint naming the offline model and the local-weights options,
when the hub cannot be reached or offline mode is on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from vitrine.core.errors import ModelError, ModelUnavailable
from vitrine.weights.local import local_weights_hint
from vitrine.weights.network import is_offline, reachable

DEFAULT_HF_ENDPOINT = "https://huggingface.co"


def hub_unreachable_error(model_name: str | None, what: str) -> ModelError:
    """The error raised when ``what`` (weights, a tokenizer...) is neither on disk nor downloadable."""
    why = "offline mode is on (HF_HUB_OFFLINE / VITRINE_OFFLINE)" if is_offline() else "the hub is unreachable"
    subject = f"model {model_name!r}: " if model_name else ""
    return ModelError(
        f"{subject}{what} not found locally or in the Hugging Face cache, and {why} ({hf_endpoint()})",
        hint=local_weights_hint(model_name),
    )


# --------------------------------------------------------------------------------------------
# the cache


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
# downloads


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face endpoint (``HF_ENDPOINT``) answers within ``timeout`` (False at
    once in offline mode; the answer is cached for about a minute)."""
    return reachable(hf_endpoint(), timeout)


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
