"""Image-text corpora that go through the features stage: what a corpus reader returns.

A *corpus format* (``folder`` = your own table, ``wikipedia``, ``mirflickr``, ``pascal_sentence`` = raw public
releases, :mod:`cmhash.data.raw`) turns files on disk into a :class:`Corpus`: one image file and one text per
pair, the labels, and the release's own split when it defines one. The features stage
(:func:`cmhash.data.folder.extract_corpus`) sends the images through a backbone and the texts through a text
model; the data stage (:func:`cmhash.data.folder.prepare_corpus`) reads the corpus again (cheap: lists and
label files, no image decoding) for labels and split, so a new split or label rule never re-extracts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Corpus:
    """Image-text pairs of one dataset, in a fixed order (row i = pair i).

    ``image_ids`` are the image file names relative to the release (stored in the features file, so the
    data stage can tell that it reads the same rows); ``split`` holds index arrays of the release's own
    split (``train``, ``test``) when it defines one, else ``None``.
    """

    name: str
    image_paths: list[Path]
    image_ids: list[str]
    texts: list[str]
    labels: np.ndarray
    class_names: list[str]
    split: dict[str, np.ndarray] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.image_paths)
        if not (len(self.image_ids) == len(self.texts) == self.labels.shape[0] == n):
            raise ValueError(
                f"corpus {self.name}: {n} images, {len(self.image_ids)} ids, {len(self.texts)} texts and "
                f"{self.labels.shape[0]} label rows must be one per pair"
            )
        if self.labels.shape[1] != len(self.class_names):
            raise ValueError(f"corpus {self.name}: {self.labels.shape[1]} label columns, {len(self.class_names)} names")


#: Reader signature: (dataset name, its config entry, data_root) -> Corpus.
Reader = Callable[[str, Mapping[str, Any], "str | os.PathLike"], Corpus]
#: Sources signature: role -> file or folder the reader needs (the workflow's inputs, checked at DAG time).
Sources = Callable[[str, Mapping[str, Any], "str | os.PathLike"], dict[str, Path]]


@dataclass(frozen=True)
class CorpusFormat:
    """One ``format`` whose pairs go through the features stage.

    ``defaults`` override :data:`cmhash.data.folder.FOLDER_DEFAULTS` for this format (e.g. MIRFlickr's tag
    threshold 20); ``table_keys`` says whether the ``folder`` block may set the table keys (images,
    columns: only format ``folder``); ``default_split`` is the split used when ``datasets.<name>.split`` is
    absent (the papers' protocol for that release).
    """

    read: Reader
    sources: Sources
    defaults: Mapping[str, Any] = field(default_factory=dict)
    table_keys: bool = False
    default_split: Mapping[str, Any] | None = None
    description: str = ""


def release_check(name: str, expected: Mapping[str, int], found: Mapping[str, int], release: str) -> dict[str, Any]:
    """Compare the counts the release documents with what was read; log once when they differ.

    A subset of a release (a fixture, a sample) is allowed: the record says so and the provenance of the
    dataset file keeps it, so a table made from an incomplete copy can be recognised.
    """
    complete = all(int(found.get(k, -1)) == int(v) for k, v in expected.items())
    if not complete:
        diff = ", ".join(f"{k} {found.get(k)} (release: {v})" for k, v in expected.items() if found.get(k) != v)
        log.warning("%s: not the complete %s release: %s", name, release, diff)
    return {"release": release, "expected": dict(expected), "found": dict(found), "complete": bool(complete)}
