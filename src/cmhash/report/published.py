"""The papers' published MAP values: read the long CSVs and match them to our summary (the report's bottom layer).

The papers' numbers come from long CSVs (``resources/paper/<paper>_paper_map.csv``, provenance in its README)
with the columns :data:`PAPER_COLUMNS`; ``map`` is in percent and empty where the paper prints no value
(out-of-memory '/'). Several papers can be given (config ``paper_map``: one path or a list): each row then
carries ``paper`` = the file's stem without ``_paper_map`` (``rshnl``, ``rfcmh``, ...), and where two papers print
the same cell (RFCMH's tables repeat RSHNL's baselines) the first file in the list wins. Our summary
(:func:`cmhash.report.results.summarise`, plus the ``avg`` rows of :func:`cmhash.report.results.ablation_table`)
is matched on (dataset, task, method, noise, bits), the dataset through ``dataset_names`` (our name -> the
paper's, from ``datasets.<name>.paper_name``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

PAPER_COLUMNS = ["table", "dataset", "task", "method", "venue", "noise", "bits", "map"]


#: Columns of :func:`join_paper`'s result.
JOINED_COLUMNS = [
    "table",
    "dataset",
    "paper_dataset",
    "paper_table",
    "paper",
    "task",
    "method",
    "noise",
    "bits",
    "map",
    "n_seeds",
    "std",
    "paper_map",
    "diff",
]


#: Values of a paper map's optional ``noise_kind`` column whose cells are left out: settings the harness has no
#: noise recipe for. ``flip`` (RFCMH's "sym", always a different label) and RSHNL's redraw are compared as one
#: symmetric setting, as the papers do (RFCMH's tables repeat RSHNL's baseline numbers).
UNMATCHED_NOISE_KINDS = ("asym",)


def load_paper_map(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a paper-map CSV (columns :data:`PAPER_COLUMNS`, optional ``noise_kind``; empty ``map`` = no
    published value; rows of :data:`UNMATCHED_NOISE_KINDS` are left out)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: paper map not found; it ships as resources/paper/rshnl_paper_map.csv. Set the config key "
            "paper_map to its path, or to '' to switch the comparison off."
        )
    df = pd.read_csv(
        path,
        dtype={"dataset": str, "task": str, "method": str, "venue": str},
        keep_default_na=False,
        na_values={"map": [""]},
    )
    if "noise_kind" in df.columns:
        # the harness has no asymmetric noise: such cells can never be matched (RFCMH's Table 7); flip / none /
        # empty rows are the paper's symmetric (or noise-free) setting
        df = df[~df["noise_kind"].isin(UNMATCHED_NOISE_KINDS)]
    missing = [c for c in PAPER_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; expected {PAPER_COLUMNS}, found {list(df.columns)}"
        )
    try:
        df = df.astype({"noise": float, "bits": int, "map": float})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: noise, bits and map must be numbers ({exc})") from None
    key = ["dataset", "task", "method", "noise", "bits"]
    dup = df[df.duplicated(key, keep=False)]
    if not dup.empty:
        raise ValueError(f"{path}: several rows for {dict(dup.iloc[0][key])}")
    return df[PAPER_COLUMNS]


def paper_name(path: str | os.PathLike) -> str:
    """``resources/paper/rfcmh_paper_map.csv`` -> ``rfcmh``."""
    stem = Path(path).stem
    return stem[: -len("_paper_map")] if stem.endswith("_paper_map") else stem


def load_paper_maps(paths: str | os.PathLike | Sequence[str | os.PathLike] | None) -> pd.DataFrame:
    """Every paper map of ``paths`` (one path, a list, or ``None``/empty = none) in one frame with a ``paper``
    column; a cell printed by several papers is kept from the first file that has it."""
    if not paths:
        return pd.DataFrame(columns=[*PAPER_COLUMNS, "paper"])
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = [load_paper_map(p).assign(paper=paper_name(p)) for p in paths]
    out = pd.concat(frames, ignore_index=True)
    return out.drop_duplicates(["dataset", "task", "method", "noise", "bits"], keep="first").reset_index(drop=True)


def join_paper(ours: pd.DataFrame, paper: pd.DataFrame, dataset_names: Mapping[str, str]) -> pd.DataFrame:
    """Our summary rows with the paper's ``paper_map`` and ``diff`` = ours − paper (percentage points).

    ``ours`` has the columns of :func:`cmhash.report.results.summarise` (``map`` in percent). Every row of ``ours``
    is kept, in order; ``paper_map``/``diff`` are NaN where the paper has no such cell or prints none.
    """
    if ours.empty:
        return pd.DataFrame(columns=JOINED_COLUMNS)
    work = ours.copy()
    work["paper_dataset"] = work["dataset"].map(lambda d: dataset_names.get(str(d), ""))
    right = paper.rename(columns={"dataset": "paper_dataset", "map": "paper_map", "table": "paper_table"})
    if "paper" not in right:
        right = right.assign(paper="")
    right = right[["paper_dataset", "paper_table", "paper", "task", "method", "noise", "bits", "paper_map"]]
    work["noise"] = work["noise"].astype(float).round(6)
    right = right.assign(noise=right["noise"].astype(float).round(6))
    out = work.merge(right, how="left", on=["paper_dataset", "task", "method", "noise", "bits"], sort=False)
    out["diff"] = (out["map"].astype(float) - out["paper_map"]).round(2)
    out["paper_table"] = out["paper_table"].astype("Int64")
    for col in JOINED_COLUMNS:
        if col not in out:
            out[col] = np.nan
    return out[JOINED_COLUMNS].reset_index(drop=True)


def has_matches(joined: pd.DataFrame) -> bool:
    """Whether any row has a published value to compare with."""
    return bool(not joined.empty and joined["paper_map"].notna().any())
