"""Tables and figures on fake ``cmhash.metrics/1`` files (2 methods x 2 noise x 2 bits x 2 seeds)."""

from __future__ import annotations

import math
import re
import zlib

import h5py
import numpy as np
import pandas as pd
import pytest

from cmhash.report import figures, tables
from cmhash.report import results as report_results
from cmhash.store import SchemaError, atomic_h5

METHODS = ["RSHNL", "CE"]
VENUES = {"RSHNL": "AAAI'25", "CE": "baseline"}
NOISES = [0.2, 0.6]
BITS = [16, 32]
SEEDS = [0, 1]
N_EPOCHS = 12
N_BINS = 20


def fake_map(method: str, task: str, noise: float, bits: int, seed: int) -> float:
    """MAP (fraction) of a fake run; RSHNL beats CE everywhere, seed 1 is 0.02 above seed 0."""
    base = 0.80 if method == "RSHNL" else 0.60
    value = base - 0.2 * noise + bits / 1000 + (0.01 if task == "T2I" else 0.0) + 0.02 * seed
    return round(value, 6)


def write_metrics(path, method, noise, bits, seed, dataset="toy", with_weights=True, schema_ok=True):
    attrs = {
        "method": method, "impl": method.lower(), "venue": VENUES.get(method, ""), "dataset": dataset,
        "noise_kind": "sym", "noise": noise, "bits": bits, "seed": seed, "config_hash": f"h{method}",
        "params": {"lr": 0.001}, "device": "cpu", "git_commit": "abc", "torch_version": "0",
        "best_epoch": N_EPOCHS - 3, "train_seconds": 1.0, "modalities": ["image", "text"],
        "tie_order": "index", "topk": [50, 100], "pn": [10, 50],
    }
    rng = np.random.default_rng(zlib.crc32(f"{method}{noise}{bits}{seed}".encode()))
    with atomic_h5(path, "metrics", attrs) as f:
        if not schema_ok:
            f.attrs["schema"] = "cmhash.train/1"
        n_test = 30
        f["codes/image"] = rng.choice([-1, 1], size=(n_test, bits)).astype(np.int8)
        f["codes/text"] = rng.choice([-1, 1], size=(n_test, bits)).astype(np.int8)
        f["codes/labels"] = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, n_test)]
        epochs = np.arange(1, N_EPOCHS + 1, dtype=float)
        final = np.mean([fake_map(method, t, noise, bits, seed) for t in ("I2T", "T2I")])
        overfit = 0.1 * noise * (epochs / N_EPOCHS) ** 2 if method == "CE" else 0.0
        curve = final * (1 - np.exp(-epochs / 3)) - overfit
        f["history/epoch"] = epochs
        f["history/loss"] = np.exp(-epochs / 4)
        f["history/val_map_I2T"] = curve - 0.005
        f["history/val_map_T2I"] = curve + 0.005
        f["history/val_map_mean"] = curve
        if with_weights:
            edges = np.linspace(0, 1, N_BINS + 1)
            centers = (edges[:-1] + edges[1:]) / 2
            n_noisy, n_clean = int(200 * noise), int(200 * (1 - noise))
            hc, hn = [], []
            for e in range(N_EPOCHS):
                shift = min(0.95, 0.2 + 0.07 * e)
                pc = np.exp(-((centers - shift) ** 2) / 0.02)
                pn = np.exp(-((centers - 0.05) ** 2) / 0.005)
                hc.append(n_clean * pc / pc.sum())
                hn.append(n_noisy * pn / pn.sum())
            f["weights/hist_clean"] = np.array(hc)
            f["weights/hist_noisy"] = np.array(hn)
            f["weights/bin_edges"] = edges
        for task in ("I2T", "T2I"):
            g = f.create_group(f"metrics/{task}")
            m = fake_map(method, task, noise, bits, seed)
            g.attrs["map"] = m
            g.attrs["map_at_50"] = min(1.0, m + 0.05)
            g.attrs["map_at_100"] = min(1.0, m + 0.03)
            r = np.arange(bits + 1) / bits
            recall = 1 - (1 - r) ** 3
            g["pr_recall"] = recall
            g["pr_precision"] = np.clip(m + (1 - m) * (1 - recall) ** 2 - 0.1 * recall, 0, 1)
            g["p_at_n"] = np.full(2, m)
            g["p_at_n_n"] = np.array([10, 50], dtype=np.int64)
    return path


@pytest.fixture(scope="module")
def metric_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    paths = []
    for method in METHODS:
        for noise in NOISES:
            for bits in BITS:
                for seed in SEEDS:
                    p = root / f"{method}_{noise}_{bits}_seed{seed}" / "metrics.h5"
                    paths.append(write_metrics(p, method, noise, bits, seed, with_weights=method == "RSHNL"))
    return paths


@pytest.fixture(scope="module")
def results(metric_files):
    return report_results.collect_results(metric_files)


@pytest.fixture(scope="module")
def summary(results):
    # method order deliberately reversed from the file order
    return report_results.summarise(results, "toyexp", methods=["CE", "RSHNL"])


# -------------------------------------------------------------------------------------------------
# collect / summarise
# -------------------------------------------------------------------------------------------------


def test_collect_one_row_per_file_and_task(results, metric_files):
    assert len(results) == 2 * len(metric_files)
    assert list(results.columns[:8]) == ["dataset", "task", "method", "venue", "noise", "bits", "seed", "map"]
    assert ["map_at_50", "map_at_100", "config_hash", "path"] == list(results.columns[8:12])
    assert list(results["task"][:2]) == ["I2T", "T2I"]
    row = results[(results.method == "CE") & (results.noise == 0.6) & (results.bits == 32)
                  & (results.seed == 1) & (results.task == "T2I")].iloc[0]
    assert row["map"] == pytest.approx(fake_map("CE", "T2I", 0.6, 32, 1))
    assert 0 <= results["map"].max() <= 1


def test_summary_columns_exact(summary):
    assert list(summary.columns) == [
        "table", "dataset", "task", "method", "venue", "noise", "bits", "map", "n_seeds", "std"]
    assert len(summary) == 2 * 2 * 2 * 2  # task x method x noise x bits
    assert set(summary["table"]) == {"toyexp"}
    assert (summary["n_seeds"] == 2).all()


def test_summary_order(summary):
    assert list(dict.fromkeys(summary["task"])) == ["I2T", "T2I"]
    first_task = summary[summary.task == "I2T"]
    assert list(dict.fromkeys(first_task["method"])) == ["CE", "RSHNL"]
    assert list(first_task["noise"][:4]) == [0.2, 0.2, 0.6, 0.6]
    assert list(first_task["bits"][:4]) == [16, 32, 16, 32]


def test_summary_mean_and_std_by_hand(summary):
    # RSHNL, I2T, noise 0.2, 16 bits: seeds 0.80-0.04+0.016 = 0.776 and 0.796 -> mean 78.6 %, std 1.0 %
    row = summary[(summary.method == "RSHNL") & (summary.task == "I2T") & (summary.noise == 0.2)
                  & (summary.bits == 16)].iloc[0]
    assert row["map"] == pytest.approx(78.6)
    assert row["std"] == pytest.approx(1.0)
    assert row["venue"] == "AAAI'25"
    # CE, T2I, noise 0.6, 32 bits: 0.60-0.12+0.032+0.01 = 0.522 and 0.542 -> 53.2 %
    row = summary[(summary.method == "CE") & (summary.task == "T2I") & (summary.noise == 0.6)
                  & (summary.bits == 32)].iloc[0]
    assert row["map"] == pytest.approx(53.2)
    assert row["std"] == pytest.approx(1.0)


def test_summary_single_seed_std_zero(results):
    one = report_results.summarise(results[results.seed == 0], "x")
    assert (one["std"] == 0.0).all()
    assert (one["n_seeds"] == 1).all()
    row = one[(one.method == "RSHNL") & (one.task == "I2T") & (one.noise == 0.2) & (one.bits == 16)].iloc[0]
    assert row["map"] == pytest.approx(77.6)


def test_summary_rejects_duplicates(results):
    dup = pd.concat([results, results.iloc[:1]])
    with pytest.raises(ValueError, match="several results"):
        report_results.summarise(dup, "x")


def test_wrong_schema_names_file(tmp_path):
    bad = write_metrics(tmp_path / "bad_run" / "metrics.h5", "CE", 0.2, 16, 0, schema_ok=False)
    with pytest.raises(SchemaError, match=re.escape(str(bad))):
        report_results.collect_results([bad])
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(SchemaError, match="junk.h5"):
        report_results.collect_results([junk])


def test_missing_attribute_names_file(tmp_path):
    p = write_metrics(tmp_path / "m.h5", "CE", 0.2, 16, 0)
    with h5py.File(p, "a") as f:
        del f.attrs["bits"]
    with pytest.raises(SchemaError, match=r"m\.h5.*bits"):
        report_results.collect_results([p])


# -------------------------------------------------------------------------------------------------
# rendering
# -------------------------------------------------------------------------------------------------


def test_rank_marks():
    assert tables.rank_marks([50.0, 70.04, 60.0, math.nan]) == ["", "best", "second", ""]
    assert tables.rank_marks([70.01, 70.04, 60.0]) == ["best", "best", "second"]
    assert tables.rank_marks([1.0]) == ["best"]


def _md_rows(md: str) -> list[list[str]]:
    rows = [ln for ln in md.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]


def test_markdown_layout_and_marks(summary):
    md = tables.to_markdown(summary)
    rows = _md_rows(md)
    # header + separator + bits row + (2 tasks x 2 methods)
    assert len(rows) == 3 + 4
    assert rows[0][:4] == ["Task", "Method", "Ref.", "Noise 0.2"]
    assert rows[2][3:] == ["16", "32", "16", "32"]
    body = rows[3:]
    assert [r[1] for r in body] == ["CE", "RSHNL", "CE", "RSHNL"]
    assert [r[0] for r in body] == ["I2T", "", "T2I", ""]
    # RSHNL is best everywhere -> bold; CE second -> underlined
    assert all(c.startswith("**") for c in body[1][3:])
    assert all(c.startswith("<u>") for c in body[0][3:])
    # RSHNL I2T noise 0.2 16 bits = 78.6, std 1.0 over the two seeds
    assert body[1][3] == "**78.6** ± 1.0"
    assert body[1][2] == "AAAI'25"


def test_markdown_marks_follow_values(summary):
    # make CE the best at one cell only: (T2I, 0.6, 16)
    s = summary.copy()
    hit = (s.method == "CE") & (s.task == "T2I") & (s.noise == 0.6) & (s.bits == 16)
    s.loc[hit, "map"] = 99.0
    body = _md_rows(tables.to_markdown(s))[3:]
    ce_t2i, rshnl_t2i = body[2], body[3]
    assert ce_t2i[5] == "**99.0** ± 1.0" and rshnl_t2i[5].startswith("<u>")
    assert ce_t2i[6].startswith("<u>") and rshnl_t2i[6].startswith("**")


def test_markdown_several_datasets(results):
    other = results.copy()
    other["dataset"] = "toy2"
    other["path"] = other["path"] + "#2"
    s = report_results.summarise(pd.concat([results, other]), "x", METHODS)
    md = tables.to_markdown(s)
    assert md.count("### ") == 2 and "### toy" in md and "### toy2" in md
    assert len(_md_rows(md)) == 2 * 7


def test_latex_marks(summary):
    tex = tables.to_latex(summary)
    assert r"\textbf{78.6}" in tex
    assert tex.count(r"\textbf{") == 8 and tex.count(r"\underline{") == 8
    assert r"\multicolumn{2}{c}{0.2}" in tex
    assert "AAAI'25" in tex
    assert tex.count(r"\begin{tabular}") == 1


def test_ablation_average(summary):
    abl = report_results.ablation_table(summary, bits=32)
    assert list(abl.columns) == report_results.SUMMARY_COLUMNS
    assert set(abl["task"]) == {"avg"} and set(abl["bits"]) == {32}
    assert len(abl) == 2 * 2
    row = abl[(abl.method == "RSHNL") & (abl.noise == 0.6)].iloc[0]
    # I2T: (0.80-0.12+0.032)+0.01 mean over seeds = 72.2 ; T2I = 73.2 -> 72.7
    assert row["map"] == pytest.approx(72.7)
    md = tables.to_markdown(abl)
    rows = _md_rows(md)
    assert len(rows) == 3 + 2
    assert rows[1 + 1][0] == "Noise"
    rsh = next(r for r in rows if r[0] == "RSHNL")
    ce = next(r for r in rows if r[0] == "CE")
    assert rsh[1:] == ["**80.7**", "**72.7**"]
    assert ce[1:] == ["<u>60.7</u>", "<u>52.7</u>"]
    tex = tables.to_latex(abl)
    assert r"\textbf{72.7}" in tex and r"\multicolumn{2}{c}{toy}" in tex
    # default bits = largest
    assert set(report_results.ablation_table(summary)["bits"]) == {32}


def test_fused_task_is_an_extra_row_of_the_methods_that_have_it(metric_files, summary, tmp_path):
    """NSRMH files add a FUSED task (MAP@50 of fused codes); RSHNL/CE rows, their marks and the ablation
    averages stay exactly as without them, and NSRMH's average keeps the two cross-modal tasks."""
    nsrmh = []
    for noise in NOISES:
        for bits in BITS:
            for seed in SEEDS:
                path = tmp_path / f"NSRMH_{noise}_{bits}_{seed}" / "metrics.h5"
                write_metrics(path, "NSRMH", noise, bits, seed)
                with h5py.File(path, "a") as f:
                    for task in ("I2T", "T2I"):  # below CE: the marks of the cross-modal rows do not move
                        f[f"metrics/{task}"].attrs["map"] = fake_map("CE", task, noise, bits, seed) - 0.1
                    g = f.create_group("metrics/FUSED")
                    g.attrs["map"] = g.attrs["map_at_50"] = 0.9 - 0.2 * noise + 0.02 * seed
                    g.attrs["map_topk"] = 50
                nsrmh.append(path)
    results = report_results.collect_results([*metric_files, *nsrmh])
    full = report_results.summarise(results, "toyexp", methods=["CE", "RSHNL"])
    assert list(dict.fromkeys(full["task"])) == ["I2T", "T2I", "FUSED"]
    assert set(full.loc[full.task == "FUSED", "method"]) == {"NSRMH"}
    fused = full[(full.task == "FUSED") & (full.noise == 0.6) & (full.bits == 16)].iloc[0]
    assert fused["map"] == pytest.approx(79.0) and fused["std"] == pytest.approx(1.0)
    pd.testing.assert_frame_equal(full[full.method != "NSRMH"].reset_index(drop=True), summary)

    before, after = tables.to_markdown(summary).splitlines(), tables.to_markdown(full).splitlines()
    assert [ln for ln in after if "| NSRMH |" not in ln] == before  # nothing else moves
    fused_rows = [r for r in _md_rows("\n".join(after)) if r[0] == "FUSED"]
    assert [r[1] for r in fused_rows] == ["NSRMH"]
    assert fused_rows[0][3] == "**87.0** ± 1.0"  # noise 0.2, 16 bits: seeds 0.86 and 0.88
    assert "FUSED" in tables.to_latex(full)

    abl = report_results.ablation_table(full, bits=32)
    pd.testing.assert_frame_equal(abl[abl.method != "NSRMH"].reset_index(drop=True),
                                  report_results.ablation_table(summary, bits=32))
    row = abl[(abl.method == "NSRMH") & (abl.noise == 0.2)].iloc[0]
    cross = full[(full.method == "NSRMH") & (full.noise == 0.2) & (full.bits == 32) & (full.task != "FUSED")]
    assert row["map"] == pytest.approx(round(cross["map"].mean(), 2))
    pr = tmp_path / "pr"
    _check_written(figures.plot_pr_curves([*metric_files, *nsrmh], pr, methods=[*METHODS, "NSRMH"]), pr)


def test_report_table_writes_all(metric_files, tmp_path):
    keys = ("csv", "md", "tex", "ablation_csv", "ablation_md", "ablation_tex")
    outs = {k: tmp_path / f"t.{k}" for k in keys}
    written = tables.report_table(metric_files, "toyexp", outs, methods=METHODS)
    assert set(written) == set(outs)
    for p in outs.values():
        assert p.stat().st_size > 0
    back = pd.read_csv(outs["csv"])
    assert list(back.columns) == report_results.SUMMARY_COLUMNS and len(back) == 16
    assert not list(tmp_path.glob(".*tmp"))


# -------------------------------------------------------------------------------------------------
# figures
# -------------------------------------------------------------------------------------------------


def _check_written(paths, stem):
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
    for p in paths:
        assert p.exists() and p.stat().st_size > 1000
        assert p.with_suffix("") == stem
    png = next(p for p in paths if p.suffix == ".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = next(p for p in paths if p.suffix == ".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_plot_pr_curves(results, tmp_path):
    stem = tmp_path / "pr"
    _check_written(figures.plot_pr_curves(results, stem, methods=METHODS), stem)


def test_plot_map_vs_noise(summary, tmp_path):
    stem = tmp_path / "noise"
    _check_written(figures.plot_map_vs_noise(summary, stem, methods=METHODS), stem)


def test_plot_weight_density_skips_method_without_weights(results, tmp_path):
    stem = tmp_path / "weights"
    _check_written(figures.plot_weight_density(results, stem, methods=METHODS), stem)


def test_plot_map_vs_epoch(results, tmp_path):
    stem = tmp_path / "epoch"
    _check_written(figures.plot_map_vs_epoch(results, stem, methods=METHODS + ["RSHNL-D"]), stem)


def test_figures_without_data(results, tmp_path):
    empty = results.iloc[0:0]
    for fn, arg in ((figures.plot_pr_curves, empty), (figures.plot_weight_density, empty),
                    (figures.plot_map_vs_epoch, empty),
                    (figures.plot_map_vs_noise, report_results.summarise(empty, "x"))):
        stem = tmp_path / fn.__name__
        _check_written(fn(arg, stem), stem)
    # CE has no weights at all -> a "no sample weights" figure rather than an error
    stem = tmp_path / "ce_weights"
    _check_written(figures.plot_weight_density(results, stem, methods=["CE"]), stem)


def test_pick_setting(results):
    assert figures.pick_setting(results) == ("toy", 0.6, 32)
    three = results.copy()
    three.loc[three.noise == 0.6, "noise"] = 0.5
    assert figures.pick_setting(three) == ("toy", 0.5, 32)
    assert figures.pick_setting(results, noise=0.2, bits=16) == ("toy", 0.2, 16)


def test_report_figures(metric_files, tmp_path):
    outputs = {}
    for png, pdf in figures.FIGURE_OUTPUTS.values():
        outputs[png] = tmp_path / f"{png[:-4]}.png"
        outputs[pdf] = tmp_path / f"{png[:-4]}.pdf"
    written = figures.report_figures(metric_files, "toyexp", outputs, methods=METHODS,
                                     settings={"pr_noise": 0.2, "pr_bits": 16})
    assert {str(p) for p in written} == {str(p) for p in outputs.values()}
    with pytest.raises(ValueError, match="stem"):
        figures.report_figures(metric_files, "toyexp",
                               {"pr_curves_png": tmp_path / "a.png", "pr_curves_pdf": tmp_path / "b.pdf"})


# -------------------------------------------------------------------------------------------------
# Snakemake scripts (run with a stand-in for the injected ``snakemake`` object)
# -------------------------------------------------------------------------------------------------


class _Named(list):
    """Minimal stand-in for snakemake.io.Namedlist: a list with named items."""

    def __init__(self, items=(), **named):
        super().__init__(list(items) + list(named.values()))
        self._named = named
        for k, v in named.items():
            setattr(self, k, v)

    def items(self):
        return self._named.items()


def _run_script(name, inputs, outputs, params, log):
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    scripts = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
    # as in the workflow: rule collect_runs writes the runs table, the report script reads it
    runs_csv = Path(str(log) + ".runs.csv")
    collect = SimpleNamespace(input=_Named(sorted({str(Path(p).parent) for p in inputs})),
                              output=_Named([str(runs_csv)]),
                              params=_Named(experiment=params["experiment"], metrics=[str(p) for p in inputs],
                                            config_hashes={}),
                              log=_Named([str(log)]), wildcards=_Named(), scriptdir=str(scripts))
    runpy.run_path(str(scripts / "collect_runs.py"), init_globals={"snakemake": collect}, run_name="__main__")
    smk = SimpleNamespace(input=_Named(runs=str(runs_csv)),
                          output=_Named(**{k: str(v) for k, v in outputs.items()}),
                          params=_Named(**params), log=_Named([str(log)]), wildcards=_Named(), scriptdir=str(scripts))
    runpy.run_path(str(scripts / name), init_globals={"snakemake": smk}, run_name="__main__")


def test_report_table_script(metric_files, tmp_path):
    outs = {k: tmp_path / f"tab.{k.replace('_', '.')}" for k in
            ("csv", "md", "tex", "ablation_csv", "ablation_md", "ablation_tex")}
    _run_script("report_table.py", metric_files, outs, {"experiment": "toyexp", "methods": METHODS},
                tmp_path / "table.log")
    assert all(p.stat().st_size > 0 for p in outs.values())
    assert "wrote" in (tmp_path / "table.log").read_text()


def test_report_figures_script(metric_files, tmp_path):
    outs = {}
    for png, pdf in figures.FIGURE_OUTPUTS.values():
        outs[png] = tmp_path / "fig" / f"{png[:-4]}.png"
        outs[pdf] = tmp_path / "fig" / f"{png[:-4]}.pdf"
    _run_script("report_figures.py", metric_files, outs,
                {"experiment": "toyexp", "methods": METHODS, "figures": {"bits": 16}}, tmp_path / "fig.log")
    assert all(p.stat().st_size > 1000 for p in outs.values())


def test_report_script_failure_is_logged(tmp_path):
    bad = write_metrics(tmp_path / "bad" / "metrics.h5", "CE", 0.2, 16, 0, schema_ok=False)
    with pytest.raises(SystemExit):
        _run_script("report_table.py", [bad], {"csv": tmp_path / "x.csv"},
                    {"experiment": "e", "methods": ["CE"]}, tmp_path / "bad.log")
    assert str(bad) in (tmp_path / "bad.log").read_text()
    assert not (tmp_path / "x.csv").exists()


def test_runs_table_lists_the_experiments_files_in_order_and_refuses_stale_ones(metric_files, tmp_path):
    """Rule collect_runs: the runs table keeps the input order (the report's row order follows it) and a file
    whose config hash differs from the current config's is refused before any table is written."""
    from cmhash.report.results import collect_results, load_results, write_runs_table

    order = list(reversed(metric_files))
    written = write_runs_table(order, tmp_path / "runs.csv")
    back = load_results(tmp_path / "runs.csv")
    pd.testing.assert_frame_equal(back, written)
    assert list(dict.fromkeys(back["path"])) == [str(p) for p in order]
    # the report reads the table instead of the files: the same frame, values and dtypes
    pd.testing.assert_frame_equal(back, collect_results(order))
    stale = {str(order[0]): "0" * 16}
    with pytest.raises(ValueError, match="different configuration"):
        write_runs_table(order, tmp_path / "stale.csv", stale)
    assert not (tmp_path / "stale.csv").exists()
