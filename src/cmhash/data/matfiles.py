"""Reading arrays from MATLAB ``.mat`` files (v5 via SciPy, v7.3 via h5py) and plain HDF5 files.

Published cross-modal benchmark files come in three container styles:

- MATLAB v5/v6/v7 ``.mat`` -> :func:`scipy.io.loadmat`; arrays keep MATLAB's shape (rows x columns).
- MATLAB v7.3 ``.mat`` = HDF5 with a 512-byte "MATLAB 7.3 MAT-file" header. MATLAB writes column-major, so
  h5py sees every array with its axes reversed; :class:`ArrayFile` reverses them back, so callers always
  get the shape MATLAB shows. Cell arrays are stored as object references and come back as an object
  array of (reversed-back) arrays, like SciPy returns them.
- Plain HDF5 written from Python (``.h5``, ``.h5py``): read as stored (row-major, no transposition).

:class:`ArrayFile` hides the difference; every error names the file, the layout and what was found.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class DatasetFileError(ValueError):
    """A published dataset/noise file is missing, unreadable or does not have the expected layout."""


class MissingDatasetFileError(DatasetFileError, FileNotFoundError):
    """A published dataset/noise file does not exist (catchable as ``FileNotFoundError`` too)."""


def container_kind(path: str | os.PathLike) -> str:
    """``"mat73"`` (MATLAB v7.3 HDF5), ``"hdf5"`` (plain HDF5) or ``"mat"`` (anything else: MATLAB v4-v7)."""
    with open(path, "rb") as fh:
        head = fh.read(1024 + 8)
    if head.startswith(b"MATLAB 7.3"):
        return "mat73"
    # HDF5 signature at offset 0, or after a user block of 512/1024 bytes (MATLAB v7.3 uses 512)
    for offset in (0, 512, 1024):
        if head[offset : offset + 8] == _HDF5_MAGIC:
            return "mat73" if offset else "hdf5"
    return "mat"


def mat5_damage(path: str | os.PathLike) -> str | None:
    """Why a MATLAB v5-v7 file is damaged (a variable runs past the end of the file), or ``None``.

    SciPy lists the variables of a truncated file without complaint and only fails, with no file name,
    when the cut-off variable is read. Walking the top-level element tags (8 bytes each: type, byte count)
    finds the damage up front without reading the data. Files without the v5 header (v4) are not checked.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        header = fh.read(128)
        if len(header) < 128 or header[126:128] not in (b"IM", b"MI"):
            return None
        order = "<" if header[126:128] == b"IM" else ">"
        pos = 128
        while pos < size:
            fh.seek(pos)
            tag = fh.read(8)
            if len(tag) < 8:
                return f"an element header at byte {pos} is cut off at the end of the file"
            mtype, nbytes = struct.unpack(order + "II", tag)
            if mtype >> 16:  # "small data element": type and size share the first 4 bytes
                pos += 8
                continue
            if pos + 8 + nbytes > size:
                return f"the variable at byte {pos} needs {nbytes} bytes but only {size - pos - 8} follow"
            pos += 8 + nbytes
    return None


def _describe(shapes: dict[str, tuple[int, ...] | str]) -> str:
    if not shapes:
        return "no arrays"
    return ", ".join(f"{k} {v}" for k, v in sorted(shapes.items()))


class ArrayFile:
    """Read named arrays from a ``.mat`` (v5 or v7.3) or HDF5 file, in MATLAB orientation for .mat files.

    ``layout`` is a human-readable name of the expected layout used in error messages (e.g.
    ``"xmedia (XMediaFeatures.mat)"``). ``transpose`` overrides the automatic orientation (``None`` =
    reverse the axes of v7.3 files only).
    """

    def __init__(self, path: str | os.PathLike, layout: str, transpose: bool | None = None) -> None:
        self.path = Path(path)
        self.layout = layout
        if not self.path.is_file():
            raise MissingDatasetFileError(
                f"{self.path}: file not found (expected the {layout} file). Download it from the source "
                "named in config/README.md ('Published benchmark files') and put it there, or change "
                "datasets.<name>.path."
            )
        self.kind = container_kind(self.path)
        self.transpose = (self.kind == "mat73") if transpose is None else bool(transpose)
        self._mat: dict[str, np.ndarray] = {}
        self._shapes: dict[str, tuple[int, ...] | str] | None = None

    # -- inventory --------------------------------------------------------------------------------
    def shapes(self) -> dict[str, tuple[int, ...] | str]:
        """Name -> shape (MATLAB orientation) of every top-level array in the file."""
        if self._shapes is None:
            shapes: dict[str, tuple[int, ...] | str] = {}
            if self.kind == "mat":
                import scipy.io

                damage = mat5_damage(self.path)
                if damage:
                    raise DatasetFileError(
                        f"{self.path}: truncated or damaged MATLAB file ({damage}), e.g. an interrupted "
                        f"download or copy; expected the {self.layout} file. Download it again "
                        "(config/README.md, 'Published benchmark files')."
                    )
                try:
                    for name, shape, cls in scipy.io.whosmat(str(self.path)):
                        shapes[name] = tuple(shape) if cls != "cell" else f"cell{tuple(shape)}"
                except Exception as exc:
                    raise DatasetFileError(
                        f"{self.path}: not a readable MATLAB .mat or HDF5 file ({exc}); expected the "
                        f"{self.layout} file"
                    ) from None
            else:
                with self._h5() as f:
                    for name, obj in f.items():
                        if isinstance(obj, h5py.Dataset) and not name.startswith("#"):
                            shape = obj.shape[::-1] if self.transpose else obj.shape
                            shapes[name] = f"cell{shape}" if obj.dtype.kind == "O" else tuple(shape)
                        elif isinstance(obj, h5py.Group) and not name.startswith("#"):
                            shapes[name] = "group"
            self._shapes = shapes
        return self._shapes

    def has(self, key: str) -> bool:
        """Whether the file holds a top-level array called ``key``."""
        return key in self.shapes()

    def require(self, keys: Iterable[str]) -> None:
        """Raise :class:`DatasetFileError` listing expected and found arrays if any of ``keys`` is absent."""
        keys = list(keys)
        missing = [k for k in keys if not self.has(k)]
        if missing:
            raise DatasetFileError(
                f"{self.path}: missing {missing} for the {self.layout} layout. Expected arrays: {keys}; "
                f"found: {_describe(self.shapes())}. Check that this is the right file and that "
                "datasets.<name>.format matches it (config/README.md lists the layouts)."
            )

    def first_present(self, candidates: Sequence[str]) -> str:
        """The first of ``candidates`` that the file holds (for keys spelled differently across releases)."""
        for key in candidates:
            if self.has(key):
                return key
        self.require(candidates[:1])
        raise AssertionError("unreachable")

    # -- reading ------------------------------------------------------------------------------------
    def _h5(self) -> h5py.File:
        try:
            return h5py.File(self.path, "r")
        except OSError as exc:
            raise DatasetFileError(
                f"{self.path}: cannot be opened as HDF5 ({exc}); expected the {self.layout} file. If it is "
                "truncated (an interrupted download or copy), download it again (config/README.md)."
            ) from None

    def _orient(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.transpose()) if self.transpose and a.ndim > 1 else a

    def _read_h5(self, f: h5py.File, obj: h5py.Dataset) -> np.ndarray:
        if obj.dtype.kind == "O" or h5py.check_ref_dtype(obj.dtype) is not None:
            refs = obj[()]
            out = np.empty(refs.shape, dtype=object)
            for idx in np.ndindex(refs.shape):
                out[idx] = self._read_h5(f, f[refs[idx]])
            return out.transpose() if self.transpose else out
        return self._orient(np.asarray(obj[()]))

    def read(self, key: str) -> np.ndarray:
        """The array ``key`` (numeric array, or object array of arrays for a MATLAB cell)."""
        self.require([key])
        if self.kind == "mat":
            if key not in self._mat:
                import scipy.io

                try:
                    self._mat.update(scipy.io.loadmat(str(self.path), variable_names=[key]))
                except Exception as exc:
                    raise DatasetFileError(
                        f"{self.path}: '{key}' cannot be read ({type(exc).__name__}: {exc}); the file is "
                        f"damaged or not the {self.layout} file. Download it again (config/README.md)."
                    ) from None
            value = self._mat[key]
            return value
        with self._h5() as f:
            obj = f[key]
            if not isinstance(obj, h5py.Dataset):
                raise DatasetFileError(
                    f"{self.path}: '{key}' is an HDF5 group, expected an array ({self.layout})"
                )
            return self._read_h5(f, obj)

    def cell(self, key: str, index: int) -> np.ndarray:
        """Element ``index`` (0-based, in the order MATLAB lists the cells) of the cell array ``key``."""
        value = self.read(key)
        if value.dtype != object:
            raise DatasetFileError(
                f"{self.path}: '{key}' should be a MATLAB cell array ({self.layout}) but is a numeric "
                f"array of shape {value.shape}"
            )
        flat = value.reshape(-1, order="F")
        if not 0 <= index < flat.size:
            raise DatasetFileError(
                f"{self.path}: cell array '{key}' has {flat.size} cells; index {index} does not exist"
            )
        return np.asarray(flat[index])
