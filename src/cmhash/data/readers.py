"""Readers for the published benchmark feature files, each mapped into the canonical :class:`Features`.

One ``format`` value per on-disk layout (key names as the original code reads them; see
``config/README.md`` "Published benchmark files" for file names, sources and where to put them):

single-label (``test`` = queries and database, as in the RSHNL protocol)

- ``rshnl_wiki``  RSHNL ``wiki.mat``: ``train_imgs_deep, train_texts_doc, train_imgs_labels, test_*``;
  validation = the first ``split.val_rows`` (default 231) rows of the test arrays, test = the rest.
- ``seha``        SEHA uniform keys ``img_train, text_train, label_train, img_test, text_test, label_test``;
  validation = first ``split.val_rows`` test rows, test = the rest (kept disjoint, unlike SEHA's code).
- ``mrl_h5``      MRL ``*_deep_doc2vec_*.h5py``: ``train_imgs_deep, train_text|train_texts,
  train_imgs_labels, test_*`` and optional ``valid_*``; without ``valid_*`` validation = first
  ``split.val_rows`` test rows.
- ``xmedia``      ``XMediaFeatures.mat``: ``I_tr_CNN, T_tr_BOW, trImgCat, I_te_CNN, T_te_BOW, teImgCat``;
  validation = first ``split.val_rows`` (default 500) test rows, test = the rest.
- ``inria``       ``INRIA-Websearch.mat``: explicit ``tr_*``, ``val_*``, ``te_*`` (``img``, ``txt``, ``img_lab``).
- ``xmedianet``   ``XMediaNet5View_Doc2Vec.mat``: cell arrays ``train, valid, test`` (one cell per view;
  ``modalities`` values are the view indices, default image 0, text 1) and ``train_labels`` ... (cell 0).

multi-label (``test`` = queries, extra split ``database`` = retrieval set)

- ``ucch``        ``XAll`` (image), ``YAll`` (text), ``LAll`` (labels) in one file or three (``files``);
  query/train/val drawn from the rows by ``split`` (positional or seeded, see :func:`query_train_split`).
- ``dcmh``        ``FLICKR-25K.mat`` (v7.3): ``images`` (raw pixels, flattened), ``YAll``, ``LAll``; same splits.
- ``nsrmh``       ``I_tr, T_tr, L_tr`` / ``I_te, T_te, L_te`` / ``I_db, T_db, L_db`` (one file, or the CIRH
  three files via ``files: {train, query, database}``); validation = first ``split.val_rows`` query rows.
- ``rch``         ``ImgTrain, TagTrain, LabTrain, ImgQuery, ..., LabDataBase``; splits as ``nsrmh``.

Labels: class-index vectors become one-hot rows. By default the smallest label value in the file becomes
class 0 (so 1-based XMedia has 20 classes); ``dummy_class_column: true`` reproduces RSHNL/SEHA instead
(width = max label + 1, so 1-based files get a never-used column 0: XMedia 21, XMediaNet 201).
Multi-hot matrices are used as they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..store import sha256_file
from .canonical import Features
from .matfiles import ArrayFile, DatasetFileError, MissingDatasetFileError

__all__ = [
    "LAYOUTS",
    "READERS",
    "DatasetFileError",
    "MissingDatasetFileError",
    "label_matrices",
    "prepare_published",
    "query_train_split",
    "source_files",
]

Key = str | tuple[str, ...]  # a key, or alternative spellings tried in order


@dataclass(frozen=True)
class Layout:
    """Keys of one published layout: per split a triple (image key, text key, label key)."""

    description: str
    default_file: str
    groups: dict[str, tuple[Key, Key, Key]]
    optional_val: bool = False  # the 'val' group is used when present, else carved from the query split
    default_val_rows: int | None = None
    multilabel: bool = False
    citation: str = ""
    source_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_WIKI_CITE = (
    "N. Rasiwasia et al., A New Approach to Cross-Modal Multimedia Retrieval, ACM MM 2010 (Wikipedia); "
    "features as released with MRL (P. Hu et al., CVPR 2021) and RSHNL (Pu et al., AAAI 2025)"
)
LAYOUTS: dict[str, Layout] = {
    "rshnl_wiki": Layout(
        "RSHNL wiki.mat (perquisite/RSHNL load_data.py)",
        "wiki.mat",
        {
            "train": ("train_imgs_deep", "train_texts_doc", "train_imgs_labels"),
            "test": ("test_imgs_deep", "test_texts_doc", "test_imgs_labels"),
        },
        default_val_rows=231,
        citation=_WIKI_CITE,
    ),
    "seha": Layout(
        "SEHA uniform keys (LYXRhythm/SEHA datasets/<name>.mat)",
        "wiki.mat",
        {
            "train": ("img_train", "text_train", "label_train"),
            "test": ("img_test", "text_test", "label_test"),
        },
        citation="SEHA, Learning Cross-modal Self-distillation Hashing with Noisy Labels (LYXRhythm/SEHA)",
    ),
    "mrl_h5": Layout(
        "MRL *_deep_doc2vec_*.h5py (penghu-cs/MRL)",
        "wiki_deep_doc2vec_data_corr_ae.h5py",
        {
            "train": ("train_imgs_deep", ("train_text", "train_texts"), "train_imgs_labels"),
            "val": ("valid_imgs_deep", ("valid_text", "valid_texts"), "valid_imgs_labels"),
            "test": ("test_imgs_deep", ("test_text", "test_texts"), "test_imgs_labels"),
        },
        optional_val=True,
        citation="P. Hu et al., Learning Cross-Modal Retrieval with Noisy Labels, CVPR 2021 (MRL)",
    ),
    "xmedia": Layout(
        "XMediaFeatures.mat (PKU XMedia; RSHNL keys)",
        "XMediaFeatures.mat",
        {
            "train": ("I_tr_CNN", "T_tr_BOW", "trImgCat"),
            "test": ("I_te_CNN", "T_te_BOW", "teImgCat"),
        },
        default_val_rows=500,
        citation=(
            "X. Zhai, Y. Peng, J. Xiao, Learning Cross-Media Joint Representation with Sparse and "
            "Semi-Supervised Regularization, IEEE TCSVT 2014 (PKU XMedia)"
        ),
    ),
    "inria": Layout(
        "INRIA-Websearch.mat (MRL/RSHNL keys)",
        "INRIA-Websearch.mat",
        {
            "train": ("tr_img", "tr_txt", "tr_img_lab"),
            "val": ("val_img", "val_txt", "val_img_lab"),
            "test": ("te_img", "te_txt", "te_img_lab"),
        },
        citation=(
            "J. Krapac, M. Allan, J. Verbeek, F. Jurie, Improving Web Image Search Results Using "
            "Query-Relative Classifiers, CVPR 2010 (INRIA-Websearch)"
        ),
    ),
    "nsrmh": Layout(
        "NSRMH/CIRH I_/T_/L_ x tr/te/db (vindahi/NSRMH, XizeWu/CIRH)",
        "mir_clip_all.mat",
        {
            "train": ("I_tr", "T_tr", "L_tr"),
            "test": ("I_te", "T_te", "L_te"),
            "database": ("I_db", "T_db", "L_db"),
        },
        multilabel=True,
        citation="NSRMH (vindahi/NSRMH) / CIRH (XizeWu/CIRH) feature release",
    ),
    "rch": Layout(
        "RCH Img/Tag/Lab x Train/Query/DataBase (LonganWANG-cs/NRCH)",
        "MIRFlickr.h5",
        {
            "train": ("ImgTrain", "TagTrain", "LabTrain"),
            "test": ("ImgQuery", "TagQuery", "LabQuery"),
            "database": ("ImgDataBase", "TagDataBase", "LabDataBase"),
        },
        multilabel=True,
        citation="L. Wang et al., Robust Contrastive Cross-modal Hashing with Noisy Labels, ACM MM 2024 (RCH)",
    ),
}
#: Layouts with one row set (XAll/YAll/LAll style) split into query/train/val by :func:`query_train_split`.
POOLED = {
    "ucch": (
        "UCCH XAll/YAll/LAll (penghu-cs/UCCH)",
        "P. Hu et al., Unsupervised Contrastive Cross-modal Hashing, TPAMI 2022 (UCCH)",
    ),
    "dcmh": (
        "DCMH FLICKR-25K.mat v7.3 (jiangqy/DCMH-CVPR2017)",
        "Q.-Y. Jiang, W.-J. Li, Deep Cross-Modal Hashing, CVPR 2017 (DCMH)",
    ),
}
XMEDIANET_CITE = (
    "Y. Peng, X. Huang, Y. Zhao, An Overview of Cross-media Retrieval, IEEE TCSVT 2018 (XMediaNet); "
    "XMediaNet5View_Doc2Vec.mat as used by MRL/RSHNL"
)
LICENCE = "not redistributed with cmhash; the dataset's own terms of use apply (see its source)"


# ---------------------------------------------------------------------------------------------- helpers
def _cfg_path(name: str, value: Any, data_root: str | os.PathLike, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"datasets.{name}.{key} must be a file path (relative to data_root), got {value!r}")
    return Path(data_root) / value


def source_files(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> dict[str, Path]:
    """Role -> input file of a published-format dataset (``path`` -> role ``"path"``, or the ``files`` map).

    Used by the workflow to declare the inputs of the data rule, so a missing file is reported before
    any job runs.
    """
    files = cfg.get("files")
    if files:
        if not isinstance(files, Mapping):
            raise ValueError(f"datasets.{name}.files must map roles to file paths, got {files!r}")
        return {str(role): _cfg_path(name, p, data_root, f"files.{role}") for role, p in files.items()}
    if "path" not in cfg:
        raise ValueError(
            f"datasets.{name}: format '{cfg.get('format')}' needs 'path' (the file, relative to data_root)"
        )
    return {"path": _cfg_path(name, cfg["path"], data_root, "path")}


def _file_for(name: str, files: Mapping[str, Path], role: str, fmt: str) -> Path:
    if "path" in files:
        return files["path"]
    if role not in files:
        raise ValueError(
            f"datasets.{name}.files has no entry '{role}'; format '{fmt}' with 'files' needs the roles "
            f"{_ROLE_HINT.get(fmt, '[train, test]')} (or give one 'path' holding every array)"
        )
    return files[role]


_ROLE_HINT = {
    "nsrmh": "[train, query, database]",
    "rch": "[train, query, database]",
    "ucch": "[XAll, YAll, LAll]",
}
_SPLIT_ROLE = {"train": "train", "val": "val", "test": "query", "database": "database"}


def _modality_names(name: str, cfg: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    mods = cfg.get("modalities")
    if mods is None:
        return "image", "text", ["0", "1"]
    if not isinstance(mods, Mapping) or len(mods) != 2:
        raise ValueError(f"datasets.{name}.modalities must have exactly two entries, got {mods!r}")
    names = [str(k) for k in mods]
    return names[0], names[1], [str(v) for v in mods.values()]


def _features_2d(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf" or a.ndim != 2:  # cells, structs and MATLAB objects are never converted
        raise DatasetFileError(
            f"{what}: expected a 2-D numeric samples x features matrix, found shape {a.shape} ({a.dtype})"
        )
    out = np.ascontiguousarray(a, dtype=np.float32)
    bad_rows = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if bad_rows.size:  # also values beyond the float32 range, which become inf here
        raise DatasetFileError(
            f"{what}: NaN or inf (or a value beyond float32) in {bad_rows.size} row(s), first: row "
            f"{bad_rows[0]}; fix the feature extraction, or impute or drop those samples in the file"
        )
    return out


def _is_index_vector(a: np.ndarray) -> bool:
    return a.ndim == 1 or (a.ndim == 2 and 1 in a.shape and max(a.shape) > 1)


def label_matrices(
    raw: Mapping[str, np.ndarray], dummy_class_column: bool = False, where: str = "labels"
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Turn the label arrays of all splits into uint8 multi-hot matrices of one common width.

    Class-index vectors (``N``, ``N x 1`` or ``1 x N``; any numeric dtype holding whole numbers) become
    one-hot rows. The offset is the smallest label over all splits (1-based files start at class 0),
    or 0 with ``dummy_class_column`` (RSHNL/SEHA: width = max + 1, so labels 1..20 give 21 columns with
    column 0 unused). Matrices with more than one column are taken as multi-hot and must hold 0/1.
    Returns the matrices and an info dict (``label_encoding``, ``label_offset``, ``dummy_class_column``,
    ``class_names``).
    """
    for split, a in raw.items():
        if np.asarray(a).dtype.kind not in "biuf":  # cells, structs and MATLAB objects are never converted
            raise DatasetFileError(
                f"{where} ({split}): labels must be a numeric array, found {np.asarray(a).dtype}"
            )
    # A matrix with at least 2 rows and 2 columns anywhere means multi-hot (a 1 x C split is then one row)
    matrix_mode = any(np.asarray(a).ndim == 2 and min(np.asarray(a).shape) > 1 for a in raw.values())
    if not matrix_mode:
        vectors = {}
        for split, a in raw.items():
            v = np.asarray(a, dtype=np.float64).reshape(-1)
            if not np.isfinite(v).all() or not np.array_equal(v, np.round(v)):
                raise DatasetFileError(f"{where} ({split}): class labels must be whole numbers")
            vectors[split] = v.astype(np.int64)
        low = min(int(v.min()) for v in vectors.values())
        high = max(int(v.max()) for v in vectors.values())
        if low < 0:
            raise DatasetFileError(
                f"{where}: negative class label {low}; expected 0- or 1-based class indices"
            )
        offset = 0 if dummy_class_column else low
        width = high - offset + 1
        if width < 2:
            raise DatasetFileError(f"{where}: only one class ({low}) found; need at least two")
        out = {}
        for split, v in vectors.items():
            m = np.zeros((v.size, width), dtype=np.uint8)
            m[np.arange(v.size), v - offset] = 1
            out[split] = m
        info = {
            "label_encoding": "class_index",
            "label_offset": offset,
            "dummy_class_column": bool(dummy_class_column),
            "unused_classes": [int(c) for c in range(width) if not any(m[:, c].any() for m in out.values())],
            "class_names": [str(c + offset) for c in range(width)],
        }
        return out, info
    out = {}
    width = None
    for split, a in raw.items():
        m = np.asarray(a)
        if m.ndim != 2:
            raise DatasetFileError(
                f"{where} ({split}): expected an N x C label matrix, found shape {m.shape}"
            )
        if m.size and not np.isin(m, (0, 1)).all():
            raise DatasetFileError(f"{where} ({split}): a multi-hot label matrix must hold only 0 and 1")
        if width is not None and m.shape[1] != width:
            raise DatasetFileError(
                f"{where}: label matrices have different widths ({width} vs {m.shape[1]} in {split}); "
                "every split must have one column per class of the dataset"
            )
        width = m.shape[1]
        out[split] = m.astype(np.uint8)
    info = {
        "label_encoding": "multi_hot",
        "label_offset": 0,
        "dummy_class_column": False,
        "unused_classes": [],
        "class_names": [str(c) for c in range(int(width or 0))],
    }
    return out, info


def query_train_split(n: int, split_cfg: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """Index arrays ``test`` (queries), ``database`` (retrieval set), ``train`` and ``val`` of ``n`` rows.

    ``split_cfg``: ``query`` (default 2000), ``train`` (default 10000), ``val`` (required), ``order``
    (``positional`` default, or ``seeded``), ``query_at`` (``first`` default or ``last``; positional only)
    and ``seed`` (seeded only, default 0). Positional: the queries are the first (last) ``query`` rows,
    the retrieval set is every other row in file order, training = its first ``train`` rows, validation
    = the next ``val`` rows (RCH/DCMH MIRFlickr: query rows 0-1999, train 2000-11999, retrieval
    2000-20014). Seeded: the same applied to a PCG64(seed) permutation of the rows. Validation rows are
    disjoint from queries and training rows but stay in the retrieval set.
    """
    unknown = set(split_cfg) - {"query", "train", "val", "order", "query_at", "seed"}
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: query, train, val, order, query_at, seed"
        )
    if "val" not in split_cfg:
        raise ValueError(
            f"{where}.val is required: the number of validation rows taken from the retrieval set after the "
            "training rows (the papers have no validation split; e.g. val: 1000)"
        )
    q, t, v = (int(split_cfg.get(k, d)) for k, d in (("query", 2000), ("train", 10000), ("val", 0)))
    order = split_cfg.get("order", "positional")
    query_at = split_cfg.get("query_at", "first")
    if order not in ("positional", "seeded") or query_at not in ("first", "last"):
        raise ValueError(
            f"{where}: order must be positional|seeded and query_at first|last, got {order!r}/{query_at!r}"
        )
    if min(q, t, v) < 1 or q + t + v > n:
        raise ValueError(
            f"{where}: query={q} + train={t} + val={v} must be >= 1 each and fit into the {n} rows"
        )
    rows = np.arange(n, dtype=np.int64)
    if order == "seeded":
        rows = (
            np.random.Generator(np.random.PCG64(int(split_cfg.get("seed", 0))))
            .permutation(n)
            .astype(np.int64)
        )
    if query_at == "last":
        query, rest = rows[n - q :], rows[: n - q]
    else:
        query, rest = rows[:q], rows[q:]
    return {"train": rest[:t], "val": rest[t : t + v], "test": query, "database": rest}


def _split_record(fmt: str, cfg: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {"format": fmt, **{k: v for k, v in dict(cfg.get("split", {})).items()}, **extra}


# ---------------------------------------------------------------------------------------------- readers
def _read_group(src: ArrayFile, keys: tuple[Key, Key, Key]) -> tuple[list[str], list[np.ndarray]]:
    names = [k if isinstance(k, str) else src.first_present(k) for k in keys]
    src.require(names)
    return names, [src.read(k) for k in names]


def _prepare_layout(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike, fmt: str) -> Features:
    layout = LAYOUTS[fmt]
    files = source_files(name, cfg, data_root)
    where = f"datasets.{name}"
    opened: dict[Path, ArrayFile] = {}
    raw: dict[str, list[np.ndarray]] = {}
    used_keys: dict[str, list[str]] = {}
    for split, keys in layout.groups.items():
        path = _file_for(name, files, _SPLIT_ROLE[split], fmt)
        src = opened.setdefault(path, ArrayFile(path, f"{fmt} ({layout.description})", cfg.get("transpose")))
        if split == "val" and layout.optional_val:
            names = [k if isinstance(k, str) else next((x for x in k if src.has(x)), k[0]) for k in keys]
            if not all(src.has(k) for k in names):
                continue
        used_keys[split], raw[split] = _read_group(src, keys)
    split_cfg = dict(cfg.get("split", {}))
    split_info: dict[str, Any] = {"format": fmt}
    if "val" not in raw:
        val_rows = split_cfg.get("val_rows", layout.default_val_rows)
        if val_rows is None:
            raise ValueError(
                f"{where}.split.val_rows is required for format '{fmt}': validation = the first val_rows rows "
                "of the test/query arrays, test = the rest (RSHNL: wiki 231, xmedia 500, xmedianet 4000)"
            )
        raw = _carve_head(raw, int(val_rows), used_keys["test"], where)
        used_keys["val"] = used_keys["test"]
        split_info.update(val="first rows of the test/query arrays", val_rows=int(val_rows), test="the rest")
    else:
        split_info.update(val="explicit validation arrays in the file")
    if layout.multilabel:
        split_info["database"] = "explicit retrieval arrays in the file"
    return _assemble(
        name, cfg, fmt, raw, used_keys, list(opened), layout.description, layout.citation, split_info
    )


def _carve_head(
    raw: dict[str, list[np.ndarray]], n_val: int, keys: list[str], where: str
) -> dict[str, list[np.ndarray]]:
    test = raw["test"]
    n = _n_rows(test[2])
    if not 1 <= n_val < n:
        raise ValueError(
            f"{where}.split.val_rows = {n_val} must be >= 1 and smaller than the {n} rows of '{keys[2]}'"
        )
    out = dict(raw)
    out["val"] = [_rows(a, slice(0, n_val)) for a in test]
    out["test"] = [_rows(a, slice(n_val, None)) for a in test]
    return out


def _n_rows(labels: np.ndarray) -> int:
    labels = np.asarray(labels)
    return int(labels.size if _is_index_vector(labels) else labels.shape[0])


def _rows(a: np.ndarray, idx: slice | np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if _is_index_vector(a) and a.ndim == 2 and a.shape[0] == 1:
        return a.reshape(-1)[idx]
    return a[idx]


def _prepare_xmedianet(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> Features:
    files = source_files(name, cfg, data_root)
    path = _file_for(name, files, "path", "xmedianet")
    src = ArrayFile(path, "xmedianet (XMediaNet5View_Doc2Vec.mat cell arrays)", cfg.get("transpose"))
    _, _, views = _modality_names(name, cfg)
    try:
        view_idx = [int(v) for v in views]
    except ValueError:
        raise ValueError(
            f"datasets.{name}.modalities: for format xmedianet the values are view indices into the cell "
            f"arrays (image 0, text 1), got {views}"
        ) from None
    raw, used = {}, {}
    for split, stem in (("train", "train"), ("val", "valid"), ("test", "test")):
        src.require([stem, f"{stem}_labels"])
        raw[split] = [src.cell(stem, view_idx[0]), src.cell(stem, view_idx[1]), src.cell(f"{stem}_labels", 0)]
        used[split] = [f"{stem}{{{view_idx[0]}}}", f"{stem}{{{view_idx[1]}}}", f"{stem}_labels{{0}}"]
    info = {"format": "xmedianet", "val": "explicit 'valid' cell arrays", "views": view_idx}
    return _assemble(
        name, cfg, "xmedianet", raw, used, [path], "XMediaNet5View_Doc2Vec.mat", XMEDIANET_CITE, info
    )


def _prepare_pooled(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike, fmt: str) -> Features:
    description, citation = POOLED[fmt]
    files = source_files(name, cfg, data_root)
    keys = ("XAll", "YAll", "LAll") if fmt == "ucch" else ("images", "YAll", "LAll")
    opened: dict[Path, ArrayFile] = {}
    arrays = []
    for key in keys:
        path = _file_for(name, files, key, fmt)
        src = opened.setdefault(path, ArrayFile(path, f"{fmt} ({description})", cfg.get("transpose")))
        arrays.append(src.read(key))
    if fmt == "dcmh":
        images = np.asarray(arrays[0])
        if images.ndim != 4:
            raise DatasetFileError(
                f"{_file_for(name, files, 'images', fmt)}: 'images' should be height x width x channels x N "
                f"(MATLAB order), found shape {images.shape}"
            )
        # MATLAB stores H x W x C x N; one flattened H*W*C pixel vector per sample (row-major H, W, C)
        arrays[0] = np.moveaxis(images, -1, 0).reshape(images.shape[-1], -1)
    n = _n_rows(arrays[2])
    where = f"datasets.{name}.split"
    index = query_train_split(n, dict(cfg.get("split", {})), where)
    raw = {split: [_rows(a, idx) for a in arrays] for split, idx in index.items()}
    used = {split: list(keys) for split in index}
    info = _split_record(
        fmt,
        cfg,
        n_rows=n,
        query=int(index["test"].size),
        train=int(index["train"].size),
        val=int(index["val"].size),
        database=int(index["database"].size),
        note="val rows are disjoint from queries and training rows but remain in the retrieval database",
    )
    return _assemble(name, cfg, fmt, raw, used, list(opened), description, citation, info)


def _assemble(
    name: str,
    cfg: Mapping[str, Any],
    fmt: str,
    raw: Mapping[str, Sequence[np.ndarray]],
    used_keys: Mapping[str, Sequence[str]],
    paths: Sequence[Path],
    description: str,
    citation: str,
    split_info: dict[str, Any],
) -> Features:
    """Check shapes, convert labels, optionally drop unlabelled rows and build the Features object."""
    mod0, mod1, _ = _modality_names(name, cfg)
    origin = ", ".join(str(p) for p in paths)
    labels, info = label_matrices(
        {s: parts[2] for s, parts in raw.items()},
        bool(cfg.get("dummy_class_column", False)),
        where=f"{origin} ({'/'.join(k[2] for k in used_keys.values())})",
    )
    splits: dict[str, dict[str, np.ndarray]] = {}
    dropped: dict[str, int] = {}
    for split, parts in raw.items():
        y = labels[split]
        keys = used_keys[split]
        x0 = _features_2d(parts[0], f"{origin}: '{keys[0]}' ({split} split)")
        x1 = _features_2d(parts[1], f"{origin}: '{keys[1]}' ({split} split)")
        for x, key in ((x0, keys[0]), (x1, keys[1])):
            if x.shape[0] != y.shape[0]:
                raise DatasetFileError(
                    f"{origin}: '{key}' has {x.shape[0]} rows but '{keys[2]}' has {y.shape[0]} labels; expected "
                    f"one row per sample (found shape {x.shape}; a d x N array needs transpose: true)"
                )
        empty = y.sum(axis=1) == 0
        if empty.any():
            if not cfg.get("drop_unlabelled", False):
                raise DatasetFileError(
                    f"{origin}: '{keys[2]}' has {int(empty.sum())} row(s) without any positive label (first: row "
                    f"{int(np.flatnonzero(empty)[0])}); set datasets.{name}.drop_unlabelled: true to drop them"
                )
            dropped[split] = int(empty.sum())
            x0, x1, y = x0[~empty], x1[~empty], y[~empty]
        splits[split] = {mod0: x0, mod1: x1, "labels": y}
    if dropped:
        split_info["dropped_unlabelled_rows"] = dropped
    split_info.update({f"n_{s}": int(v["labels"].shape[0]) for s, v in splits.items()})
    attrs = {
        "source": f"{description}: " + ", ".join(p.name for p in paths),
        "layout": fmt,
        "licence": LICENCE,
        "citation": citation,
        "sha256": {p.name: sha256_file(p) for p in paths},
        "source_keys": {s: list(k) for s, k in used_keys.items()},
        "split": split_info,
        **info,
    }
    return Features(
        name=name,
        modalities=(mod0, mod1),
        n_classes=int(labels["train"].shape[1]),
        splits=splits,
        attrs=attrs,
    )


def _reader(fmt: str):
    if fmt in LAYOUTS:
        return lambda name, cfg, root: _prepare_layout(name, cfg, root, fmt)
    if fmt in POOLED:
        return lambda name, cfg, root: _prepare_pooled(name, cfg, root, fmt)
    return _prepare_xmedianet


#: format -> reader(name, cfg, data_root) for every published layout.
READERS = {fmt: _reader(fmt) for fmt in (*LAYOUTS, "xmedianet", *POOLED)}


def prepare_published(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> Features:
    """Read the published file(s) of dataset ``name`` (``cfg["format"]`` one of :data:`READERS`)."""
    fmt = cfg.get("format")
    if fmt not in READERS:
        raise ValueError(
            f"datasets.{name}.format {fmt!r} is not a published layout; known: {sorted(READERS)}"
        )
    return READERS[fmt](name, cfg, data_root)
