"""Snakemake script: an experiment's metrics files -> its runs table (:func:`cmhash.report.results.write_runs_table`).

snakemake.input   the evaluation folders (one per training group) of the experiment
snakemake.params  experiment (str), metrics (its runs' ``cmhash.metrics/1`` files in run order),
                  config_hashes (metrics path -> config hash of the current config)
snakemake.output  results/tables/{experiment}_runs.csv
snakemake.log     one log file
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(globals()["snakemake"].scriptdir).resolve().parents[1] / "src"))

from cmhash.logsetup import logged_job
from cmhash.report.results import write_runs_table

snakemake = globals()["snakemake"]  # injected by Snakemake

with logged_job(snakemake.log[0], "collect_runs") as log_:
    df = write_runs_table(snakemake.params.metrics, snakemake.output[0], snakemake.params.config_hashes)
    log_.info("experiment %s: %d metrics files, %d rows -> %s", snakemake.params.experiment,
              len(snakemake.params.metrics), len(df), snakemake.output[0])
