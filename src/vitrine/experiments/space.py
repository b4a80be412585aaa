"""What a sweep tries: a search space over any option of a trainer's config, expanded into a fixed,
numbered list of trial configurations.

A space is a ``grid`` (every combination of the listed values) and optional ``random`` options
(sampled ``samples`` times per grid point from a distribution, with a seed), over a ``base`` config.
Values are typed by the trainer's config dataclass, so ``image_size=256,320`` gives ints and a typo
in an option name is an error naming the options there are. The list is the same every time it is
expanded: trial *i* always means the same configuration, which is what lets a sweep resume without
re-running a finished trial.

Distributions (``--random``): ``loguniform:LOW:HIGH``, ``uniform:LOW:HIGH``, ``randint:LOW:HIGH``
(HIGH included), ``choice:A,B,C``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vitrine.core.errors import VitrineError

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")
MAX_TRIALS = 1000


def config_fields(config_cls) -> dict[str, Any]:
    """{option: type} of a trainer's config dataclass."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def _base_types(tp) -> tuple[list, bool]:
    """The concrete types a hint allows, and whether None is one of them."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args, len(args) < len(typing.get_args(tp))
    return [tp], False


def coerce(option: str, raw: Any, tp) -> Any:
    """``raw`` (a string from the command line, or a YAML value) as the option's type."""
    allowed, optional = _base_types(tp)
    if optional and (raw is None or isinstance(raw, str) and raw.strip().lower() in ("none", "null")):
        return None  # JSON and YAML null too: a stored spec round-trips
    for t in allowed:
        origin = typing.get_origin(t) or t
        try:
            if origin is bool:
                if isinstance(raw, bool):
                    return raw
                text = str(raw).strip().lower()
                if text in ("true", "yes", "on", "1"):
                    return True
                if text in ("false", "no", "off", "0"):
                    return False
                continue
            if origin is int:
                if isinstance(raw, bool):
                    continue
                if isinstance(raw, float) and not raw.is_integer():
                    continue
                return int(float(raw)) if isinstance(raw, str) and "." in raw else int(raw)
            if origin is float:
                if isinstance(raw, bool):
                    continue
                return float(raw)
            if origin is str:
                return str(raw)
            if origin is list:
                (item,) = typing.get_args(t) or (str,)
                values = raw if isinstance(raw, list) else [v for v in str(raw).replace(";", " ").split()]
                return [coerce(option, v, item) for v in values]
        except (TypeError, ValueError):
            continue
    words = {bool: "true or false", int: "an integer", float: "a number", str: "text", list: "a list"}
    names = " or ".join(words.get(typing.get_origin(t) or t, str(t)) for t in allowed) + (
        " or none" if optional else ""
    )
    raise VitrineError(f"option {option}: {raw!r} is not {names}")


def _check_option(option: str, known: dict) -> None:
    if option not in known:
        close = [k for k in known if option.replace("-", "_") == k or option in k or k in option]
        raise VitrineError(
            f"unknown option {option!r} for this trainer",
            hint=("did you mean " + ", ".join(close[:3]) + "? " if close else "")
            + "options: "
            + ", ".join(sorted(known)),
        )


def parse_assignment(text: str) -> tuple[str, str]:
    """``"key=value"`` → (key, value), with the option's dashes read as underscores."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise VitrineError(f"cannot read {text!r}", hint="write OPTION=VALUES, e.g. image_size=256,320,416")
    return key.strip().replace("-", "_"), value.strip()


@dataclass(frozen=True)
class Distribution:
    kind: str
    args: tuple

    @classmethod
    def parse(cls, option: str, text: str) -> Distribution:
        kind, _, rest = str(text).partition(":")
        kind = kind.strip().lower()
        if kind not in DISTRIBUTIONS or not rest:
            raise VitrineError(
                f"option {option}: cannot read the distribution {text!r}",
                hint="write loguniform:1e-4:1e-2, uniform:0:0.3, randint:1:4 or choice:a,b,c",
            )
        if kind == "choice":
            values = tuple(v.strip() for v in rest.split(",") if v.strip())
            if not values:
                raise VitrineError(f"option {option}: choice needs at least one value")
            return cls(kind, values)
        parts = rest.split(":")
        try:
            low, high = (float(p) for p in parts)
        except ValueError:
            raise VitrineError(f"option {option}: {kind} needs LOW:HIGH numbers, not {rest!r}") from None
        if not low < high or (kind == "loguniform" and low <= 0):
            raise VitrineError(
                f"option {option}: {kind} needs LOW < HIGH" + (" and LOW > 0" if kind == "loguniform" else "")
            )
        return cls(kind, (low, high))

    def sample(self, rng: np.random.Generator) -> Any:
        if self.kind == "choice":
            return self.args[int(rng.integers(len(self.args)))]
        low, high = self.args
        if self.kind == "uniform":
            return float(rng.uniform(low, high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        return int(rng.integers(int(low), int(high) + 1))

    def describe(self) -> str:
        return f"{self.kind}:" + (
            ",".join(self.args) if self.kind == "choice" else ":".join(f"{a:g}" for a in self.args)
        )


@dataclass
class SearchSpace:
    """A base config, a grid and random options; :meth:`trials` expands it."""

    base: dict = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    random: dict[str, Distribution] = field(default_factory=dict)
    samples: int = 1  # random draws per grid point (1 when there is no random option)
    seed: int = 0

    @classmethod
    def build(
        cls,
        config_cls,
        base: dict | None = None,
        grid: dict[str, Any] | None = None,
        random: dict[str, str] | None = None,
        samples: int = 1,
        seed: int = 0,
    ) -> SearchSpace:
        """A space checked and typed against ``config_cls``. Grid values may be lists or
        comma-separated strings; random values are distribution strings."""
        known = config_fields(config_cls)
        typed_base = {}
        for k, v in (base or {}).items():
            _check_option(k, known)
            typed_base[k] = coerce(k, v, known[k])
        typed_grid: dict[str, list] = {}
        for k, values in (grid or {}).items():
            _check_option(k, known)
            if isinstance(values, str):
                values = [v.strip() for v in values.split(",") if v.strip()]
            values = values if isinstance(values, list) else [values]
            if not values:
                raise VitrineError(f"option {k}: the grid needs at least one value")
            typed = [coerce(k, v, known[k]) for v in values]
            typed_grid[k] = [v for i, v in enumerate(typed) if v not in typed[:i]]  # repeats once
        dists = {}
        for k, text in (random or {}).items():
            _check_option(k, known)
            if k in typed_grid:
                raise VitrineError(f"option {k} is both in the grid and random", hint="give it one or the other")
            dist = Distribution.parse(k, text)
            if dist.kind == "choice":
                dist = Distribution("choice", tuple(coerce(k, v, known[k]) for v in dist.args))
            dists[k] = dist
        samples = int(samples)
        if samples < 1:
            raise VitrineError("samples must be 1 or more")
        space = cls(typed_base, typed_grid, dists, samples if dists else 1, int(seed))
        n = space.size()
        if n > MAX_TRIALS:
            raise VitrineError(
                f"this space has {n} trials, more than {MAX_TRIALS}", hint="narrow the grid or take fewer samples"
            )
        for trial in space.trials():  # every combination must make a valid config
            try:
                config_cls.from_dict(trial)
            except VitrineError as exc:
                raise VitrineError(
                    f"the trial {_changed(trial, typed_base)} is not a valid config: {exc.message}", hint=exc.hint
                ) from None
        return space

    def size(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n * (self.samples if self.random else 1)

    def trials(self) -> list[dict]:
        """Every trial's full config (base, then the grid point, then the random draws), in order."""
        rng = np.random.default_rng(self.seed)
        keys = list(self.grid)
        out = []
        for point in itertools.product(*(self.grid[k] for k in keys)):
            for _ in range(self.samples if self.random else 1):
                config = {**self.base, **dict(zip(keys, point, strict=True))}
                for k, dist in self.random.items():
                    config[k] = dist.sample(rng)
                out.append(config)
        return out

    def varied(self) -> list[str]:
        """The options that change between trials."""
        return [*self.grid, *self.random]

    def to_dict(self) -> dict:
        return {
            "base": self.base,
            "grid": self.grid,
            "random": {k: d.describe() for k, d in self.random.items()},
            "samples": self.samples,
            "seed": self.seed,
        }


def _changed(trial: dict, base: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in trial.items() if base.get(k) != v) or "(the base config)"
