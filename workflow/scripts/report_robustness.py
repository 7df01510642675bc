"""Snakemake script: robustness table of one experiment (logic in :func:`cmhash.report.robustness.report_robustness`).

snakemake.input   runs: the experiment's runs table (rule collect_runs; two or more noise rates)
snakemake.params  experiment, methods, config_hashes, paper_map (path, list or None), dataset_names
snakemake.output  csv, md
snakemake.log     one log file
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(globals()["snakemake"].scriptdir).resolve().parents[1] / "src"))

from cmhash.logsetup import logged_job
from cmhash.report.robustness import report_robustness

snakemake = globals()["snakemake"]  # injected by Snakemake

with logged_job(snakemake.log[0], "report_robustness") as log_:
    params = dict(snakemake.params.items())
    runs = snakemake.input.runs  # the runs table of rule collect_runs, which checked the config hashes
    written = report_robustness(
        runs, params["experiment"], dict(snakemake.output.items()), methods=params.get("methods"),
        paper_map=params.get("paper_map"),
        dataset_names=params.get("dataset_names"),
    )
    for key, path in written.items():
        log_.info("wrote %s: %s", key, path)
