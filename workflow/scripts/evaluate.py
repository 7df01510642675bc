"""Snakemake script: codes -> retrieval metrics (see rules/evaluate.smk). NumPy + h5py only: no torch import."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from cmhash.evaluate import evaluate_run
from cmhash.logsetup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821
evaluate_run(
    Path(snakemake.input[0]) / snakemake.params.member,  # noqa: F821  (the run's file in its training group)
    snakemake.output[0],  # noqa: F821
    snakemake.params.evaluation,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
