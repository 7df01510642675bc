"""What the tests that drive Snakemake share: where it and the Snakefile are, reading a dry run's job table,
and one torch thread for tiny image forwards."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's job table."""
    rows = [line.split() for line in (proc.stdout + proc.stderr).splitlines()]
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit() and row[0] != "jobid:"}


@pytest.fixture(scope="module")
def one_torch_thread():
    """CI machines are small and shared: several spinning OpenMP threads slow the tiny forwards tenfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
