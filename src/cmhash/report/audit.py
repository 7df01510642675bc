"""Protocol audit: how much of a published MAP comes from the published code's protocol, not the method.

An experiment with a ``protocol_audit`` block runs each audited method both ways -- the clean protocol and
the protocol of its published code (dataset variants such as ``split.val_source: test`` and
``dummy_class_column``, method flags such as SEHA's ``reference_compatible``) -- and optionally single
changes in between. This module turns the experiment's metrics files into

- :func:`protocol_table`: one row per (audited method, setting, task, noise, bits) with the MAP (mean and
  std over seeds, percent) and the difference to the clean setting, paired by seed (mean and std);
- :func:`to_markdown`: the task average per setting, ``MAP ± std`` and ``Δ ± std`` per noise and bits;
- :func:`plot_protocol`: one panel per audited method, MAP (task average) per setting and noise rate;
- :func:`report_protocol_audit`: what the Snakemake script calls (every output written atomically).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..store import is_cross_modal_task
from .results import atomic_write_text, load_results
from .style import save_figure

#: Columns of :func:`protocol_table`, in this order.
PROTOCOL_COLUMNS = ["audited", "setting", "method", "dataset", "task", "noise", "bits", "map", "std", "n_seeds",
                    "delta", "delta_std"]

Audit = Mapping[str, Mapping[str, Sequence[str]]]


def _settings(audit: Audit) -> list[tuple[str, str, str, str]]:
    """(audited, setting, method, dataset), clean first, then the other settings, published last."""
    out = []
    for row, cells in audit.items():
        if "clean" not in cells or "published" not in cells:
            raise ValueError(f"protocol_audit.{row} needs the settings 'clean' and 'published', got {sorted(cells)}")
        order = ["clean"] + [s for s in cells if s not in ("clean", "published")] + ["published"]
        out += [(row, s, str(cells[s][0]), str(cells[s][1])) for s in order]
    return out


def protocol_table(df: pd.DataFrame, audit: Audit) -> pd.DataFrame:
    """Tabulate :func:`cmhash.report.results.collect_results` rows for the settings of ``audit``.

    Tasks are the cross-modal tasks of the files (not a joint code set's, e.g. ``FUSED``) plus ``avg`` (the mean of the tasks per
    seed). ``map`` and ``std`` are the mean and population std (ddof 0) over seeds in percent; ``delta`` and
    ``delta_std`` those of the per-seed difference ``setting - clean`` over the seeds both have (0 for the
    clean setting). All rounded to 2 decimals. A setting without results raises ``ValueError`` naming it.
    """
    rows = []
    df = df[df["task"].map(is_cross_modal_task)]
    per_seed = df.pivot_table(index=["method", "dataset", "noise", "bits", "seed"], columns="task", values="map",
                              aggfunc="first")
    tasks = list(dict.fromkeys(df["task"]))
    per_seed["avg"] = per_seed[tasks].mean(axis=1)
    for audited, setting, method, dataset in _settings(audit):
        clean_method, clean_dataset = audit[audited]["clean"]
        try:
            cell = per_seed.xs((method, dataset), level=("method", "dataset"))
            clean = per_seed.xs((clean_method, clean_dataset), level=("method", "dataset"))
        except KeyError:
            raise ValueError(
                f"protocol_audit.{audited}.{setting}: no results for method {method!r} on dataset {dataset!r} "
                f"(or for its clean cell {clean_method!r} on {clean_dataset!r})"
            ) from None
        for (noise, bits), group in cell.groupby(level=("noise", "bits"), sort=True):
            try:
                base = clean.xs((noise, bits), level=("noise", "bits"))
            except KeyError:
                base = None
            for task in [*tasks, "avg"]:
                values = group[task].droplevel(["noise", "bits"]) * 100
                row = {"audited": audited, "setting": setting, "method": method, "dataset": dataset, "task": task,
                       "noise": float(noise), "bits": int(bits), "map": values.mean(), "std": values.std(ddof=0),
                       "n_seeds": int(values.notna().sum()), "delta": np.nan, "delta_std": np.nan}
                if base is not None:
                    diff = (values - base[task] * 100).dropna()
                    if len(diff):
                        row["delta"], row["delta_std"] = diff.mean(), diff.std(ddof=0)
                rows.append(row)
    out = pd.DataFrame(rows, columns=PROTOCOL_COLUMNS)
    for col in ("map", "std", "delta", "delta_std"):
        out[col] = out[col].astype(float).round(2)
    return out


def _pm(value: float, std: float, signed: bool = False) -> str:
    if not np.isfinite(value):
        return "–"
    text = f"{value:+.1f}" if signed else f"{value:.1f}"
    return f"{text} ± {std:.1f}" if np.isfinite(std) else text


def to_markdown(table: pd.DataFrame, experiment: str) -> str:
    """The task average (``avg``) of :func:`protocol_table` as Markdown: rows audited method x setting,
    columns noise x bits, each with ``MAP ± std`` and ``Δ vs clean ± std`` (percentage points)."""
    avg = table[table["task"] == "avg"]
    if avg.empty:
        return f"## {experiment}: protocol audit\n\n_No results._\n"
    columns = sorted({(r.noise, r.bits) for r in avg.itertuples()})
    header = ["Method", "Setting", "Run", "Dataset"]
    for noise, bits in columns:
        header += [f"MAP (noise {noise:g}, {bits} bits)", "Δ vs clean"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] * 4 + ["---:"] * (2 * len(columns))) + "|"]
    lookup = {(r.audited, r.setting, r.noise, r.bits): r for r in avg.itertuples()}
    last = None
    for key in dict.fromkeys((r.audited, r.setting, r.method, r.dataset) for r in avg.itertuples()):
        audited, setting, method, dataset = key
        cells = [audited if audited != last else "", setting, method, dataset]
        for noise, bits in columns:
            r = lookup.get((audited, setting, noise, bits))
            cells += ["–", "–"] if r is None else [_pm(r.map, r.std), _pm(r.delta, r.delta_std, signed=True)]
        lines.append("| " + " | ".join(cells) + " |")
        last = audited
    n = int(avg["n_seeds"].max())
    note = (f"MAP (%) averaged over the two tasks, mean ± std over {n} seed(s); Δ = setting − clean, paired by "
            "seed. 'published' runs the method as its published code does (see config/README.md, 'Protocol audit').")
    return "\n".join([f"## {experiment}: protocol audit", "", note, "", *lines, ""])


def plot_protocol(table: pd.DataFrame, out_stem: str | os.PathLike, experiment: str) -> list[Path]:
    """One panel per audited method: task-average MAP per setting (bars) at each noise rate and code length,
    error bars = std over seeds. Writes ``<stem>.png`` and ``<stem>.pdf``."""
    avg = table[table["task"] == "avg"]
    audited = list(dict.fromkeys(avg["audited"]))
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
        fig = Figure(figsize=(4.6 * max(1, len(audited)), 4.8), layout="constrained")
        axes = fig.subplots(1, max(1, len(audited)), squeeze=False)[0]
        if not audited:
            axes[0].text(0.5, 0.5, "no results", ha="center", va="center")
        for ax, name in zip(axes, audited):
            sub = avg[avg["audited"] == name]
            settings = list(dict.fromkeys(sub["setting"]))
            groups = sorted({(r.noise, r.bits) for r in sub.itertuples()})
            width = 0.8 / len(settings)
            palette = sns.color_palette("colorblind", len(settings))
            for i, setting in enumerate(settings):
                rows = sub[sub["setting"] == setting].set_index(["noise", "bits"])
                values = [rows["map"].get(g, np.nan) for g in groups]
                errors = [rows["std"].get(g, np.nan) for g in groups]
                label = f"{setting} ({rows['method'].iloc[0]}, {rows['dataset'].iloc[0]})"
                ax.bar(np.arange(len(groups)) + (i - (len(settings) - 1) / 2) * width, values, width,
                       yerr=errors, capsize=2, color=palette[i], label=label)
            ax.set_xticks(np.arange(len(groups)),
                          [f"{n:g}" if len({b for _, b in groups}) == 1 else f"{n:g}/{b}" for n, b in groups])
            ax.set_xlabel("noise rate" if len({b for _, b in groups}) == 1 else "noise rate / bits")
            ax.set_ylabel("MAP (%), mean of I2T and T2I")
            ax.set_title(name)
            ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
        fig.suptitle(f"{experiment}: clean protocol vs published code's protocol")
    return save_figure(fig, out_stem)


def report_protocol_audit(
    paths: str | os.PathLike | Iterable[str | os.PathLike],  # a runs table (.csv) or metrics files
    experiment: str,
    outputs: Mapping[str, str | os.PathLike],
    audit: Audit,
    expected_hashes: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Collect the metrics files and write ``outputs["csv"]``, ``outputs["md"]`` and the figure at
    ``outputs["png"]`` (its ``.pdf`` beside it). Results of another configuration are refused."""
    df = load_results(paths, expected_hashes)
    table = protocol_table(df, audit)
    written = {"csv": atomic_write_text(outputs["csv"], table.to_csv(index=False)),
               "md": atomic_write_text(outputs["md"], to_markdown(table, experiment))}
    for path in plot_protocol(table, Path(outputs["png"]).with_suffix(""), experiment):
        written[path.suffix.lstrip(".")] = path
    return written
