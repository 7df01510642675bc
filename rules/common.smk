# Config validation, wildcard constraints and target builders. Runs before any job is scheduled.
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from snakemake.exceptions import WorkflowError

from cmhash.config import ConfigError, experiment_runs, rate_str, resolve_method, validate_config

try:
    _validated = validate_config(config, source="config (config/config.yaml + --config/--configfile)")
except ConfigError as _exc:
    raise WorkflowError(str(_exc)) from None
config.clear()
config.update(_validated)

NOISE_KIND = config["noise"]["kind"]
RUN_DIR = "results/runs/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}"


def _alternatives(values):
    return "|".join(sorted(re.escape(str(v)) for v in values))


def _all_noise():
    return {rate_str(n) for e in config["experiments"].values() for n in e["noise"]}


wildcard_constraints:
    dataset=_alternatives(config["datasets"]),
    method=_alternatives(config["methods"]),
    noise_kind="sym|flip",
    noise=r"0(\.\d+)?",
    bits=r"[1-9]\d*",
    seed=r"\d+",
    experiment=_alternatives(config["experiments"]),


def run_file(run, name):
    """Path of a run's train.h5 / metrics.h5 for a dict with dataset, method, noise, bits, seed."""
    return f"{RUN_DIR}/{name}".format(noise_kind=NOISE_KIND, **run)


def experiment_metrics(experiment):
    return [run_file(run, "metrics.h5") for run in experiment_runs(config, experiment)]


TABLE_SUFFIXES = ["csv", "md", "tex"]
FIGURES = ["pr_curves", "map_vs_noise", "weight_density", "map_vs_epoch"]


def table_outputs(experiment):
    stem = f"results/tables/{experiment}"
    return [f"{stem}.{s}" for s in TABLE_SUFFIXES] + [f"{stem}_ablation.{s}" for s in TABLE_SUFFIXES]


def figure_outputs(experiment):
    return [f"results/figures/{experiment}/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")]


def experiment_targets(experiment):
    return table_outputs(experiment) + figure_outputs(experiment)


def training_params(wildcards):
    """Resolved hyperparameters of a run; passing them as params makes Snakemake rerun a job when they change."""
    return resolve_method(config, wildcards.method, wildcards.dataset)[1]


def figure_settings(experiment):
    """Map the experiment's `figures` block onto the report script's settings (None = its defaults)."""
    fig = config["experiments"][experiment].get("figures", {})
    out = {}
    if "noise" in fig:
        out["noise"] = float(fig["noise"])
    if "bits" in fig:
        out["bits"] = int(fig["bits"])
    if "spl_method" in fig:
        out["weights_methods"] = [fig["spl_method"]]
    return out
