"""Snakemake script: a folder of images + a table of texts -> features of every row (see rules/features.smk)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

import torch

from cmhash.data.folder import extract_corpus, write_extracted
from cmhash.logsetup import setup_logging
from cmhash.train import resolve_device

setup_logging(snakemake.log[0])  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
name = snakemake.wildcards.dataset  # noqa: F821
# The whole entry (validated, defaults filled) so the label columns are checked before hours of extraction;
# params.settings holds the subset that decides when Snakemake re-extracts.
corpus = extract_corpus(
    name,
    snakemake.config["datasets"][name],  # noqa: F821
    snakemake.params.data_root,  # noqa: F821
    device=str(resolve_device(snakemake.params.device)),  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
write_extracted(snakemake.output.features, corpus)  # noqa: F821
