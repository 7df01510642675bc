"""UCCH (methods/ucch.py): its two loss terms by hand and against the official formulas (penghu-cs/UCCH @ 0c20e62),
the memory bank (initialisation, both update forms, warm-up keys), one step decreasing the loss, code length,
the optimiser stage, and determinism / label independence of a 2-epoch toy run."""

import math

import numpy as np
import pytest
import torch
from toy_data import toy_splits

from cmhash.losses.contrastive import cross_modal_ranking_loss, hash_key_contrast_loss
from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.train import SplitData, train_model

E = math.e


def _model(bits=8, n=12, **extra):
    params = resolve_params("ucch", {"hidden": [16], "text_hidden": [16], "batch_size": 4, "n_negatives": 5,
                                     "epochs": 2, "lr": 1e-2, **extra})
    torch.manual_seed(0)
    model = get_method_class("ucch")((10, 8), 3, bits, params)
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(n, 10, generator=g), torch.randn(n, 8, generator=g)]
    y = torch.nn.functional.one_hot(torch.arange(n) % 3, 3).float()
    model.on_train_start(TrainContext(xs, y))
    return model, xs, y


def _unit(n, d, seed):
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


# ---------------------------------------------------------------- L_c: contrastive hashing loss
def test_hash_key_contrast_hand_case():
    h = torch.full((1, 4), 0.5)
    keys = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, -1.0, -1.0]])
    loss = hash_key_contrast_loss(h, keys, torch.tensor([[0, 1]]), tau=1.0)
    assert loss.item() == pytest.approx(math.log(1 + 1 / E), rel=1e-6)


def test_hash_key_contrast_equals_published_nce():
    b, n, k, bits, t = 5, 9, 7, 16, 0.9
    h = _unit(b, bits, 0)
    memory = torch.nn.functional.normalize(torch.randn(n, bits, generator=torch.Generator().manual_seed(1)), dim=1)
    y = torch.tensor([3, 0, 8, 5, 1])
    idx = torch.randint(0, n, (b, k + 1), generator=torch.Generator().manual_seed(2))
    idx[:, 0] = y
    ours = hash_key_contrast_loss(h, torch.sign(memory), idx, tau=t)
    # penghu-cs/UCCH NCE/NCEAverage.py NCEAverage.forward (params[1] = T * sqrt(inputSize)) and
    # NCE/NCECriterion.py NCESoftmaxLoss.forward, written literally:
    weight = torch.index_select(memory, 0, idx.view(-1)).detach().view(b, k + 1, bits)
    weight = weight.sign_()
    out_l = torch.bmm(weight, h.view(b, bits, 1))
    out_l = torch.div(out_l, t * math.sqrt(bits)).contiguous()
    x = out_l.squeeze(2).softmax(1)
    published = -x[:, 0].log().mean()
    assert ours.item() == pytest.approx(published.item(), rel=1e-5)


# ---------------------------------------------------------------- L_r: cross-modal ranking loss
def test_ranking_loss_hand_cases():
    eye = torch.eye(2)
    assert cross_modal_ranking_loss(eye, eye, 0.2, 1.0).item() == pytest.approx(2 * (0.2 + math.log(1 + E**-2)))
    # M = [[1, .6], [0, .8]], margin 0.5: image query 0 keeps text 1 (1 - .6 <= .5), image query 1 shifts
    # text 0; text query 0 (column 0: M_00 = 1) shifts image 1 (M_10 = 0); text query 1 (M_11 = .8) keeps
    # image 0 (M_01 = .6)
    hx, hy = torch.eye(2), torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    m, xi = 0.5, 1.0
    rows = (m + math.log(E + E**0.6) - 1) + (m + math.log(E ** (0 - xi) + E**0.8) - 0.8)
    cols = (m + math.log(E + E ** (0 - xi)) - 1) + (m + math.log(E**0.6 + E**0.8) - 0.8)
    assert cross_modal_ranking_loss(hx, hy, m, xi).item() == pytest.approx(rows / 2 + cols / 2, rel=1e-6)


@pytest.mark.parametrize("margin,shift", [(0.2, 1.0), (0.2, 0.1), (0.9, 0.5)])
def test_ranking_loss_equals_published_contrastive_loss(margin, shift):
    im, s = _unit(6, 8, 3), _unit(6, 8, 4)
    tau = 1.0
    # penghu-cs/UCCH src/utils.py ContrastiveLoss.forward (s given), written literally:
    scores = im.mm(s.t())
    diagonal = scores.diag().view(im.size(0), 1)
    d1 = diagonal.expand_as(scores)
    d2 = diagonal.t().expand_as(scores)
    mask_s = (scores >= (d1 - margin)).float().detach()
    cost_s = scores * mask_s + (1.0 - mask_s) * (scores - shift)
    mask_im = (scores >= (d2 - margin)).float().detach()
    cost_im = scores * mask_im + (1.0 - mask_im) * (scores - shift)
    published = (-cost_s.diag() + tau * (cost_s / tau).exp().sum(1).log() + margin).mean() + (
        -cost_im.diag() + tau * (cost_im / tau).exp().sum(0).log() + margin).mean()
    ours = cross_modal_ranking_loss(im, s, margin, shift, kappa=tau)
    assert ours.item() == pytest.approx(published.item(), rel=1e-6)


# ---------------------------------------------------------------- memory bank
def test_bank_initialisation_is_the_codes_biased_sign():
    model, _, _ = _model(bits=32, n=400)
    mem = model.memory
    assert mem.shape == (400, 32)
    torch.testing.assert_close(mem.abs(), torch.full_like(mem, 1 / math.sqrt(32)))
    # sgn(2 s z - s) = sgn(z - 1/2): P(-1) = Phi(1/2) = 0.691
    assert (mem < 0).float().mean().item() == pytest.approx(0.691, abs=0.02)


@pytest.mark.parametrize("form", ["paper", "normalised"])
def test_bank_update_forms(form):
    model, xs, y = _model(bank_update=form)
    idx = torch.tensor([2, 7, 4])
    before = model.memory.clone()
    with torch.no_grad():
        hx, hy = model.encode([x[idx] for x in xs])
    model.training_step([x[idx] for x in xs], y[idx], epoch=1, index=idx)  # epoch 1: after the warm-up epoch
    delta = model.params["momentum"]
    if form == "paper":  # Eq. 5
        expected = delta * before[idx] + (1 - delta) * (hx + hy) / 2
    else:  # penghu-cs/UCCH NCE/NCEAverage.py NCEAverage.forward, "update memory", written literally:
        l = (hx + hy) / 2.0
        l = l.div(l.norm(dim=1, keepdim=True))
        l_pos = torch.index_select(before, 0, idx.view(-1))
        l_pos.mul_(delta)
        l_pos.add_(torch.mul(l, 1 - delta))
        expected = l_pos.div_(l_pos.norm(dim=1, keepdim=True))
    torch.testing.assert_close(model.memory[idx], expected)
    rest = torch.ones(12, dtype=torch.bool)
    rest[idx] = False
    torch.testing.assert_close(model.memory[rest], before[rest])


def test_warmup_uses_in_batch_keys_and_overwrites_the_bank():
    model, xs, y = _model()
    idx = torch.tensor([0, 5, 9, 11])
    batch = [x[idx] for x in xs]
    with torch.no_grad():
        hx, hy = model.encode(batch)
    out = model.training_step(batch, y[idx], epoch=0, index=idx)
    b, bits, t = 4, model.bits, model.params["tau"]
    # penghu-cs/UCCH NCE/NCEAverage.py NCEAverage.forward, momentum <= 0 branch, written literally:
    weight = (hx + hy) / 2.0
    inx = torch.stack([torch.arange(b)] * b)
    inx = torch.cat([torch.arange(b).view([-1, 1]), inx[torch.eye(b) == 0].view([b, -1])], dim=1).view([-1])
    weight = weight[inx].view([b, b, -1]).sign_()
    nce = 0.0
    for h in (hx, hy):
        logits = torch.bmm(weight, h.view(b, bits, 1)).div(t * math.sqrt(bits)).squeeze(2)
        nce = nce + -logits.softmax(1)[:, 0].log().mean()
    assert out.terms["contrast"].item() == pytest.approx(nce.item(), rel=1e-5)
    torch.testing.assert_close(model.memory[idx], (hx + hy) / 2)  # momentum 0 in warm-up (paper form)


# ---------------------------------------------------------------- behaviour
def test_one_step_decreases_the_loss():
    model, xs, y = _model(bits=16)
    idx = torch.arange(12)
    model.training_step(xs, y, epoch=0, index=idx)  # warm-up pass fills the bank
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    bank = model.memory.clone()
    torch.manual_seed(5)
    before = model.training_step(xs, y, epoch=1, index=idx).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    model.memory.copy_(bank)  # same keys, same negatives: only the networks changed
    torch.manual_seed(5)
    after = model.training_step(xs, y, epoch=1, index=idx).loss
    assert after.item() < before.item()


@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_configured_length(bits):
    model, xs, _ = _model(bits=bits)
    for h in model.encode(xs):
        assert h.shape == (12, bits)
        torch.testing.assert_close(h.norm(dim=1), torch.ones(12))


def test_network_depths_and_stage():
    model, _, _ = _model(hidden=[16, 16], text_hidden=[16])
    linears = [sum(isinstance(m, torch.nn.Linear) for m in enc.modules()) for enc in model.encoders]
    assert linears == [3, 2]  # image d-16-16-L, text d-16-L (official depths 3 and 2)
    assert all(enc.fc[-1].bias is not None for enc in model.encoders)
    (stage,) = model.stages()
    assert stage.clip_grad_norm == 1.0
    assert stage.lr_schedule == "multistep" and stage.schedule_options["milestones"] == [30, 60, 90, 120]
    assert stage.optimizers["main"].kind == "adam"


def test_unknown_bank_update_is_rejected():
    with pytest.raises(ValueError, match="bank_update"):
        _model(bank_update="momentum")


def test_two_epoch_toy_run_is_deterministic_and_label_free():
    tr, va, te = toy_splits()
    params = resolve_params("ucch", {"hidden": [32], "text_hidden": [32], "batch_size": 32, "n_negatives": 64,
                                     "epochs": 2, "lr": 1e-3})
    a = train_model("ucch", params, 16, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    b = train_model("ucch", params, 16, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    other = SplitData(tr.xs, np.roll(tr.labels, 7, axis=0))
    c = train_model("ucch", params, 16, other, va, te, np.ones(90, bool), seed=3, device="cpu")
    for x, y, z in zip(a.codes, b.codes, c.codes):
        assert x.shape == (30, 16)
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
