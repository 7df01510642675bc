"""Snakemake script: summary tables of one experiment (logic in :func:`cmhash.report.tables.report_table`).

snakemake.input   runs: the experiment's runs table (rule collect_runs), which lists its metrics files
snakemake.params  experiment (str), methods (list, table row order), optional ablation_bits (int),
                  optional ablation_methods (list), config_hashes (metrics path -> hash)
snakemake.output  csv, md, tex, ablation_csv, ablation_md, ablation_tex (named)
snakemake.log     one log file
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(globals()["snakemake"].scriptdir).resolve().parents[1] / "src"))

from cmhash.logsetup import logged_job
from cmhash.report.tables import report_table

snakemake = globals()["snakemake"]  # injected by Snakemake

with logged_job(snakemake.log[0], "report_table") as log_:
    params = dict(snakemake.params.items())
    runs = snakemake.input.runs  # the runs table of rule collect_runs, which checked the config hashes
    outputs = {k: v for k, v in snakemake.output.items()}
    log_.info("experiment %s: %s -> %s", params["experiment"], runs, sorted(outputs))
    written = report_table(
        runs,
        params["experiment"],
        outputs,
        methods=params.get("methods"),
        ablation_bits=params.get("ablation_bits"),
        ablation_methods=params.get("ablation_methods"),
    )
    for key, path in written.items():
        log_.info("wrote %s: %s", key, path)
