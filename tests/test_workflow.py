"""End-to-end: the Snakemake workflow on a tiny config in a temporary working directory."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.workflow

TINY = {
    "datasets": {
        "toy": {
            "format": "synthetic",
            "modalities": {"image": "img", "text": "txt"},
            "synthetic": {"n": 300, "dims": [16, 12], "n_classes": 4, "multilabel": False, "seed": 1, "separation": 3.0},
            "split": {"train_fraction": 0.6, "val_fraction": 0.1, "seed": 0},
        }
    },
    "methods": {
        "RSHNL": {"per_dataset": {"toy": {"hidden": [32], "center_hidden": [32], "epochs": 4, "batch_size": 60,
                                          "lr": 1e-3, "gamma": 3.0, "warmup_epochs": 1}}},
        "CE": {"per_dataset": {"toy": {"hidden": [32], "epochs": 4, "batch_size": 60, "lr": 1e-3}}},
    },
    "experiments": {
        "wf": {"datasets": ["toy"], "methods": ["RSHNL", "CE"], "noise": [0.2, 0.6], "bits": [8], "seeds": [0]},
        "other": {"datasets": ["toy"], "methods": ["CE"], "noise": [0.4], "bits": [16], "seeds": [0]},
    },
}


def snakemake(workdir: Path, *args: str, config: dict | None = None) -> subprocess.CompletedProcess:
    cfg = workdir / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(config or TINY))
    # targets first: --configfile takes several values and would swallow them
    cmd = [SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--configfile", str(cfg)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wf")
    proc = snakemake(workdir, "wf")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


def test_tables_and_figures_written(finished_run):
    table = pd.read_csv(finished_run / "results/tables/wf.csv")
    assert list(table.columns) == ["table", "dataset", "task", "method", "venue", "noise", "bits", "map", "n_seeds", "std"]
    assert len(table) == 2 * 2 * 2  # tasks x methods x noise
    assert set(table["task"]) == {"I2T", "T2I"}
    assert table["map"].between(0, 100).all()
    assert table["map"].min() > 25.0  # 4 balanced classes: chance MAP is about 25%
    for name in ("pr_curves", "map_vs_noise", "weight_density", "map_vs_epoch"):
        for ext in ("png", "pdf"):
            assert (finished_run / f"results/figures/wf/{name}.{ext}").stat().st_size > 1000
    md = (finished_run / "results/tables/wf.md").read_text()
    assert "**" in md and "RSHNL" in md


def test_metrics_file_holds_codes_and_provenance(finished_run):
    (path,) = (finished_run / "results/runs/toy/sym/RSHNL/seed0").glob("noise0.2_bits*/noise0.2_bits8.h5")
    with h5py.File(path) as f:
        assert f.attrs["schema"] == "cmhash.metrics/1"
        for key in ("method", "dataset", "noise", "bits", "seed", "config_hash", "package_version", "git_commit",
                    "torch_version", "device"):
            assert key in f.attrs, key
        assert f["codes/image"].shape[1] == 8
        assert set(f["codes/image"][()].ravel().tolist()) <= {-1, 1}
        assert 0.0 <= f["metrics/I2T"].attrs["map"] <= 1.0
        assert len(f["metrics/I2T/pr_precision"]) == 9


def test_second_run_is_a_no_op(finished_run):
    proc = snakemake(finished_run, "wf", "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_dry_run_lists_only_the_experiments_jobs(tmp_path):
    proc = snakemake(tmp_path, "other", "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # one run: data, noise, train, evaluate, the runs table, table, paper comparison, figures and the target
    assert "train" in out and "total" in out
    jobs = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert jobs["train"] == 1 and jobs["evaluate"] == 1 and jobs["report_paper"] == 1 and jobs["collect_runs"] == 1
    assert jobs["total"] == 9


@pytest.mark.parametrize("grouped,expected", [(True, 2), (False, 4)])
def test_training_and_evaluation_jobs_follow_group_code_lengths(tmp_path, grouped, expected):
    """2 noise rates x 2 code lengths of CE: grouped, one training and one evaluation job per noise rate (both code
    lengths inside); group_code_lengths: false, one of each per run; either way one metrics file per run."""
    cfg = {**TINY, "group_code_lengths": grouped,
           "experiments": {"g": {"datasets": ["toy"], "methods": ["CE"], "noise": [0.2, 0.6], "bits": [8, 16],
                                 "seeds": [0]}}}
    proc = snakemake(tmp_path, "g", "-n", "-p", config=cfg)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    jobs = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert jobs["train"] == jobs["evaluate"] == expected and jobs["collect_runs"] == 1
    folder = "noise0.2_bits8-16" if grouped else "noise0.2_bits8"
    assert f"results/runs/toy/sym/CE/seed0/{folder}" in out


@pytest.mark.parametrize(
    "mutate,key",
    [
        (lambda c: c["experiments"]["wf"].update(methods=["NOPE"]), "experiments.wf.methods[0]"),
        (lambda c: c["experiments"]["wf"].update(datasets=["nowhere"]), "experiments.wf.datasets[0]"),
        (lambda c: c["experiments"]["wf"].update(noise=[1.0]), "experiments.wf.noise[0]"),
        (lambda c: c["experiments"]["wf"].update(bits=[0]), "experiments.wf.bits[0]"),
        (lambda c: c["experiments"]["wf"].update(seeds=[]), "experiments.wf.seeds"),
        (lambda c: c["experiments"]["wf"].update(noise=[0.2, 0.20]), "experiments.wf.noise lists ['0.2'] more than once"),
        (lambda c: c["methods"]["CE"]["per_dataset"]["toy"].update(lr="fast"),
         "methods.CE.per_dataset.toy.lr: expected a number, got 'fast'"),
        (lambda c: c["experiments"].pop("wf"), "No rule to produce wf"),  # an unknown experiment name
    ],
    ids=["unknown_method", "unknown_dataset", "noise_rate_1", "bits_0", "empty_seeds", "duplicate_noise_spelling",
         "hyperparameter_wrong_type", "unknown_experiment"],
)
def test_bad_config_fails_before_any_job(tmp_path, mutate, key):
    import copy

    cfg = copy.deepcopy(TINY)
    mutate(cfg)
    proc = snakemake(tmp_path, "wf", config=cfg)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
