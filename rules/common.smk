# Config validation, wildcard constraints and target builders. Runs before any job is scheduled.
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from snakemake.exceptions import WorkflowError

from cmhash.config import (
    ConfigError,
    experiment_runs,
    member_name,
    training_options,
    training_plan,
    validate_config,
)

try:
    _validated = validate_config(config, source="config (config/config.yaml + --config/--configfile)")
except ConfigError as _exc:
    raise WorkflowError(str(_exc)) from None
config.clear()
config.update(_validated)

from cmhash.noise import KINDS as NOISE_KINDS

NOISE_KIND = config["noise"]["kind"]
# the evaluation folder of one training group (a metrics file per run, named as its train file)
RUN_DIR = "results/runs/{dataset}/{noise_kind}/{method}/seed{seed}/{group}"


def _alternatives(values):
    return "|".join(sorted(re.escape(str(v)) for v in values))


wildcard_constraints:
    dataset=_alternatives(config["datasets"]),
    method=_alternatives(config["methods"]),
    noise_kind=_alternatives(NOISE_KINDS),
    noise=r"\d+(\.\d+)?",  # below 1, except for the redundant kind (added labels per true label)
    bits=r"[1-9]\d*",
    seed=r"\d+",
    experiment=_alternatives(config["experiments"]),
    group=r"noise\d+(\.\d+)?(-\d+(\.\d+)?)*_bits\d+(-\d+)*",


# Every run of every experiment resolved once (method chain, parameters, noise stack, config hash) and grouped
# into training jobs: the train rule's params, the evaluate rule's input and the report's hash checks read it.
try:
    TRAINING_PLAN = training_plan(config)
except ConfigError as _exc:
    raise WorkflowError(str(_exc)) from None
GROUP_DIR = "results/train/{dataset}/{noise_kind}/{method}/seed{seed}/{group}"


def metrics_file(run):
    """Path of a run's metrics file (a dict with dataset, method, noise, bits, seed) in its group's folder."""
    spec = TRAINING_PLAN.run(**run)
    folder = RUN_DIR.format(
        dataset=run["dataset"],
        noise_kind=NOISE_KIND,
        method=run["method"],
        seed=run["seed"],
        group=spec.group,
    )
    return f"{folder}/{member_name(spec.noise, spec.bits)}"


def experiment_metrics(experiment):
    """The metrics files of an experiment's runs, in its run order."""
    return [metrics_file(run) for run in experiment_runs(config, experiment)]


def experiment_eval_dirs(experiment):
    """The evaluation folders (one per training group) holding an experiment's metrics files."""
    return list(dict.fromkeys(str(Path(path).parent) for path in experiment_metrics(experiment)))


def experiment_config_hashes(experiment):
    """Metrics path -> config hash under the current config; the report refuses files that differ."""
    return {
        metrics_file(run): TRAINING_PLAN.run(**run).config_hash for run in experiment_runs(config, experiment)
    }


def training_group(wildcards):
    try:
        return TRAINING_PLAN.group(wildcards.dataset, wildcards.method, wildcards.seed, wildcards.group)
    except KeyError as exc:
        raise WorkflowError(exc.args[0]) from None


def group_runs(wildcards):
    """The resolved RunSpecs of a training group, as plain data (Snakemake reruns the group when one changes)."""
    return [run.to_dict() for run in training_group(wildcards).runs]


def group_noise_files(wildcards):
    """Noisy-label files of a training group, one per noise rate, in the order of its `noises`."""
    return [
        f"results/noise/{wildcards.dataset}/{wildcards.noise_kind}/{noise}/seed{wildcards.seed}.h5"
        for noise in training_group(wildcards).noises
    ]


def group_members(wildcards):
    """File names of a training group's runs in its folders (train and evaluation), in the group's order."""
    return [member_name(run.noise, run.bits) for run in training_group(wildcards).runs]


TABLE_SUFFIXES = ["csv", "md", "tex"]
from cmhash.report import FIGURES  # one name per figure: output key, file name, caption (workflow/report/)


def table_outputs(experiment):
    stem = f"results/tables/{experiment}"
    return (
        [f"{stem}.{s}" for s in TABLE_SUFFIXES]
        + [f"{stem}_ablation.{s}" for s in TABLE_SUFFIXES]
        + [f"{stem}_vs_paper.{s}" for s in ("csv", "md")]
        + [f"results/figures/{experiment}/ours_vs_paper.{ext}" for ext in ("png", "pdf")]
    )


def figure_outputs(experiment):
    return [f"results/figures/{experiment}/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")]


def protocol_outputs(experiment):
    """Protocol-audit table and figure, for an experiment with a `protocol_audit` block."""
    if not config["experiments"][experiment].get("protocol_audit"):
        return []
    return [f"results/tables/{experiment}_protocol.{s}" for s in ("csv", "md")] + [
        f"results/figures/{experiment}/protocol.{ext}" for ext in ("png", "pdf")
    ]


def robustness_outputs(experiment):
    """The robustness table, for experiments with two or more noise rates."""
    if len(config["experiments"][experiment]["noise"]) < 2:
        return []
    return [f"results/tables/{experiment}_robustness.{ext}" for ext in ("csv", "md")]


def experiment_targets(experiment):
    return (
        table_outputs(experiment)
        + figure_outputs(experiment)
        + protocol_outputs(experiment)
        + robustness_outputs(experiment)
    )


# The RSHNL paper (AAAI'25): Tables 1-3, ablation Table 4, the appendix's Wikipedia table, and Figures 2-4.
PAPER_TABLES = ["table1", "table2", "table3", "table4", "table_wiki"]
PAPER_FIGURES = {
    "figure2": ("table2", ["pr_curves", "map_vs_noise"]),  # INRIA-Websearch, 128 bits, noise 0.6
    "figure3": ("table2", ["weight_density"]),  # RSHNL's SPL weights, same run
    "figure4": ("figure4", ["map_vs_epoch"]),  # RSHNL, CMMQ, RSHNL-S, RSHNL-D on INRIA-Websearch
}


def paper_targets(wildcards=None):
    """Every output of the paper's tables and the figure files of Figures 2-4 (an input function, so that a
    config without these experiments fails only when `paper` is asked for)."""
    missing = sorted(
        {e for e in PAPER_TABLES + [e for e, _ in PAPER_FIGURES.values()]} - set(config["experiments"])
    )
    if missing:
        raise WorkflowError(
            f"target paper: the experiments {missing} are not defined under experiments (config/config.yaml)"
        )
    out = [path for e in PAPER_TABLES for path in table_outputs(e)]
    for experiment, names in PAPER_FIGURES.values():
        out += [f"results/figures/{experiment}/{n}.{ext}" for n in names for ext in ("png", "pdf")]
    return out


DATA_ROOT = Path(workflow.basedir) / config["data_root"]


def _require_file(path, key, what):
    """Fail while the DAG is built (not when the job runs) if an input the user must provide is absent."""
    if not Path(path).exists():
        raise WorkflowError(
            f"{key}: {path} not found ({what}). Put the file there (names and sources in config/README.md, "
            f"'Published benchmark files'), or point {key} at it (relative to data_root = {DATA_ROOT})."
        )
    return str(path)


def dataset_input_files(wildcards):
    """Source files of a dataset (published layout, mfeat or canonical file); none for generated data."""
    from cmhash.data import input_files

    ds = config["datasets"][wildcards.dataset]
    key = f"datasets.{wildcards.dataset}." + ("files" if ds.get("files") else "path")
    try:
        files = input_files(wildcards.dataset, ds, DATA_ROOT)
    except (OSError, ValueError) as exc:  # a raw release's folder or list is missing: the message names it
        raise WorkflowError(str(exc)) from None
    return [_require_file(p, key, f"format {ds['format']}") for p in files]


def extracted_features(wildcards):
    """The features stage's file of a corpus dataset (folder, raw releases: rules/features.smk); else none."""
    from cmhash.data.folder import CORPUS_FORMATS

    if config["datasets"][wildcards.dataset]["format"] not in CORPUS_FORMATS:
        return []
    return f"results/features/{wildcards.dataset}.h5"


def folder_inputs(wildcards):
    """Table or release files, image folder, backbone weights and text model of a corpus dataset, checked at DAG time."""
    from cmhash.data.folder import CORPUS_FORMATS, folder_sources

    name = wildcards.dataset
    ds = config["datasets"][name]
    if ds["format"] not in CORPUS_FORMATS:
        raise WorkflowError(
            f"results/features/{name}.h5: datasets.{name} has format {ds['format']}; only the formats "
            f"{sorted(CORPUS_FORMATS)} have a features stage"
        )
    keys = {
        "table": "path",
        "images": "folder.images",
        "weights": "folder.weights",
        "text_model": "folder.text_model",
    }
    try:
        sources = folder_sources(name, ds, DATA_ROOT)
    except (OSError, ValueError) as exc:
        raise WorkflowError(str(exc)) from None
    section = "'Your own images and texts'" if ds["format"] == "folder" else "'Raw public releases'"
    for role, path in sources.items():
        if not Path(path).exists():
            raise WorkflowError(
                f"datasets.{name}.{keys.get(role, 'path')}: {path} ({role}) not found (relative to data_root = "
                f"{DATA_ROOT}); see config/README.md, {section}."
            )
    return {role: str(path) for role, path in sources.items()}


def folder_extraction_settings(wildcards):
    """Settings that change the extracted features; as params they make Snakemake re-extract on a change."""
    from cmhash.data.folder import extraction_settings

    return extraction_settings(wildcards.dataset, config["datasets"][wildcards.dataset])


def noise_file(wildcards):
    """The published noisy-label file of (dataset, noise, seed) when noise.files names one, else None."""
    pattern = config["noise"]["files"].get(wildcards.dataset)
    if pattern is None:
        return None
    path = DATA_ROOT / pattern.format(noise=wildcards.noise, seed=wildcards.seed, dataset=wildcards.dataset)
    return _require_file(path, f"noise.files.{wildcards.dataset}", f"noisy labels at rate {wildcards.noise}")


def noise_inputs(wildcards):
    files = {"features": f"results/data/{wildcards.dataset}.h5"}
    published = noise_file(wildcards)
    if published is not None:
        files["published"] = published
    return files


def paper_map_file():
    """The papers' MAP tables (config paper_map: one path or a list, relative to the repository), or None."""
    value = config["paper_map"]
    paths = [value] if isinstance(value, str) else list(value)
    paths = [Path(p) if Path(p).is_absolute() else Path(workflow.basedir) / p for p in paths if p]
    return [str(p) for p in paths] or None


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
    if config.get("highlight_method"):
        out["highlight"] = config["highlight_method"]
    return out
