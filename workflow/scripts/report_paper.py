"""Snakemake script: one experiment beside the papers' MAP (logic in :func:`cmhash.report.paper.report_paper`).

snakemake.input   runs: the experiment's runs table (rule collect_runs), which lists its metrics files
snakemake.params  experiment (str), methods (list, table row order), optional ablation_bits (int),
                  optional ablation_methods (list), config_hashes (metrics path -> hash), paper_map
                  (CSV path or list, or None), dataset_names (ours -> the paper's)
snakemake.output  paper_csv, paper_md, paper_png, paper_pdf (named; paper_pdf is written next to paper_png)
snakemake.log     one log file
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(globals()["snakemake"].scriptdir).resolve().parents[1] / "src"))

from cmhash.logsetup import logged_job
from cmhash.report.paper import report_paper

snakemake = globals()["snakemake"]  # injected by Snakemake

with logged_job(snakemake.log[0], "report_paper") as log_:
    params = dict(snakemake.params.items())
    runs = snakemake.input.runs  # the runs table of rule collect_runs, which checked the config hashes
    outputs = {k: v for k, v in snakemake.output.items()}
    log_.info("experiment %s: %s -> %s", params["experiment"], runs, sorted(outputs))
    written = report_paper(
        runs,
        params["experiment"],
        outputs,
        params.get("paper_map"),
        methods=params.get("methods"),
        ablation_bits=params.get("ablation_bits"),
        ablation_methods=params.get("ablation_methods"),
        dataset_names=params.get("dataset_names"),
    )
    for key, path in written.items():
        log_.info("wrote %s: %s", key, path)
