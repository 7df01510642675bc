"""The SLURM profile on a real single-node cluster: the `tiny` experiment through SLURM equals a local run.

Needs a running cluster (`.ci/slurm_setup.sh`, as root; `.ci/slurm_teardown.sh` stops it) and is skipped
unless CMHASH_SLURM_TEST=1. `.ci/run` does all three.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = shutil.which("snakemake") or str(BIN / "snakemake")

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(os.environ.get("CMHASH_SLURM_TEST") != "1",
                       reason="needs a SLURM cluster: run .ci/slurm_setup.sh, then set CMHASH_SLURM_TEST=1"),
]

# the same threads in both runs (torch's CPU reductions depend on them) and requests a small CI node can hold
COMMON = ["--set-threads", "train=1", "evaluate=1", "--config", "device=cpu"]
# the CI node has no GPU: the profile's `gpu: 1` for training is overridden (as on a CPU-only cluster)
SMALL = ["--set-resources", "train:gpu=0", *(f"{rule}:mem_mb=500" for rule in
                              ("prepare_dataset", "make_noisy_labels", "train", "evaluate", "collect_runs", "report_table", "report_paper",
                               "report_figures")), *(f"{rule}:runtime=10" for rule in ("train", "evaluate"))]


def run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    # targets first: --config takes several values and would swallow them
    cmd = [SNAKEMAKE, "tiny", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args, *COMMON]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=900)


def test_slurm_profile_reproduces_local_run(tmp_path):
    assert shutil.which("sbatch"), "sbatch is not on PATH: run .ci/slurm_setup.sh first"
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], check=False, capture_output=True, text=True)
    assert "idle" in state.stdout or "mix" in state.stdout, f"no usable SLURM node: {state.stdout}{state.stderr}"

    local = tmp_path / "local"
    proc = run(local, "--cores", "2", "--profile", str(REPO / "profiles" / "default"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    cluster = tmp_path / "slurm"
    proc = run(cluster, "--profile", str(REPO / "profiles" / "slurm"), "--slurm-no-account",
               "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
               "--slurm-keep-successful-logs", "--retries", "0", *SMALL)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert "sbatch" in log or "SLURM run ID" in log, "jobs were not submitted through SLURM"
    # every job ran as a SLURM job: the executor keeps one SLURM log per job here
    slurm_logs = list((cluster / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert slurm_logs, "no SLURM job logs were written"

    expected = pd.read_csv(local / "results" / "tables" / "tiny.csv")
    got = pd.read_csv(cluster / "results" / "tables" / "tiny.csv")
    assert len(expected) == 2 * 2 * 2  # tasks x methods x noise rates
    pd.testing.assert_frame_equal(got, expected)
