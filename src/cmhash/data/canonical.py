"""The canonical two-modality feature file (schema ``cmhash.features/1``) and deterministic splits.

Every dataset, shipped or brought by the user, ends up as one :class:`Features` object with a train, a
validation and a test split; see ``docs/file_formats.md`` for the on-disk layout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..store import atomic_h5, get_attr, open_h5

SPLITS: tuple[str, str, str] = ("train", "val", "test")
#: Splits a feature file may hold besides SPLITS: ``database`` = retrieval set of the multi-label
#: protocols (queries = ``test``); without it the test split is both queries and database.
OPTIONAL_SPLITS: tuple[str, ...] = ("database",)
# Root attributes managed by atomic_h5 or mirrored by dataclass fields; never taken from Features.attrs.
_RESERVED_ATTRS = frozenset(
    {"schema", "package_version", "git_commit", "created", "name", "modalities", "n_classes"}
)
_FIX_HINT = "Rewrite the file with cmhash.data.canonical.write_features (see docs/file_formats.md)."


@dataclass
class Features:
    """Two-modality features with multi-hot labels, split into train/val/test.

    ``splits[split]`` maps each of the two modality names and ``"labels"`` to an array:
    float32 ``N x d_m`` features and uint8 ``N x n_classes`` multi-hot labels.
    ``attrs`` carries provenance (source, licence, citation, sha256, split, class_names, ...).
    """

    name: str
    modalities: tuple[str, str]
    n_classes: int
    splits: dict[str, dict[str, np.ndarray]]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def dims(self) -> tuple[int, int]:
        """Feature dimension of each modality."""
        train = self.splits["train"]
        return int(train[self.modalities[0]].shape[1]), int(train[self.modalities[1]].shape[1])

    def n_rows(self, split: str) -> int:
        """Number of samples in ``split``."""
        return int(self.splits[split]["labels"].shape[0])


def validate_features(features: Features, origin: str = "<memory>") -> None:
    """Raise ``ValueError`` (naming ``origin`` and the offending key) if ``features`` is inconsistent."""
    if len(features.modalities) != 2 or len(set(features.modalities)) != 2:
        raise ValueError(
            f"{origin}: 'modalities' must be two distinct names, got {list(features.modalities)}"
        )
    if "labels" in features.modalities:
        raise ValueError(f"{origin}: a modality may not be called 'labels'")
    if int(features.n_classes) < 2:
        raise ValueError(f"{origin}: 'n_classes' must be >= 2, got {features.n_classes}")
    dims: dict[str, tuple[str, int]] = {}
    unknown = set(features.splits) - set(SPLITS) - set(OPTIONAL_SPLITS)
    if unknown:
        raise ValueError(f"{origin}: unknown split(s) {sorted(unknown)}; allowed: {[*SPLITS, *OPTIONAL_SPLITS]}")
    for split in (*SPLITS, *(s for s in OPTIONAL_SPLITS if s in features.splits)):
        if split not in features.splits:
            raise ValueError(f"{origin}: missing group '/{split}'. {_FIX_HINT}")
        group = features.splits[split]
        for key in (*features.modalities, "labels"):
            if key not in group:
                raise ValueError(f"{origin}: missing dataset '/{split}/{key}'. {_FIX_HINT}")
        labels = group["labels"]
        if labels.ndim != 2:
            raise ValueError(
                f"{origin}: '/{split}/labels' must be a 2-D N x C multi-hot matrix, got {labels.shape}"
            )
        if labels.shape[1] != features.n_classes:
            raise ValueError(
                f"{origin}: '/{split}/labels' has {labels.shape[1]} columns but n_classes is "
                f"{features.n_classes}; all splits must use the same label width = n_classes."
            )
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise ValueError(f"{origin}: '/{split}/labels' must contain only 0 and 1 (multi-hot)")
        empty = np.flatnonzero(labels.sum(axis=1) == 0)
        if empty.size:
            raise ValueError(
                f"{origin}: '/{split}/labels' has {empty.size} row(s) without any positive label (first: row "
                f"{empty[0]}); drop these samples or give them a class."
            )
        n = labels.shape[0]
        if n == 0:
            raise ValueError(f"{origin}: split '/{split}' is empty")
        for mod in features.modalities:
            x = group[mod]
            if x.ndim != 2:
                raise ValueError(
                    f"{origin}: '/{split}/{mod}' must be a 2-D N x d matrix, got shape {x.shape}"
                )
            if x.shape[0] != n:
                raise ValueError(
                    f"{origin}: '/{split}/{mod}' has {x.shape[0]} rows but '/{split}/labels' has {n}; "
                    "row i of every array in a split must describe the same sample."
                )
            if not np.isfinite(x).all():
                bad = int((~np.isfinite(x)).any(axis=1).sum())
                raise ValueError(
                    f"{origin}: '/{split}/{mod}' contains NaN/inf in {bad} row(s); impute or drop them."
                )
            if mod in dims and dims[mod][1] != x.shape[1]:
                first_split, d = dims[mod]
                raise ValueError(
                    f"{origin}: '/{split}/{mod}' has {x.shape[1]} features "
                    f"but '/{first_split}/{mod}' has {d}; "
                    "a modality must have the same dimension in every split."
                )
            dims.setdefault(mod, (split, x.shape[1]))


def write_features(path: str | os.PathLike, features: Features) -> Path:
    """Validate ``features`` and write them atomically to ``path`` (schema ``cmhash.features/1``)."""
    path = Path(path)
    validate_features(features, origin=str(path))
    attrs: dict[str, Any] = {k: v for k, v in features.attrs.items() if k not in _RESERVED_ATTRS}
    attrs.update(name=features.name, modalities=list(features.modalities), n_classes=int(features.n_classes))
    with atomic_h5(path, "features", attrs) as f:
        for split in (*SPLITS, *(s for s in OPTIONAL_SPLITS if s in features.splits)):
            group = f.create_group(split)
            for mod in features.modalities:
                group.create_dataset(
                    mod,
                    data=np.asarray(features.splits[split][mod], dtype=np.float32),
                    compression="gzip",
                    compression_opts=4,
                    shuffle=True,
                )
            group.create_dataset(
                "labels",
                data=np.asarray(features.splits[split]["labels"], dtype=np.uint8),
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )
    return path


def read_features(path: str | os.PathLike) -> Features:
    """Read and validate a ``cmhash.features/1`` file.

    Raises ``FileNotFoundError`` (also a ``ValueError``) for a missing file and ``ValueError`` naming the
    file and key for any schema or consistency problem.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFeatureFileError(
            f"{path}: feature file not found. Create it with cmhash.data.canonical.write_features or point "
            "'path' in config/config.yaml at an existing cmhash.features/1 file."
        )
    origin = str(path)
    with open_h5(path, "features") as f:
        for key in ("name", "modalities", "n_classes"):
            if key not in f.attrs:
                raise ValueError(f"{origin}: missing root attribute '{key}'. {_FIX_HINT}")
        modalities = get_attr(f, "modalities")
        if not isinstance(modalities, list) or len(modalities) != 2:
            raise ValueError(f"{origin}: root attribute 'modalities' must list two names, got {modalities!r}")
        splits: dict[str, dict[str, np.ndarray]] = {}
        for split in (*SPLITS, *(s for s in OPTIONAL_SPLITS if s in f)):
            if split not in f or not isinstance(f[split], h5py.Group):
                raise ValueError(f"{origin}: missing group '/{split}'. {_FIX_HINT}")
            group = f[split]
            splits[split] = {}
            for key in (*modalities, "labels"):
                if key not in group:
                    raise ValueError(f"{origin}: missing dataset '/{split}/{key}'. {_FIX_HINT}")
                dtype = np.uint8 if key == "labels" else np.float32
                splits[split][key] = np.asarray(group[key][()], dtype=dtype)
        attrs = {k: get_attr(f, k) for k in f.attrs if k not in _RESERVED_ATTRS}
        features = Features(
            name=str(get_attr(f, "name")),
            modalities=(str(modalities[0]), str(modalities[1])),
            n_classes=int(get_attr(f, "n_classes")),
            splits=splits,
            attrs=attrs,
        )
    validate_features(features, origin=origin)
    return features


class MissingFeatureFileError(FileNotFoundError, ValueError):
    """A feature file does not exist (catchable as ``FileNotFoundError`` or ``ValueError``)."""


def stratified_split(
    labels: np.ndarray, sizes: Mapping[str, int | float | None], seed: int
) -> dict[str, np.ndarray]:
    """Deterministic disjoint ``train``/``val``/``test`` index arrays.

    ``labels`` is either a 1-D array of class indices or an ``N x C`` multi-hot matrix (rows with exactly one
    positive are treated as class indices). ``sizes`` has keys ``train``, ``val`` and optionally ``test``:

    - all integers: exact counts *per class* (``test`` missing or ``None`` = the rest of each class);
    - otherwise fractions in [0, 1]: per-class fractions, rounded down (test = the rest unless given).
      For genuinely multi-label data the fractions apply to a seeded permutation of all rows instead.

    Within each split the indices come in a seeded random order, not sorted by class, so that ranking ties
    broken by database index are not correlated with the class.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    labels = np.asarray(labels)
    unknown = set(sizes) - set(SPLITS)
    if unknown or "train" not in sizes or "val" not in sizes:
        raise ValueError(
            "stratified_split: sizes must have keys 'train', 'val' and optionally 'test', "
            f"got {sorted(sizes)}"
        )
    given = {k: sizes[k] for k in SPLITS if sizes.get(k) is not None}
    for key, v in given.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not v >= 0:
            raise ValueError(f"stratified_split: sizes['{key}'] must be a non-negative number, got {v!r}")
    counts_mode = all(isinstance(v, (int, np.integer)) for v in given.values())
    if not counts_mode and (any(v > 1 for v in given.values()) or sum(given.values()) > 1 + 1e-9):
        raise ValueError(f"stratified_split: fractions must lie in [0, 1] and sum to <= 1, got {dict(sizes)}")

    def sizes_for(n: int) -> tuple[int, int, int]:
        """(train, val, test) sizes for a group of n samples."""
        if counts_mode:
            n_tr, n_va = int(given["train"]), int(given["val"])
            n_te = int(given["test"]) if "test" in given else n - n_tr - n_va
        else:
            # The small epsilon stops e.g. 0.6 * 5 = 2.9999999999999996 from flooring to 2.
            n_tr, n_va = (int(np.floor(float(given[k]) * n + 1e-9)) for k in ("train", "val"))
            n_te = int(np.floor(float(given["test"]) * n + 1e-9)) if "test" in given else n - n_tr - n_va
        return n_tr, n_va, n_te

    if labels.ndim == 2 and not (labels.sum(axis=1) == 1).all():
        if counts_mode:
            raise ValueError("stratified_split: per-class counts need single-label data; give fractions")
        perm = rng.permutation(labels.shape[0]).astype(np.int64)
        n_tr, n_va, n_te = sizes_for(labels.shape[0])
        return {
            "train": perm[:n_tr],
            "val": perm[n_tr : n_tr + n_va],
            "test": perm[n_tr + n_va : n_tr + n_va + n_te],
        }
    if labels.ndim == 2:
        classes = labels.argmax(axis=1)
    elif labels.ndim == 1:
        classes = labels.astype(np.int64)
    else:
        raise ValueError(
            f"stratified_split: labels must be 1-D class indices or N x C, got shape {labels.shape}"
        )

    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(classes):
        idx = rng.permutation(np.flatnonzero(classes == c))
        n_tr, n_va, n_te = sizes_for(idx.size)
        if n_tr + n_va + n_te > idx.size or n_te < 0:
            raise ValueError(
                f"stratified_split: class {c} has {idx.size} samples, fewer than requested "
                f"train={n_tr} + val={n_va} + test={n_te}"
            )
        parts["train"].append(idx[:n_tr])
        parts["val"].append(idx[n_tr : n_tr + n_va])
        parts["test"].append(idx[n_tr + n_va : n_tr + n_va + n_te])
    return {s: rng.permutation(np.concatenate(parts[s])).astype(np.int64) for s in SPLITS}


def one_hot(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """uint8 ``N x n_classes`` multi-hot matrix with one 1 per row from class indices."""
    classes = np.asarray(classes, dtype=np.int64)
    out = np.zeros((classes.size, n_classes), dtype=np.uint8)
    out[np.arange(classes.size), classes] = 1
    return out
