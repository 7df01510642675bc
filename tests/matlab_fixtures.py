"""Writers of tiny files in the published layouts (MATLAB v5 via SciPy, MATLAB v7.3 and plain HDF5 via h5py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io


def save_v5(path: Path, arrays: dict[str, Any]) -> Path:
    """MATLAB v5 file; lists of arrays become 1 x n cell arrays (as MATLAB's ``{a, b, ...}``)."""
    out = {}
    for key, value in arrays.items():
        if isinstance(value, list):
            cell = np.empty((1, len(value)), dtype=object)
            for i, v in enumerate(value):
                cell[0, i] = v
            value = cell
        out[key] = value
    scipy.io.savemat(str(path), out)
    return path


def save_v73(path: Path, arrays: dict[str, Any]) -> Path:
    """MATLAB v7.3 file as MATLAB writes it: 512-byte header, column-major (h5py sees reversed axes),
    cell arrays as object references into ``#refs#``."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        for key, value in arrays.items():
            if isinstance(value, list):
                ref_arr = np.empty((len(value), 1), dtype=h5py.ref_dtype)  # MATLAB 1 x n, reversed
                for i, v in enumerate(value):
                    ds = refs.create_dataset(f"{key}_{i}", data=np.asarray(v).transpose())
                    ref_arr[i, 0] = ds.ref
                d = f.create_dataset(key, data=ref_arr)
                d.attrs["MATLAB_class"] = np.bytes_("cell")
            else:
                value = np.asarray(value)
                d = f.create_dataset(key, data=value.transpose())
                d.attrs["MATLAB_class"] = np.bytes_({np.dtype("uint8"): "uint8"}.get(value.dtype, "double"))
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    )
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    return path


def save_h5(path: Path, arrays: dict[str, Any]) -> Path:
    """Plain HDF5 written from Python (row-major), like the MRL/RCH/UCCH .h5py/.h5 files."""
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=np.asarray(value))
    return path


def feats(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return rng.normal(size=(n, d)).astype(np.float32)


def multihot(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    y = (rng.random((n, c)) < 0.3).astype(np.float64)
    forced = rng.integers(0, c, n)
    y[np.arange(n), forced] = 1
    full = np.flatnonzero(y.sum(axis=1) == c)
    y[full, (forced[full] + 1) % c] = 0  # at least one negative per row
    return y
