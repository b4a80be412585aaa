"""Joining a Ray cluster or starting a local Ray, with a precise error instead of a hang.

Shared by the sweeps (Ray Tune) and the distributed indexing (Ray Data). ``ray`` is imported only
inside the functions: importing this module costs nothing.

``ray.init(address=...)`` retries for minutes when nothing answers at the address, so a plain
``host:port`` is probed over TCP first (a few seconds) and an unreachable one fails at once. A
``ray://`` address (Ray Client) is refused by the callers that need a real driver (see
:func:`check_address`).
"""

from __future__ import annotations

import os
import socket

from vitrine.core.errors import VitrineError

LOCAL = "local"  # the address that means: start a Ray on this machine for the run
DEFAULT_OBJECT_STORE_BYTES = 256 * 1024 * 1024  # a local Ray's object store, unless told (Ray takes 30 % of RAM)


def check_address(address: str, what: str = "this command") -> None:
    """Refuse a Ray Client address (``ray://``): the caller runs a driver that must be a process of
    the cluster (it writes to local files batch by batch)."""
    if address.startswith("ray://"):
        raise VitrineError(
            f"{what} cannot run through Ray Client ({address}): it must join the cluster as a driver",
            hint="run it on a node of the cluster with the head's address (HOST:6379, or auto), "
            "or with `local` for a Ray on this machine",
        )


def check_reachable(address: str, seconds: float = 5.0) -> None:
    """Fail at once, and precisely, for a cluster address nothing answers at (``ray.init`` would
    retry for minutes). Only plain ``host:port`` addresses are probed."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            pass
    except OSError as exc:
        raise VitrineError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}",
            hint="start it (ray start --head), check the address (ray status), or unset RAY_ADDRESS for a local Ray",
        ) from None


def ray_init(
    address: str | None,
    cpus: int | None = None,
    object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES,
    use_env: bool = True,
    runtime_env: dict | None = None,
) -> bool:
    """Start a local Ray (or join the cluster at ``address``, else ``RAY_ADDRESS`` when ``use_env``);
    True when this call started or joined it (and the caller must ``ray.shutdown()``), False when
    this process was already connected."""
    import ray

    if ray.is_initialized():
        return False
    if address == LOCAL:
        address = None
    elif not address and use_env:
        address = os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
    common = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if runtime_env:
        common["runtime_env"] = runtime_env
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(num_cpus=cpus or os.cpu_count() or 1, object_store_memory=object_store_bytes, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        what = f"join the Ray cluster at {address}" if address else "start a local Ray"
        raise VitrineError(
            f"cannot {what}: {exc}",
            hint="start the cluster (ray start --head) and check its address (ray status), "
            "or use a local Ray (`--ray local`; unset RAY_ADDRESS)",
        ) from None
    return True
