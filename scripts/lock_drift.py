"""Print how the packages installed in this environment differ from the lock.

`make test-latest` runs it after installing the newest releases the ranges in pyproject.toml allow,
so that a failing run points at the packages that moved. Exit status 0 either way: drift is news,
not an error.

    python scripts/lock_drift.py requirements/lock.txt
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


def locked_versions(path: str) -> dict[str, str]:
    """name -> pinned version, for the lines of the lock whose markers match this interpreter."""
    pins: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            text = line.split(" #", 1)[0].strip()
            if not text or text.startswith(("#", "-")):
                continue
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None and not req.marker.evaluate():
                continue
            exact = [s.version for s in req.specifier if s.operator == "=="]
            if exact:
                pins[canonicalize_name(req.name)] = exact[0]
    return pins


def main(lock: str) -> int:
    pins = locked_versions(lock)
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    moved = sorted(
        (name, pins[name], installed[name]) for name in pins if name in installed and installed[name] != pins[name]
    )
    new = sorted(name for name in installed if name not in pins and name not in ("pip", "vitrine", "setuptools"))
    if not moved and not new:
        print(f"every installed package is at its version in {lock}")
        return 0
    width = max([len(n) for n, _, _ in moved] + [len(n) for n in new] + [7])
    print(f"{'package':<{width}}  {'locked':<14}  installed now")
    for name, locked, now in moved:
        print(f"{name:<{width}}  {locked:<14}  {now}")
    for name in new:
        print(f"{name:<{width}}  {'(not locked)':<14}  {installed[name]}")
    print(f"{len(moved)} package(s) differ from {lock}, {len(new)} not in it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "requirements/lock.txt"))
