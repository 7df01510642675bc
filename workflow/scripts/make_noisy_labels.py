"""Snakemake script: clean training labels -> noisy labels (see rules/noise.smk)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

import logging

from cmhash.data.canonical import read_features
from cmhash.logsetup import setup_logging
from cmhash.noise import import_noisy_labels, make_noisy_labels, write_noisy_labels

setup_logging(snakemake.log[0])  # noqa: F821
wc = snakemake.wildcards  # noqa: F821
features = read_features(snakemake.input.features)  # noqa: F821
clean = features.splits["train"]["labels"]
if hasattr(snakemake.input, "published"):  # noqa: F821
    # noise.files: train on exactly the noise realisation a paper published
    published = snakemake.input.published  # noqa: F821
    noisy = import_noisy_labels(published, clean, float(wc.noise), int(wc.seed), wc.noise_kind)
else:
    noisy = make_noisy_labels(clean, float(wc.noise), int(wc.seed), wc.noise_kind)
write_noisy_labels(snakemake.output[0], noisy, {"dataset": wc.dataset})  # noqa: F821
logging.getLogger("make_noisy_labels").info(
    "%s: rate %s seed %s -> %d rows redrawn, realised change rate %.4f",
    wc.dataset, wc.noise, wc.seed, int(noisy.selected.sum()), float(noisy.changed.mean()),
)
