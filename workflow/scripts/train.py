"""Snakemake script: train the runs of one training group in this process (see rules/train.smk)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

import torch

from cmhash.config import RunSpec, group_noises
from cmhash.logsetup import setup_logging
from cmhash.runs import train_group

setup_logging(snakemake.log[0])  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
params = snakemake.params  # noqa: F821
runs = [RunSpec.from_dict(run) for run in params.runs]
train_group(
    runs,
    params.options,
    snakemake.input.features,  # noqa: F821
    dict(zip(group_noises(runs), snakemake.input.noise)),  # noqa: F821  (the input's order: rule train)
    snakemake.output[0],  # noqa: F821
)
