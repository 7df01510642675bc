"""Synthetic label noise for the training split (schema ``cmhash.noise/1``).

Recipes (``kind``):

- ``sym`` -- the RSHNL/SEHA recipe: exactly ``floor(rate * N)`` rows are chosen uniformly without
  replacement; each chosen row is replaced by ``k`` classes drawn uniformly without replacement from all
  ``C`` classes, ``k`` = number of positives in the clean row. The draw may return the clean label set,
  so for single-label data the expected fraction of changed rows is ``rate * (1 - 1/C)``.
- ``flip`` -- same selection, but the new ``k``-set is drawn uniformly among the sets that differ from the
  clean one (single-label: uniform over the ``C - 1`` other classes), so exactly ``floor(rate * N)`` rows
  change.
- ``multilabel_flip`` -- the RCH/NSRMH multi-label recipe: the same ``floor(rate * N)`` rows are chosen;
  in each, one positive label (uniform among the row's positives) is switched off and one negative label
  (uniform among its negatives) is switched on, so exactly the chosen rows change and every row keeps
  its label count.
- ``redundant`` -- the NACD recipe (Su et al., NeurIPS 2025, "redundant annotations"; official
  ``Rose-bud/NACD`` ``noise_label/generate.py::_generate_noisy_labels``): EVERY row keeps all its true labels
  and receives ``m_i = round(rate * n_i)`` extra positives, ``n_i`` = positives of the clean row, chosen
  uniformly without replacement among the row's negatives (``min(m_i, C - n_i)`` of them: a row cannot take
  more than all classes). ``rate`` is the "redundant rate" = added / true labels, any number >= 0 (the paper
  uses 1.0, 1.5, 2.0, 2.5); the product is taken in float32 and rounded half to even, as ``torch.round`` of
  the code's float32 tensor (so 2.5 x 1 label adds 2, 1.5 x 1 adds 2, 1.5 x 3 adds 4). True labels are never
  removed, so label counts grow; on single-label data ``rate <= 0.5`` adds nothing (``round(0.5) = 0``),
  ``0.5 < rate < 1.5`` one label per row and ``rate = 1.5`` two. ``selected`` marks the rows with ``m_i > 0``;
  ``changed`` those that received at least one label (a row already holding every class is selected but unchanged).

Published noise realisations (RSHNL/SEHA ``*_noise_labels_<r>_sym.mat`` with key ``noisy_label``; RCH/NSRMH
HDF5 with ``result`` and ``True``) are read by :func:`import_noisy_labels`, so a run can use exactly a
paper's noisy labels.

One ``numpy.random.Generator(PCG64(seed))`` drives both the selection and the redraws, so the same
(labels, rate, seed, kind) always gives bit-identical noisy labels. The exact random streams of the
original code (Python ``random`` + legacy numpy seeding) are not reproduced.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .data.matfiles import ArrayFile, DatasetFileError
from .store import atomic_h5, get_attr, open_h5, sha256_file

KINDS: tuple[str, ...] = ("sym", "flip", "multilabel_flip", "redundant")
# Root attributes derived from the NoisyLabels fields; the caller's attrs may not override them.
_DERIVED = ("kind", "rate", "seed", "n_classes", "n_selected", "realised_change_rate")


@dataclass
class NoisyLabels:
    """Noisy training labels plus what is needed to audit them (ground truth kept for logging only)."""

    noisy: np.ndarray  # uint8 N x C
    clean: np.ndarray  # uint8 N x C
    selected: np.ndarray  # bool N, row was chosen for redrawing
    changed: np.ndarray  # bool N, noisy row differs from the clean row
    kind: str
    rate: float
    seed: int
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        """Number of label columns C."""
        return int(self.clean.shape[1])

    @property
    def n_selected(self) -> int:
        """Number of rows chosen for redrawing (``floor(rate * N)``; ``redundant``: rows with ``m_i > 0``)."""
        return int(self.selected.sum())

    @property
    def realised_change_rate(self) -> float:
        """Fraction of rows whose label set differs from the clean one."""
        return float(self.changed.mean()) if self.changed.size else 0.0


def n_noisy_rows(rate: float, n: int) -> int:
    """``floor(rate * n)`` computed on the decimal value of ``rate``.

    Plain float arithmetic can land just below an integer (``0.29 * 100 = 28.999999999999996``); using the
    shortest decimal representation of the rate gives the count a reader of the config expects.
    """
    return math.floor(Fraction(repr(float(rate))) * n)


def _check_rate(rate: Any) -> float:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not (0.0 <= float(rate) < 1.0):
        raise ValueError(f"rate must be a number in [0, 1), got {rate!r}")
    return float(rate)


def _check_redundant_rate(rate: Any) -> float:
    if (
        isinstance(rate, bool)
        or not isinstance(rate, numbers.Real)
        or not math.isfinite(float(rate))
        or float(rate) < 0.0
    ):
        raise ValueError(f"redundant noise: rate (added / true labels per row) must be a number >= 0, got {rate!r}")
    return float(rate)


def n_redundant_labels(clean: np.ndarray, rate: float) -> np.ndarray:
    """Per row, how many false labels the ``redundant`` recipe adds: ``min(round(rate * n_i), C)``.

    ``n_i`` = positives of the row; the product is float32 and rounded half to even, exactly as NACD's
    ``torch.round(noise_level * num_labels)`` (a Python float times an integer tensor gives float32), capped
    at ``C`` as the code does. At most ``C - n_i`` of them can actually be placed (see the module docstring).
    """
    clean = np.asarray(clean)
    n_pos = clean.sum(axis=1).astype(np.float32)
    m = np.round(np.float32(rate) * n_pos).astype(np.int64)
    return np.minimum(m, clean.shape[1])


def _add_redundant_labels(rng: np.random.Generator, clean: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per row: ``m_i`` uniform negatives switched on (all of them if fewer), the positives kept.

    The ``m_i`` largest of ``C`` uniform keys with the positives' keys forced below every negative's -- the
    same uniform ``m_i``-subset of the negatives as the code's ``topk`` over ``torch.rand`` with positives at 0.
    """
    keys = rng.random(clean.shape)
    keys[clean == 1] = -1.0
    ranks = np.argsort(np.argsort(-keys, axis=1, kind="stable"), axis=1)
    add = (ranks < m[:, None]) & (clean == 0)
    return (clean | add).astype(np.uint8)


def _make_redundant(clean: Any, rate: Any, seed: int) -> NoisyLabels:
    rate = _check_redundant_rate(rate)
    clean = _check_labels(clean)
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    m = n_redundant_labels(clean, rate)
    noisy = _add_redundant_labels(rng, clean, m)
    return NoisyLabels(
        noisy=noisy, clean=clean, selected=m > 0, changed=(noisy != clean).any(axis=1), kind="redundant",
        rate=rate, seed=int(seed),
    )


def _check_labels(clean: Any, what: str = "clean") -> np.ndarray:
    labels = np.asarray(clean)
    if labels.ndim != 2:
        raise ValueError(f"{what} labels must be a 2-D N x C multi-hot matrix, got shape {labels.shape}")
    if labels.shape[1] < 2:
        raise ValueError(f"{what} labels need at least 2 classes (columns), got C = {labels.shape[1]}")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{what} labels must contain only 0 and 1")
    empty = np.flatnonzero(labels.sum(axis=1) == 0)
    if empty.size:
        raise ValueError(
            f"{what} labels: {empty.size} row(s) have no positive label (first: row {empty[0]}); "
            "every sample needs at least one class"
        )
    return labels.astype(np.uint8)


def _draw_k_sets(rng: np.random.Generator, k: np.ndarray, n_classes: int) -> np.ndarray:
    """One uniform k-subset of range(C) per row, as a multi-hot matrix (the k smallest of C uniform keys)."""
    keys = rng.random((k.size, n_classes))
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    return (ranks < k[:, None]).astype(np.uint8)


def _move_one_label(rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
    """Per row: one uniformly chosen positive set to 0 and one uniformly chosen negative set to 1."""
    out = rows.copy()
    if not rows.shape[0]:
        return out
    idx = np.arange(rows.shape[0])
    # argmax of uniform keys restricted to the positives (negatives) = a uniform positive (negative)
    off = np.where(rows == 1, rng.random(rows.shape), -1.0).argmax(axis=1)
    on = np.where(rows == 0, rng.random(rows.shape), -1.0).argmax(axis=1)
    out[idx, off] = 0
    out[idx, on] = 1
    return out


def make_noisy_labels(clean: np.ndarray, rate: float, seed: int, kind: str = "sym") -> NoisyLabels:
    """Corrupt ``floor(rate * N)`` rows of the multi-hot ``clean`` labels with recipe ``kind``.

    See the module docstring for the recipes. The label count of every row is preserved, except by
    ``redundant``, which adds ``round(rate * n_i)`` false labels to every row (``rate`` may then exceed 1).
    """
    if kind == "redundant":
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        return _make_redundant(clean, rate, int(seed))
    rate = _check_rate(rate)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    clean = _check_labels(clean)
    n, n_classes = clean.shape
    rng = np.random.Generator(np.random.PCG64(int(seed)))

    n_sel = n_noisy_rows(rate, n)
    # Sorting the chosen rows fixes the order in which they consume random numbers.
    rows = np.sort(rng.choice(n, size=n_sel, replace=False)) if n_sel else np.zeros(0, dtype=np.int64)
    k = clean[rows].sum(axis=1).astype(np.int64)
    if kind in ("flip", "multilabel_flip") and (k == n_classes).any():
        raise ValueError(
            f"{kind} noise: a selected row has all classes positive, so no different label set exists"
        )

    if kind == "multilabel_flip":
        new = _move_one_label(rng, clean[rows])
    else:
        new = _draw_k_sets(rng, k, n_classes)
    if kind == "flip":
        # Rejection sampling: redrawing the rows that came back unchanged yields a uniform draw among the
        # k-sets different from the clean one (for k = 1: uniform over the C - 1 other classes).
        same = np.flatnonzero((new == clean[rows]).all(axis=1))
        while same.size:
            new[same] = _draw_k_sets(rng, k[same], n_classes)
            same = same[(new[same] == clean[rows[same]]).all(axis=1)]

    noisy = clean.copy()
    noisy[rows] = new
    selected = np.zeros(n, dtype=bool)
    selected[rows] = True
    changed = (noisy != clean).any(axis=1)
    return NoisyLabels(
        noisy=noisy, clean=clean, selected=selected, changed=changed, kind=kind, rate=rate, seed=int(seed)
    )


def write_noisy_labels(
    path: str | os.PathLike, noisy: NoisyLabels, attrs: Mapping[str, Any] | None = None
) -> Path:
    """Write ``noisy`` atomically to ``path`` (schema ``cmhash.noise/1``).

    ``attrs`` adds root attributes such as ``dataset``; the derived ones (kind, rate, seed, n_classes,
    n_selected, realised_change_rate) always come from ``noisy``.
    """
    path = Path(path)
    root = {**noisy.attrs, **dict(attrs or {})}
    root.update(
        kind=noisy.kind,
        rate=float(noisy.rate),
        seed=int(noisy.seed),
        n_classes=noisy.n_classes,
        n_selected=noisy.n_selected,
        realised_change_rate=noisy.realised_change_rate,
    )
    root.setdefault("dataset", "")
    with atomic_h5(path, "noise", root) as f:
        opts = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        f.create_dataset("noisy_labels", data=noisy.noisy.astype(np.uint8), **opts)
        f.create_dataset("clean_labels", data=noisy.clean.astype(np.uint8), **opts)
        f.create_dataset("selected", data=noisy.selected.astype(bool), **opts)
        f.create_dataset("changed", data=noisy.changed.astype(bool), **opts)
    return path


def read_noisy_labels(path: str | os.PathLike) -> NoisyLabels:
    """Read and check a ``cmhash.noise/1`` file written by :func:`write_noisy_labels`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: noisy-label file not found; it is made by the pipeline's noise rule"
        )
    with open_h5(path, "noise") as f:
        for key in ("noisy_labels", "clean_labels", "selected", "changed"):
            if key not in f:
                raise ValueError(f"{path}: missing dataset '/{key}'; delete the file and rerun")
        for key in ("kind", "rate", "seed"):
            if key not in f.attrs:
                raise ValueError(f"{path}: missing root attribute '{key}'; delete the file and rerun")
        attrs = {k: get_attr(f, k) for k in f.attrs}
        result = NoisyLabels(
            noisy=f["noisy_labels"][()].astype(np.uint8),
            clean=f["clean_labels"][()].astype(np.uint8),
            selected=f["selected"][()].astype(bool),
            changed=f["changed"][()].astype(bool),
            kind=str(attrs["kind"]),
            rate=float(attrs["rate"]),
            seed=int(attrs["seed"]),
            attrs={k: v for k, v in attrs.items() if k not in _DERIVED},
        )
    n = result.clean.shape[0]
    if (
        result.noisy.shape != result.clean.shape
        or result.selected.shape != (n,)
        or result.changed.shape != (n,)
    ):
        raise ValueError(f"{path}: shapes of /noisy_labels, /clean_labels, /selected and /changed disagree")
    if not np.array_equal(result.changed, (result.noisy != result.clean).any(axis=1)):
        raise ValueError(
            f"{path}: /changed does not match /noisy_labels != /clean_labels; the file is corrupt"
        )
    return result


def import_noisy_labels(
    path: str | os.PathLike,
    clean: np.ndarray,
    rate: float,
    seed: int,
    kind: str = "sym",
) -> NoisyLabels:
    """Read a published noisy-label file and check it against the clean training labels ``clean``.

    Accepted layouts: MATLAB ``.mat`` (v5 or v7.3) with ``noisy_label`` (N x C, RSHNL/SEHA) and HDF5 with
    ``result`` (N x C noisy) and optionally ``True`` (N x C clean; RCH/NSRMH). The shape must equal that of
    ``clean`` (same samples in the same order, same classes; RSHNL's 1-based files need
    ``dummy_class_column: true``); a ``True`` array must equal ``clean``. The file does not say which
    rows were drawn, so ``selected`` is set to the changed rows. ``rate``, ``seed`` and ``kind`` are recorded
    (``kind="redundant"`` accepts NACD's rates >= 1, e.g. its ``*-lall-noise_<r>.h5`` files).
    """
    path = Path(path)
    rate = _check_redundant_rate(rate) if kind == "redundant" else _check_rate(rate)
    clean = _check_labels(clean)
    src = ArrayFile(path, "published noisy labels (noisy_label, or result/True)")
    if src.has("noisy_label"):
        noisy_key, true_key = "noisy_label", None
    elif src.has("result"):
        noisy_key, true_key = "result", ("True" if src.has("True") else None)
    else:
        src.require(["noisy_label"])  # raises, listing what the file holds
        raise AssertionError("unreachable")
    noisy = np.asarray(src.read(noisy_key))
    if noisy.shape != clean.shape:
        hint = ""
        if noisy.ndim == 2 and noisy.shape[0] == clean.shape[0] and noisy.shape[1] == clean.shape[1] + 1:
            hint = (
                " The file has one class more: set dummy_class_column: true for this dataset "
                "(RSHNL/SEHA 1-based labels)."
            )
        elif noisy.ndim == 2 and noisy.shape[0] == clean.shape[0] and noisy.shape[1] + 1 == clean.shape[1]:
            hint = " The file has one class fewer: remove dummy_class_column: true from this dataset."
        elif noisy.ndim == 2 and noisy.shape[0] != clean.shape[0]:
            hint = " The number of rows differs: the file belongs to another dataset or split."
        raise DatasetFileError(
            f"{path}: '{noisy_key}' has shape {noisy.shape} but the training labels are {clean.shape} "
            f"(N_train x n_classes).{hint}"
        )
    noisy = _check_labels(noisy, what=f"{path}: '{noisy_key}'")
    if true_key is not None:
        true = np.asarray(src.read(true_key))
        if true.shape != clean.shape or not np.array_equal(true.astype(np.uint8), clean):
            n_bad = int((true != clean).any(axis=1).sum()) if true.shape == clean.shape else -1
            raise DatasetFileError(
                f"{path}: '{true_key}' (the clean labels of the file) does not match the dataset's "
                f"training labels ({'shape ' + str(true.shape) if n_bad < 0 else str(n_bad) + ' rows differ'}); "
                "the file was made for another split or sample order"
            )
    changed = (noisy != clean).any(axis=1)
    return NoisyLabels(
        noisy=noisy,
        clean=clean,
        selected=changed.copy(),
        changed=changed,
        kind=kind,
        rate=rate,
        seed=int(seed),
        attrs={"source_file": path.name, "source_sha256": sha256_file(path), "source_key": noisy_key,
               "imported": True, "selected_note": "imported file: selected = changed rows"},
    )
