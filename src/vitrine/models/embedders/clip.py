"""CLIP embedders (open_clip): one ``joint`` space where text and images meet.

Two models register here at import time:

* ``clip-vit-b-32`` -- open_clip ``ViT-B-32``; pretrained tag ``openai`` by default, or
  ``laion2b_s34b_b79k`` (any open_clip tag of that architecture works) chosen with
  ``VITRINE_CLIP_PRETRAINED`` or the loader's ``pretrained=`` argument;
* ``clip-multilingual`` -- open_clip ``xlm-roberta-base-ViT-B-32`` / ``laion5b_s13b_b90k``, whose text
  tower and tokenizer are XLM-RoBERTa (French and ~100 other languages). Its text tower config
  and tokenizer also come from the hub (``FacebookAI/xlm-roberta-base``).

Weights are looked for in this order (see :mod:`vitrine.weights.resolve`): ``--weights PATH`` or
``VITRINE_WEIGHTS_<NAME>``, the Hugging Face cache, a download when the hub answers. Nothing here
touches the network unless a download is actually needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vitrine.core.errors import ModelError
from vitrine.models.base import ModelCard, Spaces, l2_normalize
from vitrine.models.preprocess import limit_aspect
from vitrine.models.registry import RANDOM_SUFFIX, ModelSpec, register
from vitrine.weights import hf, network
from vitrine.weights.local import OFFLINE_MODEL, local_weights_hint, local_weights_override, weights_env_var
from vitrine.weights.resolve import resolve
from vitrine.weights.spec import Availability, WeightsSpec

PRETRAINED_ENV = "VITRINE_CLIP_PRETRAINED"

# open_clip's file names on the hub, in the order open_clip itself tries them
OPEN_CLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_PREFERRED_IN_DIR = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
)
# files a Hugging Face text tower (config) and its fast tokenizer need
TEXT_TOWER_FILES = ("config.json", "tokenizer.json")


# --------------------------------------------------------------------------------------------
# the embedder


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _output_dim(model, preprocess) -> int:
    dim = getattr(getattr(model, "visual", None), "output_dim", None)
    if isinstance(dim, int) and dim > 0:
        return dim
    proj = getattr(model, "text_projection", None)
    if proj is not None and hasattr(proj, "shape") and len(proj.shape) == 2:
        return int(proj.shape[1])
    # last resort: run one blank image through the model
    import torch

    x = preprocess(Image.new("RGB", (32, 32))).unsqueeze(0)
    param = next(model.parameters())
    with torch.inference_mode():
        return int(model.encode_image(x.to(param.device)).shape[-1])


class OpenClipEmbedder:
    """An open_clip model behind vitrine's :class:`~vitrine.models.base.Embedder` protocol."""

    def __init__(
        self,
        name: str,
        model,
        preprocess: Callable,
        tokenizer: Callable,
        device: str | None = None,
        batch_size: int = 32,
        text_batch_size: int = 256,
        info: dict | None = None,
    ):
        self.name = name
        self.device = str(device or default_device())
        self.model = model.to(self.device).eval()
        self._preprocess = preprocess
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.text_batch_size = text_batch_size
        self.info = dict(info or {})
        dim = _output_dim(self.model, preprocess)
        self.spaces = Spaces(
            dims={"joint": dim},
            text_space="joint",
            image_space="joint",
            extra={
                "family": "open_clip",
                **{k: v for k, v in self.info.items() if k in ("arch", "pretrained")},
            },
        )

    @classmethod
    def from_open_clip(
        cls, name: str, model, preprocess: Callable, tokenizer: Callable, device: str | None = None, **kw
    ) -> OpenClipEmbedder:
        """Wrap an already-built open_clip model (e.g. random weights in tests and benchmarks)."""
        return cls(name, model, preprocess, tokenizer, device=device, **kw)

    @property
    def dim(self) -> int:
        return self.spaces.dims["joint"]

    def _autocast(self):
        import contextlib

        import torch

        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def preprocess(self, image: Image.Image):
        if image.mode != "RGB":
            image = image.convert("RGB")
        # aspect ratio bounded first: open_clip resizes the shorter side to 224 keeping it
        return self._preprocess(limit_aspect(image))

    def embed_batch(self, batch) -> dict[str, np.ndarray]:
        import torch

        if not isinstance(batch, torch.Tensor):
            batch = torch.stack(list(batch))
        if batch.ndim == 3:
            batch = batch.unsqueeze(0)
        if batch.shape[0] == 0:
            return {"joint": np.zeros((0, self.dim), dtype=np.float32)}
        with torch.inference_mode(), self._autocast():
            feats = self.model.encode_image(batch.to(self.device, non_blocking=True))
        return {"joint": l2_normalize(feats.float().cpu().numpy())}

    def image_tower(self):
        """The image tower for the CPU runtimes (:mod:`~vitrine.models.embedders.image_runtime`), or
        None on a GPU (torch is the GPU path) or when the preprocessing cannot be mirrored."""
        from vitrine.models.embedders.image_runtime import ImageTower, array_transform
        from vitrine.runtime.cache import file_hash, state_hash

        if not self.device.startswith("cpu"):
            return None
        try:
            transform = array_transform(self._preprocess)
        except ValueError:
            return None
        weights = self.info.get("weights")
        if weights and Path(weights).is_file():
            identity = f"{file_hash(weights)}-{self.info.get('arch')}-{self.info.get('pretrained')}"
        else:  # random or built in memory: the tensors themselves
            identity = state_hash(self.model.visual.state_dict())
        return ImageTower(
            name=self.name,  # "?weights=random" kept: its files and choices are its own
            module=self.model.visual,
            output_names=["joint"],
            weights_hash=identity,
            transform=transform,
            postprocess=lambda outputs: {"joint": l2_normalize(outputs[0])},
            transformer=True,
            batch_size=self.batch_size,
        )

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode(), self._autocast():
            for i in range(0, len(texts), self.text_batch_size):
                tokens = self.tokenizer(texts[i : i + self.text_batch_size])
                feats = self.model.encode_text(tokens.to(self.device))
                out.append(feats.float().cpu().numpy())
        return l2_normalize(np.concatenate(out, axis=0))

    def export_text_runtime(self) -> dict:
        """Export the text tower to ONNX once per weights (:mod:`.text_runtime`); the record a project
        keeps to find it. Raises when this model's text side cannot be exported."""
        from vitrine.models.embedders import text_runtime
        from vitrine.runtime.cache import files_hash

        why = text_runtime.clip_exportable(self.model, self.tokenizer)
        if why:  # before hashing the weights: a multilingual model's text tower stays on torch
            raise text_runtime.NotExportable(why)
        weights = self.info.get("weights")
        files = [weights] if weights and Path(weights).is_file() else []
        identity = files_hash(files) if files else text_runtime.clip_state_hash(self.model)
        folder, _ = text_runtime.export_folder(
            self.name,
            identity,
            {"kind": "clip", "arch": self.info.get("arch"), "precision": "chosen"},
            lambda tmp: text_runtime.export_clip_text(self.model, self.tokenizer, tmp, space="joint"),
        )
        return text_runtime.record(folder, files)

    def __repr__(self) -> str:
        return f"OpenClipEmbedder({self.name!r}, dim={self.dim}, device={self.device!r})"


# --------------------------------------------------------------------------------------------
# variants: what to build, and where its weights come from


@dataclass(frozen=True)
class ClipVariant:
    """A registered CLIP model: an open_clip architecture plus pretrained tags.

    ``hub_files`` maps a tag to ``(repo_id, candidate file names)``; tags missing from it are looked
    up in open_clip's pretrained table. ``text_repos`` are hub repos holding the config and
    tokenizer of a Hugging Face text tower (first one is downloaded from; all are looked for in
    the cache).
    """

    name: str
    arch: str
    default_pretrained: str
    card: ModelCard
    pretrained_env: str | None = PRETRAINED_ENV
    text_repos: tuple[str, ...] = ()
    hub_files: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    size_hint: str = ""

    @property
    def text_env(self) -> str:
        return weights_env_var(self.name + "-text")


def _clean_tag(tag: str) -> str:
    return tag.strip().lower().replace("-", "_")


def resolve_pretrained(variant: ClipVariant, pretrained: str | None = None) -> str:
    """Tag to use: the ``pretrained`` argument, else the variant's env var, else its default."""
    tag = pretrained
    if not tag and variant.pretrained_env:
        tag = os.environ.get(variant.pretrained_env, "").strip() or None
    tag = _clean_tag(tag or variant.default_pretrained)
    if tag in variant.hub_files:
        return tag
    import open_clip

    if not open_clip.get_pretrained_cfg(variant.arch, tag):
        known = sorted(set(variant.hub_files) | set(open_clip.list_pretrained_tags_by_model(variant.arch)))
        raise ModelError(
            f"model {variant.name!r}: unknown pretrained tag {tag!r} for open_clip {variant.arch}",
            hint=f"choose one of: {', '.join(known) or 'none'}"
            + (f" (set {variant.pretrained_env})" if variant.pretrained_env else ""),
        )
    return tag


def pretrained_cfg(variant: ClipVariant, tag: str) -> dict:
    import open_clip

    return dict(open_clip.get_pretrained_cfg(variant.arch, tag) or {})


def hub_location(variant: ClipVariant, tag: str) -> tuple[str, tuple[str, ...]]:
    """``(repo_id, candidate file names)`` of the weights for ``tag``, as open_clip resolves them."""
    if tag in variant.hub_files:
        repo, names = variant.hub_files[tag]
        return repo, tuple(names)
    hf_hub = pretrained_cfg(variant, tag).get("hf_hub", "")
    if not hf_hub:
        raise ModelError(
            f"model {variant.name!r}: pretrained tag {tag!r} has no Hugging Face hub location",
            hint=local_weights_hint(variant.name),
        )
    repo, filename = os.path.split(hf_hub)
    if not filename:
        return repo, OPEN_CLIP_WEIGHT_FILES
    if filename.endswith((".bin", ".pth")):
        return repo, (filename[:-4] + ".safetensors", filename)
    return repo, (filename,)


def _checkpoint_in(path: Path) -> Path:
    """A local override may be a file, or a folder holding one checkpoint (e.g. a hub snapshot)."""
    if path.is_file():
        return path
    for name in _PREFERRED_IN_DIR:
        if (path / name).is_file():
            return path / name
    found = sorted(p for ext in ("*.safetensors", "*.bin", "*.pth", "*.pt") for p in path.glob(ext))
    if len(found) == 1:
        return found[0]
    raise ModelError(
        f"no single weights file found in folder {path}"
        + (f" (found {', '.join(p.name for p in found)})" if found else ""),
        hint="pass the weights file itself with --weights PATH",
    )


# -- text tower (multilingual) --------------------------------------------------------------


def _text_dir_cached(variant: ClipVariant) -> Path | None:
    for repo in variant.text_repos:
        first = hf.hf_cached_file(repo, TEXT_TOWER_FILES[0])
        if first is not None and all((first.parent / f).is_file() for f in TEXT_TOWER_FILES):
            return first.parent
    return None


def _text_dir_override(variant: ClipVariant) -> Path | None:
    if not variant.text_repos:
        return None
    path = local_weights_override(variant.name + "-text")
    if path is None:
        return None
    missing = [f for f in TEXT_TOWER_FILES if not (path / f).is_file()]
    if missing:
        raise ModelError(
            f"model {variant.name!r}: {variant.text_env} must be a folder with "
            f"{', '.join(TEXT_TOWER_FILES)}; {path} lacks {', '.join(missing)}",
            hint=f"copy the files of the {variant.text_repos[0]} hub repo there",
        )
    return path


def _text_unavailable(variant: ClipVariant) -> ModelError:
    err = hf.hub_unreachable_error(
        variant.name, f"the {variant.text_repos[0]} text config and tokenizer ({', '.join(TEXT_TOWER_FILES)})"
    )
    err.hint = (
        f"{err.hint}; for the tokenizer, set {variant.text_env} to a folder holding "
        f"{', '.join(TEXT_TOWER_FILES)} of {variant.text_repos[0]}"
    )
    return err


def resolve_text_dir(variant: ClipVariant) -> Path | None:
    """Local folder with the text tower config and tokenizer (downloading them if needed)."""
    if not variant.text_repos:
        return None
    found = _text_dir_override(variant) or _text_dir_cached(variant)
    if found is not None:
        return found
    if not hf.hub_reachable():
        raise _text_unavailable(variant)
    repo = variant.text_repos[0]
    paths = [hf.download_hf_file(repo, f, model_name=variant.name) for f in TEXT_TOWER_FILES]
    if len({p.parent for p in paths}) != 1:
        raise ModelError(f"model {variant.name!r}: the files of {repo} landed in different cache snapshots")
    return paths[0].parent


# -- availability ---------------------------------------------------------------------------


def availability(
    variant: ClipVariant, weights: str | None = None, probe_hub: bool = False, pretrained: str | None = None
) -> Availability:
    """Whether the weights (and text tower files) can be had, without loading anything.

    With ``probe_hub=False`` the network is never touched: what is neither local nor cached is
    reported as not available ("hub not probed").
    """
    try:
        tag = resolve_pretrained(variant, pretrained)
        local = local_weights_override(variant.name, weights)
        text_dir = _text_dir_override(variant) if variant.text_repos else None
        repo, names = hub_location(variant, tag) if local is None else ("", ())
    except ModelError as e:
        return Availability(False, "unavailable", e.message)

    needs: list[str] = []  # what would have to be downloaded
    if local is not None:
        where, detail = "local", f"weights file {local}"
        needs_weights = False
    else:
        cached = hf.hf_cached_file(repo, names)
        if cached is not None:
            where, detail, needs_weights = (
                "cached",
                f"{tag} weights in the Hugging Face cache ({cached})",
                False,
            )
        else:
            where, detail, needs_weights = "downloadable", f"{tag} weights from {repo}", True
            needs.append(f"{tag} weights ({repo}{', ' + variant.size_hint if variant.size_hint else ''})")

    if variant.text_repos:
        text_dir = text_dir or _text_dir_cached(variant)
        if text_dir is None:
            needs.append(f"{variant.text_repos[0]} tokenizer and text config")
        else:
            detail += f"; tokenizer and text config in {text_dir}"

    if not needs:
        return Availability(True, where, detail)
    missing = " and ".join(needs)
    if not probe_hub:
        return Availability(False, "unavailable", f"{missing}: not on disk or in the cache; hub not probed")
    if hf.hub_reachable():
        return Availability(True, "downloadable", f"will download {missing} from {hf.hf_endpoint()}")
    why = "offline mode is on" if network.is_offline() else f"hub {hf.hf_endpoint()} unreachable"
    hint = f"set {weights_env_var(variant.name)}" if needs_weights else f"set {variant.text_env}"
    return Availability(False, "unavailable", f"{missing}: not on disk or in the cache, and {why} ({hint})")


# -- loading --------------------------------------------------------------------------------


def weights_spec(variant: ClipVariant, tag: str) -> WeightsSpec:
    """The weights of ``variant`` with pretrained tag ``tag``: a file of a Hugging Face repo."""
    repo, names = hub_location(variant, tag)
    return WeightsSpec(
        name=variant.name,
        source="hub",
        hf_repo=repo,
        files=names,
        label=f"{tag} weights ({repo})",
        license=variant.card.license,
    )


def resolve_weights(variant: ClipVariant, weights: str | None, tag: str) -> tuple[Path, str]:
    """``(checkpoint file, where)`` -- local override, then cache, then download."""
    path = local_weights_override(variant.name, weights)
    if path is not None:
        return _checkpoint_in(path), "local"
    found = resolve(weights_spec(variant, tag))
    return found.path, found.where


def build_open_clip(variant: ClipVariant, checkpoint: Path | None, tag: str, device: str, text_dir: Path | None = None):
    """``(model, eval preprocess, tokenizer)`` from a local checkpoint file; nothing is downloaded."""
    import open_clip

    pcfg = pretrained_cfg(variant, tag)
    kwargs: dict = {}
    for key, arg in (
        ("mean", "image_mean"),
        ("std", "image_std"),
        ("interpolation", "image_interpolation"),
        ("resize_mode", "image_resize_mode"),
    ):
        if pcfg.get(key) is not None:
            kwargs[arg] = pcfg[key]
    tokenizer = None
    if text_dir is not None:
        base = open_clip.get_model_config(variant.arch) or {}
        text_cfg = dict(base.get("text_cfg", {}))
        text_cfg.update(hf_model_name=str(text_dir), hf_tokenizer_name=str(text_dir), hf_model_pretrained=False)
        kwargs["text_cfg"] = text_cfg
        tokenizer = open_clip.tokenizer.HFTokenizer(
            str(text_dir),
            context_length=text_cfg.get("context_length", open_clip.tokenizer.DEFAULT_CONTEXT_LENGTH),
        )
    model, _, preprocess = open_clip.create_model_and_transforms(
        variant.arch,
        pretrained=str(checkpoint) if checkpoint is not None else None,
        device=device,
        precision="fp32",
        force_quick_gelu=bool(pcfg.get("quick_gelu", False)),
        pretrained_text=False,
        **kwargs,
    )
    if tokenizer is None:
        tokenizer = open_clip.get_tokenizer(variant.arch)
    return model, preprocess, tokenizer


def load(
    variant: ClipVariant,
    weights: str | None = None,
    device: str | None = None,
    pretrained: str | None = None,
    **_ignored,
) -> OpenClipEmbedder:
    tag = resolve_pretrained(variant, pretrained)
    checkpoint, where = resolve_weights(variant, weights, tag)
    text_dir = resolve_text_dir(variant)
    device = device or default_device()
    try:
        model, preprocess, tokenizer = build_open_clip(variant, checkpoint, tag, device, text_dir)
    except ModelError:
        raise
    except Exception as e:  # wrong architecture, truncated file, not a checkpoint...
        raise ModelError(
            f"model {variant.name!r}: could not load weights from {checkpoint}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}",
            hint=(
                f"the file must be an open_clip {variant.arch} checkpoint for pretrained tag {tag!r}"
                + (f" (set {variant.pretrained_env} to match it)" if variant.pretrained_env else "")
                + f"; or use `{OFFLINE_MODEL}`"
            ),
        ) from e
    info = {"arch": variant.arch, "pretrained": tag, "weights": str(checkpoint), "weights_from": where}
    return OpenClipEmbedder(variant.name, model, preprocess, tokenizer, device=device, info=info)


def load_random(variant: ClipVariant, device: str | None = None) -> OpenClipEmbedder:
    """The variant's architecture, randomly initialised (``<name>?weights=random``): no weights
    file is read or downloaded (a multilingual text tower still needs its tokenizer files)."""
    tag = _clean_tag(variant.default_pretrained)
    text_dir = resolve_text_dir(variant)
    device = device or default_device()
    model, preprocess, tokenizer = build_open_clip(variant, None, tag, device, text_dir)
    info = {"arch": variant.arch, "pretrained": "random", "weights_from": "random"}
    return OpenClipEmbedder(f"{variant.name}{RANDOM_SUFFIX}", model, preprocess, tokenizer, device=device, info=info)


def make_spec(variant: ClipVariant) -> ModelSpec:
    def _loader(weights=None, device=None, **kw):
        return load(variant, weights=weights, device=device, **kw)

    def _random(device=None):
        return load_random(variant, device=device)

    def _availability(weights=None, probe_hub=False, **kw):
        return availability(variant, weights=weights, probe_hub=probe_hub, **kw)

    return ModelSpec(
        name=variant.name,
        task="embedding",
        source="hub",
        card=variant.card,
        loader=_loader,
        availability=_availability,
        random_loader=_random,
    )


def register_variant(variant: ClipVariant, replace: bool = False) -> ModelSpec:
    spec = register(make_spec(variant), replace=replace)
    VARIANTS[variant.name] = variant
    return spec


# --------------------------------------------------------------------------------------------
# built-in models

VARIANTS: dict[str, ClipVariant] = {}

_CLIP_REFS = (
    "Radford et al. 2021, Learning Transferable Visual Models From Natural Language Supervision "
    "(arXiv:2103.00020); OpenCLIP, Cherti et al. 2023 (arXiv:2212.07143), "
    "https://github.com/mlfoundations/open_clip"
)

CLIP_VIT_B_32 = ClipVariant(
    name="clip-vit-b-32",
    arch="ViT-B-32",
    default_pretrained="openai",
    size_hint="about 600 MB",
    card=ModelCard(
        summary="CLIP ViT-B/32 (open_clip): text and images in one 512-d space; English text queries.",
        license="code MIT (open_clip); weights MIT (OpenAI CLIP) or MIT (LAION laion2b_s34b_b79k)",
        languages=("en",),
        reference=_CLIP_REFS,
        notes=(
            f"pretrained tag 'openai' by default; set {PRETRAINED_ENV}=laion2b_s34b_b79k for the LAION-2B "
            "weights (the tag must match a local weights file). About 600 MB downloaded once from the "
            "Hugging Face hub, or point at a local file with --weights PATH / VITRINE_WEIGHTS_CLIP_VIT_B_32. "
            "LAION weights are released mainly for research; check their model card before commercial use."
        ),
    ),
)

CLIP_MULTILINGUAL = ClipVariant(
    name="clip-multilingual",
    arch="xlm-roberta-base-ViT-B-32",
    default_pretrained="laion5b_s13b_b90k",
    pretrained_env=None,
    text_repos=("FacebookAI/xlm-roberta-base", "xlm-roberta-base"),
    size_hint="about 1.5 GB",
    card=ModelCard(
        summary="Multilingual CLIP (open_clip xlm-roberta-base ViT-B/32, LAION-5B): text queries in French, "
        "English and ~100 other languages; 512-d joint space.",
        license="code MIT (open_clip); weights MIT (LAION); XLM-RoBERTa tokenizer MIT",
        languages=("en", "fr", "de", "es", "it", "pt", "nl", "pl", "ru", "ar", "zh", "ja", "ko", "hi", "tr"),
        reference=_CLIP_REFS + "; Conneau et al. 2020, XLM-RoBERTa (arXiv:1911.02116)",
        notes=(
            "weights (about 1.5 GB) from laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k; the text "
            "tower config and tokenizer (config.json, tokenizer.json) come from FacebookAI/xlm-roberta-base, "
            "so availability needs both in the Hugging Face cache or a reachable hub. Offline: "
            "VITRINE_WEIGHTS_CLIP_MULTILINGUAL for the weights and VITRINE_WEIGHTS_CLIP_MULTILINGUAL_TEXT "
            "for a folder holding the tokenizer files."
        ),
    ),
)

for _v in (CLIP_VIT_B_32, CLIP_MULTILINGUAL):
    register_variant(_v, replace=True)
