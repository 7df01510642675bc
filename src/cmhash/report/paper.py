"""Paper-vs-ours: put a paper's published MAP beside ours (CSV, Markdown) and draw ours-vs-paper scatters.

Reading the papers' CSVs and matching them to our summary is :mod:`cmhash.report.published` (the layer below);
this module only writes what the comparison gives. :func:`report_paper` is what rule ``report_paper`` calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .published import has_matches, join_paper, load_paper_maps
from .results import (
    ablation_table,
    atomic_write_text,
    load_results,
    summarise,
)
from .style import method_colors, save_figure


def to_markdown(joined: pd.DataFrame, experiment: str) -> str:
    """A Markdown table of the rows that have a paper cell: ours, paper, difference (percent, 1 decimal)."""
    title = f"## {experiment}: ours vs paper\n\n"
    if not has_matches(joined):
        return title + "_No cell of this experiment appears in the paper's tables._\n"
    rows = joined[joined["paper_table"].notna()]
    lines = [
        "| Paper | Table | Dataset | Task | Method | Noise | Bits | Ours | Paper's | Diff |",
        "|:---|---:|:---|:---|:---|---:|---:|---:|---:|---:|",
    ]

    def fmt(v: float, signed: bool = False) -> str:
        return "–" if v is None or not np.isfinite(v) else (f"{v:+.1f}" if signed else f"{v:.1f}")

    for r in rows.itertuples():
        lines.append(
            f"| {r.paper or '–'} | {r.paper_table} | {r.dataset} | {r.task} | {r.method} | {float(r.noise):g} | {r.bits} | "
            f"{fmt(r.map)} | {fmt(r.paper_map)} | {fmt(r.diff, True)} |"
        )
    ok = rows["diff"].notna()
    summary = ""
    if ok.any():
        d = rows.loc[ok, "diff"]
        summary = (
            f"\n{int(ok.sum())} cells compared: mean difference {d.mean():+.2f}, mean absolute "
            f"difference {d.abs().mean():.2f} percentage points (ours − paper).\n"
        )
    return title + "\n".join(lines) + "\n" + summary


def plot_scatter(joined: pd.DataFrame, out_stem: str | os.PathLike, experiment: str) -> list[Path]:
    """Ours (y) vs paper (x) MAP, one panel per method with a published value, diagonal = perfect agreement.

    Writes ``<out_stem>.png`` and ``.pdf`` atomically; without any match the figure says so.
    """
    from matplotlib.figure import Figure


    pairs = joined[joined["paper_map"].notna() & joined["map"].notna()] if not joined.empty else joined
    methods = list(dict.fromkeys(pairs["method"])) if not pairs.empty else []
    if not methods:
        fig = Figure(figsize=(6.0, 2.5), layout="constrained")
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(
            0.5,
            0.5,
            "no cell of this experiment appears in the paper's tables",
            ha="center",
            va="center",
            color="0.35",
            transform=ax.transAxes,
        )
        fig.suptitle(f"{experiment}: ours vs paper")
        return save_figure(fig, out_stem)
    colors = method_colors(methods)
    fig = Figure(figsize=(3.6 * len(methods), 3.8), layout="constrained")
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    markers = {t: m for t, m in zip(sorted(set(pairs["task"])), ["o", "s", "^", "D"] * 4)}
    lo = float(min(pairs["map"].min(), pairs["paper_map"].min())) - 2
    hi = float(max(pairs["map"].max(), pairs["paper_map"].max())) + 2
    for ax, method in zip(axes, methods, strict=True):
        sub = pairs[pairs["method"] == method]
        for task, grp in sub.groupby("task", sort=False):
            ax.scatter(
                grp["paper_map"],
                grp["map"],
                color=colors[method],
                marker=markers[task],
                s=22,
                label=task,
                alpha=0.85,
            )
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, ls="--")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        d = sub["diff"]
        ax.set_title(f"{method}  (mean diff {d.mean():+.1f}, n={len(sub)})", fontsize=10)
        ax.set_xlabel("paper MAP (%)")
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("our MAP (%)")
    fig.suptitle(f"{experiment}: ours vs paper")
    return save_figure(fig, out_stem)


def write_paper_comparison(
    summary: pd.DataFrame,
    experiment: str,
    outputs: Mapping[str, str | os.PathLike],
    paper_map: str | os.PathLike | Sequence[str | os.PathLike] | None,
    dataset_names: Mapping[str, str] | None = None,
    ablation_bits: int | None = None,
    ablation_methods: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Join a :func:`summarise` table (plus its ablation ``avg`` rows) with the paper's published MAP.

    Writes the requested keys of ``outputs``: ``paper_csv`` (every row of ours with ``paper_map`` and
    ``diff`` = ours − paper, see :func:`cmhash.report.published.join_paper`), ``paper_md`` (the matched rows) and
    ``paper_png`` (ours-vs-paper scatter per method, with a ``.pdf`` sibling). The files are always
    written; without ``paper_map`` or without a matching cell they carry no paper values.
    ``dataset_names`` maps our dataset names to the paper's (``datasets.<name>.paper_name``).
    """
    if not any(k in outputs for k in ("paper_csv", "paper_md", "paper_png")):
        return {}

    abl = ablation_table(summary, ablation_bits) if not summary.empty else summary
    if ablation_methods is not None and not abl.empty:
        abl = abl[abl["method"].isin(list(ablation_methods))]
    ours = pd.concat([summary, abl], ignore_index=True) if not abl.empty else summary
    published = load_paper_maps(paper_map)
    joined = join_paper(ours, published, dict(dataset_names or {}))
    written: dict[str, Path] = {}
    if "paper_csv" in outputs:
        written["paper_csv"] = atomic_write_text(outputs["paper_csv"], joined.to_csv(index=False))
    if "paper_md" in outputs:
        written["paper_md"] = atomic_write_text(outputs["paper_md"], to_markdown(joined, experiment))
    if "paper_png" in outputs:
        written["paper_png"] = plot_scatter(joined, outputs["paper_png"], experiment)[0]
    return written


def report_paper(
    paths: str | os.PathLike | Iterable[str | os.PathLike],  # a runs table (.csv) or metrics files
    experiment: str,
    outputs: Mapping[str, str | os.PathLike],
    paper_map: str | os.PathLike | Sequence[str | os.PathLike] | None,
    methods: Sequence[str] | None = None,
    ablation_bits: int | None = None,
    ablation_methods: Sequence[str] | None = None,
    expected_hashes: Mapping[str, str] | None = None,
    dataset_names: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Collect an experiment's metrics files (refusing other configs' results, as the tables do) and write the
    paper comparison (:func:`write_paper_comparison`) from the same summary the tables print."""
    df = load_results(paths, expected_hashes)
    summary = summarise(df, experiment, methods)
    return write_paper_comparison(summary, experiment, outputs, paper_map, dataset_names, ablation_bits,
                                  ablation_methods)
