"""Runs trained stacked (cmhash.stacked) equal the same runs trained one by one (to float32 rounding: vmapped
reductions sum in another order), and a stack is itself bit-for-bit reproducible on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
from toy_data import toy_splits

from cmhash.methods import REGISTRY, resolve_params
from cmhash.stacked import stacking_problem, train_models_stacked
from cmhash.train import SplitData, train_model

STACKABLE = sorted(impl for impl in REGISTRY if stacking_problem(impl) is None)


def _noisy(labels: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """Symmetric noise: a fraction ``rate`` of rows gets a uniformly drawn class (test data only)."""
    rng = np.random.default_rng(seed)
    y = labels.argmax(1)
    flip = rng.random(len(y)) < rate
    y = np.where(flip, rng.integers(0, labels.shape[1], len(y)), y)
    return np.eye(labels.shape[1], dtype=np.uint8)[y]


def _params(impl: str) -> dict:
    extra = {"hidden": [32], "epochs": 4, "batch_size": 32, "lr": 1e-3}
    if impl == "rshnl":
        extra.update(center_hidden=[32], warmup_epochs=2, gamma=3.5)  # both phases: warm-up, then SPL weights
    return resolve_params(impl, extra)


def test_the_stackable_methods_are_the_expected_ones():
    assert STACKABLE == ["rshnl"]
    assert "uses_index" in stacking_problem("seha") or "hooks" in stacking_problem("seha")
    assert "does not declare" in stacking_problem("ce_baseline")
    assert "uses_index" in stacking_problem("dgcpn")  # its whole-set target is indexed by the batch rows


@pytest.mark.parametrize("impl", STACKABLE)
def test_stacked_runs_equal_separate_runs(impl):
    tr, va, te = toy_splits(sizes=(100, 30, 40), n_classes=4, seed=2)
    rates = [0.0, 0.4, 0.8]
    labels = [_noisy(tr.labels, r, seed=10 + i) for i, r in enumerate(rates)]
    flags = [(y != tr.labels).any(1) for y in labels]
    params = _params(impl)
    # a database split too, so that its encoding is covered
    db = SplitData([np.concatenate([a, b]) for a, b in zip(te.xs, va.xs)], np.concatenate([te.labels, va.labels]))

    def stacked_run():
        return train_models_stacked(impl, params, 16, tr.xs, labels, va, te, flags, seed=7, device="cpu",
                                    run_names=[f"noise{r}" for r in rates], database=db)

    stacked = stacked_run()
    assert len(stacked) == len(rates)
    for y, f, got in zip(labels, flags, stacked):
        ref = train_model(impl, params, 16, SplitData(tr.xs, y), va, te, f, seed=7, device="cpu", database=db)
        for a, b in zip(ref.codes + ref.database_codes, got.codes + got.database_codes):
            assert np.mean(a == b) > 0.98  # the same network to rounding: at most a few bits of 16 flip
        assert sorted(ref.history) == sorted(got.history)
        for key in ref.history:
            if key.startswith("loss"):
                np.testing.assert_allclose(ref.history[key], got.history[key], rtol=1e-4, err_msg=key)
            if key.startswith("val_map"):
                np.testing.assert_allclose(ref.history[key], got.history[key], atol=0.02, err_msg=key)
        assert ref.weight_hist_noisy.sum() == got.weight_hist_noisy.sum()
        assert got.extra["stacked_runs"] == len(rates)
    # the members really differ (different labels): not one run copied three times
    assert not np.array_equal(stacked[0].codes[0], stacked[2].codes[0])
    # and the stack is reproducible bit for bit
    again = stacked_run()
    for a, b in zip(stacked, again):
        for x, y in zip(a.codes + a.database_codes, b.codes + b.database_codes):
            np.testing.assert_array_equal(x, y)
        for key in a.history:
            np.testing.assert_array_equal(a.history[key], b.history[key])


def test_stacked_resume_from_checkpoint_is_bit_identical(tmp_path, monkeypatch):
    tr, va, te = toy_splits(sizes=(100, 30, 40), n_classes=4, seed=2)
    labels = [_noisy(tr.labels, r, seed=i) for i, r in enumerate([0.2, 0.6])]
    flags = [np.zeros(100, bool)] * 2
    params = {**_params("rshnl"), "epochs": 5}
    ref = train_models_stacked("rshnl", params, 16, tr.xs, labels, va, te, flags, seed=1, device="cpu")
    ckpt = tmp_path / "stack.pt"
    calls = {"n": 0}
    import cmhash.train as train_module  # the shared epoch loop (run_epochs) scores validation

    real = train_module.cross_modal_maps

    def dies_in_epoch_4(*args, **kwargs):  # validation of member 0 in epoch 4: after the epoch-2 checkpoint
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "cross_modal_maps", dies_in_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        train_models_stacked("rshnl", params, 16, tr.xs, labels, va, te, flags, seed=1, device="cpu",
                             checkpoint_path=ckpt, checkpoint_every=2, checkpoint_key="k")
    monkeypatch.setattr(train_module, "cross_modal_maps", real)
    assert ckpt.exists()
    resumed = train_models_stacked("rshnl", params, 16, tr.xs, labels, va, te, flags, seed=1, device="cpu",
                                   checkpoint_path=ckpt, checkpoint_every=2, checkpoint_key="k")
    for a, b in zip(ref, resumed):
        np.testing.assert_array_equal(a.codes[0], b.codes[0])
        np.testing.assert_array_equal(a.history["loss"], b.history["loss"])


def test_unstackable_method_and_mismatched_runs_are_refused():
    tr, va, te = toy_splits()
    with pytest.raises(ValueError, match="cannot train runs of 'seha' stacked.*stack_noise_rates: false"):
        train_models_stacked("seha", resolve_params("seha", {}), 8, tr.xs, [tr.labels], va, te,
                             [np.zeros(90, bool)], seed=0, device="cpu")
    with pytest.raises(ValueError, match="one shape"):
        train_models_stacked("rshnl", _params("rshnl"), 8, tr.xs, [tr.labels, tr.labels[:50]], va, te,
                             [np.zeros(90, bool)] * 2, seed=0, device="cpu")
    with pytest.raises(ValueError, match="one entry per run"):
        train_models_stacked("rshnl", _params("rshnl"), 8, tr.xs, [tr.labels], va, te,
                             [np.zeros(90, bool)] * 2, seed=0, device="cpu")


@pytest.mark.workflow
def test_workflow_trains_noise_stacks_when_asked(tmp_path):
    """stack_noise_rates: RSHNL's two noise rates train in one stacked job (one training group), CE's alone;
    the members record their stack, and the table equals the one trained without stacking to rounding (CPU;
    the stacked loop rounds differently, tests above)."""
    import copy

    import h5py
    import pandas as pd
    from test_workflow import TINY, snakemake

    cfg = copy.deepcopy(TINY)
    cfg["stack_noise_rates"] = True
    cfg["experiments"]["other"]["methods"] = ["RSHNL", "CE"]  # RSHNL at 16 bits, noise 0.4 only: a stack of one
    stacked_dir, plain_dir = tmp_path / "stacked", tmp_path / "plain"
    stacked_dir.mkdir()
    plain_dir.mkdir()
    proc = snakemake(stacked_dir, "wf", "other", config=cfg)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    plain = copy.deepcopy(cfg)
    plain["stack_noise_rates"] = False
    proc = snakemake(plain_dir, "wf", config=plain)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    groups = sorted(p.relative_to(stacked_dir / "results/train/toy/sym/RSHNL").as_posix()
                    for p in (stacked_dir / "results/train/toy/sym/RSHNL").glob("*/*"))
    assert groups == ["seed0/noise0.2-0.6_bits8", "seed0/noise0.4_bits16"]  # one group per stack
    stacked = stacked_dir / "results/train/toy/sym/RSHNL/seed0/noise0.2-0.6_bits8/noise0.6_bits8.h5"
    alone = plain_dir / "results/train/toy/sym/RSHNL/seed0/noise0.6_bits8/noise0.6_bits8.h5"
    with h5py.File(stacked) as f, h5py.File(alone) as g:
        assert list(f.attrs["noise_stack"]) == ["0.2", "0.6"]
        assert "noise_stack" not in g.attrs
        assert f.attrs["config_hash"] != g.attrs["config_hash"]  # stacked or not is part of a run's identity
    with h5py.File(stacked_dir / "results/train/toy/sym/CE/seed0/noise0.6_bits8/noise0.6_bits8.h5") as f:
        assert "noise_stack" not in f.attrs  # CE cannot be stacked: trained alone
    with h5py.File(stacked_dir / "results/runs/toy/sym/RSHNL/seed0/noise0.2-0.6_bits8/noise0.6_bits8.h5") as f:
        assert f.attrs["config_hash"] == h5py.File(stacked).attrs["config_hash"]
    a = pd.read_csv(stacked_dir / "results/tables/wf.csv").sort_values(["task", "method", "noise"])
    b = pd.read_csv(plain_dir / "results/tables/wf.csv").sort_values(["task", "method", "noise"])
    assert (abs(a["map"].to_numpy() - b["map"].to_numpy()) < 0.02).all()
    # turning stacking off retrains the stacked runs in groups of their own rather than reusing the stack's files
    proc = snakemake(stacked_dir, "wf", "-n", config=plain)
    assert proc.returncode == 0
    assert "RSHNL/seed0/noise0.2_bits8" in proc.stdout and "RSHNL/seed0/noise0.6_bits8" in proc.stdout
