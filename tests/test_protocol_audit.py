"""Protocol audit and the paper's experiments: mfeat variants (dummy class column, validation inside test), the
audit table by hand, config checks, multi-seed cells (mean ± std), and the DAGs of audit / table* / paper."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cmhash.config import ConfigError, load_config, validate_config
from cmhash.data import prepare_dataset
from cmhash.report import audit, tables
from cmhash.report import results as report_results

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "config" / "config.yaml")


# ---------------------------------------------------------------------------------------- mfeat variants
def test_mfeat_dummy_class_column_and_validation_inside_test(config):
    base = config["datasets"]["mfeat"]
    clean = prepare_dataset("mfeat", base, REPO / "resources")
    ref = prepare_dataset("mfeat_refprotocol", config["datasets"]["mfeat_refprotocol"], REPO / "resources")
    dummy = prepare_dataset("mfeat_dummycol", config["datasets"]["mfeat_dummycol"], REPO / "resources")
    assert clean.n_classes == 10 and ref.n_classes == dummy.n_classes == 11
    for split in ("train", "val", "test"):
        assert not dummy.splits[split]["labels"][:, 0].any()  # class 0 is never used ...
        np.testing.assert_array_equal(dummy.splits[split]["labels"][:, 1:], clean.splits[split]["labels"])
    assert dummy.attrs["class_names"][0] == "unused"
    # ... and the test split is the same rows in all three, so MAP differences come from training only
    for variant in (ref, dummy):
        np.testing.assert_array_equal(variant.splits["test"]["image"], clean.splits["test"]["image"])
    np.testing.assert_array_equal(dummy.splits["val"]["image"], clean.splits["val"]["image"])

    def rows(split):  # a pair = its image and text features
        return {r.tobytes() for r in np.hstack([split["image"], split["text"]])}

    # clean: held out (mfeat holds 6 duplicated pairs, so a copy may land on both sides)
    assert len(rows(clean.splits["val"]) & rows(clean.splits["test"])) <= 6
    assert rows(ref.splits["val"]) <= rows(ref.splits["test"])  # published SEHA protocol: inside test
    assert len(rows(ref.splits["val"])) == 200  # val_per_class (20) x 10 classes, the first test rows
    np.testing.assert_array_equal(ref.splits["val"]["image"], ref.splits["test"]["image"][:200])
    assert ref.attrs["split"]["val_source"] == "test" and clean.attrs["split"]["val_source"] == "held_out"


def test_mfeat_rejects_unknown_val_source(config):
    cfg = copy.deepcopy(config["datasets"]["mfeat"])
    cfg["split"]["val_source"] = "train"
    with pytest.raises(ValueError, match="val_source"):
        prepare_dataset("mfeat", cfg, REPO / "resources")


# ---------------------------------------------------------------------------------------- audit table
AUDIT = {"X": {"clean": ["A", "d0"], "published": ["B", "d1"]}}


def _results(cells):
    rows = []
    for (method, dataset), by_seed in cells.items():
        for seed, (i2t, t2i) in enumerate(by_seed):
            for task, value in (("I2T", i2t), ("T2I", t2i)):
                rows.append({"dataset": dataset, "task": task, "method": method, "venue": "", "noise": 0.6,
                             "bits": 32, "seed": seed, "map": value, "config_hash": "", "path": f"{method}{seed}",
                             "noise_kind": "sym"})
    return pd.DataFrame(rows)


def test_protocol_table_by_hand():
    df = _results({("A", "d0"): [(0.50, 0.70), (0.60, 0.80)], ("B", "d1"): [(0.55, 0.75), (0.70, 0.80)]})
    t = audit.protocol_table(df, AUDIT).set_index(["setting", "task"])
    assert list(audit.protocol_table(df, AUDIT).columns) == audit.PROTOCOL_COLUMNS
    clean, pub = t.loc["clean"], t.loc["published"]
    assert (clean.loc["I2T", "map"], clean.loc["I2T", "std"]) == (55.0, 5.0)
    assert (clean.loc["avg", "map"], clean.loc["avg", "std"]) == (65.0, 5.0)  # per seed 60, 70
    assert (clean.loc["avg", "delta"], clean.loc["avg", "delta_std"]) == (0.0, 0.0)
    assert (pub.loc["I2T", "map"], pub.loc["I2T", "std"]) == (62.5, 7.5)
    assert (pub.loc["I2T", "delta"], pub.loc["I2T", "delta_std"]) == (7.5, 2.5)  # +5 and +10 points
    assert (pub.loc["avg", "map"], pub.loc["avg", "delta"], pub.loc["avg", "delta_std"]) == (70.0, 5.0, 0.0)
    assert (pub["n_seeds"] == 2).all() and (pub["method"] == "B").all() and (pub["dataset"] == "d1").all()


def test_protocol_markdown_and_figure(tmp_path):
    df = _results({("A", "d0"): [(0.50, 0.70), (0.60, 0.80)], ("B", "d1"): [(0.55, 0.75), (0.70, 0.80)]})
    table = audit.protocol_table(df, AUDIT)
    md = audit.to_markdown(table, "exp")
    body = [ln for ln in md.splitlines() if ln.startswith("|")][2:]
    assert body[0].split("|")[1:-1] == [" X ", " clean ", " A ", " d0 ", " 65.0 ± 5.0 ", " +0.0 ± 0.0 "]
    assert body[1].split("|")[1:-1] == ["  ", " published ", " B ", " d1 ", " 70.0 ± 5.0 ", " +5.0 ± 0.0 "]
    written = audit.plot_protocol(table, tmp_path / "protocol", "exp")
    assert [p.suffix for p in written] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in written)


def test_protocol_table_names_a_setting_without_results():
    df = _results({("A", "d0"): [(0.5, 0.7)]})
    with pytest.raises(ValueError, match=r"protocol_audit\.X\.published.*'B'.*'d1'"):
        audit.protocol_table(df, AUDIT)


def test_config_audit_cells_must_be_in_the_grid(config):
    cfg = copy.deepcopy(config)
    cfg["experiments"]["audit"]["protocol_audit"]["SEHA"]["published"] = ["SEHA-ref", "synthetic"]
    with pytest.raises(ConfigError, match=r"protocol_audit\.SEHA\.published.*not a cell"):
        validate_config(cfg)
    cfg["experiments"]["audit"]["protocol_audit"]["SEHA"] = {"clean": ["SEHA", "mfeat"]}
    with pytest.raises(ConfigError, match="published"):
        validate_config(cfg)


def test_shipped_audit_compares_clean_and_published_protocols(config):
    exp = config["experiments"]["audit"]
    pa = exp["protocol_audit"]
    assert pa["SEHA"]["clean"] == ["SEHA", "mfeat"] and pa["SEHA"]["published"] == ["SEHA-ref", "mfeat_refprotocol"]
    assert pa["RSHNL"]["clean"] == ["RSHNL", "mfeat"] and pa["RSHNL"]["published"] == ["RSHNL", "mfeat_dummycol"]
    assert config["methods"]["SEHA-ref"]["params"] == {"reference_compatible": True}  # a flag, not a copy
    # the variants of mfeat train with mfeat's hyperparameters
    from cmhash.config import resolve_method

    for name in ("RSHNL", "SEHA", "SEHA-ref"):
        for ds in ("mfeat_dummycol", "mfeat_refprotocol"):
            assert resolve_method(config, name, ds)[1] == resolve_method(config, name, "mfeat")[1]


# ---------------------------------------------------------------------------------------- multi-seed cells
def test_several_seeds_give_mean_and_std_in_csv_md_and_tex():
    df = _results({("A", "d0"): [(0.50, 0.70), (0.60, 0.80)], ("B", "d0"): [(0.40, 0.30)]})
    s = report_results.summarise(df, "exp")
    a = s[(s.method == "A") & (s.task == "I2T")].iloc[0]
    b = s[(s.method == "B") & (s.task == "I2T")].iloc[0]
    assert (a["map"], a["std"], a["n_seeds"]) == (55.0, 5.0, 2)
    assert (b["map"], b["std"], b["n_seeds"]) == (40.0, 0.0, 1)
    md = tables.to_markdown(s)
    assert "**55.0** ± 5.0" in md and "**75.0** ± 5.0" in md  # A is best in both tasks
    assert "<u>40.0</u> |" in md  # one seed: no ± part
    assert r"\textbf{55.0}$\pm$5.0" in tables.to_latex(s)


# ---------------------------------------------------------------------------------------- paper experiments
PAPER_ORDER = ["DGCPN", "CIRH", "UCCH", "WASH", "HCCH", "DSCMH", "HMAH", "CMMQ", "MIAN", "DHRL", "DHaPH", "RSHNL"]


def test_paper_experiments_mirror_the_published_tables(config):
    paper = pd.read_csv(REPO / "resources" / "paper" / "rshnl_paper_map.csv")
    exps = config["experiments"]
    for table, name in ((1, "table1"), (2, "table2"), (3, "table3")):
        rows = paper[paper["table"] == table]
        # the paper's methods in its order, then RFCMH (whose paper reports these three datasets) and RFCMH-ref
        assert exps[name]["methods"] == [*list(dict.fromkeys(rows["method"])), "RFCMH", "RFCMH-ref"]
        assert list(dict.fromkeys(rows["method"])) == PAPER_ORDER
        assert sorted(exps[name]["noise"]) == sorted(set(rows["noise"]))
        assert sorted(exps[name]["bits"]) == sorted(set(rows["bits"]))
        assert config["datasets"][exps[name]["datasets"][0]]["paper_name"] == rows["dataset"].iloc[0]
    t4 = paper[paper["table"] == 4]
    assert exps["table4"]["methods"] == list(dict.fromkeys(t4["method"]))
    assert [config["datasets"][d]["paper_name"] for d in exps["table4"]["datasets"]] == list(
        dict.fromkeys(t4["dataset"]))
    assert exps["table4"]["bits"] == [128] and exps["table4"]["ablation_bits"] == 128
    assert exps["table_wiki"]["methods"] == PAPER_ORDER and exps["table_wiki"]["datasets"] == ["wiki"]
    for name, registered in (("MIAN", "TKDE'23"), ("DHRL", "TBD'24")):  # venues as printed
        assert set(paper.loc[paper["method"] == name, "venue"]) == {registered}


def _snakemake(workdir: Path, *args: str, data_root: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2"]
    if data_root is not None:
        cmd += ["--config", f"data_root={data_root}"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)


def _jobs(out: str) -> dict[str, int]:
    return {ln.split()[0]: int(ln.split()[1]) for ln in out.splitlines()
            if len(ln.split()) == 2 and ln.split()[1].isdigit()}


@pytest.mark.workflow
@pytest.mark.parametrize(("target", "missing"), [
    ("table2", "benchmarks/INRIA-Websearch.mat"),
    ("table3", "benchmarks/XMediaNet5View_Doc2Vec.mat"),
    ("table_wiki", "benchmarks/wiki.mat"),
    ("figure4", "benchmarks/INRIA-Websearch.mat"),
])
def test_paper_tables_fail_fast_naming_the_missing_file(tmp_path, target, missing):
    proc = _snakemake(tmp_path, "-n", target, data_root=tmp_path / "resources")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"resources/{missing} not found" in out and "Published benchmark files" in out
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_paper_target_fails_fast_then_builds_every_table_and_figure(tmp_path):
    root = tmp_path / "resources"
    proc = _snakemake(tmp_path, "-n", "paper", data_root=root)
    assert proc.returncode != 0 and "not found" in proc.stdout + proc.stderr
    for name in ("XMediaFeatures.mat", "INRIA-Websearch.mat", "XMediaNet5View_Doc2Vec.mat", "wiki.mat"):
        (root / "benchmarks").mkdir(parents=True, exist_ok=True)
        (root / "benchmarks" / name).write_bytes(b"")  # only existence is checked while the DAG is built
    proc = _snakemake(tmp_path, "-n", "paper", data_root=root)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    jobs = _jobs(out)
    # Tables 1-3 and Wikipedia: 12 methods x 4 noise x 4 bits each; Table 4 adds RSHNL-1..3 at 128 bits on
    # two datasets (its RSHNL runs are Tables 1/2's); Figure 4 adds RSHNL-S and RSHNL-D (RSHNL, CMMQ shared)
    # tables 1-3: 14 methods (the paper's 12 + RFCMH, RFCMH-ref) x 16 cells; table_wiki: 12 x 16
    # one training job per (dataset, method, noise): the code lengths of a group train in one process, and one
    # evaluation job per training group
    assert jobs["train"] == jobs["evaluate"] == 3 * 14 * 4 + 12 * 4 + 3 * 2 * 4 + 2
    assert jobs["prepare_dataset"] == 4 and jobs["report_table"] == jobs["report_paper"] == 5
    assert jobs["report_figures"] == 2
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_audit_dag(tmp_path):
    proc = _snakemake(tmp_path, "-n", "audit")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    jobs = _jobs(out)
    assert jobs["prepare_dataset"] == 3 and jobs["train"] == 3 * 3 * 2 * 2
    assert jobs["report_protocol_audit"] == 1
    assert "results/tables/audit_protocol.md" in out and "results/figures/audit/protocol.png" in out
