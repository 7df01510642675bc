"""Snakemake script: codes -> retrieval metrics (see rules/evaluate.smk)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from cmhash.logsetup import setup_logging
from cmhash.evaluate import evaluate_run  # NumPy + h5py only: no torch import in this job

setup_logging(snakemake.log[0])  # noqa: F821
evaluate_run(snakemake.input[0], snakemake.output[0], snakemake.params.evaluation, threads=snakemake.threads)  # noqa: F821
