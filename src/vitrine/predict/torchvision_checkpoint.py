"""A torchvision detection checkpoint trained elsewhere (``.pt`` / ``.pth``), behind the same
:class:`~vitrine.models.detectors.torch_detector.TorchvisionDetector` as the zoo and vitrine's runs.

Three shapes of file are read:

- ``reference``: what torchvision's ``references/detection/train.py`` saves, a dict with ``model``
  (the state_dict), ``args`` (an ``argparse.Namespace``, or a dict in some forks: ``args.model`` is
  the builder's name), ``optimizer``, ``lr_scheduler``, ``epoch``;
- ``state_dict``: the network's weights alone (also under a ``state_dict`` or ``model`` key), whose
  builder the user names (``--arch``, a torchvision builder name);
- ``vitrine``: a detection run's own ``last.pt`` / ``best.pt``, which holds its config and classes.

Files are read with ``torch.load(weights_only=True)``: tensors and plain data, plus exactly one class,
``argparse.Namespace`` (the reference scripts' ``args``); anything else a file pickles (a whole
model object, a custom class) is refused, never executed. The network is rebuilt by torchvision's
builder without downloading anything, for the number of classes its head holds, and the weights are
loaded strictly (:mod:`vitrine.models.detectors.torchvision_arch`).

torchvision checkpoints name no classes (label 0 is the background, labels 1..K the classes). The
names come from ``classes`` (a file, one name a line: line 1 is label 1), else from the dataset the
model is scored on: its categories in id order when there are K of them, or by id when its largest
id is K (the reference scripts train on COCO's own ids, 91 classes); a reference checkpoint trained
on COCO (``args.dataset == "coco"``) run without a dataset gets COCO's names. Whatever was decided
is said in the detector's ``notes``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from vitrine.core.errors import ModelError
from vitrine.models.detectors import torchvision_arch as tva
from vitrine.models.detectors.torch_detector import TorchvisionDetector

SUFFIXES = (".pt", ".pth")
BACKGROUND_NAMES = ("__background__", "background")
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


class CheckpointDetector(TorchvisionDetector):
    """A :class:`TorchvisionDetector` rebuilt from a checkpoint file, with what a recorded run keeps
    of it: ``source_info`` (file format, builder, class count, where the class names came from),
    ``notes`` (the decisions made while loading) and ``input_size`` (the network's shorter side)."""

    def __init__(self, model, classes, name, task, device, *, source_info: dict, notes: list[str]):
        super().__init__(model, classes, name=name, task=task, device=device)
        self.source_info = source_info
        self.notes = list(notes)
        transform = getattr(getattr(model, "model", model), "transform", None)
        sizes = getattr(transform, "min_size", None)
        self.input_size = int(sizes[0]) if isinstance(sizes, Sequence) and sizes else None


def is_checkpoint_name(name: str) -> bool:
    """Whether a model name is a checkpoint file's (``.pt`` / ``.pth``)."""
    return str(name).lower().endswith(SUFFIXES)


def read_file(path: Path):
    """What ``path`` holds, read with ``weights_only`` (``argparse.Namespace`` allowed)."""
    import pickle

    import torch

    if not path.is_file():
        raise ModelError(f"checkpoint {path} not found", hint="give the path of a .pt / .pth file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED_GLOBAL.search(str(exc))
        if found is None and "weights only load failed" in str(exc).lower():
            raise ModelError(
                f"{path.name} pickles objects that torch.load(weights_only=True) refuses to build "
                f"({_first_line(exc)}); vitrine never runs code from a file",
                hint="save the network's weights instead: torch.save(model.state_dict(), 'model.pt')",
            ) from None
        if found is None:
            raise ModelError(
                f"{path.name} is not a PyTorch checkpoint ({_first_line(exc)})",
                hint="give a file saved by torch.save: a state_dict or torchvision's reference checkpoint",
            ) from None
        what = found.group(1)
        whole_model = what.startswith("torchvision.models.") or what.endswith(("Module", "RCNN", "Net"))
        raise ModelError(
            f"{path.name} pickles a {what} object, which vitrine does not load: checkpoints are read with "
            "torch.load(weights_only=True), which never runs code from a file (only argparse.Namespace, "
            "the reference scripts' args, is allowed besides tensors and plain data)",
            hint=(
                "save the network's weights instead: torch.save(model.state_dict(), 'model.pt'), then "
                "pass --arch with its torchvision builder name"
                if whole_model
                else "save the state_dict (and plain data) only"
            ),
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, ... for a bad file
        raise ModelError(
            f"{path.name} is not a PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)})",
            hint="give a file saved by torch.save: a state_dict or torchvision's reference checkpoint",
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _is_state_dict(value) -> bool:
    import torch

    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def classify(obj, path: Path) -> tuple[str, dict, dict]:
    """``(format, state_dict, extras)`` of what a file held: ``reference`` (extras: ``args`` as a
    dict, ``epoch``), ``state_dict`` or ``vitrine`` (extras: the whole checkpoint)."""
    if _is_state_dict(obj):
        return "state_dict", dict(obj), {}
    if not isinstance(obj, Mapping):
        raise ModelError(
            f"{path.name} holds a {type(obj).__name__}, not a detection checkpoint",
            hint="a state_dict (a dict of tensors) or a dict with 'model' and 'args' (torchvision's reference scripts)",
        )
    if obj.get("kind") in ("detection", "segmentation") and "config" in obj and _is_state_dict(obj.get("model")):
        return "vitrine", dict(obj["model"]), {"checkpoint": obj}
    if "kind" in obj and "config" in obj:
        raise ModelError(
            f"{path.name} is a vitrine {obj.get('kind')} checkpoint, not a detector's",
            hint="use a detection run's checkpoint",
        )
    args = obj.get("args")
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if _is_state_dict(obj.get("model")) and isinstance(args, Mapping) and isinstance(args.get("model"), str):
        extras = {"args": {str(k): v for k, v in args.items() if isinstance(v, str | int | float | bool | None)}}
        if isinstance(obj.get("epoch"), int):
            extras["epoch"] = obj["epoch"]
        return "reference", dict(obj["model"]), extras
    for key in ("model", "state_dict", "model_state_dict"):
        if _is_state_dict(obj.get(key)):
            return "state_dict", dict(obj[key]), {"key": key}
    keys = ", ".join(map(str, list(obj)[: tva.SHOWN]))
    raise ModelError(
        f"{path.name} holds a dict ({keys}) that is neither a state_dict (tensors only) nor a checkpoint "
        "with one under 'model' (torchvision's reference scripts) or 'state_dict'",
        hint="save the network's weights with torch.save(model.state_dict(), 'model.pt')",
    )


def read_classes_file(path: str | Path) -> list[str]:
    """The class names in ``path``, one a line (blank lines at the end are ignored)."""
    path = Path(path).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ModelError(f"classes file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read classes file {path}: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    for i, name in enumerate(names, start=1):
        if not name:
            raise ModelError(f"{path}: line {i} is blank", hint="one class name a line, line 1 for label 1")
    if not names:
        raise ModelError(f"{path} names no class", hint="one class name a line, line 1 for label 1")
    return names


def class_names(
    num_classes: int,
    *,
    classes: str | Path | Sequence[str] | None,
    categories: Sequence | None,
    source: str,
    coco: bool = False,
) -> tuple[list[int], dict[int, str], str, str]:
    """``(category ids of labels 1..K, {id: name}, where the names came from, note)`` for a head of
    ``num_classes`` (background included). ``categories``: the dataset's (objects with ``id`` and
    ``name``), when the model is scored on one."""
    from vitrine.models.detectors.coco_labels import COCO_CATEGORIES

    k = num_classes - 1
    labels = list(range(1, num_classes))
    if classes is not None:
        where = str(classes) if isinstance(classes, str | Path) else "the names given"
        names = read_classes_file(classes) if isinstance(classes, str | Path) else [str(c) for c in classes]
        if len(names) == num_classes and names[0].lower() in BACKGROUND_NAMES:
            names = names[1:]
        if len(names) != k:
            raise ModelError(
                f"{where} names {len(names)} class(es); {source}'s head predicts {k} besides the background "
                f"({num_classes} outputs)",
                hint=f"give {k} names, one a line: line 1 is label 1 (a first line __background__ is allowed)",
            )
        return labels, dict(zip(labels, names, strict=True)), "classes", f"class names from {where}"
    if categories:
        cats = sorted(categories, key=lambda c: int(c.id))
        if len(cats) == k:
            ids = [int(c.id) for c in cats]
            shown = ", ".join(f"{lab} = {c.name}" for lab, c in zip(labels, cats[:3], strict=False))
            note = (
                f"class names: the model's {k} labels taken as the dataset's {k} categories in id order "
                f"({shown}{', ...' if k > 3 else ''}); pass --classes if it was trained in another order"
            )
            return ids, {int(c.id): c.name for c in cats}, "dataset-order", note
        if int(cats[-1].id) == k:
            note = (
                f"class names: labels taken as the dataset's category ids (1..{k}), as torchvision's "
                f"reference scripts train on COCO-style ids; {k - len(cats)} label(s) name no category"
            )
            return labels, {int(c.id): c.name for c in cats}, "dataset-ids", note
        names = ", ".join(c.name for c in cats[: tva.SHOWN]) + (", ..." if len(cats) > tva.SHOWN else "")
        raise ModelError(
            f"{source}'s head predicts {k} class(es) besides the background; the dataset has {len(cats)} "
            f"categories ({names}, largest id {cats[-1].id}): the checkpoint names no classes and they "
            "cannot be matched",
            hint=f"pass --classes FILE with the model's {k} class names, one a line (line 1 is label 1)",
        )
    if coco and num_classes == 91:
        return labels, dict(COCO_CATEGORIES), "coco", "class names: COCO's (the reference checkpoint trained on coco)"
    return labels, {}, "none", f"no class names (labels shown as 'class 1'..'class {k}'): pass --classes FILE"


def load_checkpoint_detector(
    path: str | Path,
    *,
    arch: str | None = None,
    classes: str | Path | Sequence[str] | None = None,
    categories: Sequence | None = None,
    device: str | None = None,
) -> CheckpointDetector:
    """The detector a checkpoint file holds (see the module docstring for the shapes read).

    ``arch``: the torchvision builder of a bare state_dict (a reference checkpoint names its own;
    giving another is an error); ``classes``: a file of class names or the names; ``categories``:
    the dataset's categories, for names when ``classes`` is not given. Raises :class:`ModelError`
    saying what does not fit."""
    path = Path(path).expanduser()
    fmt, state, extras = classify(read_file(path), path)
    notes: list[str] = []
    if fmt == "vitrine":
        if arch is not None or classes is not None:
            raise ModelError(
                f"{path.name} is a vitrine run's checkpoint: it holds its architecture and class names",
                hint="leave out --arch and --classes",
            )
        from vitrine.predict.run_detector import detector_from_state

        det = detector_from_state(extras["checkpoint"], name=path.name, source=path.name, device=device)
        config = extras["checkpoint"]["config"]
        info = {
            "format": "vitrine",
            "arch": config.get("arch"),
            "backbone": config.get("backbone"),
            "num_classes": int(extras["checkpoint"]["num_classes"]),
            "class_names": "checkpoint",
        }
        return CheckpointDetector(det.model, det.classes, path.name, det.task, device, source_info=info, notes=notes)

    state, stripped = tva.strip_prefix(state)
    if stripped:
        notes.append("the state_dict's keys carried DataParallel's 'module.' prefix: removed")
    builder_kwargs: dict = {}
    if fmt == "reference":
        named = str(extras["args"].get("model") or "")
        if not named:
            raise ModelError(f"{path.name}: its args name no model", hint="pass --arch")
        if arch is not None and arch.strip() != named:
            raise ModelError(
                f"{path.name} was trained as {named} (its args.model); --arch says {arch}",
                hint=f"leave out --arch, or pass --arch {named}",
            )
        arch = named
        if "rcnn" in arch and extras["args"].get("rpn_score_thresh") is not None:
            builder_kwargs["rpn_score_thresh"] = float(extras["args"]["rpn_score_thresh"])
    elif arch is None:
        guess = tva.candidate_archs(state)
        raise ModelError(
            f"{path.name} holds weights only (a state_dict): name its architecture with --arch",
            hint=(
                f"its keys look like {' or '.join(guess)}" if guess else "one of " + ", ".join(tva.detection_archs())
            ),
        )
    arch = tva.check_arch(arch)
    n = tva.num_classes(arch, state, source=path.name)
    model = tva.build(arch, n, **builder_kwargs)
    loaded = tva.load_strict(model, state, arch, source=path.name)
    if loaded["frozen_batchnorms"]:
        notes.append(f"{loaded['frozen_batchnorms']} batch norm(s) rebuilt frozen, as the checkpoint was trained")
    coco = fmt == "reference" and str(extras["args"].get("dataset", "")).startswith("coco")
    ids, names, named_by, note = class_names(n, classes=classes, categories=categories, source=path.name, coco=coco)
    notes.append(note)
    from vitrine.predict.run_detector import CategoryMapped

    info = {
        "format": fmt,
        "arch": arch,
        "backbone": None,
        "num_classes": n,
        "class_names": named_by,
        "epoch": extras.get("epoch"),
    }
    if fmt == "reference":
        info["trained_on"] = extras["args"].get("dataset")
    task = tva.task_of(arch)
    # label 0 is the background: RetinaNet and FCOS score it like a class, so its boxes are dropped
    return CheckpointDetector(CategoryMapped(model, ids), names, path.name, task, device, source_info=info, notes=notes)


__all__ = [
    "CheckpointDetector",
    "class_names",
    "classify",
    "is_checkpoint_name",
    "load_checkpoint_detector",
    "read_classes_file",
    "read_file",
]
