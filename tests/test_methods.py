"""Method behaviour: registry, one step decreases the loss, codes, ablation flags, training determinism."""

import numpy as np
import pytest
import torch
from toy_data import toy_batch, toy_splits

from cmhash.methods import get_method_class, resolve_params
from cmhash.train import train_model

SMALL = {"hidden": [32], "epochs": 3, "batch_size": 32, "lr": 1e-2}
# The foundation methods; SEHA, NSRMH and the baselines are covered by tests/test_methods_extra.py.
CORE = ["ce_baseline", "rshnl"]


def _batch(n=12, dims=(10, 8), c=3, seed=0):
    return toy_batch(n, dims, c, seed)


def _make(impl, bits=16, **params):
    extra = {"center_hidden": [32]} if impl == "rshnl" else {}
    p = resolve_params(impl, {**SMALL, **extra, **params})
    torch.manual_seed(0)
    return get_method_class(impl)((10, 8), 3, bits, p)


@pytest.mark.parametrize("impl", CORE)
def test_one_step_decreases_loss(impl):
    model = _make(impl, warmup_epochs=1) if impl == "rshnl" else _make(impl)
    xs, y = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = model.training_step(xs, y, epoch=0).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    after = model.training_step(xs, y, epoch=0).loss
    assert after.item() < before.item()


@pytest.mark.parametrize("impl", CORE)
@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_configured_length(impl, bits):
    model = _make(impl, bits=bits)
    xs, _ = _batch()
    for h in model.encode(xs):
        assert h.shape == (12, bits)
        codes = torch.where(h >= 0, 1, -1)
        assert set(codes.unique().tolist()) <= {-1, 1}


def test_rshnl_warmup_then_self_paced_weights():
    model = _make("rshnl", warmup_epochs=2, gamma=200.0)
    xs, y = _batch()
    assert model.training_step(xs, y, epoch=1).weights is None
    w = model.training_step(xs, y, epoch=2).weights
    assert w is not None and torch.all((w > 0) & (w <= 1))


def test_rshnl_ablation_flags():
    xs, y = _batch()
    no_chl = _make("rshnl", use_contrastive=False).training_step(xs, y, epoch=10)
    assert "chl" not in no_chl.terms
    off = _make("rshnl", self_paced="off", warmup_epochs=0).training_step(xs, y, epoch=10)
    assert off.weights is None
    binary = _make("rshnl", self_paced="binary", warmup_epochs=0, gamma=200.0).training_step(xs, y, epoch=10)
    assert torch.equal(binary.weights, torch.ones(12))
    tiny_gamma = _make("rshnl", warmup_epochs=0, gamma=1e-3).training_step(xs, y, epoch=10)
    assert torch.equal(tiny_gamma.weights, torch.zeros(12))  # every pair above gamma is treated as noisy



def test_training_is_deterministic_on_cpu_and_seed_matters():
    tr, va, te = toy_splits()
    params = resolve_params("rshnl", {**SMALL, "center_hidden": [32], "warmup_epochs": 1})
    flags = np.zeros(90, bool)
    a = train_model("rshnl", params, 16, tr, va, te, flags, seed=3, device="cpu")
    b = train_model("rshnl", params, 16, tr, va, te, flags, seed=3, device="cpu")
    c = train_model("rshnl", params, 16, tr, va, te, flags, seed=4, device="cpu")
    for x, y in zip(a.codes, b.codes):
        np.testing.assert_array_equal(x, y)
    assert a.history["val_map_mean"] == b.history["val_map_mean"]
    assert any(not np.array_equal(x, y) for x, y in zip(a.codes, c.codes))


def test_nan_loss_stops_with_run_name():
    tr, va, te = toy_splits()
    tr.xs[0][0, 0] = np.nan
    params = resolve_params("ce_baseline", SMALL)
    with pytest.raises(FloatingPointError, match="myrun.*epoch 1/3"):
        train_model("ce_baseline", params, 8, tr, va, te, np.zeros(90, bool), 0, "cpu", run_name="myrun")
