"""Reproducible train/val/test splits.

The same samples, fractions and seed always give the same split, whatever the order the samples
come in (they are sorted by path before anything random happens). Splits are stratified by class
with scikit-learn's ``train_test_split``; classes too small for that are grouped, and when
stratification is impossible (a tiny dataset) the split falls back to plain random. Every such
decision is written as a note in ``dataset.source["split"]["notes"]``.
"""

from __future__ import annotations

from collections import Counter

from vitrine.core.errors import VitrineError
from vitrine.data.dataset import SPLITS, ClassificationDataset, Sample

__all__ = ["assign_splits"]

_RARE = "\x00rare"  # the stratum of classes with a single sample


def _check_fraction(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise VitrineError(f"{name} fraction must be a number, not {value!r}") from None
    if not 0.0 <= value < 1.0:
        raise VitrineError(f"{name} fraction must be at least 0 and below 1, not {value}")
    return value


def _strata(labels: list[str], notes: list[str], what: str) -> list[str]:
    """Stratification labels: classes with one sample grouped together (or, when only one such
    sample exists, put with the largest class)."""
    counts = Counter(labels)
    rare = {c for c, n in counts.items() if n < 2}
    if not rare:
        return labels
    if len(rare) == 1:
        target = max((c for c in counts if c not in rare), key=lambda c: (counts[c], c), default=_RARE)
    else:
        target = _RARE
    shown = ", ".join(sorted(rare)[:5]) + (" ..." if len(rare) > 5 else "")
    notes.append(f"{what}: {len(rare)} class(es) with a single sample ({shown}) stratified together")
    return [target if c in rare else c for c in labels]


def _hold_out(
    idx: list[int], labels: list[str], n_hold: int, seed: int, stratify: bool, notes: list[str], what: str
) -> tuple[list[int], list[int]]:
    """Split ``idx`` into (kept, held out) with ``n_hold`` held out."""
    if n_hold <= 0:
        return idx, []
    if n_hold >= len(idx):
        return [], idx
    from sklearn.model_selection import train_test_split

    if stratify and len(set(labels)) > 1:
        strata = _strata(labels, notes, what)
        try:
            kept, held = train_test_split(idx, test_size=n_hold, stratify=strata, random_state=seed, shuffle=True)
            return list(kept), list(held)
        except ValueError as exc:
            notes.append(f"{what}: cannot stratify ({exc}); split at random instead")
    kept, held = train_test_split(idx, test_size=n_hold, random_state=seed, shuffle=True)
    return list(kept), list(held)


def _split_pool(
    pool: list[int],
    samples: list[Sample],
    fractions: dict[str, float],
    seed: int,
    stratify: bool,
    notes: list[str],
    out: dict[int, str],
    origin: str,
) -> None:
    """Assign ``pool`` (indexes into ``samples``, sorted) to train and the splits in ``fractions``
    (fractions of the pool; test first, then val)."""
    n = len(pool)
    remaining = list(pool)
    for split in ("test", "val"):
        frac = fractions.get(split, 0.0)
        if frac <= 0 or not remaining:
            continue
        n_hold = min(round(frac * n), len(remaining) - 1)
        if n_hold <= 0:
            of = f"{n} {origin} samples" if origin else f"{n} samples"
            notes.append(f"{split}: {frac:g} of {of} rounds to none; {split} is empty")
            continue
        labels = [samples[i].label for i in remaining]
        remaining, held = _hold_out(remaining, labels, n_hold, seed, stratify, notes, split)
        for i in held:
            out[i] = split
        remaining.sort()
    for i in remaining:
        out[i] = "train"


def _key(s: Sample) -> tuple[str, str, str]:
    return (s.path, s.label, s.split)


def assign_splits(
    dataset: ClassificationDataset,
    *,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    stratify: bool = True,
    keep_existing: bool = True,
) -> ClassificationDataset:
    """A new dataset whose samples all have a split.

    With ``keep_existing`` (a given split, e.g. from split folders or a split column), samples that
    already have a split keep it; the unassigned ones are split into train/val/test with the
    fractions ``val`` and ``test`` (of those samples). If a split with a fraction above 0 then has
    no sample at all (a dataset given as train + test only, like Fashion-MNIST), it is carved from
    the given train samples, its fraction applied to them. Without ``keep_existing``, every sample
    is split anew.

    The options, the resulting counts and notes (fallbacks, empty splits) are recorded in
    ``source["split"]`` of the returned dataset. Samples keep their order.
    """
    val = _check_fraction("val", val)
    test = _check_fraction("test", test)
    if val + test >= 1.0:
        raise VitrineError(f"val + test must be below 1 (got {val:g} + {test:g})", hint="leave some data to train on")
    seed = int(seed)
    # Work on the samples in a canonical order (path, label, split), so that the input order never
    # matters; positions below index this sorted list.
    order = sorted(range(len(dataset.samples)), key=lambda i: _key(dataset.samples[i]))
    srt = [dataset.samples[i] for i in order]
    notes: list[str] = []
    out: dict[int, str] = {}

    if keep_existing:
        unknown = sorted({s.split for s in srt if s.split and s.split not in SPLITS})
        if unknown:
            raise VitrineError(f"unknown split value(s): {', '.join(map(repr, unknown))}")
        for k, s in enumerate(srt):
            if s.split:
                out[k] = s.split
        given = len(out)
        pool = [k for k, s in enumerate(srt) if not s.split]
        if pool:
            _split_pool(pool, srt, {"val": val, "test": test}, seed, stratify, notes, out, "unassigned")
        present = Counter(out.values())
        missing = {sp: f for sp, f in (("test", test), ("val", val)) if f > 0 and not present.get(sp)}
        if missing and given:
            train_pos = sorted(k for k, sp in out.items() if sp == "train")
            if train_pos:
                notes.append(
                    "no "
                    + " or ".join(missing)
                    + " samples given: carved from the train samples ("
                    + ", ".join(f"{sp} {f:g}" for sp, f in missing.items())
                    + ")"
                )
                _split_pool(train_pos, srt, missing, seed, stratify, notes, out, "train")
        if given:
            notes.insert(0, f"kept the given split of {given} samples")
    else:
        _split_pool(list(range(len(srt))), srt, {"val": val, "test": test}, seed, stratify, notes, out, "")

    split_of = [""] * len(srt)
    for k, i in enumerate(order):
        split_of[i] = out.get(k, srt[k].split)
    new_samples = [Sample(s.path, s.label, split_of[i]) for i, s in enumerate(dataset.samples)]
    counts = Counter(s.split for s in new_samples)
    source = dict(dataset.source)
    source["split"] = {
        "val": val,
        "test": test,
        "seed": seed,
        "stratify": stratify,
        "keep_existing": keep_existing,
        "counts": {sp: counts.get(sp, 0) for sp in SPLITS},
        "notes": notes,
    }
    return ClassificationDataset(
        name=dataset.name,
        root=dataset.root,
        samples=new_samples,
        classes=list(dataset.classes),
        source=source,
        problems=list(dataset.problems),
    )


def split_notes(dataset: ClassificationDataset) -> list[str]:
    """The notes :func:`assign_splits` left on ``dataset`` (empty when none)."""
    return list((dataset.source.get("split") or {}).get("notes", []))
