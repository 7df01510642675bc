"""Snakemake script: a training group's codes -> retrieval metrics, one file per run (see rules/evaluate.smk). NumPy + h5py only: no torch import."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from cmhash.evaluate import evaluate_group
from cmhash.logsetup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821
evaluate_group(
    snakemake.input[0],  # noqa: F821  (the training group's folder)
    snakemake.output[0],  # noqa: F821
    snakemake.params.members,  # noqa: F821  (its runs' file names)
    snakemake.params.evaluation,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
