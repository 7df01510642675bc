"""The training engine (cmhash.runs.train_group): a group's runs trained one after another in one process give
the codes each run gives when trained alone, bit for bit on the CPU; the plan (cmhash.config.training_plan)
resolves every run once and groups the code lengths of one (dataset, method, noise, seed)."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
import yaml
from test_bad_inputs import toy
from workflow_helpers import REPO, one_torch_thread  # noqa: F401 (fixture)

from cmhash.config import (
    RunSpec,
    member_name,
    run_config_hash,
    training_options,
    training_plan,
    validate_config,
)
from cmhash.data.canonical import read_features, write_features
from cmhash.noise import make_noisy_labels, write_noisy_labels
from cmhash.runs import train_group, train_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"epochs": 3, "batch_size": 16, "lr": 1e-2}
PER_METHOD = {  # tiny networks so that four methods x two noise rates x two code lengths train in seconds
    "CE": {**SMALL, "hidden": [16]},
    "RSHNL": {**SMALL, "hidden": [16], "center_hidden": [16], "warmup_epochs": 1},
    "SEHA": {**SMALL, "hidden": [16], "center_hidden": [16], "warmup_epochs": 1},
    "NSRMH": {**SMALL, "hidden": [16, 8], "warmup_epochs": 1, "threshold_epoch": 1},
}


@pytest.fixture
def setup(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["datasets"]["toy"] = {"format": "canonical", "path": str(tmp_path / "toy_source.h5")}
    for method, params in PER_METHOD.items():
        cfg["methods"][method].setdefault("per_dataset", {})["toy"] = params
    cfg["device"] = "cpu"
    cfg["experiments"]["grid"] = {"datasets": ["toy"], "methods": list(PER_METHOD), "noise": [0.2, 0.6],
                                  "bits": [16, 8], "seeds": [0]}
    cfg = validate_config(cfg)
    feats = write_features(tmp_path / "features.h5", toy())
    clean = read_features(feats).splits["train"]["labels"]
    noise = {r: write_noisy_labels(tmp_path / f"noise{r}.h5", make_noisy_labels(clean, float(r), 0))
             for r in ("0.2", "0.6")}
    return cfg, feats, noise


def test_plan_groups_code_lengths_and_resolves_each_run_once(setup):
    cfg, _, _ = setup
    plan = training_plan(cfg)
    grid = [g for g in plan.groups.values() if g.dataset == "toy"]
    assert len(grid) == len(PER_METHOD) * 2  # one group per (method, noise); bits inside it
    group = plan.group("toy", "RSHNL", 0, "noise0.2_bits8-16")
    assert [(r.noise, r.bits) for r in group.runs] == [("0.2", 8), ("0.2", 16)]  # code length order
    run = plan.run("toy", "RSHNL", "0.20", "16", "0")
    assert run.group == "noise0.2_bits8-16" and run.member == member_name("0.2", 16) == "noise0.2_bits16.h5"
    assert run.config_hash == run_config_hash(cfg, "toy", "RSHNL", "0.2", 16, 0)  # same hash as before plans
    assert RunSpec.from_dict(run.to_dict()) == run
    tampered = run.to_dict()
    tampered["spec"] = {**tampered["spec"], "bits": 32}
    with pytest.raises(ValueError, match="config_hash does not match"):
        RunSpec.from_dict(tampered)
    with pytest.raises(KeyError, match="in no experiment of the config"):
        plan.run("toy", "RSHNL", "0.4", 16, 0)
    alone = training_plan(validate_config({**copy.deepcopy(cfg), "group_code_lengths": False}))
    assert alone.run("toy", "RSHNL", "0.2", 16, 0).group == "noise0.2_bits16"
    assert alone.run("toy", "RSHNL", "0.2", 16, 0).config_hash == run.config_hash  # grouping is not identity


def test_group_equals_runs_trained_alone_bit_for_bit(setup, tmp_path):
    cfg, feats, noise = setup
    plan = training_plan(cfg)
    for group in (g for g in plan.groups.values() if g.dataset == "toy"):
        out = tmp_path / "groups" / group.method / group.name
        paths = train_group(group.runs, training_options(cfg), feats, noise, out)
        assert sorted(p.name for p in out.iterdir()) == sorted(r.member for r in group.runs)
        assert not out.with_name(out.name + ".partial").exists()
        for run, path in zip(group.runs, paths):
            alone = tmp_path / "alone" / run.method / run.member
            train_run(cfg, feats, noise[run.noise], alone, "toy", run.method, run.noise, run.bits, 0)
            with h5py.File(path) as f, h5py.File(alone) as g:
                assert f.attrs["config_hash"] == g.attrs["config_hash"] == run.config_hash
                keys = [k for k in ("codes", "fused", "history") if k in f]
                for key in keys:
                    for name in f[key]:
                        np.testing.assert_array_equal(f[key][name][()], g[key][name][()],
                                                      err_msg=f"{run.name}: {key}/{name}")
    assert "fused" in h5py.File(tmp_path / "groups/NSRMH/noise0.2_bits8-16/noise0.2_bits8.h5")


def test_killed_group_keeps_finished_members(setup, tmp_path, caplog):
    """A member file left in <group>.partial under the same hash is kept; one of another config is retrained."""
    cfg, feats, noise = setup
    group = training_plan(cfg).group("toy", "CE", 0, "noise0.2_bits8-16")
    out = tmp_path / "g" / group.name
    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True)
    first = group.runs[0]
    train_run(cfg, feats, noise["0.2"], partial / first.member, "toy", "CE", "0.2", first.bits, 0)
    before = (partial / first.member).read_bytes()
    with caplog.at_level("INFO"):
        train_group(group.runs, training_options(cfg), feats, noise, out)
    assert f"{first.name} already trained" in caplog.text
    assert (out / first.member).read_bytes() == before
    assert f"{group.runs[1].name} already trained" not in caplog.text
    with pytest.raises(ValueError, match=r"no noisy-label file given for the noise rates \['0.2'\]"):
        train_group(group.runs, training_options(cfg), feats, {}, tmp_path / "h")
