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

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .store import FUSED_TASK, SCHEMAS, SchemaError, check_schema, get_attr, task_names

#: Columns of :func:`summarise` (and of :func:`ablation_table`), in this order.
SUMMARY_COLUMNS = ["table", "dataset", "task", "method", "venue", "noise", "bits", "map", "n_seeds", "std"]

#: Root attributes a metrics file must carry for the tables.
_REQUIRED_ATTRS = ("dataset", "method", "noise", "bits", "seed")

_MISSING_MD = "–"
_MISSING_TEX = "--"


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def _ordered_tasks(present: Iterable[str], modalities: Sequence[str] | None) -> list[str]:
    present = list(present)
    order: list[str] = []
    if modalities is not None and len(modalities) == 2:
        order = [t for t in task_names(modalities) if t in present]
    return order + sorted(t for t in present if t not in order)


def _map_at_key(name: str) -> float:
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
            missing = [k for k in _REQUIRED_ATTRS if k not in f.attrs]
            if missing:
                raise SchemaError(f"{path}: metrics file lacks the root attribute(s) {missing}")
            if "metrics" not in f or not isinstance(f["metrics"], h5py.Group) or len(f["metrics"]) == 0:
                raise SchemaError(f"{path}: metrics file has no /metrics/<task> group")
            # only the scalar / string-list attributes we need (get_attr is not used on numeric arrays)
            wanted = (*_REQUIRED_ATTRS, "venue", "config_hash", "noise_kind", "modalities")
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
            for task in _ordered_tasks(f["metrics"].keys(), modalities):
                g = f["metrics"][task]
                if "map" not in g.attrs:
                    raise SchemaError(f"{path}: /metrics/{task} lacks the attribute 'map'")
                row = dict(base, task=task, map=float(get_attr(g, "map")))
                for key in sorted((k for k in g.attrs if k.startswith("map_at_")), key=_map_at_key):
                    row[key] = float(get_attr(g, key))
                row["config_hash"] = str(root.get("config_hash", ""))
                row["path"] = str(path)
                row["noise_kind"] = str(root.get("noise_kind", ""))
                rows.append(row)
    head = ["dataset", "task", "method", "venue", "noise", "bits", "seed", "map"]
    if not rows:
        return pd.DataFrame(columns=head + ["config_hash", "path", "noise_kind"])
    df = pd.DataFrame(rows)
    at_k = sorted((c for c in df.columns if c.startswith("map_at_")), key=_map_at_key)
    df = df[head + at_k + ["config_hash", "path", "noise_kind"]]
    return df.astype({"noise": float, "bits": int, "seed": int, "map": float})


# --------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------


def _appearance_order(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def _method_order(present: Iterable[str], methods: Sequence[str] | None) -> list[str]:
    present = _appearance_order(present)
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

    datasets = _appearance_order(df["dataset"])
    tasks = _appearance_order(df["task"])
    order = _method_order(df["method"], methods)
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
    missing one of the tasks is left out. The ``FUSED`` task (fused codes, only some methods have it) is
    not averaged, so the averages of methods with and without it compare. :func:`to_markdown` /
    :func:`to_latex` draw this as rows method x columns dataset x noise.
    """
    if summary.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    if bits is None:
        bits = int(summary["bits"].max())
    sel = summary[summary["bits"] == int(bits)]
    if sel.empty:
        raise ValueError(f"no results with {bits} bits (available: {sorted(set(summary['bits']))})")
    sel = sel[sel["task"] != FUSED_TASK]
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
    datasets = _appearance_order(summary["dataset"])
    methods = _appearance_order(summary["method"])
    out["_d"] = out["dataset"].map({d: i for i, d in enumerate(datasets)})
    out["_m"] = out["method"].map({m: i for i, m in enumerate(methods)})
    out = out.sort_values(["_m", "_d", "noise"], kind="stable")
    return out[SUMMARY_COLUMNS].reset_index(drop=True)


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


def _fmt_noise(x: float) -> str:
    return f"{float(x):g}"


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
    for dataset in _appearance_order(summary["dataset"]):
        sub = summary[summary["dataset"] == dataset]
        noises = sorted(set(sub["noise"]))
        bits = sorted(set(sub["bits"]))
        columns = [(n, b) for n in noises for b in bits]
        tasks = _appearance_order(sub["task"])
        methods = _appearance_order(sub["method"])
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
    datasets = _appearance_order(summary["dataset"])
    columns = [(d, n) for d in datasets for n in sorted(set(summary.loc[summary["dataset"] == d, "noise"]))]
    methods = _appearance_order(summary["method"])
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
            header += [f"Noise {_fmt_noise(n)}"] + [""] * (len(bits) - 1)
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
    datasets = _appearance_order(d for d, _ in columns)
    header = ["Method"]
    for d in datasets:
        k = sum(1 for dd, _ in columns if dd == d)
        header += [_md_escape(d)] + [""] * (k - 1)
    align = [":---"] + ["---:"] * len(columns)
    body = [["Noise"] + [_fmt_noise(n) for _, n in columns]]
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
        head = [" & & Noise"] + [f"\\multicolumn{{{nb}}}{{c}}{{{_fmt_noise(n)}}}" for n in noises]
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
    datasets = _appearance_order(d for d, _ in columns)
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
    out.append(" & ".join(["Noise"] + [_fmt_noise(n) for _, n in columns]) + " \\\\")
    out.append("\\midrule")
    for m, cells in rows:
        out.append(" & ".join([_tex_escape(m)] + [_cell(v, mk, "tex") for v, mk in cells]) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file next to ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


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


def report_table(
    paths: Iterable[str | os.PathLike],
    experiment: str,
    outputs: Mapping[str, str | os.PathLike],
    methods: Sequence[str] | None = None,
    ablation_bits: int | None = None,
    ablation_methods: Sequence[str] | None = None,
    expected_hashes: Mapping[str, str] | None = None,
    paper_map: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    dataset_names: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Collect metrics files and write the experiment's tables (everything atomically).

    ``expected_hashes`` maps each metrics path to the config hash of the current configuration; results
    computed under another configuration are refused (see :func:`check_config_hashes`).

    ``outputs`` may hold the keys ``csv``, ``md``, ``tex`` (the summary; csv in the long format of
    :func:`summarise`) and ``ablation_csv``, ``ablation_md``, ``ablation_tex`` (the task average at
    ``ablation_bits``, default the largest code length, over ``ablation_methods``, default all
    methods, in that order). Returns the written paths by key.

    ``paper_csv``, ``paper_md``, ``paper_png``: the paper comparison, see :func:`write_paper_comparison`.
    """
    df = collect_results(paths)
    if expected_hashes is not None:
        check_config_hashes(df, expected_hashes)
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
    written.update(write_paper_comparison(
        summary, experiment, outputs, paper_map, dataset_names, ablation_bits, ablation_methods))
    return written


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
    ``diff`` = ours − paper, see :func:`cmhash.paper.join_paper`), ``paper_md`` (the matched rows) and
    ``paper_png`` (ours-vs-paper scatter per method, with a ``.pdf`` sibling). The files are always
    written; without ``paper_map`` or without a matching cell they carry no paper values.
    ``dataset_names`` maps our dataset names to the paper's (``datasets.<name>.paper_name``).
    """
    if not any(k in outputs for k in ("paper_csv", "paper_md", "paper_png")):
        return {}
    from . import paper as _paper

    abl = ablation_table(summary, ablation_bits) if not summary.empty else summary
    if ablation_methods is not None and not abl.empty:
        abl = abl[abl["method"].isin(list(ablation_methods))]
    ours = pd.concat([summary, abl], ignore_index=True) if not abl.empty else summary
    published = _paper.load_paper_maps(paper_map)
    joined = _paper.join_paper(ours, published, dict(dataset_names or {}))
    written: dict[str, Path] = {}
    if "paper_csv" in outputs:
        written["paper_csv"] = atomic_write_text(outputs["paper_csv"], joined.to_csv(index=False))
    if "paper_md" in outputs:
        written["paper_md"] = atomic_write_text(outputs["paper_md"], _paper.to_markdown(joined, experiment))
    if "paper_png" in outputs:
        written["paper_png"] = _paper.plot_scatter(joined, outputs["paper_png"], experiment)[0]
    return written
