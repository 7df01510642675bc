"""The report's drawing primitives: seaborn styling, atomic PNG + PDF output, one colour and marker per method.
No result reading here (that is :mod:`cmhash.report.results`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import seaborn as sns
from matplotlib.figure import Figure

from ..store import atomic_path


@contextlib.contextmanager
def figure_style():
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.15):
        yield


def save_figure(fig: Figure, out_stem: str | os.PathLike, dpi: int = 200) -> list[Path]:
    """Write ``fig`` to ``<out_stem>.png`` and ``<out_stem>.pdf`` (temporary name, then rename)."""
    stem = Path(out_stem)
    if stem.suffix.lower() in (".png", ".pdf"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for ext in ("png", "pdf"):
        target = stem.parent / f"{stem.name}.{ext}"
        with atomic_path(target, suffix=f".tmp.{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi, metadata={"CreationDate": None} if ext == "pdf" else None)
        written.append(target)
    return written


def message_figure(out_stem, title: str, message: str) -> list[Path]:
    with figure_style():
        fig = Figure(figsize=(8.0, 3.2), layout="constrained")
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=13, color="0.35", wrap=True,
                transform=ax.transAxes)
        fig.suptitle(title)
        return save_figure(fig, out_stem)


def method_colors(methods: Sequence[str]) -> dict[str, tuple]:
    """A stable colour per method (seaborn ``colorblind`` palette, then ``husl`` for many methods)."""
    methods = list(dict.fromkeys(methods))
    if len(methods) <= 10:
        palette = sns.color_palette("colorblind", 10)
    else:
        palette = sns.color_palette("husl", len(methods))
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*"]


def line_style(method: str, color, index: int = 0, highlight: str | None = None) -> dict:
    """Line keywords of a method's curve; the ``highlight`` method (config ``highlight_method``) drawn bolder."""
    main = highlight is not None and method == highlight
    return {"color": color, "lw": 2.4 if main else 1.5, "zorder": 3 if main else 2,
            "marker": _MARKERS[index % len(_MARKERS)]}
