# cmhash: cross-modal hashing under noisy labels. See README.md; every config key in config/README.md.
from pathlib import Path

from snakemake.utils import min_version

min_version("8.20")


# Resolved against the repository so `--directory elsewhere` works; merge your own with --configfile.
configfile: str(Path(workflow.basedir) / "config" / "config.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/features.smk"
include: "rules/noise.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        experiment_targets("default"),


# The paper's Tables 1-4, the Wikipedia table and Figures 2-4 (rules/common.smk, paper_targets).
rule paper:
    input:
        paper_targets,


# One named target per experiment: `snakemake --cores all <experiment>`.
for _experiment in config["experiments"]:

    rule:
        name:
            _experiment
        input:
            experiment_targets(_experiment),
