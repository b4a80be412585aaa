"""The one registry of models: name -> weights source, card, loader, availability.

Every model vitrine can use is a :class:`ModelSpec` registered here (embedders, classifiers and
detectors, under their ``task``). Like timm's ``_registry``, this module imports no model: the
model modules register themselves when :mod:`vitrine.models.catalog` imports them, which the
``vitrine.models`` package does first. Loaded models are cached per process, so a server loads
each model once.

Besides the models registered by name, *families* resolve names of a form: ``timm:<model name>``
(any timm image model as an image embedder) and ``hf:<repo id>`` (a Hugging Face vision encoder),
registered by their modules with :func:`register_family`. Any name may end in
``?weights=random``: the same architecture, randomly initialised, for tests and speed benchmarks
(its scores mean nothing: "random weights: speed only"), where the model offers it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vitrine.core.errors import ModelError, ModelUnavailable, VitrineError
from vitrine.weights.spec import WEIGHT_SOURCES, Availability, WeightsSpec

if TYPE_CHECKING:  # annotations only: at run time the registry imports nothing of vitrine.models
    from vitrine.models.base import Embedder, ModelCard


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str  # "embedding" | "classification" | "detection" | "segmentation"
    source: str  # one of WEIGHT_SOURCES: where the weights come from by default
    card: ModelCard
    loader: Callable[..., Embedder]  # loader(weights: str | None = None, device: str | None = None)
    availability: Callable[..., Availability]  # availability(weights: str | None = None, probe_hub: bool)
    weights: WeightsSpec | None = None  # the default pretrained weights, where one spec describes them
    # random_loader(device=None): the same architecture randomly initialised (``name?weights=random``)
    random_loader: Callable[..., Embedder] | None = None

    def __post_init__(self):
        if self.source not in WEIGHT_SOURCES:
            raise ValueError(f"model {self.name}: weights source must be one of {WEIGHT_SOURCES}")

    def check(self, probe_hub: bool = False, weights: str | None = None) -> Availability:
        """Whether this model can load here. A check that itself fails (a library that does not
        import, say) and a load that failed in this process both answer "unavailable" with the
        reason, so listings never promise a model that cannot run."""
        failed = _FAILED.get(self.name) if weights is None else None
        if failed is not None:
            return Availability(False, "unavailable", failed)
        with _LOCK:  # availability may import torch libraries: never at the same time as a load
            try:
                return self.availability(weights=weights, probe_hub=probe_hub)
            except Exception as e:  # noqa: BLE001 (an environment problem, reported as such)
                return Availability(False, "unavailable", _describe_failure(e))

    def describe(self, probe_hub: bool = False) -> dict:
        av = self.check(probe_hub=probe_hub)
        return {
            "name": self.name,
            "task": self.task,
            "weights_source": self.source,
            "available": av.ok,
            "availability": av.where,
            "availability_detail": av.detail,
            "summary": self.card.summary,
            "license": self.card.license,
            "languages": list(self.card.languages),
            "reference": self.card.reference,
            "notes": self.card.notes,
        }


_REGISTRY: dict[str, ModelSpec] = {}
_FAMILIES: dict[str, tuple[Callable[[str], ModelSpec], str]] = {}  # prefix -> (spec factory, what it names)
_RESOLVED: dict[str, ModelSpec] = {}  # names resolved by a family or with ?weights=random
RANDOM = "random"
RANDOM_SUFFIX = "?weights=random"
RANDOM_LABEL = "random weights: speed only"
_LOADED: dict[tuple, Embedder] = {}
_FAILED: dict[str, str] = {}  # model name -> why its default weights could not load in this process
# Held while loading a model or checking availability. Both may import torch, torchvision or
# open_clip for the first time, and two threads importing torchvision at once deadlock or see a
# half-initialised module.
_LOCK = threading.RLock()


def register(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def register_family(prefix: str, factory: Callable[[str], ModelSpec], names: str) -> None:
    """Resolve every name ``<prefix>:<rest>`` with ``factory(rest)`` (a ModelSpec named
    ``<prefix>:<rest>``; a ModelError for a ``rest`` it cannot name). ``names`` says what the
    family names, for hints (e.g. ``"timm:<model name>"``)."""
    _FAMILIES[prefix] = (factory, names)
    for key in [k for k in _RESOLVED if k.startswith(prefix + ":")]:
        _RESOLVED.pop(key, None)


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)
    _FAILED.pop(name, None)
    for key in [k for k in _RESOLVED if k == name or k.startswith(name + "?")]:
        _RESOLVED.pop(key, None)
    for key in [k for k in _LOADED if k[0] == name or k[0].startswith(name + "?")]:
        _LOADED.pop(key, None)


def split_name(name: str) -> tuple[str, dict[str, str]]:
    """``"timm:resnet18?weights=random"`` -> ``("timm:resnet18", {"weights": "random"})``. Only
    ``weights=random`` is an option; anything else after ``?`` is a ModelError."""
    base, sep, query = name.partition("?")
    options: dict[str, str] = {}
    if sep:
        for part in query.split("&"):
            key, eq, value = part.partition("=")
            if key.strip() != "weights" or not eq or value.strip() != RANDOM:
                raise ModelError(
                    f"model {name!r}: cannot read the option {part!r}",
                    hint=f"the one option is {RANDOM_SUFFIX} (a randomly initialised architecture: speed only)",
                )
            options["weights"] = RANDOM
    return base.strip(), options


def is_random(name: str) -> bool:
    """Whether ``name`` asks for random weights (``...?weights=random``): speed only."""
    try:
        return split_name(name)[1].get("weights") == RANDOM
    except ModelError:
        return False


def _unknown(name: str) -> ModelError:
    known = ", ".join(sorted(_REGISTRY)) or "none"
    families = "; ".join(names for _, names in _FAMILIES.values())
    return ModelError(
        f"unknown model {name!r}",
        hint=f"known models: {known} (see `vitrine models`)" + (f"; or by name: {families}" if families else ""),
    )


def _base_spec(base: str) -> ModelSpec:
    if base in _REGISTRY:
        return _REGISTRY[base]
    prefix, sep, rest = base.partition(":")
    if sep and prefix in _FAMILIES:
        if not rest.strip():
            raise ModelError(f"model {base!r} names no model after {prefix + ':'!r}", hint=_FAMILIES[prefix][1])
        return _FAMILIES[prefix][0](rest.strip())
    raise _unknown(base)


def _random_spec(spec: ModelSpec, name: str) -> ModelSpec:
    if spec.random_loader is None:
        raise ModelError(
            f"model {spec.name!r} has no random-weights variant",
            hint="random weights are for timm:<name>, hf:<repo id> and the CLIP models",
        )
    random_loader = spec.random_loader

    def loader(weights=None, device=None, **_):
        if weights:
            raise ModelError(f"model {name!r} takes no weights file: its weights are random")
        return random_loader(device=device)

    def availability(weights=None, probe_hub=False, **_):
        return Availability(True, RANDOM, RANDOM_LABEL)

    card = dataclasses.replace(
        spec.card,
        summary=f"{spec.card.summary} ({RANDOM_LABEL})",
        notes=f"{RANDOM_LABEL}: randomly initialised, so its scores mean nothing; use it to time the architecture.",
    )
    return ModelSpec(
        name=name, task=spec.task, source="local", card=card, loader=loader, availability=availability, weights=None
    )


def get(name: str) -> ModelSpec:
    """The spec of ``name``: a registered model, a family's name (``timm:...``, ``hf:...``), either
    with ``?weights=random``. Unknown: a ModelError listing what is known."""
    spec = _REGISTRY.get(name) or _RESOLVED.get(name)
    if spec is not None:
        return spec
    if not isinstance(name, str) or not name.strip():
        raise _unknown(str(name))
    base, options = split_name(name)
    spec = _base_spec(base)
    if options.get("weights") == RANDOM:
        spec = _random_spec(spec, f"{spec.name}{RANDOM_SUFFIX}")
    if spec.name not in _REGISTRY:
        _RESOLVED[spec.name] = spec
        _RESOLVED[name] = spec
    return spec


def list_models(task: str | None = None) -> list[ModelSpec]:
    return [s for s in _REGISTRY.values() if task is None or s.task == task]


def _describe_failure(e: BaseException) -> str:
    if isinstance(e, VitrineError):
        return e.message
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1]}" if text else type(e).__name__


def load(name: str, weights: str | None = None, device: str | None = None) -> Embedder:
    """Load (once per process) and return a model.

    Raises :class:`ModelError` with a hint; :class:`ModelUnavailable` (a 503 in the API) when the
    model cannot load in this environment, including any unexpected failure of its loader (a
    library of the wrong version, say): never a bare exception. A failure of the default weights is
    remembered, so that :meth:`ModelSpec.check` (``vitrine models``, the API's model lists) reports it.
    """
    spec = get(name)
    name = spec.name
    key = (name, weights, device)
    with _LOCK:
        model = _LOADED.get(key)
        if model is None:
            try:
                model = spec.loader(weights=weights, device=device)
            except ModelUnavailable as e:
                if weights is None:
                    _FAILED[name] = e.message
                raise
            except VitrineError:
                raise
            except Exception as e:  # noqa: BLE001 (reported with its cause, not as a traceback)
                reason = f"model {name!r} cannot load here: {_describe_failure(e)}"
                if weights is None:
                    _FAILED[name] = reason
                raise ModelUnavailable(reason, hint="`vitrine models` lists what works here") from e
            if weights is None:  # only the default weights' failure is what listings report
                _FAILED.pop(name, None)
            _LOADED[key] = model
        return model


def embedding_spec(name: str) -> ModelSpec:
    """The spec of embedding model ``name``, before anything loads: an unknown name fails with the
    known ones, a model of another task is refused."""
    spec = get(name)
    if spec.task != "embedding":
        raise VitrineError(
            f"model {name!r} is a {spec.task} model, not an embedding model",
            hint="`vitrine models` lists the embedding models",
        )
    return spec


def default_embedding_model(probe_hub: bool = True) -> tuple[str, str]:
    """The model a new project uses, and why: CLIP when its weights can be had, else offline."""
    clip_spec = get("clip-vit-b-32")
    av = clip_spec.check(probe_hub=probe_hub)
    if av.ok:
        detail = f" ({av.detail})" if av.detail else ""
        return clip_spec.name, f"clip-vit-b-32 weights are {av.where}{detail}"
    return "offline-concepts", f"clip-vit-b-32 is not available ({av.detail}); offline-concepts works offline"
