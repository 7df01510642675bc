"""Config validation: every bad value fails with a message naming the key."""

import copy
from pathlib import Path

import pytest
import yaml

from cmhash.config import (
    ConfigError,
    experiment_runs,
    load_config,
    resolve_method,
    run_config_hash,
    validate_config,
)

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


@pytest.fixture
def raw():
    return yaml.safe_load(CONFIG.read_text())


def test_shipped_config_is_valid_and_defaults_filled():
    cfg = load_config(CONFIG)
    assert cfg["device"] == "auto"
    assert cfg["evaluation"]["tie_order"] == "index"


def _set(d, path, value):
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


@pytest.mark.parametrize(
    "path,value,expected",
    [
        ("experiments.default.noise", [0.2, 1.0], r"experiments\.default\.noise\[1\]"),
        ("experiments.default.noise", [-0.1], r"experiments\.default\.noise\[0\]"),
        ("experiments.default.bits", [16, 0], r"experiments\.default\.bits\[1\]"),
        ("experiments.default.bits", [16.5], r"experiments\.default\.bits\[0\]"),
        ("experiments.default.bits", [], r"experiments\.default\.bits"),
        ("experiments.default.seeds", [], r"experiments\.default\.seeds"),
        ("experiments.default.methods", ["NOPE"], r"experiments\.default\.methods\[0\] = 'NOPE'"),
        ("experiments.default.datasets", ["nowhere"], r"experiments\.default\.datasets\[0\] = 'nowhere'"),
        ("experiments.default.noise", [0.2, 0.20], r"experiments\.default\.noise lists \['0\.2'\]"),
        ("experiments.default.noise", ["0.2"], r"experiments\.default\.noise\[0\]"),
        ("methods.RSHNL.params.gamma", "five", r"methods\.RSHNL\.params\.gamma: expected a number"),
        ("methods.RSHNL.params.epochs", 1.5, r"methods\.RSHNL\.params\.epochs: expected an integer"),
        ("methods.RSHNL.params.gamm", 3.0, r"methods\.RSHNL\.params\.gamm: unknown hyperparameter"),
        ("methods.RSHNL.impl", "nope", r"methods\.RSHNL\.impl = 'nope' is not registered"),
        ("methods.RSHNL-1.base", "NOPE", r"methods\.RSHNL-1\.base = 'NOPE'"),
        ("device", "tpu", r"device"),
        ("datasets.mfeat.format", "xls", r"datasets\.mfeat\.format"),
    ],
)
def test_bad_values_name_the_key(raw, path, value, expected):
    _set(raw, path, value)
    with pytest.raises(ConfigError, match=expected):
        validate_config(raw)


def test_unknown_experiment_key_rejected(raw):
    raw["experiments"]["default"]["nosie"] = [0.2]
    with pytest.raises(ConfigError, match="nosie"):
        validate_config(raw)


def test_base_cycle_detected(raw):
    raw["methods"]["A"] = {"base": "B"}
    raw["methods"]["B"] = {"base": "A"}
    with pytest.raises(ConfigError, match="cycle"):
        validate_config(raw)


def test_resolution_order_base_then_dataset_then_variant(raw):
    cfg = validate_config(raw)
    impl, params = resolve_method(cfg, "RSHNL-D", "mfeat")
    assert impl == "rshnl"
    assert params["gamma"] == 200.0  # the variant's own value beats the base's per-dataset value
    assert params["hidden"] == raw["methods"]["RSHNL"]["per_dataset"]["mfeat"]["hidden"]
    assert resolve_method(cfg, "RSHNL-1", "mfeat")[1]["warmup_epochs"] == 0


def test_config_hash_changes_with_hyperparameters(raw):
    cfg = validate_config(raw)
    h1 = run_config_hash(cfg, "mfeat", "RSHNL", "0.2", 16, 0)
    assert h1 == run_config_hash(copy.deepcopy(cfg), "mfeat", "RSHNL", "0.2", 16, 0)
    cfg["methods"]["RSHNL"]["per_dataset"]["mfeat"]["alpha"] = 0.5
    assert run_config_hash(cfg, "mfeat", "RSHNL", "0.2", 16, 0) != h1


def test_experiment_runs_spell_noise_once(raw):
    raw["experiments"]["tiny"]["noise"] = [0.20, 0.6]
    runs = list(experiment_runs(validate_config(raw), "tiny"))
    assert {r["noise"] for r in runs} == {"0.2", "0.6"}


def test_yaml_is_loaded_safely(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("device: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(yaml.YAMLError):
        load_config(bad)


def test_every_deep_method_has_the_same_epoch_budget_on_mfeat():
    # config/README.md, "Epoch budget": no row of default / smoke_all_methods is ranked after less training
    from cmhash.config import load_config, resolve_method
    from cmhash.methods import get_method_class
    from cmhash.methods.shallow import ShallowHashing

    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "config.yaml")
    budgets = {}
    for experiment in ("default", "smoke_all_methods"):
        for name in cfg["experiments"][experiment]["methods"]:
            impl, params = resolve_method(cfg, name, "mfeat")
            if not issubclass(get_method_class(impl), ShallowHashing):
                budgets[name] = params["epochs"]
    assert len(budgets) >= 15
    assert set(budgets.values()) == {40}, budgets
