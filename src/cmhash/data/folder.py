"""Corpora of the features stage: your own images + table (``format: folder``) and the raw public releases.

Two steps, so that changing the split or the labels never re-runs the expensive image network:

1. :func:`extract_corpus` (workflow rule ``extract_features``): every pair of the corpus -> image features
   (:mod:`cmhash.data.backbones`) and text features (:mod:`cmhash.data.texts`), written by
   :func:`write_extracted` to ``results/features/{dataset}.h5`` (schema ``cmhash.extracted/1``, see
   docs/file_formats.md).
2. :func:`prepare_corpus` (rule ``prepare_dataset``): labels from the corpus, rows without labels dropped
   or reported, the split made with the existing helpers (:func:`~cmhash.data.canonical.stratified_split`,
   :func:`~cmhash.data.readers.query_train_split` or the release's own lists) -> :class:`Features`.
   Without an extracted file it runs step 1 in memory, so the library works without Snakemake.

Which files make the corpus is the format's reader (:data:`CORPUS_FORMATS`): ``folder`` reads a table
(``path`` = CSV; ``.tsv``/``.tab`` = tab-separated) of image file names, texts and labels; ``wikipedia``,
``mirflickr`` and ``pascal_sentence`` read the raw releases (:mod:`cmhash.data.raw`). The ``folder`` block of
the dataset entry holds the features stage's settings (:data:`FOLDER_DEFAULTS`, documented in config/README.md;
each raw format has the papers' recipe as its defaults); its table keys apply to format ``folder`` only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..store import atomic_h5, check_schema, get_attr, sha256_file
from .canonical import Features, stratified_split
from .corpus import Corpus, CorpusFormat
from .raw import RAW_FORMATS, official_split
from .readers import query_train_split

log = logging.getLogger(__name__)

#: Keys of ``datasets.<name>.folder`` and their defaults (mirrored in the config schema; a test checks).
FOLDER_DEFAULTS: dict[str, Any] = {
    "images": "",
    "image_column": "image",
    "text_column": "text",
    "label_column": "labels",
    "label_separator": "",
    "backbone": "vgg19",
    "weights": "imagenet",
    "image_size": 224,
    "batch_size": 32,
    "seed": 0,
    "text_features": "bow",
    "min_count": 1,
    "max_features": 0,
    "token_separator": "",
    "lowercase": True,
    "text_model": "",
    "doc2vec_dim": 300,
    "doc2vec_epochs": 20,
    "doc2vec_window": 15,
}
#: Keys that describe format folder's table; the raw formats have a fixed layout instead.
TABLE_KEYS = ("images", "image_column", "text_column", "label_column", "label_separator")
#: Keys that only affect the labels: changing them re-runs prepare_dataset, not the extraction.
LABEL_KEYS = ("label_column", "label_separator")
MODALITIES = ("image", "text")
DEFAULT_SPLIT = {"train_fraction": 0.7, "val_fraction": 0.1, "seed": 0}
_QUERY_KEYS = {"query", "train", "val", "order", "query_at", "seed"}
_COUNT_KEYS = {"train_per_class", "val_per_class", "test_per_class", "seed"}
_FRACTION_KEYS = {"train_fraction", "val_fraction", "test_fraction", "seed"}


# ------------------------------------------------------------------------------------------ settings
def folder_settings(name: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``folder`` block of dataset ``name`` with defaults filled in; unknown keys are an error."""
    block = cfg.get("folder") or {}
    if not isinstance(block, Mapping):
        raise TypeError(f"datasets.{name}.folder must be a mapping of settings, got {block!r}")
    unknown = sorted(set(block) - set(FOLDER_DEFAULTS))
    if unknown:
        raise ValueError(
            f"datasets.{name}.folder: unknown key(s) {unknown}; known: {sorted(FOLDER_DEFAULTS)} (config/README.md)"
        )
    fmt = corpus_format(name, cfg)
    if not fmt.table_keys:
        table = sorted(set(block) & set(TABLE_KEYS))
        if table:
            raise ValueError(
                f"datasets.{name}.folder: {table} describe a table (format folder); format {cfg['format']} reads "
                "the release's own layout (config/README.md, 'Raw public releases'): remove them"
            )
    settings = {**FOLDER_DEFAULTS, **fmt.defaults, **block}
    from .backbones import FEATURE_DIMS
    from .texts import TEXT_FEATURES

    if settings["backbone"] not in FEATURE_DIMS:
        raise ValueError(
            f"datasets.{name}.folder.backbone is {settings['backbone']!r}; choose one of {sorted(FEATURE_DIMS)}"
        )
    if settings["text_features"] not in TEXT_FEATURES:
        raise ValueError(
            f"datasets.{name}.folder.text_features is {settings['text_features']!r}; choose one of {list(TEXT_FEATURES)}"
        )
    if settings["text_features"] == "sentence_transformers" and not settings["text_model"]:
        raise ValueError(
            f"datasets.{name}.folder.text_model: text_features sentence_transformers needs the path of a "
            "locally saved model"
        )
    mods = cfg.get("modalities")
    if mods is not None and list(mods) != list(MODALITIES):
        raise ValueError(
            f"datasets.{name}.modalities: format {cfg['format']} always names its modalities {list(MODALITIES)}; "
            "remove the key"
        )
    return settings


def corpus_format(name: str, cfg: Mapping[str, Any]) -> CorpusFormat:
    """The :class:`CorpusFormat` of dataset ``name`` (an error for a format without a features stage)."""
    fmt = cfg.get("format")
    if fmt not in CORPUS_FORMATS:
        raise ValueError(
            f"datasets.{name}.format is {fmt!r}; the features stage reads formats {sorted(CORPUS_FORMATS)}"
        )
    return CORPUS_FORMATS[str(fmt)]


def extraction_settings(name: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that determine the extracted features (all of ``folder`` except the label keys)."""
    return {k: v for k, v in folder_settings(name, cfg).items() if k not in LABEL_KEYS}


def folder_sources(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> dict[str, Path]:
    """Input files and folders of the extraction (role -> path), and ``weights`` when it is a file.

    Format folder: ``table`` and ``images``; a raw release: its lists, image and text folders.
    """
    settings = folder_settings(name, cfg)
    sources = corpus_format(name, cfg).sources(name, cfg, data_root)
    if settings["weights"] not in ("imagenet", "random"):
        sources["weights"] = Path(data_root) / str(settings["weights"])
    if settings["text_model"]:
        sources["text_model"] = Path(data_root) / str(settings["text_model"])
    return sources


def _table_sources(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> dict[str, Path]:
    if "path" not in cfg:
        raise ValueError(
            f"datasets.{name}.path is required for format folder: the table (CSV/TSV) of image file names, "
            "texts and labels, relative to data_root"
        )
    images = str((cfg.get("folder") or {}).get("images", ""))
    table = Path(data_root) / str(cfg["path"])
    return {"table": table, "images": Path(data_root) / images if images else table.parent}


# ----------------------------------------------------------------------------------------------- table
def read_table(path: str | os.PathLike, columns: Sequence[str], key: str) -> Any:
    """The table at ``path`` as strings (no NA conversion: a tag "NA" stays "NA"), checked for ``columns``.

    ``key`` is the config key that names the file, for the error messages.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{key}: table {path} not found. Give the CSV/TSV of image file names, texts and labels "
            "(relative to data_root)."
        )
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as a {'TSV' if sep == chr(9) else 'CSV'} table ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: column(s) {missing} not found; the table has {list(table.columns)}. Rename the "
            f"column(s) or set {key.rsplit('.', 1)[0]}.folder.image_column / text_column / label_column."
        )
    if len(table) == 0:
        raise ValueError(f"{path}: the table has a header but no rows")
    return table


def _label_columns(settings: Mapping[str, Any]) -> list[str]:
    col = settings["label_column"]
    return [str(c) for c in col] if isinstance(col, (list, tuple)) else [str(col)]


def _table_columns(settings: Mapping[str, Any]) -> list[str]:
    return [settings["image_column"], settings["text_column"], *_label_columns(settings)]


def _class_order(names: set[str]) -> list[str]:
    try:
        return sorted(names, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(names)


def table_labels(table: Any, settings: Mapping[str, Any], where: str) -> tuple[np.ndarray, list[str]]:
    """uint8 ``N x C`` multi-hot labels and class names from the table's label column(s).

    One column (``label_column`` a string): each cell holds a class name, or several separated by
    ``label_separator``; classes are sorted (numerically when all names are integers). Several columns
    (``label_column`` a list): each is a 0/1 indicator of the class named by the column.
    """
    cols = _label_columns(settings)
    if isinstance(settings["label_column"], (list, tuple)):
        labels = np.zeros((len(table), len(cols)), dtype=np.uint8)
        for j, col in enumerate(cols):
            cells = table[col].str.strip()
            bad = ~cells.isin(["0", "1", "0.0", "1.0"])
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise ValueError(
                    f"{where}: label column '{col}' must hold 0 or 1, found {cells.iloc[i]!r} on line {i + 2}"
                )
            labels[:, j] = cells.isin(["1", "1.0"]).to_numpy()
        return labels, cols
    sep = settings["label_separator"]
    rows = [
        [p.strip() for p in (cell.split(sep) if sep else [cell]) if p.strip()]
        for cell in table[cols[0]].astype(str)
    ]
    classes = _class_order({c for row in rows for c in row})
    index = {c: i for i, c in enumerate(classes)}
    labels = np.zeros((len(rows), len(classes)), dtype=np.uint8)
    for i, row in enumerate(rows):
        labels[i, [index[c] for c in row]] = 1
    return labels, classes


# ------------------------------------------------------------------------------------------ extraction
@dataclass
class ExtractedCorpus:
    """Image and text features of every table row (row order of the table) and their provenance."""

    name: str
    image: np.ndarray
    text: np.ndarray
    image_files: list[str]
    vocabulary: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


def _image_paths(images: Path, files: Sequence[str], table: Path, column: str, name: str) -> list[Path]:
    if not images.is_dir():
        raise FileNotFoundError(
            f"datasets.{name}.folder.images: image folder {images} not found; set it (relative to data_root) "
            "to the folder that the table's file names are relative to"
        )
    paths = [images / f.strip() for f in files]
    missing = [f for f, p in zip(files, paths, strict=True) if not f.strip() or not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{table}: {len(missing)} file name(s) in column '{column}' are not files in {images} "
            f"(first: {missing[:3]}). Fix the names (relative to the image folder) or add the files, "
            f"or point datasets.{name}.folder.images at the right folder."
        )
    return paths


def read_folder_corpus(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> Corpus:
    """Format folder: the table's rows as a :class:`Corpus` (labels from the label column(s))."""
    settings = folder_settings(name, cfg)
    sources = _table_sources(name, cfg, data_root)
    table_path = sources["table"]
    table = read_table(table_path, _table_columns(settings), f"datasets.{name}.path")
    files = table[settings["image_column"]].astype(str).tolist()
    paths = _image_paths(sources["images"], files, table_path, settings["image_column"], name)
    labels, class_names = table_labels(table, settings, f"{table_path}")
    attrs = {
        "source": f"own corpus: table {table_path}, images {sources['images']}",
        "licence": "user corpus (see the data's own terms)",
        "citation": "",
        "sha256": {table_path.name: sha256_file(table_path)},
        "label_column": settings["label_column"],
        "label_separator": settings["label_separator"],
        "text_source": f"{table_path} column '{settings['text_column']}'",
        # how the data stage names a row in errors: the table's line (header = line 1)
        "row_where": [str(table_path), f"in column(s) {_label_columns(settings)}", 2],
    }
    return Corpus(name=name, image_paths=paths, image_ids=files, labels=labels, class_names=class_names,
                  texts=table[settings["text_column"]].astype(str).tolist(), attrs=attrs)


def read_corpus(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> Corpus:
    """The :class:`Corpus` of dataset ``name``, read by its format's reader."""
    return corpus_format(name, cfg).read(name, cfg, data_root)


def text_features(texts: Sequence[str], settings: Mapping[str, Any], data_root: str | os.PathLike, *,
                  device: str = "cpu", where: str = "texts") -> Any:
    """The texts through the text model that ``settings["text_features"]`` names."""
    from .texts import doc2vec, embed_sentences, vectorize

    kind = settings["text_features"]
    model = Path(data_root) / settings["text_model"] if settings["text_model"] else None
    if kind == "sentence_transformers":
        return embed_sentences(texts, model, batch_size=int(settings["batch_size"]), device=str(device), where=where)
    if kind == "doc2vec":
        return doc2vec(texts, model_path=model, dim=int(settings["doc2vec_dim"]),
                       epochs=int(settings["doc2vec_epochs"]), window=int(settings["doc2vec_window"]),
                       min_count=int(settings["min_count"]), seed=int(settings["seed"]), where=where)
    return vectorize(
        texts,
        kind,
        min_count=int(settings["min_count"]),
        max_features=int(settings["max_features"]),
        token_separator=str(settings["token_separator"]),
        lowercase=bool(settings["lowercase"]),
        where=where,
    )


def extract_corpus(
    name: str,
    cfg: Mapping[str, Any],
    data_root: str | os.PathLike,
    *,
    device: str = "cpu",
    threads: int = 1,
) -> ExtractedCorpus:
    """Image and text features of every pair of dataset ``name``'s corpus (step 1 of the module doc)."""
    from .backbones import extract_image_features

    settings = folder_settings(name, cfg)
    sources = folder_sources(name, cfg, data_root)
    corpus = read_corpus(name, cfg, data_root)
    images = extract_image_features(
        corpus.image_paths,
        settings["backbone"],
        str(sources.get("weights", settings["weights"])),
        image_size=int(settings["image_size"]),
        batch_size=int(settings["batch_size"]),
        device=device,
        threads=threads,
        seed=int(settings["seed"]),
    )
    where = str(corpus.attrs.get("text_source", f"datasets.{name} texts"))
    text = text_features(corpus.texts, settings, data_root, device=device, where=where)
    log.info("%s: %d pairs -> image %s, text %s", name, len(corpus.texts), images.features.shape[1:],
             text.features.shape[1:])
    attrs = {
        "corpus_sha256": corpus.attrs.get("sha256", {}),
        "images": str(sources["images"]),
        "settings": {k: v for k, v in settings.items() if k not in LABEL_KEYS},
        "image_features": images.info,
        "text_features": text.info,
        "device": str(device),
    }
    return ExtractedCorpus(
        name=name,
        image=images.features,
        text=text.features,
        image_files=corpus.image_ids,
        vocabulary=text.vocabulary,
        attrs=attrs,
    )


def write_extracted(path: str | os.PathLike, corpus: ExtractedCorpus) -> Path:
    """Write ``corpus`` atomically to ``path`` (schema ``cmhash.extracted/1``)."""
    path = Path(path)
    n = corpus.image.shape[0]
    if corpus.text.shape[0] != n or len(corpus.image_files) != n:
        raise ValueError(
            f"{path}: image ({n}), text ({corpus.text.shape[0]}) and image_files ({len(corpus.image_files)}) "
            "must have one row per table row"
        )
    attrs = {**corpus.attrs, "name": corpus.name, "n_rows": int(n), "modalities": list(MODALITIES)}
    strings = h5py.string_dtype()
    with atomic_h5(path, "extracted", attrs) as f:
        for key, x in (("image", corpus.image), ("text", corpus.text)):
            f.create_dataset(key, data=np.asarray(x, np.float32), compression="gzip", compression_opts=4, shuffle=True)
        f.create_dataset("image_files", data=np.array(corpus.image_files, dtype=object), dtype=strings)
        f.create_dataset("vocabulary", data=np.array(corpus.vocabulary, dtype=object), dtype=strings,
                         shape=(len(corpus.vocabulary),))
    return path


def read_extracted(path: str | os.PathLike) -> ExtractedCorpus:
    """Read a ``cmhash.extracted/1`` file written by :func:`write_extracted`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: extracted features not found; run the extract_features rule first")
    with h5py.File(path, "r") as f:
        check_schema(f, "extracted")
        for key in ("image", "text", "image_files", "vocabulary"):
            if key not in f:
                raise ValueError(f"{path}: missing dataset '/{key}'; delete the file and run extract_features again")
        attrs = {k: get_attr(f, k) for k in f.attrs if k not in ("schema", "name", "n_rows", "modalities")}
        return ExtractedCorpus(
            name=str(get_attr(f, "name")),
            image=np.asarray(f["image"][()], np.float32),
            text=np.asarray(f["text"][()], np.float32),
            image_files=[s.decode() if isinstance(s, bytes) else str(s) for s in f["image_files"][()]],
            vocabulary=[s.decode() if isinstance(s, bytes) else str(s) for s in f["vocabulary"][()]],
            attrs=attrs,
        )


# ------------------------------------------------------------------------------------------- the split
def split_rows(name: str, cfg: Mapping[str, Any], labels: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    """Index arrays per split and the split record, from ``datasets.<name>.split`` (default 70/10/20 %).

    Three forms: ``{train_fraction, val_fraction[, test_fraction], seed}`` and ``{train_per_class,
    val_per_class[, test_per_class], seed}`` go to :func:`stratified_split`; ``{query, train, val, order,
    query_at, seed}`` (the multi-label protocol with a retrieval ``database``) to :func:`query_train_split`.
    """
    split_cfg = dict(cfg.get("split") or DEFAULT_SPLIT)
    where = f"datasets.{name}.split"
    keys = set(split_cfg)
    if "train_fraction" in keys or "train_per_class" in keys:
        per_class = "train_per_class" in keys
        allowed = _COUNT_KEYS if per_class else _FRACTION_KEYS
        if keys - allowed:
            raise ValueError(f"{where}: unknown key(s) {sorted(keys - allowed)}; with this form use {sorted(allowed)}")
        cast = int if per_class else float
        stem = "_per_class" if per_class else "_fraction"
        try:
            sizes = {s: cast(split_cfg[f"{s}{stem}"]) for s in ("train", "val")}
        except KeyError as exc:
            raise ValueError(f"{where} needs train{stem} and val{stem} (missing {exc})") from None
        if f"test{stem}" in split_cfg:
            sizes["test"] = cast(split_cfg[f"test{stem}"])
        seed = int(split_cfg.get("seed", 0))
        try:
            index = stratified_split(labels, sizes, seed)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        record = {"method": "stratified_per_class" if per_class else "fractions", **sizes, "seed": seed}
    elif keys & {"query", "train", "val"}:
        index = query_train_split(labels.shape[0], split_cfg, where)
        record = {"method": "query_train", **split_cfg}
    else:
        raise ValueError(
            f"{where} = {split_cfg!r}: give {{train_fraction, val_fraction, seed}}, {{train_per_class, "
            "val_per_class, test_per_class, seed}} or {query, train, val, order, seed} (config/README.md)"
        )
    record.update({f"n_{s}": int(idx.size) for s, idx in index.items()})
    return index, record


# ----------------------------------------------------------------------------------------------- step 2
def prepare_corpus(
    name: str,
    cfg: Mapping[str, Any],
    data_root: str | os.PathLike,
    extracted: str | os.PathLike | None = None,
) -> Features:
    """Canonical :class:`Features` of a corpus dataset (step 2 of the module doc).

    ``extracted`` is the file of :func:`write_extracted` (the workflow passes it); without it the
    features are extracted now on the CPU. The split: ``datasets.<name>.split`` or, when absent, the
    format's default (the papers' protocol for a raw release; 70/10/20 % for a table).
    """
    fmt = corpus_format(name, cfg)
    corpus = read_corpus(name, cfg, data_root)
    if extracted is None:
        features = extract_corpus(name, cfg, data_root)
        sha = dict(corpus.attrs.get("sha256", {}))
    else:
        features = read_extracted(extracted)
        if features.image_files != corpus.image_ids:
            raise ValueError(
                f"{extracted} was extracted from another version of {corpus.attrs.get('row_where', [name])[0]} (its "
                "image file names differ from what the corpus lists now); delete it and run the extract_features "
                "rule again"
            )
        sha = {**corpus.attrs.get("sha256", {}), Path(extracted).name: sha256_file(extracted)}
    labels = corpus.labels
    keep = labels.sum(axis=1) > 0
    dropped = int((~keep).sum())
    if dropped:
        if not cfg.get("drop_unlabelled", False):
            first = int(np.flatnonzero(~keep)[0])
            file, column, offset = corpus.attrs.get("row_where", [str(corpus.attrs.get("source", name)), "", 1])
            raise ValueError(
                f"{file}: {dropped} row(s) have no label {column} (first: line {first + int(offset)}, "
                f"{corpus.image_ids[first]}); label them or set datasets.{name}.drop_unlabelled: true to drop them"
            )
        log.info("%s: dropping %d unlabelled row(s)", name, dropped)
    rows = np.flatnonzero(keep)
    labels = labels[rows]
    split_cfg = cfg.get("split") or fmt.default_split
    if split_cfg and set(split_cfg) == {"val_rows"}:
        if corpus.split is None or dropped:
            raise ValueError(
                f"datasets.{name}.split: val_rows takes the release's own train/test lists, which format "
                f"{cfg['format']} does not have (or rows were dropped); use another split form (config/README.md)"
            )
        index, split_record = official_split(name, {"split": split_cfg}, corpus.split, default=split_cfg)
    else:
        index, split_record = split_rows(name, {"split": split_cfg} if split_cfg else {}, labels)
    if dropped:
        split_record["dropped_unlabelled_rows"] = dropped
    arrays = {"image": features.image[rows], "text": features.text[rows], "labels": labels}
    splits = {s: {k: np.ascontiguousarray(a[idx]) for k, a in arrays.items()} for s, idx in index.items()}
    extra = {k: v for k, v in corpus.attrs.items() if k not in ("source", "licence", "citation", "sha256",
                                                                 "label_column", "label_separator", "text_source",
                                                                 "row_where")}
    attrs = {
        "source": corpus.attrs.get("source", ""),
        "licence": corpus.attrs.get("licence", ""),
        "citation": corpus.attrs.get("citation", ""),
        "class_names": corpus.class_names,
        "unused_classes": [c for c, n in zip(corpus.class_names, labels.sum(axis=0), strict=True) if n == 0],
        "sha256": sha,
        "split": split_record,
        "features": {
            "image": features.attrs.get("image_features", {}),
            "text": dict(features.attrs.get("text_features", {})),
            **{k: corpus.attrs[k] for k in ("label_column", "label_separator") if k in corpus.attrs},
        },
        **extra,
    }
    return Features(
        name=name,
        modalities=MODALITIES,
        n_classes=int(labels.shape[1]),
        splits=splits,
        attrs=attrs,
    )


#: Name kept for format folder's callers.
prepare_folder = prepare_corpus

#: Formats whose pairs go through the features stage: the table (folder) and the raw releases.
CORPUS_FORMATS: dict[str, CorpusFormat] = {
    "folder": CorpusFormat(read=read_folder_corpus, sources=_table_sources, table_keys=True,
                           default_split=DEFAULT_SPLIT, description="own images + a table"),
    **RAW_FORMATS,
}
