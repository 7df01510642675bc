"""DHRL (methods/dhrl.py): label-ranking error, summed BCE, positions, the bit-wise hash head and the swapped
selection, each by hand and by the published formula (zzidlezz/DHRL @ 139c1c8: utils.py, layers.py,
DHRL_model.py, train_transformer.py); one step, code length, determinism."""

import math

import numpy as np
import pytest
import torch
from toy_data import toy_batch, toy_splits

from cmhash.losses.classification import label_ranking_error, summed_bce_with_logits
from cmhash.methods import get_method_class, resolve_params
from cmhash.methods.dhrl import sinusoidal_positions
from cmhash.train import train_model

SMALL = {"hidden": [32, 16], "text_hidden": [24, 16], "epochs": 2, "batch_size": 32, "lr": 1e-2, "dropout": 0.0}


def _make(bits=8, n_classes=3, **params):
    torch.manual_seed(0)
    return get_method_class("dhrl")((10, 8), n_classes, bits, resolve_params("dhrl", {**SMALL, **params}))


def _batch(n=12, c=3):
    return toy_batch(n, c=c, float_labels=True)


def _published_ranking(y, p, alpha, beta):
    # published (zzidlezz/DHRL, utils.py, Ranking): the per-sample loss it returns
    inverted_y = torch.add(torch.mul(y, -1.0), 1.0)
    select_examples = torch.mul(y.unsqueeze(1), inverted_y.unsqueeze(2))
    k = torch.sub(p.unsqueeze(2), p.unsqueeze(1))
    k = torch.mul(k, 2.0)
    k = torch.add(k, 1.0)
    k = torch.maximum(torch.tensor(0), k)
    errors = torch.square(k)
    errors = torch.mul(errors, select_examples)
    groups_miss = torch.sqrt(torch.sum(errors, 2) + 1e-10)
    loss_miss = torch.sum(groups_miss, 1)
    groups_extra = torch.sqrt(torch.sum(errors, 1) + 1e-10)
    loss_extra = torch.sum(groups_extra, dim=1)
    return torch.add(torch.mul(alpha, loss_miss), torch.mul(beta, loss_extra))


def test_ranking_error_hand_cases_and_published():
    y = torch.tensor([[1.0, 0.0]] * 3)
    p = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    expected = torch.tensor([1 + 1e-5, 2e-5, 3 + 1e-5])
    torch.testing.assert_close(label_ranking_error(p, y), expected, rtol=1e-5, atol=1e-7)
    multi = label_ranking_error(torch.zeros(1, 3), torch.tensor([[1.0, 1.0, 0.0]]))
    assert multi.item() == pytest.approx(0.2 * (math.sqrt(2) + 2e-5) + 0.8 * (2 + 1e-5), rel=1e-6)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(7, 5, generator=g)
    labels = (torch.rand(7, 5, generator=g) > 0.6).to(torch.float32)
    torch.testing.assert_close(label_ranking_error(logits, labels, 0.2, 0.8),
                               _published_ranking(labels, logits, 0.2, 0.8))


def test_summed_bce_hand_case_and_published_lrloss():
    assert summed_bce_with_logits(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(
        2 * math.log(2), rel=1e-6)
    g = torch.Generator().manual_seed(2)
    logits, targets = 4 * torch.randn(6, 5, generator=g), (torch.rand(6, 5, generator=g) > 0.5).float()
    # published (utils.py, LRLoss.forward) with pos_weight = 1
    pos_weight = torch.tensor([1.0])
    max_val = (-logits).clamp(min=0)
    log_weight = 1 + (pos_weight - 1) * targets
    loss = (1 - targets) * logits + log_weight * (((-max_val).exp() + (-logits - max_val).exp()).log() + max_val)
    torch.testing.assert_close(summed_bce_with_logits(logits, targets), loss.sum(axis=1))


def test_positions_equal_the_published_encoding():
    d, k = 16, 8
    # published (layers.py, PositionalEncoding.__init__), max_len cut to k
    pe = torch.zeros(5000, d)
    position = torch.arange(0, 5000, dtype=torch.float).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d, 2).float() * (-math.log(10000.0) / d))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    torch.testing.assert_close(sinusoidal_positions(k, d), pe[:k])


def test_hash_head_equals_the_published_grouped_convolutions():
    model = _make(bits=4)
    head = model.hash
    bits, d = 4, 16
    # published (DHRL_model.py, DHRL.hash): Conv2d(groups=nbit) -> BatchNorm2d -> Tanh -> Conv2d -> Tanh
    published = torch.nn.Sequential(
        torch.nn.Conv2d(bits * d, bits * d // 2, kernel_size=1, groups=bits), torch.nn.BatchNorm2d(bits * d // 2),
        torch.nn.Tanh(), torch.nn.Conv2d(bits * d // 2, bits, kernel_size=1, groups=bits), torch.nn.Tanh())
    with torch.no_grad():
        published[0].weight.copy_(head.first.weight[..., None])
        published[0].bias.copy_(head.first.bias)
        published[3].weight.copy_(head.second.weight[..., None])
        published[3].bias.copy_(head.second.bias)
    tokens = torch.randn(6, bits, d)
    expected = published(tokens.reshape(6, bits * d, 1, 1)).squeeze()
    torch.testing.assert_close(head(tokens), expected)
    # bit k depends on token k only
    moved = tokens.clone()
    moved[:, 2] += 1.0
    head.eval()
    diff = (head(moved) - head(tokens)).abs().amax(dim=0)
    assert diff[2] > 0 and diff[[0, 1, 3]].max() == 0


def test_training_loss_equals_the_published_swapped_selection():
    model = _make(keep_count=9)
    xs, y = _batch()
    torch.manual_seed(5)
    out = model.training_step(xs, y, 0)
    h_i, h_t = model.encode(xs)  # dropout 0; BatchNorm in training mode: same batch, same statistics
    pred_i, pred_t = model.classifier(h_i), model.classifier(h_t)
    with torch.no_grad():
        # published (train_transformer.py, train): argsort of the partner's ranking error, keep the first n
        e1, e2 = _published_ranking(y, pred_i, 0.2, 0.8), _published_ranking(y, pred_t, 0.2, 0.8)
        l1 = torch.nn.functional.binary_cross_entropy_with_logits(pred_i, y, reduction="none").sum(1)
        l2 = torch.nn.functional.binary_cross_entropy_with_logits(pred_t, y, reduction="none").sum(1)
        low_1, low_2 = torch.argsort(e1)[:9], torch.argsort(e2)[:9]
        published = torch.mean(l1[low_2]) + torch.mean(l2[low_1]) + torch.mean(torch.square(h_i - h_t))
    assert out.loss.item() == pytest.approx(published.item(), rel=1e-5)
    assert set(out.weights.unique().tolist()) <= {0.0, 0.5, 1.0}


def test_keep_count_rule():
    assert _make().n_keep(128) == 96 and _make().n_keep(100) == 75
    assert _make(keep_count=96).n_keep(100) == 96 and _make(keep_count=96).n_keep(128) == 96


def test_widths_must_share_the_token_width():
    with pytest.raises(ValueError, match="same width"):
        _make(text_hidden=[24, 8])


def test_one_step_decreases_the_loss():
    model = _make()
    xs, y = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = model.training_step(xs, y, 0).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    assert model.training_step(xs, y, 0).loss.item() < before.item()


@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_the_configured_length(bits):
    model = _make(bits=bits)
    model.eval()
    xs, _ = _batch()
    for h in model.encode(xs):
        assert h.shape == (12, bits) and h.abs().max() < 1


def test_two_epoch_toy_run_is_deterministic():
    tr, va, te = toy_splits()
    params = resolve_params("dhrl", {**SMALL, "dropout": 0.5})
    a = train_model("dhrl", params, 8, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    b = train_model("dhrl", params, 8, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    for x, z in zip(a.codes, b.codes):
        np.testing.assert_array_equal(x, z)
