"""RCH / NRCH (ACM MM'24, LonganWANG-cs/NRCH @ b190e97): loss terms against hand cases and the published formulas,
the DNS selection, and the method in the shared loop."""

import math

import numpy as np
import pytest
import torch
from toy_data import toy_batch, toy_splits

from cmhash.losses.proxy import proxy_regression_errors, worst_positive_error
from cmhash.losses.quantization import magnitude_quantization_per_sample
from cmhash.losses.selection import gmm_two_components_kmeans_init, optimal_two_means_1d
from cmhash.losses.shifted_contrastive import rch_contrastive_per_sample, shifted_margin_costs
from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.train import train_model

SMALL = {"hidden": [32], "text_hidden": [32], "epochs": 2, "batch_size": 32, "lr": 1e-3}


def _make(bits=16, **params):
    p = resolve_params("rch", {**SMALL, **params})
    torch.manual_seed(0)
    return get_method_class("rch")((10, 8), 3, bits, p)


def _batch(n=12, dims=(10, 8), c=3, seed=0):
    return toy_batch(n, dims, c, seed)


def published_robust_loss(u, v, y, lam, shift=1.0, margin=0.2, tau=1.0):
    """NRCH.py ``Robust_Loss.forward`` (LonganWANG-cs/NRCH @ b190e97), transcribed literally (CPU tensors instead of
    ``torch.cuda.FloatTensor`` in ``calc_neighbor``)."""
    u = u.tanh()
    v = v.tanh()
    T = (y.float().matmul(y.float().transpose(0, 1)) > 0).float()
    T.diagonal().fill_(0)
    S = u.mm(v.t())
    d = S.diag().view(v.size(0), 1)
    d1 = d.expand_as(S)
    d2 = d.t().expand_as(S)
    mask_te = (S >= (d1 - margin)).float().detach()
    cost_te = S * mask_te + (1. - mask_te) * (S - shift)
    cost_te_max = torch.zeros_like(cost_te)
    cost_te_max.copy_(cost_te)
    identity_matrix_te = torch.eye(cost_te_max.size(0), cost_te_max.size(1), dtype=cost_te_max.dtype)
    diagonal_te = torch.diag(cost_te_max).clamp(min=0)
    cost_te_max = cost_te_max * (1 - identity_matrix_te) + torch.diag_embed(diagonal_te)
    mask_im = (S >= (d2 - margin)).float().detach()
    cost_im = S * mask_im + (1. - mask_im) * (S - shift)
    loss_r = ((-cost_te.diag() + tau * ((cost_te_max / tau * (1 - T))).exp().sum(1).log() + margin)
              + (-cost_im.diag() + tau * ((cost_te_max / tau * (1 - T))).exp().sum(1).log() + margin))  # noqa: UP034  (literal)
    Q_loss = (u.abs() - 1 / np.sqrt(u.shape[1])).pow(2).mean(axis=1) + (v.abs() - 1 / np.sqrt(u.shape[1])).pow(2).mean(axis=1)
    return torch.mean(lam * loss_r + (1 - lam) * Q_loss)


# ---- loss terms: hand cases ----

def test_shifted_margin_costs_hand_case():
    eye = torch.eye(2)
    expected = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    assert torch.equal(shifted_margin_costs(eye, 0.2, 1.0, "row"), expected)
    assert torch.equal(shifted_margin_costs(eye, 0.2, 1.0, "column"), expected)
    # (1, 0): 0 >= S_11 - 0.2 = -0.5 keeps 0 in the row direction, 0 < S_00 - 0.2 = 0.3 is shifted to -1 in the
    # column direction; the negative diagonal S_11 becomes 0
    s = torch.tensor([[0.5, 0.4], [0.0, -0.3]])
    assert torch.allclose(shifted_margin_costs(s, 0.2, 1.0, "row"), torch.tensor([[0.5, 0.4], [0.0, 0.0]]))
    assert torch.allclose(shifted_margin_costs(s, 0.2, 1.0, "column"), torch.tensor([[0.5, 0.4], [-1.0, 0.0]]))


def test_rch_contrastive_hand_case():
    eye = torch.eye(2)
    r = rch_contrastive_per_sample(eye, eye, torch.zeros(2, 2), 0.2, 1.0, 1.0)
    assert torch.allclose(r, torch.full((2,), 2 * (math.log(math.e + 1 / math.e) - 0.8)))
    assert abs(r[0].item() - 0.653856) < 1e-5
    same = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # the two pairs share a label: exponent * 0 -> e^0
    r = rch_contrastive_per_sample(eye, eye, same, 0.2, 1.0, 1.0)
    assert torch.allclose(r, torch.full((2,), 2 * (math.log(math.e + 1) - 0.8)))
    # symmetric S: both directions agree with the code form
    assert torch.allclose(rch_contrastive_per_sample(eye, eye, same, directions="bidirectional"), r)


def test_magnitude_quantization_hand_case():
    q = magnitude_quantization_per_sample(torch.tensor([[0.5, -0.5, 0.5, -0.5], [1.0, 0.0, 0.0, 0.0]]))
    assert torch.allclose(q, torch.tensor([0.0, 0.25]))


def test_proxy_errors_hand_case():
    w = torch.tensor([[math.atanh(0.5), 0.0], [0.0, 0.0]])
    e = proxy_regression_errors(torch.tensor([[1.0, 0.0]]), w, torch.tensor([[1, 0]]))
    assert torch.allclose(e, torch.tensor([[0.25, 1.0]]))
    assert torch.allclose(worst_positive_error(e, torch.tensor([[1, 0]])), torch.tensor([0.25]))
    assert torch.allclose(worst_positive_error(e, torch.tensor([[1, 1]])), torch.tensor([1.0]))


def test_two_means_and_gmm_hand_cases():
    assert optimal_two_means_1d(np.array([0.0, 0.1, 0.9, 1.0])).tolist() == [False, False, True, True]
    assert optimal_two_means_1d(np.array([1.0, 0.9, 0.1, 0.0])).tolist() == [True, True, False, False]
    assert not optimal_two_means_1d(np.full(5, 0.3)).any()
    post, mu, var, pi = gmm_two_components_kmeans_init(np.array([0.0, 0.0, 1.0, 1.0]))
    assert np.allclose(mu, [0, 1]) and np.allclose(var, [5e-4, 5e-4]) and np.allclose(pi, [0.5, 0.5])
    assert np.allclose(post[:, 0], [1, 1, 0, 0])


# ---- loss terms: the published formulas ----

@pytest.mark.parametrize("lam", [0.6, 0.2])
def test_rch_objective_equals_published_robust_loss(lam):
    g = torch.Generator().manual_seed(1)
    z1 = torch.nn.functional.normalize(torch.randn(9, 8, generator=g), dim=1)
    z2 = torch.nn.functional.normalize(z1 + 0.5 * torch.randn(9, 8, generator=g), dim=1)
    y = (torch.rand(9, 4, generator=g) < 0.4).long()
    y[0] = torch.tensor([1, 0, 0, 0])
    u, v = torch.tanh(z1), torch.tanh(z2)
    t = (y.float() @ y.float().T > 0).float()
    t.fill_diagonal_(0)
    ours = (lam * rch_contrastive_per_sample(u, v, t, 0.2, 1.0, 1.0)
            + (1 - lam) * (magnitude_quantization_per_sample(u) + magnitude_quantization_per_sample(v))).mean()
    assert torch.allclose(ours, published_robust_loss(z1, z2, y, lam), atol=1e-6)


def test_rch_bidirectional_uses_the_column_logsum():
    g = torch.Generator().manual_seed(2)
    u, v = torch.randn(6, 5, generator=g) * 0.5, torch.randn(6, 5, generator=g) * 0.5
    t = torch.zeros(6, 6)
    s = u @ v.T
    d = s.diag().view(-1, 1)
    mask_im = (s >= (d.t().expand_as(s) - 0.2)).float()
    cost_im = s * mask_im + (1 - mask_im) * (s - 1.0)
    cost_im_max = cost_im * (1 - torch.eye(6)) + torch.diag_embed(cost_im.diag().clamp(min=0))
    r_im = -s.diag() + cost_im_max.exp().sum(0).log() + 0.2
    r_te = rch_contrastive_per_sample(u, v, t, directions="code") / 2
    assert torch.allclose(rch_contrastive_per_sample(u, v, t, directions="bidirectional"), r_te + r_im, atol=1e-6)


def test_dns_score_equals_published_get_loss():
    """NRCH.py ``get_loss``: ``loss_ = (label_ - u @ W.tanh().t())**2 + (label_ - v @ W.tanh().t())**2``,
    ``loss = (loss_ * label).max(1)[0]`` (LonganWANG-cs/NRCH @ b190e97)."""
    model = _make()
    xs, y = _batch()
    model.on_train_start(TrainContext(xs, y))
    u, v = model.encode(xs)
    W = model.proxies.detach()
    label_ = (y - 0.5) * 2
    loss_ = (label_ - u @ W.tanh().t()) ** 2
    loss_ += (label_ - v @ W.tanh().t()) ** 2
    published = (loss_ * y).max(1)[0]
    assert torch.allclose(model.dns_scores(xs, y, chunk=5), published, atol=1e-6)


def test_gmm_matches_scikit_learn_on_separated_scores():
    sklearn_mixture = pytest.importorskip("sklearn.mixture")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.2, 0.05, 300), rng.normal(0.7, 0.1, 100)])
    x = (x - x.min() + 1e-8) / (x.max() - x.min() + 1e-8)
    # NRCH.py get_loss: GaussianMixture(n_components=2,max_iter=10,tol=5e-1,reg_covar=5e-4), posterior of the
    # smaller-mean component
    gmm = sklearn_mixture.GaussianMixture(n_components=2, max_iter=10, tol=5e-1, reg_covar=5e-4, random_state=0)
    gmm.fit(x.reshape(-1, 1))
    published = gmm.predict_proba(x.reshape(-1, 1))[:, gmm.means_.argmin()]
    post, mu, _, _ = gmm_two_components_kmeans_init(x, max_iter=10, tol=0.5, reg_covar=5e-4)
    assert np.allclose(post[:, np.argmin(mu)], published, atol=1e-9)
    assert np.allclose(np.sort(mu), np.sort(gmm.means_.ravel()))


# ---- the method ----

def test_selection_keeps_everyone_before_the_selection_epoch_then_thresholds():
    model = _make(select_from_epoch=3, threshold=0.3)
    xs, y = _batch(n=30)
    model.on_train_start(TrainContext(xs, y))
    model.on_epoch_start(TrainContext(xs, y, epoch=2))
    assert model.selected.all()
    model.on_epoch_start(TrainContext(xs, y, epoch=3))
    scores = model.dns_scores(xs, y).double().numpy()
    normed = (scores - scores.min() + 1e-8) / (scores.max() - scores.min() + 1e-8)
    post, mu, _, _ = gmm_two_components_kmeans_init(normed, 10, 0.5, 5e-4)
    assert torch.equal(model.selected, torch.as_tensor(post[:, np.argmin(mu)] >= 0.3))


def test_step_uses_only_selected_rows_and_skips_an_empty_batch():
    model = _make()
    xs, y = _batch()
    model.on_train_start(TrainContext(xs, y))
    index = torch.arange(12)
    model.selected[:] = False
    out = model.training_step(xs, y, epoch=0, index=index)
    assert not out.loss.requires_grad and out.loss.item() == 0.0
    assert torch.equal(out.weights, torch.zeros(12))
    model.selected[:6] = True
    out = model.training_step(xs, y, epoch=0, index=index)
    sub = model.training_step([x[:6] for x in xs], y[:6], epoch=0, index=torch.arange(6))
    assert torch.allclose(out.loss, sub.loss)
    assert torch.equal(out.weights, (torch.arange(12) < 6).float())


def test_step_equals_published_training_loss_and_gradients():
    """NRCH.py ``train``: ``loss = criterion(u, v, label, config)`` plus ``((label_ - u.detach() @ W.tanh().t())**2
    + (label_ - v.detach() @ W.tanh().t())**2).mean()`` (LonganWANG-cs/NRCH @ b190e97)."""
    model = _make()
    xs, y = _batch()
    model.on_train_start(TrainContext(xs, y))
    params = list(model.parameters())
    out = model.training_step(xs, y, epoch=0, index=torch.arange(12))
    ours = torch.autograd.grad(out.loss, params)
    u, v = model.encode(xs)
    W = model.proxies
    label_ = (y - 0.5) * 2
    loss_ = (label_ - u.detach() @ W.tanh().t()) ** 2
    loss_ += (label_ - v.detach() @ W.tanh().t()) ** 2
    published = published_robust_loss(u, v, y.float(), 0.6) + loss_.mean()
    assert torch.allclose(out.loss, published, atol=1e-6)
    for a, b in zip(ours, torch.autograd.grad(published, params)):
        assert torch.allclose(a, b, atol=1e-6)


def test_rmsprop_stage():
    (stage,) = _make().stages()
    assert stage.optimizers["main"].kind == "rmsprop"


def test_one_step_decreases_loss():
    model = _make()
    xs, y = _batch()
    model.on_train_start(TrainContext(xs, y))
    index = torch.arange(12)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = model.training_step(xs, y, epoch=0, index=index).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    after = model.training_step(xs, y, epoch=0, index=index).loss
    assert after.item() < before.item()


@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_configured_length(bits):
    model = _make(bits=bits)
    xs, _ = _batch()
    for h in model.encode(xs):
        assert h.shape == (12, bits)


def test_bad_directions_is_an_error():
    with pytest.raises(ValueError, match="directions"):
        _make(directions="both")


def test_training_is_deterministic_on_cpu():
    tr, va, te = toy_splits()
    params = resolve_params("rch", {**SMALL, "select_from_epoch": 1})
    flags = np.zeros(90, bool)
    a = train_model("rch", params, 16, tr, va, te, flags, seed=3, device="cpu")
    b = train_model("rch", params, 16, tr, va, te, flags, seed=3, device="cpu")
    for x, y in zip(a.codes, b.codes):
        assert np.array_equal(x, y)
    assert a.history["loss"] == b.history["loss"]
    assert not np.isnan(a.history["w_mean"][1])  # the selection ran in epoch 1
