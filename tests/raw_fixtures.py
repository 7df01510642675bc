"""Tiny copies of the raw public releases, in their published layouts (cmhash.data.raw).

``write_raw_releases(root)`` writes, under ``root``::

    wikipedia/        trainset_txt_img_cat.list, testset_txt_img_cat.list, images/<category>/<id>.jpg,
                      texts/<id>.xml, raw_features.mat (the SVCL feature release: I_tr/I_te/T_tr/T_te)
    mirflickr/        im<N>.jpg, meta/tags/tags<N>.txt, annotations/<concept>.txt (+ _r1, README.txt)
    pascal_sentence/  images/<category>/<name>.jpg, sentences/<category>/<name>.txt (five lines)

The pairs carry their class in both modalities (a colour per class in the image, a vocabulary per class in
the text), so a model trained on the fixtures retrieves above chance. The copies are far smaller than the
releases (their release checks report ``complete: false``), so :data:`FIXTURE_CONFIG` gives splits that fit
them, a random backbone at a small crop (no ImageNet checkpoint exists here) and a small grid.

Run ``python tests/raw_fixtures.py DIR`` to write the fixtures and ``DIR/fixture_config.yaml``; then
``snakemake --cores all raw_wikipedia raw_mirflickr raw_pascal --config data_root=DIR --configfile DIR/fixture_config.yaml``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import yaml
from PIL import Image

WIKI_CATEGORIES = ("art", "biology", "geography", "history")  # the release has 10; their folder names
WIKI_PER_CATEGORY = {"train": 4, "test": 3}
MIR_CONCEPTS = ("animals", "clouds", "sky", "water")
MIR_IMAGES = 30
MIR_UNLABELLED = (7, 14, 21, 28)  # image numbers without any concept: dropped by the DCMH protocol
PASCAL_CATEGORIES = ("aeroplane", "bicycle", "bird", "boat")  # the release has 20
PASCAL_PER_CATEGORY = 6
COLOURS = ((200, 40, 40), (40, 180, 40), (40, 40, 200), (200, 200, 40))
WORDS = (
    ("painting", "museum", "canvas", "sculpture", "portrait"),
    ("species", "cell", "protein", "organism", "gene"),
    ("river", "mountain", "valley", "coast", "island"),
    ("empire", "battle", "dynasty", "treaty", "century"),
)


def write_jpeg(path: Path, rgb: tuple[int, int, int], rng: np.random.Generator, size: tuple[int, int] = (36, 28)) -> None:
    """A JPEG of colour ``rgb`` with a little pixel noise (so no two images are identical)."""
    a = np.clip(np.asarray(rgb, np.int16) + rng.integers(-25, 26, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, format="JPEG", quality=90)


def _sentence(c: int, rng: np.random.Generator, n: int = 8) -> str:
    """Words of class ``c`` mixed with words of the other classes (about a quarter)."""
    own = list(WORDS[c])
    other = [w for j, ws in enumerate(WORDS) if j != c for w in ws]
    words = [own[rng.integers(len(own))] if rng.random() < 0.75 else other[rng.integers(len(other))] for _ in range(n)]
    return " ".join(words)


def write_wikipedia(root: Path, seed: int = 0) -> Path:
    """The Wikipedia release layout (and the SVCL ``raw_features.mat`` beside it) under ``root/wikipedia``."""
    rng = np.random.default_rng(seed)
    out = root / "wikipedia"
    lists: dict[str, list[str]] = {"train": [], "test": []}
    counter = 0
    for part, per in WIKI_PER_CATEGORY.items():
        for c, category in enumerate(WIKI_CATEGORIES):
            for _ in range(per):
                counter += 1
                text_id, image_id = f"{0x1f00 + counter:x}a{counter:03d}", f"{0x2e00 + counter:x}b{counter:03d}"
                write_jpeg(out / "images" / category / f"{image_id}.jpg", COLOURS[c], rng)
                body = " ".join(_sentence(c, rng) + "." for _ in range(6))
                if counter == 3:  # a file of the release that is not well-formed XML (a bare '&')
                    body += " Arts & crafts."
                xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<document>\n<docno>{text_id}</docno>\n'
                       f"<title>Article {counter}</title>\n<text>\n{body}\n</text>\n</document>\n")
                (out / "texts").mkdir(parents=True, exist_ok=True)
                (out / "texts" / f"{text_id}.xml").write_text(xml, encoding="utf-8")
                lists[part].append(f"{text_id}\t{image_id}\t{c + 1}")
    (out / "trainset_txt_img_cat.list").write_text("\n".join(lists["train"]) + "\n")
    (out / "testset_txt_img_cat.list").write_text("\n".join(lists["test"]) + "\n")
    n = {p: len(v) for p, v in lists.items()}
    cls = {p: np.array([int(line.split()[2]) - 1 for line in v]) for p, v in lists.items()}
    arrays = {}
    for part, key in (("train", "tr"), ("test", "te")):
        sift = rng.poisson(2.0, (n[part], 128)).astype(np.float64)
        sift[np.arange(n[part]), cls[part] * 10] += 20.0  # a visual word per class
        lda = rng.dirichlet(np.ones(10), n[part])
        lda[np.arange(n[part]), cls[part]] += 1.0
        arrays[f"I_{key}"] = sift / sift.sum(axis=1, keepdims=True)
        arrays[f"T_{key}"] = lda / lda.sum(axis=1, keepdims=True)
    scipy.io.savemat(str(out / "raw_features.mat"), arrays)
    return out


def write_mirflickr(root: Path, seed: int = 0) -> Path:
    """The MIRFlickr-25K layout under ``root/mirflickr``.

    Tag counts over the images that keep a concept: ``nikon`` in exactly 20 (kept at the default threshold
    of 20), ``canon`` in 19 (dropped, although the unlabelled images raise it to 23 over all images),
    ``photo`` in all of them; every concept has its own tag (in fewer than 20 images).
    """
    rng = np.random.default_rng(seed)
    out = root / "mirflickr"
    (out / "meta" / "tags").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    members: dict[str, list[int]] = {c: [] for c in MIR_CONCEPTS}
    relevant: dict[str, list[int]] = {c: [] for c in MIR_CONCEPTS}
    kept = [i for i in range(1, MIR_IMAGES + 1) if i not in MIR_UNLABELLED]
    for i in range(1, MIR_IMAGES + 1):
        tags = ["photo"]
        if i in MIR_UNLABELLED:
            write_jpeg(out / f"im{i}.jpg", (128, 128, 128), rng)
            tags = ["canon", "blurry"]
        else:
            k = kept.index(i)
            c = k % len(MIR_CONCEPTS)
            concepts = {c} | ({(c + 1) % len(MIR_CONCEPTS)} if k % 3 == 0 else set())
            for j in concepts:
                # the first concept in the potential list, the second only in the _r1 (relevant) list
                (members if j == c else relevant)[MIR_CONCEPTS[j]].append(i)
            write_jpeg(out / f"im{i}.jpg", COLOURS[c], rng)
            tags += [f"tag_{MIR_CONCEPTS[j]}" for j in sorted(concepts)]
            if k < 20:
                tags.append("nikon")
            if k >= len(kept) - 19:
                tags.append("canon")
        (out / "meta" / "tags" / f"tags{i}.txt").write_text("\n".join(tags) + "\n")
    for c in MIR_CONCEPTS:
        (out / "annotations" / f"{c}.txt").write_text("".join(f"{i}\n" for i in sorted(members[c])))
        (out / "annotations" / f"{c}_r1.txt").write_text("".join(f"{i}\n" for i in sorted(relevant[c])))
    (out / "annotations" / "README.txt").write_text("MIRFLICKR-25000 annotations (fixture)\n")
    return out


def write_pascal_sentence(root: Path, seed: int = 0, images: str = "images", sentences: str = "sentences") -> Path:
    """The Pascal Sentence layout under ``root/pascal_sentence`` (folder names as given)."""
    rng = np.random.default_rng(seed)
    out = root / "pascal_sentence"
    for c, category in enumerate(PASCAL_CATEGORIES):
        for k in range(PASCAL_PER_CATEGORY):
            name = f"2008_{c:02d}{k:04d}"
            write_jpeg(out / images / category / f"{name}.jpg", COLOURS[c], rng)
            txt = out / sentences / category / f"{name}.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            txt.write_text("".join(f" {_sentence(c, rng, 6)} .\n" for _ in range(5)))
    return out


def write_raw_releases(root: str | Path, seed: int = 0) -> Path:
    """All three layouts under ``root`` (created); returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_wikipedia(root, seed)
    write_mirflickr(root, seed + 1)
    write_pascal_sentence(root, seed + 2)
    return root


_FAST = {"backbone": "resnet50", "weights": "random", "image_size": 32, "batch_size": 8, "doc2vec_dim": 16,
         "doc2vec_epochs": 5, "min_count": 1}
_SMALL = {"RSHNL": {"hidden": [32], "center_hidden": [32], "epochs": 20, "batch_size": 8, "lr": 1.0e-3,
                    "warmup_epochs": 5},
          "CE": {"hidden": [32], "epochs": 20, "batch_size": 8, "lr": 1.0e-3}}
RAW_DATASETS = ("wikipedia_raw", "wikipedia_bow", "wikipedia_svcl", "mirflickr_raw", "pascal_sentence")
RAW_EXPERIMENTS = ("raw_wikipedia", "raw_mirflickr", "raw_pascal")

#: What the fixtures need on top of config/config.yaml: splits that fit them, a random backbone at a small
#: crop, short doc2vec training, a small grid and small models. The datasets' formats and paths are the
#: shipped config's.
FIXTURE_CONFIG: dict[str, Any] = {
    "datasets": {
        "wikipedia_raw": {"split": {"val_rows": 4}, "folder": dict(_FAST)},
        "wikipedia_bow": {"split": {"val_rows": 4}, "folder": dict(_FAST)},
        "wikipedia_svcl": {"split": {"val_rows": 4}},
        "mirflickr_raw": {"split": {"query": 6, "train": 14, "val": 3, "order": "seeded", "seed": 0},
                          "folder": {k: v for k, v in _FAST.items() if k != "min_count"}},
        "pascal_sentence": {"split": {"train_per_class": 4, "val_per_class": 1, "test_per_class": 1, "seed": 0},
                            "folder": dict(_FAST)},
    },
    "methods": {m: {"per_dataset": {d: dict(p) for d in RAW_DATASETS}} for m, p in _SMALL.items()},
    "experiments": {e: {"methods": ["RSHNL", "CE"], "noise": [0.4], "bits": [16], "seeds": [0]}
                    for e in RAW_EXPERIMENTS},
}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/raw_fixtures.py DIR", file=sys.stderr)
        return 2
    root = write_raw_releases(argv[0])
    (root / "fixture_config.yaml").write_text(yaml.safe_dump(FIXTURE_CONFIG, sort_keys=False))
    print(f"wrote the raw-release fixtures and fixture_config.yaml under {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
