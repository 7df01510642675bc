"""Snakemake script: protocol-audit table and figure (logic in :func:`cmhash.report.audit.report_protocol_audit`).

snakemake.input   runs: the experiment's runs table (rule collect_runs), which lists its metrics files
snakemake.params  experiment (str), audit (the experiment's ``protocol_audit`` block), config_hashes
snakemake.output  csv, md, png, pdf (named; pdf is written next to png)
snakemake.log     one log file
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(globals()["snakemake"].scriptdir).resolve().parents[1] / "src"))

from cmhash.logsetup import logged_job
from cmhash.report.audit import report_protocol_audit

snakemake = globals()["snakemake"]  # injected by Snakemake

with logged_job(snakemake.log[0], "report_protocol_audit") as log_:
    params = dict(snakemake.params.items())
    runs = snakemake.input.runs  # the runs table of rule collect_runs, which checked the config hashes
    written = report_protocol_audit(
        runs,
        params["experiment"],
        {k: v for k, v in snakemake.output.items()},
        params["audit"],
    )
    for key, path in written.items():
        log_.info("wrote %s: %s", key, path)
