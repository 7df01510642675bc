"""Figures in the style of the RSHNL paper, drawn from ``cmhash.metrics/1`` files.

- :func:`plot_pr_curves`     precision-recall by Hamming radius (paper Fig. 2 left)
- :func:`plot_map_vs_noise`  MAP vs noise rate (paper Fig. 2 right)
- :func:`plot_weight_density` density of the self-paced sample weights over epochs (paper Fig. 3)
- :func:`plot_map_vs_epoch`  validation MAP vs epoch per method (paper Fig. 4: RSHNL and its variants)

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot, no GUI backend: PNG is rendered by
Agg, PDF by the PDF backend) under seaborn's styling. Every function writes ``<stem>.png`` and
``<stem>.pdf`` atomically and returns the two paths. Missing data never raises: a method without the
needed data is skipped with a note in the figure, and an empty selection gives a "no data" figure.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..store import rate_str
from . import FIGURES
from .results import collect_results, load_results, summarise
from .style import figure_style, line_style, message_figure, method_colors, save_figure

Results = pd.DataFrame | Iterable[str | os.PathLike]

_CLEAN_COLOR = "#2c7fb8"
_NOISY_COLOR = "#d95f0e"
_TOTAL_COLOR = "#222222"


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------








def _as_frame(results: Results) -> pd.DataFrame:
    if isinstance(results, pd.DataFrame):
        return results
    return collect_results(list(results))


def _order(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def _methods(df: pd.DataFrame, methods: Sequence[str] | None) -> list[str]:
    present = _order(df["method"]) if not df.empty else []
    if methods is None:
        return present
    return list(dict.fromkeys(methods))








def _fmt(x: float) -> str:
    return f"{float(x):g}"


def pick_setting(
    df: pd.DataFrame, dataset: str | None = None, noise: float | None = None, bits: int | None = None
) -> tuple[str | None, float | None, int | None]:
    """Default (dataset, noise, bits) for the single-setting figures.

    Dataset: the first in ``df``; noise: 0.6 if present, else the middle of the sorted noise rates
    (upper middle for an even count); bits: the largest code length. Given values are kept.
    """
    if df.empty:
        return dataset, noise, bits
    if dataset is None:
        dataset = str(df["dataset"].iloc[0])
    sub = df[df["dataset"] == dataset]
    if sub.empty:
        return dataset, noise, bits
    if noise is None:
        rates = sorted(set(sub["noise"].astype(float)))
        noise = 0.6 if any(np.isclose(rates, 0.6)) else rates[len(rates) // 2]
    if bits is None:
        bits = int(sub["bits"].max())
    return dataset, float(noise), int(bits)


def _select(df: pd.DataFrame, dataset, noise, bits) -> pd.DataFrame:
    if df.empty or dataset is None:
        return df.iloc[0:0]
    keep = (df["dataset"] == dataset) & np.isclose(df["noise"].astype(float), float(noise)) & (
        df["bits"].astype(int) == int(bits))
    return df[keep]


def _setting_title(what: str, dataset, noise, bits) -> str:
    parts = [str(dataset) if dataset is not None else None,
             f"noise {rate_str(noise)}" if noise is not None else None,
             f"{bits} bits" if bits is not None else None]
    parts = [p for p in parts if p]
    return f"{what} — {', '.join(parts)}" if parts else what


def _legend(fig: Figure, handles, labels, ncols: int | None = None) -> None:
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=ncols or min(len(labels), 5),
                   frameon=False)


def _note(fig: Figure, text: str) -> None:
    fig.text(0.995, 0.005, text, ha="right", va="bottom", fontsize=8, color="0.4", style="italic")


# --------------------------------------------------------------------------------------------------
# Fig. 2 left: precision-recall
# --------------------------------------------------------------------------------------------------


def _read_pr(path: str, task: str) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with h5py.File(path, "r") as f:
            g = f.get(f"metrics/{task}")
            if g is None or "pr_precision" not in g or "pr_recall" not in g:
                return None
            return np.asarray(g["pr_precision"], float), np.asarray(g["pr_recall"], float)
    except OSError:
        return None


def plot_pr_curves(
    results: Results,
    out_stem: str | os.PathLike,
    dataset: str | None = None,
    noise: float | None = None,
    bits: int | None = None,
    methods: Sequence[str] | None = None,
    highlight: str | None = None,
) -> list[Path]:
    """Precision-recall curves by Hamming radius, one line per method, one panel per task.

    ``results`` is a :func:`cmhash.report.results.collect_results` frame or a list of metrics files. The
    curve point at radius r is (recall, precision) of all database items within Hamming distance r,
    averaged over seeds. Defaults: see :func:`pick_setting`. Writes ``<out_stem>.png/.pdf``.
    """
    df = _as_frame(results)
    dataset, noise, bits = pick_setting(df, dataset, noise, bits)
    sel = _select(df, dataset, noise, bits)
    title = _setting_title("Precision–recall by Hamming radius", dataset, noise, bits)
    if sel.empty:
        return message_figure(out_stem, title, "no data")
    tasks = _order(sel["task"])
    order = _methods(sel, methods)
    colors = method_colors(order)
    skipped: list[str] = []
    with figure_style():
        fig = Figure(figsize=(4.4 * len(tasks) + 0.4, 4.4), layout="constrained")
        axes = fig.subplots(1, len(tasks), squeeze=False)[0]
        handles: dict[str, Line2D] = {}
        for ax, task in zip(axes, tasks, strict=True):
            for m in order:
                paths = sel.loc[(sel["method"] == m) & (sel["task"] == task), "path"]
                if paths.empty:
                    continue  # a task only some methods have (a joint code set): nothing is missing
                curves = [c for c in (_read_pr(p, task) for p in paths) if c is not None]
                curves = [c for c in curves if len(c[0]) == len(curves[0][0])] if curves else []
                if not curves:
                    if m not in skipped:
                        skipped.append(m)
                    continue
                with np.errstate(invalid="ignore"), _nan_ok():
                    prec = np.nanmean(np.stack([c[0] for c in curves]), axis=0)
                    rec = np.nanmean(np.stack([c[1] for c in curves]), axis=0)
                ok = np.isfinite(prec) & np.isfinite(rec)
                every = max(1, int(ok.sum()) // 12)
                (line,) = ax.plot(rec[ok], prec[ok], ms=4, markevery=every, label=m,
                                  **line_style(m, colors[m], order.index(m), highlight))
                handles.setdefault(m, line)
            ax.set_title(task)
            ax.set_xlabel("Recall")
            ax.set_ylabel("Precision")
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
        fig.suptitle(title)
        labels = [m for m in order if m in handles]
        _legend(fig, [handles[m] for m in labels], labels)
        if skipped:
            _note(fig, "no PR data: " + ", ".join(skipped))
        if not handles:
            return message_figure(out_stem, title, "no PR data")
        return save_figure(fig, out_stem)


@contextlib.contextmanager
def _nan_ok():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        yield


# --------------------------------------------------------------------------------------------------
# Fig. 2 right: MAP vs noise
# --------------------------------------------------------------------------------------------------


def plot_map_vs_noise(
    summary: pd.DataFrame,
    out_stem: str | os.PathLike,
    bits: int | None = None,
    methods: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    highlight: str | None = None,
) -> list[Path]:
    """MAP (%) vs noise rate, one line per method; panels: one row per dataset, one column per task.

    ``summary`` is a :func:`cmhash.report.results.summarise` frame (a :func:`collect_results` frame is
    summarised first). ``bits`` defaults to the largest code length. Error bars show the standard
    deviation over seeds where there is more than one seed. Writes ``<out_stem>.png/.pdf``.
    """
    if "n_seeds" not in summary.columns and "seed" in summary.columns:
        summary = summarise(summary, "")
    if summary.empty:
        return message_figure(out_stem, "MAP vs noise rate", "no data")
    if bits is None:
        bits = int(summary["bits"].max())
    sel = summary[summary["bits"].astype(int) == int(bits)]
    if datasets is not None:
        sel = sel[sel["dataset"].isin(list(datasets))]
    title = f"MAP vs noise rate — {bits} bits"
    if sel.empty:
        return message_figure(out_stem, title, "no data")
    ds = _order(sel["dataset"]) if datasets is None else [d for d in datasets if d in set(sel["dataset"])]
    tasks = _order(sel["task"])
    order = _methods(sel, methods)
    colors = method_colors(order)
    noises = sorted(set(sel["noise"].astype(float)))
    with figure_style():
        fig = Figure(figsize=(4.4 * len(tasks) + 0.4, 3.6 * len(ds) + 0.9), layout="constrained")
        axes = fig.subplots(len(ds), len(tasks), squeeze=False)
        handles: dict[str, Line2D] = {}
        for i, d in enumerate(ds):
            for j, task in enumerate(tasks):
                ax = axes[i, j]
                cell = sel[(sel["dataset"] == d) & (sel["task"] == task)]
                for m in order:
                    line_df = cell[cell["method"] == m].sort_values("noise")
                    if line_df.empty:
                        continue
                    std = line_df["std"].where(line_df["n_seeds"] > 1).to_numpy(float)
                    cont = ax.errorbar(line_df["noise"], line_df["map"], yerr=None if np.all(np.isnan(std))
                                       else np.nan_to_num(std), ms=5, capsize=3,
                                       **line_style(m, colors[m], order.index(m), highlight))
                    handles.setdefault(m, cont.lines[0])
                ax.set_title(f"{d} — {task}" if len(ds) > 1 else task)
                ax.set_xticks(noises)
                ax.set_xticklabels([rate_str(n) for n in noises])
                ax.set_xlabel("Noise rate")
                ax.set_ylabel("MAP (%)")
        fig.suptitle(title if len(ds) > 1 else f"MAP vs noise rate — {ds[0]}, {bits} bits")
        labels = [m for m in order if m in handles]
        _legend(fig, [handles[m] for m in labels], labels)
        return save_figure(fig, out_stem)


# --------------------------------------------------------------------------------------------------
# Fig. 3: weight density
# --------------------------------------------------------------------------------------------------


def _read_weights(path: str) -> dict | None:
    try:
        with h5py.File(path, "r") as f:
            g = f.get("weights")
            if g is None or not all(k in g for k in ("hist_clean", "hist_noisy", "bin_edges")):
                return None
            clean = np.asarray(g["hist_clean"], float)
            noisy = np.asarray(g["hist_noisy"], float)
            edges = np.asarray(g["bin_edges"], float)
            epochs = np.asarray(f["history/epoch"], float) if "history/epoch" in f else None
    except OSError:
        return None
    if (clean.ndim != 2 or clean.shape != noisy.shape or clean.shape[0] == 0
            or clean.shape[1] + 1 != len(edges)):
        return None
    total = np.nan_to_num(clean) + np.nan_to_num(noisy)
    valid = np.isfinite(clean).all(axis=1) & np.isfinite(noisy).all(axis=1) & (total.sum(axis=1) > 0)
    if not valid.any():
        return None
    if epochs is None or len(epochs) != clean.shape[0]:
        epochs = np.arange(1, clean.shape[0] + 1, dtype=float)
    return {"clean": clean, "noisy": noisy, "edges": edges, "epochs": epochs, "valid": valid}


def _pick_epochs(w: dict, epochs: Sequence[int] | None, n_shown: int) -> list[int]:
    """Row indices of the epochs to show (valid rows only)."""
    rows = np.flatnonzero(w["valid"])
    if epochs is not None:
        wanted = []
        for e in epochs:
            hit = rows[np.isclose(w["epochs"][rows], float(e))]
            if hit.size:
                wanted.append(int(hit[0]))
        if wanted:
            return list(dict.fromkeys(wanted))
    idx = np.unique(np.round(np.linspace(0, len(rows) - 1, min(n_shown, len(rows)))).astype(int))
    return [int(rows[i]) for i in idx]


def plot_weight_density(
    results: Results,
    out_stem: str | os.PathLike,
    dataset: str | None = None,
    noise: float | None = None,
    bits: int | None = None,
    methods: Sequence[str] | None = None,
    seed: int | None = None,
    epochs: Sequence[int] | None = None,
    n_epochs_shown: int = 4,
    log_density: bool = False,
) -> list[Path]:
    """Density of the per-sample self-paced weights at several epochs for one run (paper Fig. 3).

    One row of panels per method that recorded ``/weights`` (``methods`` defaults to all in the
    selection), one column per shown epoch (``epochs`` as recorded in ``history/epoch``; default
    ``n_epochs_shown`` evenly spaced ones, first and last included). Each panel shows the density of
    the weights of truly clean samples, of truly noisy samples (colours) and of all samples (black
    outline); densities are normalised over all samples, so clean + noisy = total. ``seed`` defaults
    to the smallest seed of each method. Methods without weights are listed in a note.
    """
    df = _as_frame(results)
    dataset, noise, bits = pick_setting(df, dataset, noise, bits)
    sel = _select(df, dataset, noise, bits)
    title = _setting_title("Density of self-paced sample weights", dataset, noise, bits)
    if sel.empty:
        return message_figure(out_stem, title, "no data")
    order = _methods(sel, methods)
    found: dict[str, tuple[int, dict]] = {}
    skipped: list[str] = []
    for m in order:
        runs = sel[sel["method"] == m].drop_duplicates("path").sort_values("seed")
        if seed is not None:
            runs = runs[runs["seed"] == int(seed)]
        w = None
        for r in runs.itertuples():
            w = _read_weights(r.path)
            if w is not None:
                found[m] = (int(r.seed), w)
                break
        if w is None:
            skipped.append(m)
    if not found:
        return message_figure(out_stem, title, "no sample weights recorded"
                               + (f" ({', '.join(skipped)})" if skipped else ""))
    shown = {m: _pick_epochs(w, epochs, n_epochs_shown) for m, (_, w) in found.items()}
    ncols = max(len(v) for v in shown.values())
    with figure_style():
        fig = Figure(figsize=(2.9 * ncols + 0.6, 2.5 * len(found) + 1.2), layout="constrained")
        axes = fig.subplots(len(found), ncols, squeeze=False, sharey="row")
        for i, (m, (sd, w)) in enumerate(found.items()):
            edges = w["edges"]
            widths = np.diff(edges)
            for j in range(ncols):
                ax = axes[i, j]
                if j >= len(shown[m]):
                    ax.set_axis_off()
                    continue
                row = shown[m][j]
                clean = np.nan_to_num(w["clean"][row])
                noisy = np.nan_to_num(w["noisy"][row])
                n = clean.sum() + noisy.sum()
                dc, dn = clean / (n * widths), noisy / (n * widths)
                ax.bar(edges[:-1], dc, width=widths, align="edge", color=_CLEAN_COLOR, alpha=0.75, lw=0)
                ax.bar(edges[:-1], dn, width=widths, align="edge", bottom=dc, color=_NOISY_COLOR,
                       alpha=0.75, lw=0)
                ax.stairs(dc + dn, edges, color=_TOTAL_COLOR, lw=1.2)
                if log_density:
                    ax.set_yscale("symlog", linthresh=0.1)
                ax.set_title(f"epoch {_fmt(w['epochs'][row])}")
                ax.set_xlim(edges[0], edges[-1])
                ax.set_xlabel("weight")
                if j == 0:
                    ax.set_ylabel(f"{m} (seed {sd})\ndensity")
        fig.suptitle(title)
        handles = [Patch(color=_CLEAN_COLOR, alpha=0.75, label="clean samples"),
                   Patch(color=_NOISY_COLOR, alpha=0.75, label="noisy samples"),
                   Line2D([], [], color=_TOTAL_COLOR, lw=1.2, label="all samples")]
        _legend(fig, handles, [h.get_label() for h in handles])
        if skipped:
            _note(fig, "no sample weights: " + ", ".join(skipped))
        return save_figure(fig, out_stem)


# --------------------------------------------------------------------------------------------------
# Fig. 4: validation MAP vs epoch
# --------------------------------------------------------------------------------------------------


def _read_history(path: str, column: str) -> tuple[np.ndarray, np.ndarray, float | None] | None:
    try:
        with h5py.File(path, "r") as f:
            if f"history/{column}" not in f:
                return None
            y = np.asarray(f[f"history/{column}"], float)
            x = np.asarray(f["history/epoch"], float) if "history/epoch" in f else np.arange(1, len(y) + 1.0)
            best = f.attrs.get("best_epoch", None)
    except OSError:
        return None
    if len(x) != len(y) or not np.isfinite(y).any():
        return None
    try:
        best = float(best) if best is not None else None
    except (TypeError, ValueError):
        best = None
    return x, y, best


def plot_map_vs_epoch(
    results: Results,
    out_stem: str | os.PathLike,
    dataset: str | None = None,
    noise: float | None = None,
    bits: int | None = None,
    methods: Sequence[str] | None = None,
    column: str = "val_map_mean",
    highlight: str | None = None,
) -> list[Path]:
    """Validation MAP (%) vs epoch, one line per method, for one (dataset, noise, bits) (paper Fig. 4).

    Plots ``history/<column>`` (default the mean of the tasks, a fraction) times 100, averaged over
    seeds epoch by epoch (a shaded band shows +-1 std where several seeds exist); a dot marks each
    method's best epoch. Methods without that history column are listed in a note.
    """
    df = _as_frame(results)
    dataset, noise, bits = pick_setting(df, dataset, noise, bits)
    sel = _select(df, dataset, noise, bits)
    title = _setting_title("Validation MAP vs epoch", dataset, noise, bits)
    if sel.empty:
        return message_figure(out_stem, title, "no data")
    order = _methods(sel, methods)
    colors = method_colors(order)
    skipped: list[str] = []
    with figure_style():
        fig = Figure(figsize=(7.2, 4.6), layout="constrained")
        ax = fig.subplots()
        handles = {}
        for m in order:
            runs = sel[sel["method"] == m].drop_duplicates("path")
            hists = [h for h in (_read_history(p, column) for p in runs["path"]) if h is not None]
            if not hists:
                skipped.append(m)
                continue
            frame = pd.concat([pd.Series(y, index=x) for x, y, _ in hists], axis=1).sort_index() * 100
            mean = frame.mean(axis=1)
            kw = line_style(m, colors[m], order.index(m), highlight)
            (line,) = ax.plot(mean.index, mean.to_numpy(), label=m, ms=4,
                              markevery=max(1, len(mean) // 10), **kw)
            handles[m] = line
            if frame.shape[1] > 1:
                std = frame.std(axis=1, ddof=0)
                ax.fill_between(mean.index, mean - std, mean + std, color=colors[m], alpha=0.15, lw=0)
            if mean.notna().any():
                best = mean.idxmax()
                ax.plot([best], [mean[best]], "*", color=colors[m], ms=13, mec="black", mew=0.8, zorder=5)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(f"Validation MAP (%){' (mean of tasks)' if column == 'val_map_mean' else ''}")
        fig.suptitle(title)
        labels = [m for m in order if m in handles]
        star = Line2D([], [], ls="none", marker="*", ms=11, color="0.6", mec="black", mew=0.8)
        _legend(fig, [handles[m] for m in labels] + [star], labels + ["best epoch"],
                ncols=min(len(labels) + 1, 4))
        if skipped:
            _note(fig, f"no history/{column}: " + ", ".join(skipped))
        if not handles:
            return message_figure(out_stem, title, f"no history/{column}")
        return save_figure(fig, out_stem)


# --------------------------------------------------------------------------------------------------
# Snakemake entry
# --------------------------------------------------------------------------------------------------

#: Output keys of :func:`report_figures`: ``<name>_png`` / ``<name>_pdf`` per figure name of
#: :data:`cmhash.report.FIGURES`, the name also being the file's (``results/figures/<experiment>/<name>.png``).
FIGURE_OUTPUTS = {name: (f"{name}_png", f"{name}_pdf") for name in FIGURES}


def _stem_for(outputs: Mapping[str, str | os.PathLike], name: str) -> Path | None:
    png_key, pdf_key = FIGURE_OUTPUTS[name]
    if png_key not in outputs and pdf_key not in outputs:
        return None
    png = Path(outputs[png_key]).with_suffix("") if png_key in outputs else None
    pdf = Path(outputs[pdf_key]).with_suffix("") if pdf_key in outputs else None
    if png is not None and pdf is not None and png != pdf:
        raise ValueError(f"outputs {png_key} and {pdf_key} must share a path stem: {png} vs {pdf}")
    return png or pdf


def report_figures(
    paths: str | os.PathLike | Iterable[str | os.PathLike],  # a runs table (.csv) or metrics files
    experiment: str,
    outputs: Mapping[str, str | os.PathLike],
    methods: Sequence[str] | None = None,
    settings: Mapping | None = None,
    expected_hashes: Mapping[str, str] | None = None,
) -> list[Path]:
    """Draw every figure whose outputs are requested (keys of :data:`FIGURE_OUTPUTS` values).

    ``settings`` (all optional): ``dataset`` (default: first), ``noise`` / ``bits`` (default for the
    single-setting figures: 0.6 if present else the middle rate, and the largest bits),
    ``pr_noise``, ``pr_bits``, ``epoch_noise``, ``epoch_bits``, ``weights_noise``, ``weights_bits``
    (per-figure overrides), ``map_noise_bits`` (default: largest), ``epoch_methods`` (default
    ``methods``), ``weights_methods`` (default: the ``highlight`` method when present, else ``methods``),
    ``highlight`` (the method drawn bolder: config ``highlight_method``),
    ``weights_epochs``, ``weights_seed``.
    ``expected_hashes``: metrics path -> config hash of the current config; other results are refused
    (:func:`cmhash.report.results.check_config_hashes`), as for the tables.
    """
    s = dict(settings or {})
    df = load_results(paths, expected_hashes)
    order = list(methods) if methods is not None else None
    if order is not None and not df.empty:
        df = df[df["method"].isin(order)]
    dataset = s.get("dataset")
    written: list[Path] = []

    def setting(prefix: str):
        return (dataset, s.get(f"{prefix}_noise", s.get("noise")), s.get(f"{prefix}_bits", s.get("bits")))

    if (stem := _stem_for(outputs, "pr_curves")) is not None:
        d, n, b = setting("pr")
        written += plot_pr_curves(df, stem, d, n, b, methods=order, highlight=s.get("highlight"))
    if (stem := _stem_for(outputs, "map_vs_noise")) is not None:
        summary = summarise(df, experiment, order)
        written += plot_map_vs_noise(summary, stem, bits=s.get("map_noise_bits"), methods=order,
                                     datasets=[dataset] if dataset else None, highlight=s.get("highlight"))
    if (stem := _stem_for(outputs, "weight_density")) is not None:
        d, n, b = setting("weights")
        wm = s.get("weights_methods")
        if wm is None:
            present = _order(df["method"]) if not df.empty else []
            wm = [s["highlight"]] if s.get("highlight") in present else order
        written += plot_weight_density(df, stem, d, n, b, methods=wm,
                                       seed=s.get("weights_seed"), epochs=s.get("weights_epochs"))
    if (stem := _stem_for(outputs, "map_vs_epoch")) is not None:
        d, n, b = setting("epoch")
        written += plot_map_vs_epoch(df, stem, d, n, b, methods=s.get("epoch_methods", order),
                                     highlight=s.get("highlight"))
    return written
