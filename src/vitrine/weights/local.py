"""Weights on disk that the user points at: ``--weights PATH`` or ``VITRINE_WEIGHTS_<NAME>``.

The first step of every lookup (:mod:`vitrine.weights.resolve`), and the hint every "weights not
found" error ends with (the offline model, or a local file).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vitrine.core.errors import ModelError

OFFLINE_MODEL = "offline-concepts"


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
