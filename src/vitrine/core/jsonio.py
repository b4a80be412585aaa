"""Plain JSON in and out: :func:`jsonable` turns what the core returns (numpy numbers and arrays,
paths, tuples, sets, dataclasses; NaN and infinities) into JSON types, and :func:`read_json` reads
a JSON object from a file that may be missing or damaged. Writing goes through
:func:`vitrine.core.atomic.atomic_write_json`."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

_NATIVE = (str, int, bool, type(None))


def jsonable(value: Any) -> Any:
    """Plain JSON types from ``value``: dict keys become strings, NaN and infinities null, numpy
    scalars and arrays numbers and lists, paths POSIX strings, dataclasses dicts; any other object
    its ``str``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, _NATIVE):
        return value
    if isinstance(value, Path):
        return value.as_posix()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        return jsonable(tolist())
    return str(value)


def read_json(path: str | Path) -> dict | None:
    """The JSON object in ``path``; None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
