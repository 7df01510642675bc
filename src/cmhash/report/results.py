"""The report's bottom layer: read ``cmhash.metrics/1`` files, check their schema and config hashes, average
over seeds. Every report module (tables, figures, paper comparison, robustness, protocol audit) reads results
through here and imports nothing from its siblings."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..store import SCHEMAS, SchemaError, atomic_path, check_schema, get_attr, is_cross_modal_task, task_names

#: Columns of :func:`summarise` (and of :func:`ablation_table`), in this order.
SUMMARY_COLUMNS = ["table", "dataset", "task", "method", "venue", "noise", "bits", "map", "n_seeds", "std"]


#: Root attributes a metrics file must carry for the tables.
REQUIRED_ATTRS = ("dataset", "method", "noise", "bits", "seed")


def ordered_tasks(present: Iterable[str], modalities: Sequence[str] | None) -> list[str]:
    present = list(present)
    order: list[str] = []
    if modalities is not None and len(modalities) == 2:
        order = [t for t in task_names(modalities) if t in present]
    return order + sorted(t for t in present if t not in order)


def map_at_key(name: str) -> float:
    try:
        return float(name.removeprefix("map_at_"))
    except ValueError:
        return float("inf")


def refuse_stale_schemas(paths: Iterable[str | os.PathLike]) -> None:
    """Raise :class:`SchemaError` listing every metrics file written under another result schema version.

    All stale runs are named at once so that one deletion (and one rerun) fixes them; unreadable files are
    left to :func:`collect_results`, which names them one by one.
    """
    want = SCHEMAS["metrics"]
    stale = []
    for raw in paths:
        try:
            with h5py.File(raw, "r") as f:
                found = f.attrs.get("schema", None)
        except OSError:
            continue
        found = found.decode() if isinstance(found, bytes) else found
        if found != want:
            stale.append(f"  {raw} (schema {found!r})")
    if stale:
        raise SchemaError(
            f"{len(stale)} result file(s) were not written as '{want}' (this cmhash version's result schema), "
            "so they are stale:\n" + "\n".join(stale[:20])
            + ("\n  ..." if len(stale) > 20 else "")
            + "\nDelete them (or their run folders) and rerun snakemake, which recomputes them."
        )


def collect_results(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Read ``cmhash.metrics/1`` files into one row per (file, task).

    Columns: ``dataset, task, method, venue, noise, bits, seed, map, map_at_<k>..., config_hash, path,
    noise_kind``; ``map`` and ``map_at_<k>`` are fractions in [0, 1] exactly as stored. Rows keep the
    order of ``paths`` and, within a file, the task order given by its modalities (I2T before T2I).

    Raises :class:`cmhash.store.SchemaError` naming the file when a file is not HDF5, has the wrong
    ``schema`` attribute, lacks a required root attribute or has no ``/metrics/<task>`` group.
    """
    paths = list(paths)
    refuse_stale_schemas(paths)
    rows: list[dict] = []
    for raw in paths:
        path = Path(raw)
        try:
            fh = h5py.File(path, "r")
        except OSError as exc:
            raise SchemaError(f"{path}: cannot be read as an HDF5 metrics file ({exc})") from exc
        with fh as f:
            check_schema(f, "metrics")
            missing = [k for k in REQUIRED_ATTRS if k not in f.attrs]
            if missing:
                raise SchemaError(f"{path}: metrics file lacks the root attribute(s) {missing}")
            if "metrics" not in f or not isinstance(f["metrics"], h5py.Group) or len(f["metrics"]) == 0:
                raise SchemaError(f"{path}: metrics file has no /metrics/<task> group")
            # only the scalar / string-list attributes we need (get_attr is not used on numeric arrays)
            wanted = (*REQUIRED_ATTRS, "venue", "config_hash", "noise_kind", "modalities")
            root = {k: get_attr(f, k) for k in wanted if k in f.attrs}
            modalities = root.get("modalities")
            if isinstance(modalities, str):
                modalities = [modalities]
            base = {
                "dataset": str(root["dataset"]),
                "method": str(root["method"]),
                "venue": "" if root.get("venue") in (None, "null") else str(root.get("venue")),
                "noise": float(root["noise"]),
                "bits": int(root["bits"]),
                "seed": int(root["seed"]),
            }
            for task in ordered_tasks(f["metrics"].keys(), modalities):
                g = f["metrics"][task]
                if "map" not in g.attrs:
                    raise SchemaError(f"{path}: /metrics/{task} lacks the attribute 'map'")
                row = dict(base, task=task, map=float(get_attr(g, "map")))
                for key in sorted((k for k in g.attrs if k.startswith("map_at_")), key=map_at_key):
                    row[key] = float(get_attr(g, key))
                row["config_hash"] = str(root.get("config_hash", ""))
                row["path"] = str(path)
                row["noise_kind"] = str(root.get("noise_kind", ""))
                rows.append(row)
    head = ["dataset", "task", "method", "venue", "noise", "bits", "seed", "map"]
    if not rows:
        return pd.DataFrame(columns=head + ["config_hash", "path", "noise_kind"])
    df = pd.DataFrame(rows)
    at_k = sorted((c for c in df.columns if c.startswith("map_at_")), key=map_at_key)
    df = df[head + at_k + ["config_hash", "path", "noise_kind"]]
    return df.astype({"noise": float, "bits": int, "seed": int, "map": float})


def appearance_order(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def method_order(present: Iterable[str], methods: Sequence[str] | None) -> list[str]:
    present = appearance_order(present)
    if methods is None:
        return present
    given = [m for m in dict.fromkeys(methods) if m in present]
    return given + [m for m in present if m not in given]


def summarise(df: pd.DataFrame, table_name: str, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Average :func:`collect_results` rows over seeds.

    Returns a long table with exactly the columns ``table, dataset, task, method, venue, noise, bits,
    map, n_seeds, std``: ``map`` is the mean over seeds and ``std`` the population standard deviation
    (ddof=0, so one seed gives 0.0), both in percent and rounded to 2 decimals; ``table`` is
    ``table_name``. Rows are ordered by dataset (order of appearance), task (modality order, I2T
    before T2I), method (the order of ``methods``; methods not listed follow in order of appearance),
    noise and bits.

    Raises ``ValueError`` if two files describe the same (dataset, task, method, noise, bits, seed)
    or if the rows mix noise kinds.
    """
    if df.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    if "noise_kind" in df.columns:
        kinds = sorted(set(df["noise_kind"].astype(str)) - {""})
        if len(kinds) > 1:
            raise ValueError(f"results mix noise kinds {kinds}; summarise one kind at a time")
    key = ["dataset", "task", "method", "noise", "bits", "seed"]
    dup = df[df.duplicated(key, keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        same = dup[(dup[key] == first[key]).all(axis=1)]
        files = sorted(set(same["path"])) if "path" in same else []
        raise ValueError(f"several results for {dict(first[key])}: {files}")

    datasets = appearance_order(df["dataset"])
    tasks = appearance_order(df["task"])
    order = method_order(df["method"], methods)
    work = df.copy()
    work["venue"] = work["venue"].fillna("").astype(str) if "venue" in work else ""
    grouped = work.groupby(["dataset", "task", "method", "noise", "bits"], sort=False)
    out = grouped.agg(
        venue=("venue", lambda s: next((v for v in s if v), "")),
        map=("map", lambda s: float(np.nanmean(s)) * 100 if s.notna().any() else np.nan),
        n_seeds=("map", lambda s: int(s.notna().sum())),
        std=("map", lambda s: float(np.nanstd(s, ddof=0)) * 100 if s.notna().any() else np.nan),
    ).reset_index()
    out["map"] = out["map"].round(2)
    out["std"] = out["std"].round(2)
    out["n_seeds"] = out["n_seeds"].astype(int)
    out["table"] = table_name
    out["_d"] = out["dataset"].map({d: i for i, d in enumerate(datasets)})
    out["_t"] = out["task"].map({t: i for i, t in enumerate(tasks)})
    out["_m"] = out["method"].map({m: i for i, m in enumerate(order)})
    out = out.sort_values(["_d", "_t", "_m", "noise", "bits"], kind="stable")
    return out[SUMMARY_COLUMNS].reset_index(drop=True)


def ablation_table(summary: pd.DataFrame, bits: int | None = None) -> pd.DataFrame:
    """Average the cross-modal tasks of a :func:`summarise` table per method at one code length (Table 4).

    ``bits`` defaults to the largest code length in ``summary``. The result has the columns of
    :data:`SUMMARY_COLUMNS` with ``task = "avg"``; ``map`` is the mean of the per-task MAPs (percent,
    2 decimals), ``n_seeds`` the smallest seed count among the tasks and ``std`` is NaN (a standard
    deviation of the average cannot be recovered from per-task ones). A (method, dataset, noise) cell
    missing one of the tasks is left out. Tasks of joint code sets (e.g. ``FUSED``, only some methods have them;
    :func:`cmhash.store.is_cross_modal_task`) are not averaged, so the averages of methods with and without it compare. :func:`to_markdown` /
    :func:`to_latex` draw this as rows method x columns dataset x noise.
    """
    if summary.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    if bits is None:
        bits = int(summary["bits"].max())
    sel = summary[summary["bits"] == int(bits)]
    if sel.empty:
        raise ValueError(f"no results with {bits} bits (available: {sorted(set(summary['bits']))})")
    sel = sel[sel["task"].map(is_cross_modal_task)]
    n_tasks = sel.groupby("dataset")["task"].nunique()
    grouped = sel.groupby(["table", "dataset", "method", "noise", "bits"], sort=False)
    out = grouped.agg(
        venue=("venue", "first"),
        map=("map", "mean"),
        n_seeds=("n_seeds", "min"),
        _n=("task", "nunique"),
    ).reset_index()
    out = out[out["_n"].to_numpy() == out["dataset"].map(n_tasks).to_numpy()]
    out["map"] = out["map"].round(2)
    out["task"] = "avg"
    out["std"] = np.nan
    datasets = appearance_order(summary["dataset"])
    methods = appearance_order(summary["method"])
    out["_d"] = out["dataset"].map({d: i for i, d in enumerate(datasets)})
    out["_m"] = out["method"].map({m: i for i, m in enumerate(methods)})
    out = out.sort_values(["_m", "_d", "noise"], kind="stable")
    return out[SUMMARY_COLUMNS].reset_index(drop=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file next to ``path`` and rename it into place (:func:`store.atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_runs_table(
    paths: Iterable[str | os.PathLike], out_csv: str | os.PathLike, expected_hashes: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Rule ``collect_runs``: read an experiment's metrics files (:func:`collect_results`), refuse stale ones
    (:func:`check_config_hashes`) and write the rows as ``results/tables/{experiment}_runs.csv`` (atomic).

    Every other report rule of the experiment takes this one file as input instead of every metrics file
    (a 4,000-run grid then costs Snakemake one input per report job, not 4,000) and reads it
    (:func:`read_runs_table`, through :func:`load_results`); the hashes are checked here once."""
    df = collect_results(paths)
    if expected_hashes:
        check_config_hashes(df, expected_hashes)
    atomic_write_text(out_csv, df.to_csv(index=False))
    return df


def read_runs_table(runs_csv: str | os.PathLike) -> pd.DataFrame:
    """A runs table (:func:`write_runs_table`) as the frame :func:`collect_results` gave, without reopening the
    metrics files (their config hashes were checked when the table was written)."""
    df = pd.read_csv(runs_csv, dtype={"dataset": str, "task": str, "method": str, "venue": str, "config_hash": str,
                                      "path": str, "noise_kind": str})
    if df.empty:
        raise SchemaError(f"{runs_csv}: the runs table lists no metrics file; rerun rule collect_runs")
    for column in ("venue", "config_hash", "noise_kind"):
        df[column] = df[column].fillna("")
    return df.astype({"noise": float, "bits": int, "seed": int, "map": float})


def load_results(
    source: str | os.PathLike | Iterable[str | os.PathLike], expected_hashes: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """What every report function starts from: a runs table (a ``.csv`` path, :func:`read_runs_table`) or metrics
    files (:func:`collect_results`), then the config-hash check (:func:`check_config_hashes`) when given."""
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".csv"):
        df = read_runs_table(source)
    else:
        df = collect_results([source] if isinstance(source, (str, os.PathLike)) else source)
    if expected_hashes is not None:
        check_config_hashes(df, expected_hashes)
    return df


def check_config_hashes(df: pd.DataFrame, expected: Mapping[str, str]) -> None:
    """Raise ``ValueError`` listing every result whose ``config_hash`` differs from the current config's.

    Snakemake reruns a training when its hyperparameters change, but a result file can still be stale
    (copied in, produced with ``--rerun-triggers mtime``, or written by an older version); a table must
    never silently mix configurations.
    """
    stale = []
    for path, found in df.groupby("path")["config_hash"].first().items():
        want = expected.get(str(path))
        if want is not None and found != want:
            stale.append(f"  {path} (config hash {found}, current config {want})")
    if stale:
        raise ValueError(
            f"{len(stale)} result file(s) were computed with a different configuration than the current one:\n"
            + "\n".join(stale[:20])
            + "\nDelete them (or their run folders) and rerun snakemake, which retrains them with the current config."
        )
