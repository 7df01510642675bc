"""Result tables: collect ``cmhash.metrics/1`` files, average over seeds, render the paper's layout.

The functions here are pure pandas (no ``tabulate``):

- :func:`collect_results` reads metrics files into one row per (file, task);
- :func:`summarise` averages over seeds into a long table (MAP in percent);
- :func:`to_markdown` / :func:`to_latex` render a summary like the RSHNL paper's Tables 1-3
  (rows task x method, columns noise x bits, best value bold and second best underlined);
- :func:`ablation_table` averages the two tasks per method at one code length, like Table 4; the
  renderers draw such an ``avg`` summary as rows method x columns dataset x noise;
- :func:`report_table` is what the Snakemake script calls: it writes every output atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..store import rate_str
from .results import (
    ablation_table,
    appearance_order,
    atomic_write_text,
    load_results,
    summarise,
)

_MISSING_MD = "–"
_MISSING_TEX = "--"


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------










# --------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------










# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def rank_marks(values: Sequence[float]) -> list[str]:
    """Mark the best (``"best"``) and second best (``"second"``) of ``values``; others get ``""``.

    Values are compared as displayed (one decimal), so equal displayed values share a mark; the
    second best is the largest displayed value below the best. NaN is never marked.
    """
    shown = [round(float(v), 1) if v is not None and np.isfinite(v) else None for v in values]
    distinct = sorted({v for v in shown if v is not None}, reverse=True)
    best = distinct[0] if distinct else None
    second = distinct[1] if len(distinct) > 1 else None
    return ["best" if v is not None and v == best else "second" if v is not None and v == second else ""
            for v in shown]


def _seed_stds(summary: pd.DataFrame) -> dict[tuple, float]:
    """(dataset, task, method, noise, bits) -> std over seeds, for the cells averaged over several seeds."""
    return {(r.dataset, r.task, r.method, r.noise, r.bits): r.std
            for r in summary.itertuples() if r.n_seeds > 1 and np.isfinite(r.std)}


def _with_std(cell: str, std: float | None, fmt: str) -> str:
    """``cell ± std`` (one decimal) when the cell is a mean over several seeds."""
    if std is None or cell in (_MISSING_MD, _MISSING_TEX):
        return cell
    return f"{cell} ± {std:.1f}" if fmt == "md" else rf"{cell}$\pm${std:.1f}"


def _cell(value: float, mark: str, fmt: str) -> str:
    if value is None or not np.isfinite(value):
        return _MISSING_MD if fmt == "md" else _MISSING_TEX
    text = f"{value:.1f}"
    if fmt == "md":
        return f"**{text}**" if mark == "best" else f"<u>{text}</u>" if mark == "second" else text
    return rf"\textbf{{{text}}}" if mark == "best" else rf"\underline{{{text}}}" if mark == "second" else text


def _tex_escape(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(repl.get(c, c) for c in str(text))


def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|")


def _is_ablation(summary: pd.DataFrame) -> bool:
    return not summary.empty and set(summary["task"]) == {"avg"}


def _main_blocks(summary: pd.DataFrame):
    """Yield (dataset, noises, bits, rows) with rows = [(task, method, venue, [(value, mark), ...])]."""
    for dataset in appearance_order(summary["dataset"]):
        sub = summary[summary["dataset"] == dataset]
        noises = sorted(set(sub["noise"]))
        bits = sorted(set(sub["bits"]))
        columns = [(n, b) for n in noises for b in bits]
        tasks = appearance_order(sub["task"])
        methods = appearance_order(sub["method"])
        lookup = {(r.task, r.method, r.noise, r.bits): r.map for r in sub.itertuples()}
        venue = {m: next((v for v in sub.loc[sub["method"] == m, "venue"] if isinstance(v, str) and v), "")
                 for m in methods}
        rows = []
        for task in tasks:
            present = [m for m in methods if any((task, m, n, b) in lookup for n, b in columns)]
            values = [[lookup.get((task, m, n, b), np.nan) for n, b in columns] for m in present]
            marks_by_col = [rank_marks([v[j] for v in values]) for j in range(len(columns))]
            for i, m in enumerate(present):
                cells = [(values[i][j], marks_by_col[j][i]) for j in range(len(columns))]
                rows.append((task, m, venue[m], cells))
        yield dataset, noises, bits, rows


def _ablation_block(summary: pd.DataFrame):
    datasets = appearance_order(summary["dataset"])
    columns = [(d, n) for d in datasets for n in sorted(set(summary.loc[summary["dataset"] == d, "noise"]))]
    methods = appearance_order(summary["method"])
    lookup = {(r.method, r.dataset, r.noise): r.map for r in summary.itertuples()}
    values = [[lookup.get((m, d, n), np.nan) for d, n in columns] for m in methods]
    marks = [rank_marks([v[j] for v in values]) for j in range(len(columns))]
    rows = [(m, [(values[i][j], marks[j][i]) for j in range(len(columns))]) for i, m in enumerate(methods)]
    return columns, rows


def _md_table(header: list[str], align: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return lines


def to_markdown(summary: pd.DataFrame) -> str:
    """Render a :func:`summarise` table (or an :func:`ablation_table`) as Markdown.

    Main layout: one block per dataset (a ``### <dataset>`` heading, then a table); rows task x method
    with a ``Ref.`` (venue) column; columns noise x bits, drawn as the header row (noise rates) and a
    first body row (code lengths), since Markdown has a single header row. Values are MAP in percent
    with one decimal; per (task, noise, bits) column the best value is ``**bold**`` and the second
    best ``<u>underlined</u>``; a missing result is ``–``; a mean over several seeds is followed by
    ``± std``. An ablation table (task ``avg``) is drawn as rows method x columns dataset x noise with
    the marks computed per column.
    """
    if summary.empty:
        return "_No results._\n"
    if _is_ablation(summary):
        return _ablation_markdown(summary)
    out: list[str] = []
    stds = _seed_stds(summary)
    for dataset, noises, bits, rows in _main_blocks(summary):
        columns = [(n, b) for n in noises for b in bits]
        header = ["Task", "Method", "Ref."]
        for n in noises:
            header += [f"Noise {rate_str(n)}"] + [""] * (len(bits) - 1)
        align = [":---", ":---", ":---"] + ["---:"] * (len(noises) * len(bits))
        body = [["", "", "Bits"] + [str(b) for _ in noises for b in bits]]
        last_task = None
        for task, method, venue, cells in rows:
            body.append([task if task != last_task else "", _md_escape(method), _md_escape(venue)]
                        + [_with_std(_cell(v, mk, "md"), stds.get((dataset, task, method, n, b)), "md")
                           for (v, mk), (n, b) in zip(cells, columns)])
            last_task = task
        out += [f"### {_md_escape(dataset)}", ""] + _md_table(header, align, body) + [""]
    return "\n".join(out)


def _ablation_markdown(summary: pd.DataFrame) -> str:
    columns, rows = _ablation_block(summary)
    bits = sorted(set(summary["bits"]))
    datasets = appearance_order(d for d, _ in columns)
    header = ["Method"]
    for d in datasets:
        k = sum(1 for dd, _ in columns if dd == d)
        header += [_md_escape(d)] + [""] * (k - 1)
    align = [":---"] + ["---:"] * len(columns)
    body = [["Noise"] + [rate_str(n) for _, n in columns]]
    body += [[_md_escape(m)] + [_cell(v, mk, "md") for v, mk in cells] for m, cells in rows]
    title = f"Average MAP (%) of the tasks with {', '.join(str(b) for b in bits)} bits"
    return "\n".join([f"### {title}", ""] + _md_table(header, align, body) + [""])


def to_latex(summary: pd.DataFrame, caption: str | None = None) -> str:
    """Render a :func:`summarise` table (or an :func:`ablation_table`) as LaTeX (needs ``booktabs``).

    Same layout as :func:`to_markdown`: one ``table`` environment per dataset, rows task x method with
    a ``Ref.`` column, two header rows (noise rates over ``\\multicolumn``, then code lengths), best
    value ``\\textbf{}``, second best ``\\underline{}``. ``caption`` replaces the default caption.
    """
    if summary.empty:
        return "% no results\n"
    if _is_ablation(summary):
        return _ablation_latex(summary, caption)
    out: list[str] = ["% requires \\usepackage{booktabs}"]
    stds = _seed_stds(summary)
    for dataset, noises, bits, rows in _main_blocks(summary):
        nb = len(bits)
        columns = [(n, b) for n in noises for b in bits]
        ncol = 3 + len(noises) * nb
        cap = caption or (f"MAP (\\%) on {_tex_escape(dataset)}; best in bold, second best underlined.")
        out += ["\\begin{table}[t]", "\\centering", f"\\caption{{{cap}}}", "\\small",
                "\\begin{tabular}{lll" + "r" * (ncol - 3) + "}", "\\toprule"]
        head = [" & & Noise"] + [f"\\multicolumn{{{nb}}}{{c}}{{{rate_str(n)}}}" for n in noises]
        out.append(" & ".join(head) + " \\\\")
        out.append(" ".join(f"\\cmidrule(lr){{{4 + i * nb}-{3 + (i + 1) * nb}}}" for i in range(len(noises))))
        out.append(" & ".join(["Task", "Method", "Ref."] + [str(b) for _ in noises for b in bits]) + " \\\\")
        out.append("\\midrule")
        last_task = None
        for task, method, venue, cells in rows:
            if last_task is not None and task != last_task:
                out.append("\\midrule")
            line = [_tex_escape(task) if task != last_task else "", _tex_escape(method), _tex_escape(venue)]
            line += [_with_std(_cell(v, mk, "tex"), stds.get((dataset, task, method, n, b)), "tex")
                     for (v, mk), (n, b) in zip(cells, columns)]
            out.append(" & ".join(line) + " \\\\")
            last_task = task
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


def _ablation_latex(summary: pd.DataFrame, caption: str | None) -> str:
    columns, rows = _ablation_block(summary)
    bits = sorted(set(summary["bits"]))
    datasets = appearance_order(d for d, _ in columns)
    cap = caption or (f"Ablation: average MAP (\\%) of the tasks with {', '.join(map(str, bits))} bits; "
                      "best in bold, second best underlined.")
    out = ["% requires \\usepackage{booktabs}", "\\begin{table}[t]", "\\centering", f"\\caption{{{cap}}}",
           "\\small", "\\begin{tabular}{l" + "r" * len(columns) + "}", "\\toprule"]
    head, rules, start = ["Dataset"], [], 2
    for d in datasets:
        k = sum(1 for dd, _ in columns if dd == d)
        head.append(f"\\multicolumn{{{k}}}{{c}}{{{_tex_escape(d)}}}")
        rules.append(f"\\cmidrule(lr){{{start}-{start + k - 1}}}")
        start += k
    out += [" & ".join(head) + " \\\\", " ".join(rules)]
    out.append(" & ".join(["Noise"] + [rate_str(n) for _, n in columns]) + " \\\\")
    out.append("\\midrule")
    for m, cells in rows:
        out.append(" & ".join([_tex_escape(m)] + [_cell(v, mk, "tex") for v, mk in cells]) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------






def report_table(
    paths: str | os.PathLike | Iterable[str | os.PathLike],  # a runs table (.csv) or metrics files
    experiment: str,
    outputs: Mapping[str, str | os.PathLike],
    methods: Sequence[str] | None = None,
    ablation_bits: int | None = None,
    ablation_methods: Sequence[str] | None = None,
    expected_hashes: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Collect metrics files and write the experiment's tables (everything atomically).

    ``expected_hashes`` maps each metrics path to the config hash of the current configuration; results
    computed under another configuration are refused (see :func:`check_config_hashes`).

    ``outputs`` may hold the keys ``csv``, ``md``, ``tex`` (the summary; csv in the long format of
    :func:`summarise`) and ``ablation_csv``, ``ablation_md``, ``ablation_tex`` (the task average at
    ``ablation_bits``, default the largest code length, over ``ablation_methods``, default all
    methods, in that order). Returns the written paths by key. The paper comparison is its own report
    (:func:`cmhash.report.paper.report_paper`, rule ``report_paper``).
    """
    df = load_results(paths, expected_hashes)
    summary = summarise(df, experiment, methods)
    written: dict[str, Path] = {}
    if "csv" in outputs:
        written["csv"] = atomic_write_text(outputs["csv"], summary.to_csv(index=False))
    if "md" in outputs:
        written["md"] = atomic_write_text(outputs["md"], f"## {experiment}\n\n" + to_markdown(summary))
    if "tex" in outputs:
        written["tex"] = atomic_write_text(outputs["tex"], to_latex(summary))
    if any(k in outputs for k in ("ablation_csv", "ablation_md", "ablation_tex")):
        sub = summary
        if ablation_methods is not None:
            sub = summarise(df[df["method"].isin(list(ablation_methods))], experiment, ablation_methods)
        abl = ablation_table(sub, ablation_bits) if not sub.empty else sub
        if "ablation_csv" in outputs:
            written["ablation_csv"] = atomic_write_text(outputs["ablation_csv"], abl.to_csv(index=False))
        if "ablation_md" in outputs:
            written["ablation_md"] = atomic_write_text(
                outputs["ablation_md"], f"## {experiment}: ablation\n\n" + to_markdown(abl))
        if "ablation_tex" in outputs:
            written["ablation_tex"] = atomic_write_text(outputs["ablation_tex"], to_latex(abl))
    return written


