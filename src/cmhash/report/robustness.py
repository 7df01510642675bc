r"""Robustness profile: how much of its MAP a method keeps as the noise rate grows, ours beside the papers'.

For every (dataset, method, task, bits) of an experiment with two or more noise rates, retention at noise ``n``
is ``MAP(n) / MAP(n_0)`` with ``n_0`` the experiment's lowest noise rate; a method's retention at ``n`` is the
mean over tasks (I2T, T2I; joint code sets such as fused codes excluded) and code lengths, in percent. The paper's retention is
computed the same way from the published MAP tables (:mod:`cmhash.report.published`), at the experiment's noise rates and
code lengths (all the paper's code lengths when it prints none of ours):

* ``paper_same`` -- on the paper's version of our dataset (``datasets.<name>.paper_name``), where it has one;
* ``paper_all`` -- averaged over every dataset the paper reports for the method (e.g. RSHNL's Tables 1-3).

``rank_correlation`` is Spearman's rho (Pearson correlation of average ranks) between ours and ``paper_all``
over the methods that have both, at the experiment's highest noise rate. This profile is a diagnostic of
fidelity, never a target.

Hand check: MAP 80 at noise 0.2 and 60 at 0.6 in both tasks -> retention 75 % at 0.6 and 100 % at 0.2.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from ..store import is_cross_modal_task
from .published import load_paper_maps
from .results import atomic_write_text, load_results, summarise

COLUMNS = ["dataset", "method", "noise", "ours", "paper_same", "paper_all", "paper", "n_cells"]


def _retention(rows: pd.DataFrame, base_noise: float, group: list[str]) -> pd.DataFrame:
    """Mean over ``group`` cells of MAP(noise)/MAP(base_noise) (percent), per (method, noise)."""
    rows = rows[rows["task"].map(is_cross_modal_task)].copy()
    rows["noise"] = rows["noise"].astype(float).round(6)
    base = rows[np.isclose(rows["noise"], base_noise)][[*group, "map"]].rename(columns={"map": "base"})
    merged = rows.merge(base, on=group, how="inner")
    merged = merged[merged["base"] > 0]
    merged["retention"] = 100.0 * merged["map"].astype(float) / merged["base"].astype(float)
    return merged.groupby(["method", "noise"], sort=False)["retention"].agg(["mean", "count"]).reset_index()


def robustness_table(
    summary: pd.DataFrame, paper: pd.DataFrame | None = None, dataset_names: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One row per (dataset, method, noise) of ``summary`` (:func:`cmhash.report.results.summarise`'s columns; ``map``
    in percent) with our retention and the papers' (module docstring); columns :data:`COLUMNS`."""
    if summary.empty:
        return pd.DataFrame(columns=COLUMNS)
    summary = summary[summary["task"] != "avg"]
    noises = sorted(summary["noise"].astype(float).unique())
    if len(noises) < 2:
        raise ValueError("a robustness table needs an experiment with two or more noise rates; "
                         f"this one has {noises}")
    n0 = noises[0]
    dataset_names = dict(dataset_names or {})
    out = []
    for dataset, rows in summary.groupby("dataset", sort=False):
        ours = _retention(rows, n0, ["method", "task", "bits"])
        ours = ours.rename(columns={"mean": "ours", "count": "n_cells"})
        if paper is not None and not paper.empty:
            pub = paper[paper["task"].isin(["I2T", "T2I"]) & paper["map"].notna()]
            pub = pub[pub["method"].isin(rows["method"].unique())]
            pub = pub[pub["noise"].astype(float).round(6).isin([round(n, 6) for n in noises])]
            bits = set(rows["bits"].astype(int))
            has_our_bits = pub.assign(ok=pub["bits"].isin(bits)).groupby("method")["ok"].transform("any")
            pub = pub[~has_our_bits | pub["bits"].isin(bits)]
            all_ = _retention(pub, n0, ["method", "dataset", "task", "bits"]).rename(columns={"mean": "paper_all"})
            same_name = dataset_names.get(str(dataset))
            same = (_retention(pub[pub["dataset"] == same_name], n0, ["method", "task", "bits"])
                    .rename(columns={"mean": "paper_same"}) if same_name else None)
            ours = ours.merge(all_[["method", "noise", "paper_all"]], on=["method", "noise"], how="left")
            if same is not None:
                ours = ours.merge(same[["method", "noise", "paper_same"]], on=["method", "noise"], how="left")
            source = (pub.drop_duplicates("method").set_index("method")["paper"].to_dict()
                      if "paper" in pub else {})
            ours["paper"] = ours["method"].map(source).fillna("")
        ours["dataset"] = dataset
        out.append(ours)
    df = pd.concat(out, ignore_index=True)
    for col in COLUMNS:
        if col not in df:
            df[col] = np.nan if col not in ("paper",) else ""
    df[["ours", "paper_same", "paper_all"]] = df[["ours", "paper_same", "paper_all"]].astype(float).round(1)
    return df[COLUMNS]


def _ranks(values: np.ndarray) -> np.ndarray:
    return pd.Series(values).rank(method="average").to_numpy()


def rank_correlation(table: pd.DataFrame, column: str = "paper_all", noise: float | None = None) -> tuple[float, int]:
    """Spearman's rho between ``ours`` and ``column`` over methods with both, at ``noise`` (default: the highest
    noise rate of ``table``), averaged over datasets first. Returns (rho, number of methods); rho is NaN for
    fewer than three methods or constant values."""
    if table.empty:
        return math.nan, 0
    noise = float(table["noise"].max()) if noise is None else noise
    at = table[np.isclose(table["noise"].astype(float), noise)]
    at = at.groupby("method", sort=False)[["ours", column]].mean().dropna()
    if len(at) < 3 or at["ours"].nunique() < 2 or at[column].nunique() < 2:
        return math.nan, len(at)
    a, b = _ranks(at["ours"].to_numpy()), _ranks(at[column].to_numpy())
    return float(np.corrcoef(a, b)[0, 1]), len(at)


def to_markdown(table: pd.DataFrame, experiment: str) -> str:
    """Methods as rows, one 'ours (paper)' column per noise rate, then the rank correlation."""
    title = f"## {experiment}: robustness (MAP retention vs the lowest noise rate, %)\n\n"
    if table.empty:
        return title + "_No results._\n"
    noises = sorted(table["noise"].astype(float).unique())
    lines = []
    for dataset, rows in table.groupby("dataset", sort=False):
        has_same = rows["paper_same"].notna().any()
        ref = "paper_same" if has_same else "paper_all"
        lines += [f"Dataset `{dataset}`; in parentheses: the paper's retention "
                  + ("on the same dataset" if has_same else "averaged over every dataset it reports") + ".", ""]
        lines.append("| Method | " + " | ".join(f"noise {n:g}" for n in noises) + " | paper |")
        lines.append("|:---|" + "---:|" * len(noises) + ":---|")
        for method, mrows in rows.groupby("method", sort=False):
            cells = []
            for n in noises:
                r = mrows[np.isclose(mrows["noise"].astype(float), n)]
                if r.empty:
                    cells.append("–")
                    continue
                ours, pub = r["ours"].iloc[0], r[ref].iloc[0]
                cells.append(f"{ours:.1f}" + ("" if pd.isna(pub) else f" ({pub:.1f})"))
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {mrows['paper'].iloc[0] or '–'} |")
        lines.append("")
    rho, n = rank_correlation(table)
    rho_text = "undefined (fewer than 3 methods with a paper value)" if math.isnan(rho) else f"{rho:.2f}"
    lines.append(f"Spearman rank correlation of the retention at noise {noises[-1]:g}, ours vs the papers' "
                 f"average over their datasets: {rho_text} ({n} method{'' if n == 1 else 's'}).")
    return title + "\n".join(lines) + "\n"


def report_robustness(
    paths: str | os.PathLike | Iterable[str | os.PathLike],  # a runs table (.csv) or metrics files
    experiment: str,
    outputs: Mapping[str, str],
    methods: list[str] | None = None,
    expected_hashes: Mapping[str, str] | None = None,
    paper_map=None,
    dataset_names: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Metrics files -> ``outputs["csv"]`` (:data:`COLUMNS`) and ``outputs["md"]``, written atomically."""

    df = load_results(paths, expected_hashes)
    table = robustness_table(summarise(df, experiment, methods), load_paper_maps(paper_map), dataset_names)
    written = {}
    if "csv" in outputs:
        written["csv"] = atomic_write_text(outputs["csv"], table.to_csv(index=False))
    if "md" in outputs:
        written["md"] = atomic_write_text(outputs["md"], to_markdown(table, experiment))
    return written
