"""Workflow with the published benchmark layouts: missing files fail fast, fixtures build the DAG and run."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from matlab_fixtures import save_v5

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.workflow


def run(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    cfg = workdir / "bench.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [
        SNAKEMAKE,
        *args,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        "--configfile",
        str(cfg),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)


def write_xmedia(root: Path, n_tr: int = 4000, n_te: int = 1000, seed: int = 0) -> Path:
    """A small XMediaFeatures.mat with the real keys (1-based labels 1..20, flattened float16 like RSHNL's)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    tr, te = np.arange(n_tr) % 20 + 1, np.arange(n_te) % 20 + 1
    return save_v5(
        root / "XMediaFeatures.mat",
        {
            "I_tr_CNN": rng.normal(size=(n_tr, 16)).astype(np.float32) + tr[:, None] * 0.1,
            "T_tr_BOW": rng.normal(size=(n_tr, 12)).astype(np.float32) + tr[:, None] * 0.1,
            "trImgCat": tr.astype(np.float16).reshape(-1, 1),
            "I_te_CNN": rng.normal(size=(n_te, 16)).astype(np.float32) + te[:, None] * 0.1,
            "T_te_BOW": rng.normal(size=(n_te, 12)).astype(np.float32) + te[:, None] * 0.1,
            "teImgCat": te.astype(np.float16).reshape(-1, 1),
        },
    )


def test_table1_without_xmedia_file_fails_fast_naming_the_path(tmp_path: Path) -> None:
    proc = run(tmp_path, {"data_root": str(tmp_path / "resources")}, "-n", "table1")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "resources/benchmarks/XMediaFeatures.mat not found" in out and "datasets.xmedia.path" in out
    assert not (tmp_path / "results").exists()


def test_table1_dag_builds_with_a_fixture_in_place(tmp_path: Path) -> None:
    write_xmedia(tmp_path / "resources" / "benchmarks", n_tr=40, n_te=20)
    proc = run(tmp_path, {"data_root": str(tmp_path / "resources")}, "-n", "table1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    jobs = {
        line.split()[0]: int(line.split()[1])
        for line in out.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert jobs["prepare_dataset"] == 1 and jobs["make_noisy_labels"] == 4
    # the paper's 12 methods + RFCMH, RFCMH-ref; one training job per (method, noise), its 4 code lengths inside
    # and one evaluation job per training group
    assert jobs["evaluate"] == jobs["train"] == 14 * 4 and jobs["report_table"] == 1


BENCH = {
    "datasets": {"xmedia": {"split": {"val_rows": 50}, "dummy_class_column": True}},
    "noise": {"files": {"xmedia": "noisy/xmedia_noise_labels_{noise}_sym.mat"}},
    "methods": {
        "RSHNL": {
            "per_dataset": {
                "xmedia": {
                    "hidden": [32],
                    "center_hidden": [32],
                    "epochs": 2,
                    "batch_size": 100,
                    "lr": 1e-3,
                    "warmup_epochs": 1,
                }
            }
        }
    },
    "experiments": {
        "bench": {"datasets": ["xmedia"], "methods": ["RSHNL"], "noise": [0.2], "bits": [16], "seeds": [0]}
    },
}


def test_published_data_and_noise_run_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "resources"
    write_xmedia(root / "benchmarks", n_tr=400, n_te=150)
    clean = np.zeros((400, 21), dtype=np.int32)
    clean[np.arange(400), np.arange(400) % 20 + 1] = 1
    noisy = clean.copy()
    noisy[:80] = 0
    noisy[np.arange(80), (np.arange(80) + 5) % 21] = 1  # a fixed, known realisation (lands on column 0 too)
    (root / "noisy").mkdir()
    save_v5(root / "noisy" / "xmedia_noise_labels_0.2_sym.mat", {"noisy_label": noisy})
    cfg = copy.deepcopy(BENCH)
    cfg["data_root"] = str(root)
    proc = run(tmp_path, cfg, "bench")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    with h5py.File(tmp_path / "results/data/xmedia.h5") as f:
        assert f["train/labels"].shape == (400, 21) and f["val/labels"].shape == (50, 21)
        assert f["test/image"].shape == (100, 16)
    with h5py.File(tmp_path / "results/noise/xmedia/sym/0.2/seed0.h5") as f:
        np.testing.assert_array_equal(f["noisy_labels"][()], noisy)
        assert f.attrs["source_file"] == "xmedia_noise_labels_0.2_sym.mat"
    joined = pd.read_csv(tmp_path / "results/tables/bench_vs_paper.csv")
    i2t = joined[(joined["task"] == "I2T") & (joined["method"] == "RSHNL")].iloc[0]
    assert i2t["paper_map"] == 89.5 and i2t["paper_table"] == 1  # Table 1, XMedia, noise 0.2, 16 bits
    assert i2t["diff"] == pytest.approx(round(i2t["map"] - 89.5, 2))
    assert (tmp_path / "results/figures/bench/ours_vs_paper.png").stat().st_size > 1000
    assert (
        "| rshnl | 1 | xmedia | I2T | RSHNL | 0.2 | 16 |"
        in (tmp_path / "results/tables/bench_vs_paper.md").read_text()
    )
