"""Snakemake script: train the noise stack of one (method, dataset, bits, seed) (see rules/train.smk)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

import torch

from cmhash.logsetup import setup_logging
from cmhash.runs import train_stack_run

setup_logging(snakemake.log[0])  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
wc = snakemake.wildcards  # noqa: F821
train_stack_run(
    snakemake.config,  # noqa: F821
    snakemake.input.features,  # noqa: F821
    list(snakemake.input.noise),  # noqa: F821
    snakemake.output[0],  # noqa: F821
    dataset=wc.dataset,
    method=wc.method,
    noises=wc.noises.split("_"),
    bits=int(wc.bits),
    seed=int(wc.seed),
)
