"""Snakemake script: dataset -> canonical feature file (see rules/data.smk)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from cmhash.data import prepare_dataset
from cmhash.data.canonical import write_features
from cmhash.logsetup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821
features = prepare_dataset(
    snakemake.wildcards.dataset,  # noqa: F821
    snakemake.params.dataset_config,  # noqa: F821
    snakemake.params.data_root,  # noqa: F821
    extracted=snakemake.input.extracted or None,  # noqa: F821  (format folder: the features stage's file)
)
write_features(snakemake.output[0], features)  # noqa: F821
