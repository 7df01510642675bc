"""Configuration: schema validation with defaults, semantic checks, per-run parameter resolution.

Used by the Snakefile before any job is scheduled and by the tests; importable without Snakemake.
Every error names the offending key (``experiments.default.noise[2]``) and says what to do.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from . import registry_cache
from .store import config_hash, rate_str

SCHEMA_VERSION = 1


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the fix."""


def load_schema() -> dict[str, Any]:
    text = resources.files("cmhash").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config safely (no object construction) and validate it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    with open(path) as fh:
        cfg = yaml.safe_load(fh) or {}
    return validate_config(cfg, source=str(path))


def _fill_defaults(schema: dict[str, Any], instance: Any) -> None:
    """Insert schema defaults into ``instance`` in place (objects only, recursively)."""
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(sub, instance[key])
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(extra, value)


def _path(error: jsonschema.ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _expected(schema: dict[str, Any], error: jsonschema.ValidationError) -> str:
    """The description of the deepest schema entry on the failing path (what the key should hold)."""
    if error.validator == "additionalProperties" and isinstance(error.schema, dict):
        allowed = sorted(error.schema.get("properties", {}))
        if allowed:
            return f" (allowed keys: {', '.join(allowed)})"
    node: Any = schema
    found = ""
    for part in error.absolute_schema_path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and isinstance(node.get("description"), str):
            found = " ".join(node["description"].split())
    return f" (expected: {found})" if found else ""


def validate_config(cfg: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate against the JSON schema, fill defaults, then check cross-references. Returns a new dict."""
    cfg = copy.deepcopy(cfg)
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"- {_path(e)}: {e.message}{_expected(schema, e)}" for e in errors[:10]]
        raise ConfigError(
            f"{source} is invalid ({len(errors)} problem(s)); see config/README.md for every key:\n" + "\n".join(lines)
        )
    _fill_defaults(schema, cfg)
    _check_semantics(cfg, source)
    return cfg


def _check_semantics(cfg: dict[str, Any], source: str) -> None:
    datasets, methods_cfg = cfg["datasets"], cfg["methods"]
    if cfg.get("highlight_method") is not None and cfg["highlight_method"] not in methods_cfg:
        raise ConfigError(f"{source}: highlight_method = {cfg['highlight_method']!r} is not defined under methods; "
                          f"set one of {sorted(methods_cfg)} or null")
    for name, ds in datasets.items():
        if ds["format"] in ("mfeat", "canonical") and "path" not in ds:
            raise ConfigError(f"{source}: datasets.{name}.path is required for format {ds['format']}")
        if ds["format"] == "folder" and "path" not in ds:
            raise ConfigError(
                f"{source}: datasets.{name}.path is required for format folder: the CSV/TSV table of image file "
                "names, texts and labels (config/README.md, 'Your own images and texts')"
            )
        if ds["format"] in ("mfeat", "synthetic") and "modalities" not in ds:
            raise ConfigError(f"{source}: datasets.{name}.modalities is required (two entries name: view)")
        if ds["format"] not in ("mfeat", "synthetic", "canonical") and "path" not in ds and not ds.get("files"):
            raise ConfigError(
                f"{source}: datasets.{name} (format {ds['format']}) needs 'path' or 'files' "
                "(file names in config/README.md, 'Published benchmark files')"
            )
    for ds_name, pattern in cfg["noise"].get("files", {}).items():
        if ds_name not in datasets:
            raise ConfigError(f"{source}: noise.files.{ds_name}: no dataset of that name; known: {sorted(datasets)}")
        if "{noise}" not in pattern:
            raise ConfigError(
                f"{source}: noise.files.{ds_name} = {pattern!r} must contain '{{noise}}' (the rate, spelled %g), "
                "e.g. noisy_labels/xmedia_noise_labels_{noise}_sym.mat"
            )
        try:
            # plain names only: "{dataset.__class__}" or "{noise!r:>9}" would make str.format evaluate them
            bad = [f for _, f, spec, conv in string.Formatter().parse(pattern)
                   if f is not None and (f not in ("noise", "seed", "dataset") or spec or conv)]
        except ValueError:  # unbalanced braces
            bad = [pattern]
        if bad:
            raise ConfigError(
                f"{source}: noise.files.{ds_name} = {pattern!r}: only the placeholders {{noise}}, {{seed}} "
                "and {dataset} are allowed (no attributes, indices, conversions or format specs)"
            ) from None
    for name in methods_cfg:
        resolve_method(cfg, name, None)  # raises on unknown impl/base, cycles, bad params
        for ds_name in methods_cfg[name].get("per_dataset", {}):
            if ds_name not in datasets:  # a typo here would silently train with the generic params
                raise ConfigError(
                    f"{source}: methods.{name}.per_dataset.{ds_name}: no dataset of that name; "
                    f"known: {sorted(datasets)}. Fix the name or remove the entry"
                )
            resolve_method(cfg, name, ds_name)
    for exp_name, exp in cfg["experiments"].items():
        where = f"experiments.{exp_name}"
        for key, known in (("datasets", datasets), ("methods", methods_cfg)):
            for i, item in enumerate(exp[key]):
                if item not in known:
                    raise ConfigError(
                        f"{source}: {where}.{key}[{i}] = {item!r} is not defined; known {key}: {sorted(known)}"
                    )
        for key, spell in (("datasets", str), ("methods", str), ("noise", rate_str), ("bits", int), ("seeds", int)):
            spelled = [spell(v) for v in exp[key]]
            dupes = sorted({v for v in spelled if spelled.count(v) > 1})
            if dupes:
                raise ConfigError(f"{source}: {where}.{key} lists {dupes} more than once; remove the duplicates")
        if cfg["noise"]["kind"] != "redundant":
            for i, rate in enumerate(exp["noise"]):
                if not 0 <= float(rate) < 1:
                    raise ConfigError(f"{source}: {where}.noise[{i}] = {rate} is outside [0, 1); only noise.kind "
                                      "redundant (labels added per true label) takes rates >= 1")
        figures = exp.get("figures", {})
        if "spl_method" in figures and figures["spl_method"] not in exp["methods"]:
            raise ConfigError(f"{source}: {where}.figures.spl_method must be one of {where}.methods")
        for row, cells in exp.get("protocol_audit", {}).items():
            for side, (method, dataset) in cells.items():
                if method not in exp["methods"] or dataset not in exp["datasets"]:
                    raise ConfigError(
                        f"{source}: {where}.protocol_audit.{row}.{side} = [{method}, {dataset}] is not a cell of "
                        f"the experiment; add the method to {where}.methods and the dataset to {where}.datasets"
                    )
        if exp_name in RESERVED_TARGETS:
            raise ConfigError(f"{source}: {where}: the name {exp_name!r} is reserved for a workflow rule; rename it")


RESERVED_TARGETS = {"all", "prepare_dataset", "extract_features", "make_noisy_labels", "train", "evaluate", "report_table", "report_figures",
                    "report_protocol_audit", "paper"}


def resolve_method(cfg: dict[str, Any], name: str, dataset: str | None) -> tuple[str, dict[str, Any]]:
    """``(impl, params)`` of method ``name`` on ``dataset``: base chain, then params, then per_dataset."""
    methods_cfg = cfg["methods"]
    if name not in methods_cfg:
        raise ConfigError(f"method {name!r} is not defined under methods; known: {sorted(methods_cfg)}")
    chain, current = [], name
    while True:
        if current in chain:
            raise ConfigError(f"methods.{name}: 'base' entries form a cycle: {' -> '.join(chain + [current])}")
        chain.append(current)
        entry = methods_cfg[current]
        if "impl" in entry:
            break
        if "base" not in entry:
            raise ConfigError(f"methods.{current}: set either 'impl' (an implementation) or 'base' (another method)")
        if entry["base"] not in methods_cfg:
            raise ConfigError(f"methods.{current}.base = {entry['base']!r} is not a defined method")
        current = entry["base"]
    impl = methods_cfg[chain[-1]]["impl"]
    known = registry_cache.method_defaults()  # without torch: the methods' defaults (cmhash.registry_cache)
    if impl not in known:
        raise ConfigError(f"methods.{chain[-1]}.impl = {impl!r} is not registered; known: {sorted(known)}")
    merged: dict[str, Any] = {}
    for link in reversed(chain):  # root first, the named method last
        entry = methods_cfg[link]
        pieces = [(f"methods.{link}.params", entry.get("params", {}))]
        if dataset is not None:
            own = entry.get("per_dataset", {}).get(dataset, {})
            pieces.append((f"methods.{link}.per_dataset.{dataset}", own))
        for where, values in pieces:
            try:  # checked piece by piece so that the message names the entry that holds the bad value
                registry_cache.resolve_params(impl, values, where=where)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            merged.update(values)
    try:
        params = registry_cache.resolve_params(impl, merged, where=f"methods.{name}.params")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return impl, params


def method_label(cfg: dict[str, Any], name: str) -> str:
    return cfg["methods"][name].get("label", name)


def run_spec(
    cfg: dict[str, Any], dataset: str, method: str, noise: str, bits: int, seed: int,
    stack: list[str] | None = None, resolved: tuple[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything that determines one training run; its hash ties a result file to the config. ``stack``:
    the noise rates the run is trained together with (:func:`noise_stacks`), ``None`` when trained alone;
    ``resolved``: :func:`resolve_method`'s answer when the caller has it (copied, not shared)."""
    impl, params = (resolved[0], _plain_copy(resolved[1])) if resolved is not None else resolve_method(
        cfg, method, dataset)
    spec = {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "dataset_config": cfg["datasets"][dataset],
        "noise_kind": cfg["noise"]["kind"],
        "noise": rate_str(float(noise)),
        "method": method,
        "impl": impl,
        "params": params,
        "bits": int(bits),
        "seed": int(seed),
    }
    # only when set, so that the hashes of runs on generated noise stay as they were
    if dataset in cfg["noise"].get("files", {}):
        spec["noise_file"] = cfg["noise"]["files"][dataset]
    if stack is not None:  # stacked training rounds differently: a stacked result is not a separate run's
        spec["noise_stack"] = list(stack)
    return spec


def _plain_copy(value: Any) -> Any:
    """A copy of plain config data (dicts and lists copied, scalars shared): ``copy.deepcopy`` for resolved
    parameters at a fraction of its cost (the Snakefile copies them once per run of the plan)."""
    if isinstance(value, dict):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_copy(v) for v in value]
    return value


_AUTO: Any = object()


def run_config_hash(
    cfg: dict[str, Any], dataset: str, method: str, noise: str, bits: int, seed: int, stack: Any = _AUTO
) -> str:
    """Hash of :func:`run_spec`. ``stack``: the run's noise stack when the caller has :func:`noise_stacks`
    at hand (looking it up here walks every experiment of the config)."""
    if stack is _AUTO:
        stack = run_noise_stack(cfg, dataset, method, bits, seed)
    return config_hash(run_spec(cfg, dataset, method, noise, bits, seed, stack))


def noise_stacks(cfg: dict[str, Any]) -> dict[tuple[str, str, int, int], list[str]]:
    """With ``stack_noise_rates: true``: ``(dataset, method, bits, seed)`` -> the noise rates (sorted, one
    spelling) whose runs are trained together as one stacked network, over every experiment of the config;
    only methods whose implementation can be stacked (:func:`cmhash.stacked.stacking_problem`). Else ``{}``."""
    if not cfg.get("stack_noise_rates", False):
        return {}
    from .stacked import stacking_problem

    stackable: dict[str, bool] = {}
    stacks: dict[tuple[str, str, int, int], set[float]] = {}
    for experiment in cfg["experiments"]:
        for run in experiment_runs(cfg, experiment):
            method = run["method"]
            if method not in stackable:
                stackable[method] = stacking_problem(resolve_method(cfg, method, None)[0]) is None
            if stackable[method]:
                key = (run["dataset"], method, run["bits"], run["seed"])
                stacks.setdefault(key, set()).add(float(run["noise"]))
    return {key: [rate_str(r) for r in sorted(rates)] for key, rates in stacks.items()}


def run_noise_stack(cfg: dict[str, Any], dataset: str, method: str, bits: int, seed: int) -> list[str] | None:
    """The noise rates trained together with this run (:func:`noise_stacks`), or ``None``: trained alone."""
    return noise_stacks(cfg).get((dataset, method, int(bits), int(seed)))


def stack_name(noises: list[str]) -> str:
    """The path component of a noise stack: ``['0.2', '0.4'] -> '0.2_0.4'``."""
    return "_".join(noises)


def experiment_runs(cfg: dict[str, Any], experiment: str) -> Iterator[dict[str, Any]]:
    """Every (dataset, method, noise, bits, seed) of an experiment, noise spelled with :func:`rate_str`."""
    exp = cfg["experiments"][experiment]
    for dataset in exp["datasets"]:
        for method in exp["methods"]:
            for noise in exp["noise"]:
                for bits in exp["bits"]:
                    for seed in exp["seeds"]:
                        yield {"dataset": dataset, "method": method, "noise": rate_str(noise), "bits": int(bits),
                               "seed": int(seed)}


# --- the training plan: every run resolved once, grouped into training jobs -------------------------------------


#: File name of one run inside its training group's folders (train and evaluation files).
MEMBER_PATTERN = "noise{noise}_bits{bits}.h5"


def member_name(noise: str, bits: int) -> str:
    """File name of one run inside its training group's directory: ``noise0.2_bits16.h5``."""
    return MEMBER_PATTERN.format(noise=noise, bits=int(bits))


@dataclass(frozen=True)
class RunSpec:
    """One training run, resolved once per workflow invocation (``rules/common.smk``) and handed to its job.

    ``spec`` is what :func:`run_spec` returns (the dict whose hash ties a result file to the config),
    ``config_hash`` its hash, ``group`` the path component of the training group the run belongs to
    (:func:`training_plan`). The job never sees the whole config: ``cmhash.runs.train_group`` takes these."""

    spec: dict[str, Any]
    config_hash: str
    group: str

    @property
    def dataset(self) -> str:
        return self.spec["dataset"]

    @property
    def method(self) -> str:
        return self.spec["method"]

    @property
    def impl(self) -> str:
        return self.spec["impl"]

    @property
    def params(self) -> dict[str, Any]:
        return self.spec["params"]

    @property
    def noise_kind(self) -> str:
        return self.spec["noise_kind"]

    @property
    def noise(self) -> str:
        return self.spec["noise"]

    @property
    def bits(self) -> int:
        return self.spec["bits"]

    @property
    def seed(self) -> int:
        return self.spec["seed"]

    @property
    def stack(self) -> list[str] | None:
        return self.spec.get("noise_stack")

    @property
    def member(self) -> str:
        return member_name(self.noise, self.bits)

    @property
    def name(self) -> str:
        return f"{self.method}/{self.dataset}/noise{self.noise}/{self.bits}bits/seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what Snakemake passes as params and compares to decide a rerun)."""
        return {"spec": self.spec, "config_hash": self.config_hash, "group": self.group}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        spec = data["spec"]
        if config_hash(spec) != data["config_hash"]:
            raise ValueError(f"run spec of {spec.get('method')}/{spec.get('dataset')}: its config_hash does not "
                             "match its content; pass RunSpec.to_dict() unchanged")
        return cls(spec, data["config_hash"], data["group"])


@dataclass(frozen=True)
class TrainGroup:
    """The runs one training job trains in one process, one after another (a noise stack counts as one unit).

    With ``group_code_lengths: true`` a group is every code length of one (dataset, method, noise, seed), or of
    one noise stack; with ``false`` every run (or stack) is its own group."""

    dataset: str
    noise_kind: str
    method: str
    seed: int
    name: str
    runs: tuple[RunSpec, ...]

    @property
    def noises(self) -> list[str]:
        """The noise rates of the group's runs, in order (one noisy-label file each)."""
        return group_noises(self.runs)


def group_noises(runs: Any) -> list[str]:
    """The noise rates of some :class:`RunSpec`, sorted by value: the order of a training group's noisy-label
    files (rule train's input, :func:`cmhash.runs.train_group`)."""
    return sorted({r.noise for r in runs}, key=float)


@dataclass(frozen=True)
class TrainingPlan:
    """Every run of every experiment of a config, resolved once: its :class:`RunSpec` and its group."""

    runs: dict[tuple[str, str, str, int, int], RunSpec]  # (dataset, method, noise, bits, seed) -> spec
    groups: dict[tuple[str, str, int, str], TrainGroup]  # (dataset, method, seed, group name) -> group

    def run(self, dataset: str, method: str, noise: str, bits: int | str, seed: int | str) -> RunSpec:
        key = (dataset, method, rate_str(float(noise)), int(bits), int(seed))
        if key not in self.runs:
            raise KeyError(f"{method}/{dataset}/noise{key[2]}/{key[3]} bits/seed {key[4]} is in no experiment of "
                           "the config; add it to an experiment (experiments.<name> in config/config.yaml)")
        return self.runs[key]

    def group(self, dataset: str, method: str, seed: int | str, name: str) -> TrainGroup:
        key = (dataset, method, int(seed), name)
        if key not in self.groups:
            raise KeyError(f"training group {method}/{dataset}/seed{seed}/{name} is not planned by this config; "
                           "rerun snakemake so that the group's path is rebuilt from the config")
        return self.groups[key]


def group_name(noises: list[str], bits: list[int]) -> str:
    """Path component of a training group: ``noise0.2_bits16-32`` (several noise rates: a noise stack)."""
    return f"noise{'-'.join(noises)}_bits{'-'.join(str(int(b)) for b in bits)}"


def training_plan(cfg: dict[str, Any]) -> TrainingPlan:
    """Resolve every run of every experiment once (method chain, parameters, noise stack, hash) and group them
    into training jobs (``group_code_lengths``). The runs of a group are ordered by code length, then noise."""
    stacks = noise_stacks(cfg)
    resolved: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    keys: dict[tuple[str, str, str, int, int], tuple[Any, ...]] = {}
    for experiment in cfg["experiments"]:
        for run in experiment_runs(cfg, experiment):
            key = (run["dataset"], run["method"], run["noise"], run["bits"], run["seed"])
            if key in keys:
                continue
            stack = stacks.get((run["dataset"], run["method"], run["bits"], run["seed"]))
            noise_part = tuple(stack) if stack is not None else (run["noise"],)
            group_key = (run["dataset"], run["method"], run["seed"], noise_part)
            if not cfg.get("group_code_lengths", True):
                group_key += (run["bits"],)
            keys[key] = group_key
    members: dict[tuple[Any, ...], list[tuple[str, str, str, int, int]]] = {}
    for key, group_key in keys.items():
        members.setdefault(group_key, []).append(key)
    runs: dict[tuple[str, str, str, int, int], RunSpec] = {}
    groups: dict[tuple[str, str, int, str], TrainGroup] = {}
    for group_key, run_keys in members.items():
        dataset, method, seed, noise_part = group_key[:4]
        run_keys.sort(key=lambda k: (k[3], float(k[2])))
        name = group_name(list(noise_part), sorted({k[3] for k in run_keys}))
        specs = []
        for key in run_keys:
            if (method, dataset) not in resolved:
                resolved[(method, dataset)] = resolve_method(cfg, method, dataset)
            stack = stacks.get((dataset, method, key[3], seed))
            spec = run_spec(cfg, dataset, method, key[2], key[3], seed, stack, resolved=resolved[(method, dataset)])
            runs[key] = RunSpec(spec, config_hash(spec), name)
            specs.append(runs[key])
        groups[(dataset, method, seed, name)] = TrainGroup(dataset, cfg["noise"]["kind"], method, seed, name,
                                                           tuple(specs))
    return TrainingPlan(runs, groups)


def single_run(cfg: dict[str, Any], dataset: str, method: str, noise: str, bits: int, seed: int) -> TrainGroup:
    """A group of one run trained alone (no noise stack), for calling the engine outside the workflow."""
    spec = run_spec(cfg, dataset, method, noise, bits, seed, None)
    name = group_name([spec["noise"]], [int(bits)])
    return TrainGroup(dataset, cfg["noise"]["kind"], method, int(seed), name, (RunSpec(spec, config_hash(spec), name),))


def training_options(cfg: dict[str, Any]) -> dict[str, Any]:
    """Settings of the training loop that do not enter a run's hash (device, checkpoints, precision)."""
    return {"device": cfg["device"], "checkpoint_every": int(cfg["checkpoint_every"]),
            "amp": bool(cfg.get("amp", False)), "deterministic": bool(cfg.get("deterministic", False))}
