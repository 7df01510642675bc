"""Snakemake script: figures of one experiment (logic in :func:`cmhash.report.figures.report_figures`).

snakemake.input   runs: the experiment's runs table (rule collect_runs), which lists its metrics files
snakemake.params  experiment (str), methods (list, legend order), optional figures (dict) with the
                  keys dataset, noise, bits, pr_noise, pr_bits, epoch_noise, epoch_bits, weights_noise,
                  weights_bits, map_noise_bits, epoch_methods, weights_methods, weights_epochs,
                  weights_seed (defaults: first dataset, noise 0.6 if present else the middle rate,
                  the largest bits)
snakemake.output  <name>_png, <name>_pdf for each figure name of cmhash.report.FIGURES (pr_curves,
                  map_vs_noise, weight_density, map_vs_epoch; each png/pdf pair shares its path stem)
snakemake.log     one log file
"""

import sys

import matplotlib

matplotlib.use("Agg")

from pathlib import Path

sys.path.insert(0, str(Path(globals()["snakemake"].scriptdir).resolve().parents[1] / "src"))

from cmhash.logsetup import logged_job
from cmhash.report.figures import report_figures

snakemake = globals()["snakemake"]  # injected by Snakemake

with logged_job(snakemake.log[0], "report_figures") as log_:
    params = dict(snakemake.params.items())
    runs = snakemake.input.runs  # the runs table of rule collect_runs, which checked the config hashes
    outputs = {k: v for k, v in snakemake.output.items()}
    log_.info("experiment %s: %s -> %s", params["experiment"], runs, sorted(outputs))
    written = report_figures(
        runs,
        params["experiment"],
        outputs,
        methods=params.get("methods"),
        settings=params.get("figures") or {},
    )
    for path in written:
        log_.info("wrote %s", path)
