"""Raw public releases as corpora of the features stage: Wikipedia, MIRFlickr-25K, Pascal Sentence.

Each reader takes ``datasets.<name>.path`` = the folder holding the unpacked release and returns a
:class:`~cmhash.data.corpus.Corpus` (image files, texts, labels, the release's split). Images and texts then
go through the features stage like a ``folder`` corpus, with the recipe of the papers as the format's defaults
(config/README.md, "Raw public releases"). Every missing file is reported by name with the layout expected.

**Wikipedia** (Rasiwasia et al., ACM MM 2010; http://www.svcl.ucsd.edu/projects/crossmodal/): 2,866 pairs,
10 categories. Layout::

    <path>/trainset_txt_img_cat.list   lines "text_id image_id category" (2,173)
    <path>/testset_txt_img_cat.list    (693)
    <path>/images/<category>/<image_id>.jpg
    <path>/texts/<text_id>.xml         <document>...<text>article</text></document>

The category number (1-10) is the label; the class name is the image's folder. Split: the two lists
(train / test); ``split: {val_rows: 231}`` (default) moves the first 231 test pairs to validation as
MRL/RSHNL do (2,173 / 231 / 462). Recipe: VGG-19 fc7 + 300-d Doc2Vec (``text_features: doc2vec``; MRL's
h5 used Lau & Baldwin's pretrained enwiki DBOW model: give it as ``text_model``), or ``bow``.
Format ``wikipedia_svcl`` reads the original feature release instead: ``raw_features.mat`` (``I_tr``/``I_te``
128-d SIFT bag of visual words, ``T_tr``/``T_te`` 10-d LDA topic proportions) with the same two lists for labels
(no features stage).

**MIRFlickr-25K** (Huiskes & Lew, MIR 2008; https://press.liacs.nl/mirflickr/), DCMH protocol (Jiang & Li,
CVPR 2017). Layout::

    <path>/im<N>.jpg                          N = 1..25000
    <path>/meta/tags/tags<N>.txt              one (processed) tag per line
    <path>/annotations/<concept>.txt          image numbers, one per line; also <concept>_r1.txt

(``mirflickr25k_annotations_v080/`` is accepted for ``annotations/``.) The 24 concepts are the annotation files
without the ``_r1`` suffix; a pair has a concept when its number is in ``<concept>.txt`` or ``<concept>_r1.txt``
(the ``_r1`` "relevant" lists are subsets of the potential ones in the release). Images without any concept are
dropped (25,000 -> 20,015); the text is the binary bag of the tags used by >= 20 of the kept images (1,386-d).
Split (default): 2,000 queries, the rest = retrieval set, 10,000 training pairs from it (seeded permutation),
1,000 validation pairs after them.

**Pascal Sentence** (Rashtchian et al., NAACL-HLT 2010 workshop; https://vision.cs.uiuc.edu/pascal-sentences/):
1,000 images in 20 category folders, 5 sentences each. Layout (``dataset/`` and ``sentence/``, the names of the
page's crawl, are accepted too)::

    <path>/images/<category>/<name>.jpg
    <path>/sentences/<category>/<name>.txt    five sentences, one per line

Text = the five sentences; split (default) 40 / 5 / 5 pairs per class (800 / 100 / 100, as DSCMR).
"""

from __future__ import annotations

import html
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..store import sha256_file
from .canonical import Features
from .corpus import Corpus, CorpusFormat, release_check

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class RawReleaseError(FileNotFoundError):
    """A file of a raw release is missing or malformed; the message names it and the layout expected."""


def _release_root(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike, fmt: str) -> Path:
    if "path" not in cfg:
        raise ValueError(
            f"datasets.{name}.path is required for format {fmt}: the folder holding the unpacked release, "
            "relative to data_root (config/README.md, 'Raw public releases')"
        )
    root = Path(data_root) / str(cfg["path"])
    if not root.is_dir():
        raise RawReleaseError(
            f"datasets.{name}.path: {root} is not a folder. Unpack the {fmt} release there (layout: "
            "config/README.md, 'Raw public releases') or set data_root / path."
        )
    return root


def _first_dir(root: Path, names: tuple[str, ...], name: str, what: str) -> Path:
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise RawReleaseError(
        f"datasets.{name}: no {what} folder in {root} (looked for {', '.join(n + '/' for n in names)})"
    )


# ------------------------------------------------------------------------------------------- Wikipedia
WIKI_LISTS = {"train": "trainset_txt_img_cat.list", "test": "testset_txt_img_cat.list"}
WIKI_COUNTS = {"pairs": 2866, "train": 2173, "test": 693, "classes": 10}


def read_wiki_lists(root: Path, name: str) -> tuple[list[tuple[str, str, int]], dict[str, np.ndarray]]:
    """Rows ``(text_id, image_id, category)`` of train then test list, and the index of each split."""
    rows: list[tuple[str, str, int]] = []
    split: dict[str, np.ndarray] = {}
    for part, file in WIKI_LISTS.items():
        path = root / file
        if not path.is_file():
            raise RawReleaseError(
                f"datasets.{name}: {path} not found; the Wikipedia release has {' and '.join(WIKI_LISTS.values())} "
                "with lines 'text_id image_id category'"
            )
        start = len(rows)
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
                raise RawReleaseError(
                    f"{path}, line {lineno}: expected 'text_id image_id category' (category an integer), got {line!r}"
                )
            rows.append((parts[0], parts[1], int(parts[2])))
        if len(rows) == start:
            raise RawReleaseError(f"{path}: no pairs listed")
        split[part] = np.arange(start, len(rows), dtype=np.int64)
    return rows, split


def _category_labels(rows: list[tuple[str, str, int]]) -> tuple[list[int], np.ndarray]:
    """The sorted category numbers of the list rows and their one-hot ``N x C`` uint8 labels."""
    categories = sorted({c for _, _, c in rows})
    col = {c: j for j, c in enumerate(categories)}
    labels = np.zeros((len(rows), len(categories)), np.uint8)
    labels[np.arange(len(rows)), [col[c] for _, _, c in rows]] = 1
    return categories, labels


def _wiki_attrs(name: str, rows: list, split: Mapping[str, np.ndarray], categories: list[int], release: str,
                source: str) -> dict[str, Any]:
    """Provenance shared by the two Wikipedia formats: source, citation, licence and the release check."""
    found = {"pairs": len(rows), "train": int(split["train"].size), "test": int(split["test"].size),
             "classes": len(categories)}
    return {
        "source": source,
        "citation": "Rasiwasia et al., A New Approach to Cross-Modal Multimedia Retrieval, ACM MM 2010",
        "licence": "research use (see the release)",
        "release_check": release_check(name, WIKI_COUNTS, found, release),
    }


def _index_images(folder: Path) -> dict[str, Path]:
    """``image_id`` -> file for every image in the category sub-folders of ``folder``."""
    index: dict[str, Path] = {}
    for path in sorted(folder.glob("*/*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            index.setdefault(path.stem, path)
    return index


def read_wiki_text(path: Path) -> str:
    """The article of one ``texts/<id>.xml`` file (the ``<text>`` element; entities decoded).

    Some files of the release are not well-formed XML (a bare ``&``); those are read with a pattern match.
    """
    raw = path.read_text(encoding="utf-8", errors="replace")
    try:
        node = ET.fromstring(raw).find(".//text")
        if node is not None:
            return "".join(node.itertext()).strip()
    except ET.ParseError:
        pass
    match = re.search(r"<text[^>]*>(.*?)</text>", raw, flags=re.S | re.I)
    body = match.group(1) if match else re.sub(r"<[^>]+>", " ", raw)
    return html.unescape(body).strip()


def _wiki_sources(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> dict[str, Path]:
    root = _release_root(name, cfg, data_root, "wikipedia")
    return {"train_list": root / WIKI_LISTS["train"], "test_list": root / WIKI_LISTS["test"],
            "images": root / "images", "texts": root / "texts"}


def read_wikipedia(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> Corpus:
    root = _release_root(name, cfg, data_root, "wikipedia")
    rows, split = read_wiki_lists(root, name)
    images = _first_dir(root, ("images",), name, "images")
    texts = _first_dir(root, ("texts",), name, "texts")
    index = _index_images(images)
    missing_img = [i for _, i, _ in rows if i not in index]
    missing_txt = [t for t, _, _ in rows if not (texts / f"{t}.xml").is_file()]
    if missing_img or missing_txt:
        raise RawReleaseError(
            f"datasets.{name}: the lists name {len(missing_img)} image(s) not found as {images}/<category>/<id>.jpg "
            f"(first: {missing_img[:3]}) and {len(missing_txt)} text(s) not found as {texts}/<id>.xml "
            f"(first: {missing_txt[:3]})"
        )
    categories, labels = _category_labels(rows)
    names: dict[int, str] = {}
    for _, image_id, c in rows:
        folder = index[image_id].parent.name
        if names.setdefault(c, folder) != folder:
            raise RawReleaseError(
                f"datasets.{name}: category {c} has images in both {names[c]}/ and {folder}/ ({image_id}); "
                "the release keeps one folder per category"
            )
    attrs = {
        **_wiki_attrs(name, rows, split, categories, "Wikipedia", f"Wikipedia raw release at {root}"),
        "sha256": {f: sha256_file(root / f) for f in WIKI_LISTS.values()},
        "category_numbers": categories,
    }
    return Corpus(
        name=name,
        image_paths=[index[i] for _, i, _ in rows],
        image_ids=[str(index[i].relative_to(root)) for _, i, _ in rows],
        texts=[read_wiki_text(texts / f"{t}.xml") for t, _, _ in rows],
        labels=labels,
        class_names=[names[c] for c in categories],
        split=split,
        attrs=attrs,
    )


SVCL_KEYS = {"image_train": "I_tr", "image_test": "I_te", "text_train": "T_tr", "text_test": "T_te"}


def _svcl_sources(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> dict[str, Path]:
    root = _release_root(name, cfg, data_root, "wikipedia_svcl")
    return {"features": root / "raw_features.mat", "train_list": root / WIKI_LISTS["train"],
            "test_list": root / WIKI_LISTS["test"]}


def prepare_wikipedia_svcl(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> Features:
    """Format ``wikipedia_svcl``: the original SVCL feature release (no features stage)."""
    from .matfiles import ArrayFile

    sources = _svcl_sources(name, cfg, data_root)
    root = sources["features"].parent
    if not sources["features"].is_file():
        raise RawReleaseError(
            f"datasets.{name}: {sources['features']} not found; the SVCL Wikipedia release has raw_features.mat "
            f"({', '.join(SVCL_KEYS.values())}) beside the two .list files"
        )
    rows, split = read_wiki_lists(root, name)
    src = ArrayFile(sources["features"], layout="wikipedia_svcl")
    src.require(list(SVCL_KEYS.values()))
    arrays = {k: np.asarray(src.read(v), np.float32) for k, v in SVCL_KEYS.items()}
    for part in ("train", "test"):
        for mod in ("image", "text"):
            a = arrays[f"{mod}_{part}"]
            if a.ndim != 2 or a.shape[0] != split[part].size:
                raise RawReleaseError(
                    f"{sources['features']}: {SVCL_KEYS[f'{mod}_{part}']} has shape {a.shape}; the {part} list "
                    f"has {split[part].size} pairs (one row each)"
                )
    categories, labels = _category_labels(rows)
    all_rows = {"image": np.concatenate([arrays["image_train"], arrays["image_test"]]),
                "text": np.concatenate([arrays["text_train"], arrays["text_test"]]), "labels": labels}
    index, record = official_split(name, cfg, split, default={"val_rows": 231})
    attrs = {
        **_wiki_attrs(name, rows, split, categories, "Wikipedia (SVCL features)",
                      f"Wikipedia SVCL feature release at {root}"),
        "class_names": [str(c) for c in categories],
        "sha256": {p.name: sha256_file(p) for p in sources.values()},
        "split": record,
        "features": {"image": "128-d SIFT bag of visual words (I_tr/I_te)", "text": "10-d LDA (T_tr/T_te)"},
    }
    splits = {s: {k: np.ascontiguousarray(a[idx]) for k, a in all_rows.items()} for s, idx in index.items()}
    return Features(name=name, modalities=("image", "text"), n_classes=len(categories), splits=splits, attrs=attrs)


def official_split(
    name: str, cfg: Mapping[str, Any], split: Mapping[str, np.ndarray], default: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The release's train/test lists, with the first ``val_rows`` test pairs as validation (MRL/RSHNL)."""
    split_cfg = dict(cfg.get("split") or default)
    where = f"datasets.{name}.split"
    if set(split_cfg) != {"val_rows"}:
        raise ValueError(f"{where} = {split_cfg!r}: this form takes only val_rows (validation = the first test pairs)")
    v = int(split_cfg["val_rows"])
    test = np.asarray(split["test"])
    if not 0 < v < test.size:
        raise ValueError(f"{where}.val_rows = {v} must be >= 1 and leave test pairs (the test list has {test.size})")
    index = {"train": np.asarray(split["train"]), "val": test[:v], "test": test[v:]}
    record = {"method": "release_lists", "val_rows": v, **{f"n_{s}": int(i.size) for s, i in index.items()}}
    return index, record


# ------------------------------------------------------------------------------------------- MIRFlickr
MIRFLICKR_ANNOTATIONS = ("annotations", "mirflickr25k_annotations_v080")
MIRFLICKR_COUNTS = {"images": 25000, "pairs": 20015, "concepts": 24}
_IM = re.compile(r"^im(\d+)\.jpg$", re.I)


def _mirflickr_sources(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> dict[str, Path]:
    root = _release_root(name, cfg, data_root, "mirflickr")
    return {"images": root, "tags": root / "meta" / "tags",
            "annotations": _first_dir(root, MIRFLICKR_ANNOTATIONS, name, "annotations")}


def _read_ids(path: Path) -> set[int]:
    ids: set[int] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if not s.isdigit():
            raise RawReleaseError(f"{path}, line {lineno}: expected an image number, got {s!r}")
        ids.add(int(s))
    return ids


def read_mirflickr(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> Corpus:
    sources = _mirflickr_sources(name, cfg, data_root)
    root, tags_dir, ann = sources["images"], sources["tags"], sources["annotations"]
    numbers = sorted(int(m.group(1)) for p in root.iterdir() if (m := _IM.match(p.name)))
    if not numbers:
        raise RawReleaseError(f"datasets.{name}: no im<N>.jpg images in {root} (the MIRFlickr-25K release layout)")
    concept_files = sorted(p for p in ann.glob("*.txt") if not p.stem.endswith("_r1") and p.stem.lower() != "readme")
    if not concept_files:
        raise RawReleaseError(f"datasets.{name}: no <concept>.txt annotation files in {ann}")
    concepts = [p.stem for p in concept_files]
    members = []
    for p in concept_files:
        ids = _read_ids(p)
        r1 = p.with_name(f"{p.stem}_r1.txt")
        if r1.is_file():
            ids |= _read_ids(r1)
        members.append(ids)
    labels_all = np.zeros((len(numbers), len(concepts)), np.uint8)
    pos = {n: i for i, n in enumerate(numbers)}
    for j, ids in enumerate(members):
        unknown = sorted(ids - pos.keys())
        if unknown:
            raise RawReleaseError(
                f"{concept_files[j]}: image number(s) {unknown[:5]} have no im<N>.jpg in {root}"
            )
        labels_all[[pos[n] for n in ids], j] = 1
    keep = np.flatnonzero(labels_all.sum(axis=1) > 0)
    kept = [numbers[i] for i in keep]
    if not tags_dir.is_dir():
        raise RawReleaseError(f"datasets.{name}: tag folder {tags_dir} not found (meta/tags/tags<N>.txt)")
    missing = [n for n in kept if not (tags_dir / f"tags{n}.txt").is_file()]
    if missing:
        raise RawReleaseError(
            f"datasets.{name}: {len(missing)} tag file(s) missing in {tags_dir} (first: tags{missing[0]}.txt)"
        )
    texts = [
        "\n".join(t.strip() for t in (tags_dir / f"tags{n}.txt").read_text(encoding="utf-8", errors="replace")
                  .splitlines() if t.strip())
        for n in kept
    ]
    found = {"images": len(numbers), "pairs": len(kept), "concepts": len(concepts)}
    attrs = {
        "source": f"MIRFlickr-25K raw release at {root}",
        "citation": "Huiskes & Lew, The MIR Flickr Retrieval Evaluation, ACM MIR 2008; protocol: Jiang & Li, "
                    "Deep Cross-Modal Hashing, CVPR 2017",
        "licence": "Creative Commons (per image, see the release's meta/license)",
        "sha256": {f"annotations/{p.name}": sha256_file(p) for p in sorted(ann.glob("*.txt"))},
        "release_check": release_check(name, MIRFLICKR_COUNTS, found, "MIRFlickr-25K"),
        "dropped_without_concept": int(len(numbers) - len(kept)),
    }
    return Corpus(
        name=name,
        image_paths=[root / f"im{n}.jpg" for n in kept],
        image_ids=[f"im{n}.jpg" for n in kept],
        texts=texts,
        labels=np.ascontiguousarray(labels_all[keep]),
        class_names=concepts,
        attrs=attrs,
    )


# ------------------------------------------------------------------------------------- Pascal Sentence
PASCAL_IMAGES = ("images", "dataset")
PASCAL_SENTENCES = ("sentences", "sentence")
PASCAL_COUNTS = {"pairs": 1000, "classes": 20, "sentences_per_image": 5}


def _pascal_sources(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> dict[str, Path]:
    root = _release_root(name, cfg, data_root, "pascal_sentence")
    return {"images": _first_dir(root, PASCAL_IMAGES, name, "image"),
            "sentences": _first_dir(root, PASCAL_SENTENCES, name, "sentence")}


def read_pascal_sentence(name: str, cfg: Mapping[str, Any], data_root: str | os.PathLike) -> Corpus:
    sources = _pascal_sources(name, cfg, data_root)
    images, sentences = sources["images"], sources["sentences"]
    root = images.parent
    classes = sorted(p.name for p in images.iterdir() if p.is_dir())
    if not classes:
        raise RawReleaseError(f"datasets.{name}: no category folders in {images} (images/<category>/<name>.jpg)")
    paths: list[Path] = []
    texts: list[str] = []
    cls: list[int] = []
    missing: list[str] = []
    counts: list[int] = []
    for j, c in enumerate(classes):
        for p in sorted(q for q in (images / c).iterdir() if q.suffix.lower() in IMAGE_SUFFIXES):
            txt = sentences / c / f"{p.stem}.txt"
            if not txt.is_file():
                missing.append(str(txt.relative_to(root)))
                continue
            lines = [s.strip() for s in txt.read_text(encoding="utf-8", errors="replace").splitlines() if s.strip()]
            paths.append(p)
            texts.append(" ".join(lines))
            cls.append(j)
            counts.append(len(lines))
    if missing:
        raise RawReleaseError(
            f"datasets.{name}: {len(missing)} image(s) have no sentence file (first: {missing[:3]}); each "
            "images/<category>/<name>.jpg needs sentences/<category>/<name>.txt"
        )
    labels = np.zeros((len(paths), len(classes)), np.uint8)
    labels[np.arange(len(paths)), cls] = 1
    per_image = int(min(counts)) if counts and min(counts) == max(counts) else -1
    found = {"pairs": len(paths), "classes": len(classes), "sentences_per_image": per_image}
    attrs = {
        "source": f"Pascal Sentence raw release at {root}",
        "citation": "Rashtchian et al., Collecting Image Annotations Using Amazon's Mechanical Turk, NAACL-HLT 2010 "
                    "workshop; split: Zhen et al., DSCMR, CVPR 2019",
        "licence": "PASCAL VOC 2008 images (Flickr terms); sentences: see the release",
        "release_check": release_check(name, PASCAL_COUNTS, found, "Pascal Sentence"),
        "sentences_per_image": [int(min(counts)), int(max(counts))],
    }
    return Corpus(
        name=name,
        image_paths=paths,
        image_ids=[str(p.relative_to(root)) for p in paths],
        texts=texts,
        labels=labels,
        class_names=classes,
        attrs=attrs,
    )


#: The raw releases of the features stage (format -> reader, sources, the papers' recipe and split).
RAW_FORMATS: dict[str, CorpusFormat] = {
    "wikipedia": CorpusFormat(
        read=read_wikipedia,
        sources=_wiki_sources,
        defaults={"text_features": "doc2vec"},
        default_split={"val_rows": 231},
        description="Wikipedia raw release (images/, texts/, the two .list files)",
    ),
    "mirflickr": CorpusFormat(
        read=read_mirflickr,
        sources=_mirflickr_sources,
        defaults={"text_features": "bow", "min_count": 20, "token_separator": "\n"},
        default_split={"query": 2000, "train": 10000, "val": 1000, "order": "seeded", "seed": 0},
        description="MIRFlickr-25K raw release (im<N>.jpg, meta/tags/, annotations/)",
    ),
    "pascal_sentence": CorpusFormat(
        read=read_pascal_sentence,
        sources=_pascal_sources,
        defaults={"text_features": "doc2vec"},
        default_split={"train_per_class": 40, "val_per_class": 5, "test_per_class": 5, "seed": 0},
        description="Pascal Sentence (images/<category>/, sentences/<category>/)",
    ),
}
#: Raw releases that already hold features (no features stage).
RAW_FEATURE_FORMATS = {"wikipedia_svcl": (prepare_wikipedia_svcl, _svcl_sources)}
