"""HDF5 result files: atomic writes, provenance attributes and schema checks.

Every file the pipeline writes goes through :func:`atomic_h5`: the content is written to a temporary
file next to the target and renamed into place only after it was closed successfully, so a killed job
never leaves a file that a later run (or Snakemake) would take as complete.

File kinds and their schema names (stored in the root attribute ``schema``):

- ``cmhash.features/1``  canonical feature file (see README "Bring your own dataset")
- ``cmhash.extracted/1`` image + text features of every row of a user's corpus (features stage)
- ``cmhash.noise/1``     noisy training labels for one (dataset, noise kind, rate, seed)
- ``cmhash.train/1``     codes of a trained model + per-epoch history
- ``cmhash.metrics/1``   evaluation results + the codes/labels they were computed from
- ``cmhash.mfeat/1``     the shipped UCI Multiple Features resource (input, built once)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import __version__

SCHEMAS = {
    "features": "cmhash.features/1",
    "extracted": "cmhash.extracted/1",
    "noise": "cmhash.noise/1",
    "train": "cmhash.train/1",
    "metrics": "cmhash.metrics/1",
    # Shipped input resource (not a pipeline output): UCI Multiple Features, see resources/mfeat/README.md.
    "mfeat": "cmhash.mfeat/1",
}

#: Groups of a train / metrics file that a joint code set (:meth:`cmhash.methods.base.Method.encode_joint`)
#: may not be named after.
_RESERVED_GROUPS = frozenset({"codes", "database", "history", "weights", "metrics"})


def check_joint_code_name(name: str) -> str:
    """A joint code set's name (e.g. ``fused``): a lower-case identifier that is no other group of the file;
    its task name (:func:`joint_task_name`) can then never be a cross-modal task's."""
    if (not (isinstance(name, str) and name.isidentifier() and name == name.lower()) or name in _RESERVED_GROUPS
            or is_cross_modal_task(name.upper())):
        raise ValueError(
            f"joint code set {name!r}: expected a lower-case identifier other than {sorted(_RESERVED_GROUPS)} "
            "and not of the form <letter>2<letter> (the cross-modal tasks' names)"
        )
    return name


def joint_task_name(name: str) -> str:
    """Task of a metrics file that ranks a joint code set's queries in its database: ``fused -> FUSED``."""
    return check_joint_code_name(name).upper()


def is_cross_modal_task(task: str) -> bool:
    """``True`` for the tasks of :func:`task_names` (one modality's queries, the other's database), ``False``
    for a joint code set's task (:func:`joint_task_name`): tables average and profile cross-modal tasks only."""
    return len(task) == 3 and task[1] == "2" and task[0].isupper() and task[2].isupper()


def rate_str(rate: float | str) -> str:
    """The one spelling of a noise rate in paths, tables and figures: ``%g`` (``0.2``, ``0.20`` and ``"0.20"`` all
    give ``"0.2"``)."""
    return f"{float(rate):g}"


def task_names(modalities) -> list[str]:
    """Task names of two modalities, e.g. ``("image", "text") -> ["I2T", "T2I"]`` (query initial 2 database initial)."""
    if len(modalities) != 2:
        raise ValueError(f"expected two modality names, got {list(modalities)!r}")
    a, b = (str(m)[:1].upper() for m in modalities)
    return [f"{a}2{b}", f"{b}2{a}"]


class SchemaError(ValueError):
    """A file does not follow the schema the pipeline expects."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to: when the block ends normally it replaces ``path`` (with the
    permissions of a normally created file), when it raises it is removed. Every result file of the pipeline
    (HDF5, tables, figures, checkpoints) is written through this, so no reader ever sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates the file 0600; give the result the permissions of a normally created file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike, kind: str, attrs: Mapping[str, Any] | None = None) -> Iterator[h5py.File]:
    """Open a new HDF5 file for writing that appears at ``path`` only if the block succeeds.

    ``kind`` is a key of :data:`SCHEMAS`; the schema name, package version, git commit and creation time
    are written as root attributes together with ``attrs``.
    """
    with atomic_path(path, suffix=".tmp.h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["schema"] = SCHEMAS[kind]
        f.attrs["package_version"] = __version__
        f.attrs["git_commit"] = git_commit()
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for key, value in (attrs or {}).items():
            set_attr(f, key, value)
        yield f


def set_attr(obj: h5py.HLObject, key: str, value: Any) -> None:
    """Store ``value`` as an HDF5 attribute; dicts and lists of mixed type are stored as JSON text."""
    if value is None:
        value = "null"
    elif isinstance(value, np.str_):
        value = str(value)
    elif isinstance(value, np.ndarray) and value.dtype.kind == "U":
        value = np.array(value.tolist(), dtype=h5py.string_dtype())
    elif isinstance(value, (dict, list, tuple)) and not _is_homogeneous_numeric(value):
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            value = np.array([str(v) for v in value], dtype=h5py.string_dtype())
        else:
            value = json.dumps(value, sort_keys=True)
    obj.attrs[key] = value


def _is_homogeneous_numeric(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value
    )


def get_attr(obj: h5py.HLObject, key: str) -> Any:
    """Read an attribute written by :func:`set_attr`, decoding bytes and JSON text."""
    value = obj.attrs[key]
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            return [v.decode() if isinstance(v, bytes) else str(v) for v in value]
        return value.tolist()
    if isinstance(value, str) and value[:1] in "[{" or value == "null":
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_schema(f: h5py.File, kind: str) -> None:
    """Raise :class:`SchemaError` naming the file if it is not a ``kind`` file of the current schema."""
    found = f.attrs.get("schema", None)
    if isinstance(found, bytes):
        found = found.decode()
    if found != SCHEMAS[kind]:
        raise SchemaError(
            f"{f.filename}: expected a '{SCHEMAS[kind]}' file but its 'schema' attribute is {found!r}. "
            "It was written by another version of cmhash or is not a pipeline output; delete it and rerun."
        )


def open_h5(path: str | os.PathLike, kind: str) -> h5py.File:
    """Open a pipeline HDF5 file for reading after checking that it is a readable ``kind`` file.

    A truncated or damaged file (h5py's bare ``OSError``) and a file of another schema raise
    :class:`SchemaError` naming the file and the fix. Use as ``with open_h5(path, "noise") as f:``.
    """
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise SchemaError(
            f"{path}: cannot be read as a '{SCHEMAS[kind]}' HDF5 file ({exc}); it is truncated or damaged, "
            "e.g. copied while it was being written. Delete it and rerun snakemake, which rebuilds it "
            "(a file you provided yourself: write it again)."
        ) from None
    try:
        check_schema(f, kind)
    except BaseException:
        f.close()
        raise
    return f


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable object (sorted keys), used to tie results to their config."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the working tree the code runs from, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            check=False,
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_attrs() -> dict[str, str]:
    """Provenance attributes recorded in every train/metrics file."""
    import torch

    return {
        "git_commit": git_commit(),
        "torch_version": str(torch.__version__),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
    }
