"""benchmarks/gpu_check.sh (issue 11) on a machine without a GPU: every CUDA part skipped with one line, exit 0."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the script runs for real")
def test_gpu_check_skips_cuda_parts_without_a_gpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    skips = [line for line in out.splitlines() if line.startswith("SKIP ")]
    assert len(skips) == 5, out  # pytest -m cuda, three benchmarks, the default experiment
    assert (tmp_path / "gpu_check.log").read_text().count("SKIP ") == 5
