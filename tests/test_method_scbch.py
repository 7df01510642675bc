"""SCBCH (AAAI'26, Plke/SCBCH @ cfcc18c): loss terms against hand cases and the published formulas, the
nearest-neighbour reliability weights, and the method in the shared loop."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from toy_data import toy_batch, toy_splits

from cmhash.losses.partial import jaccard_similarity
from cmhash.losses.selection import neighbour_label_reliability
from cmhash.losses.shifted_contrastive import (
    bidirectional_soft_contrastive,
    overlap_pull,
    soft_shifted_exponential,
)
from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.train import train_model

SMALL = {"hidden": [32], "text_hidden": [32], "epochs": 2, "batch_size": 32, "lr": 1e-3}


def _make(bits=16, **params):
    p = resolve_params("scbch", {**SMALL, **params})
    torch.manual_seed(0)
    return get_method_class("scbch")((10, 8), 3, bits, p)


def _batch(n=12, dims=(10, 8), c=3, seed=0):
    return toy_batch(n, dims, c, seed)


# Plke/SCBCH @ cfcc18c, train.py, class MultiLabelLoss, transcribed literally (self.* as arguments)
def published_label_similarity(label):
    intersection = torch.matmul(label, label.T)
    union = (torch.sum(label, dim=1, keepdim=True) + torch.sum(label, dim=1, keepdim=True).T - intersection)
    return intersection / (union + 1e-8)


def published_contrast_loss(u, v, label, margin=0.2, shift=1.0, tau=1.0):
    T = published_label_similarity(label)
    S = torch.matmul(u, v.T)
    diag_s = torch.diag(S).unsqueeze(1)
    mask_te = (S >= (diag_s - margin)).float().detach()
    cost_te = torch.where(mask_te.bool(), S, S - shift)
    diag_te = torch.diag(cost_te).clamp(min=0)
    cost_te = cost_te - torch.diag(torch.diag(cost_te)) + torch.diag(diag_te)
    mask_im = (S >= (diag_s.T - margin)).float().detach()
    cost_im = torch.where(mask_im.bool(), S, S - shift)
    diag_im = torch.diag(cost_im).clamp(min=0)
    cost_im = cost_im - torch.diag(torch.diag(cost_im)) + torch.diag(diag_im)
    loss_r = (tau * ((cost_te / tau * (1 - T)).exp()) + tau * ((cost_im / tau * (1 - T)).exp())).mean()
    positive_mask = ((T - torch.eye(T.shape[0], device=T.device, dtype=T.dtype)) > 0).float()
    separation_term = torch.mean(positive_mask * (shift - S).exp())
    return loss_r + separation_term - torch.diag(S).mean()


def published_quant_loss(u, v):
    return torch.norm(u - u.sign(), p=1) / u.numel() + torch.norm(v - v.sign(), p=1) / v.numel()


def published_classification_loss(p_u, p_v, label, weights):
    loss_cls_u = F.binary_cross_entropy(p_u, label, reduction='none').mean(dim=1)
    loss_cls_v = F.binary_cross_entropy(p_v, label, reduction='none').mean(dim=1)
    classification_loss = (loss_cls_u + loss_cls_v) / 2.0
    return (classification_loss * weights).mean() if weights is not None else classification_loss.mean()


def published_select_clean_sample(u_features, v_features, all_labels, k, gamma=0.5):
    """train.py ``select_clean_sample`` after the codes are gathered and sorted by index."""
    u_norm = torch.nn.functional.normalize(u_features, dim=1)
    u_sim_matrix = torch.mm(u_norm, u_norm.t()).fill_diagonal_(0)
    v_norm = torch.nn.functional.normalize(v_features, dim=1)
    v_sim_matrix = torch.mm(v_norm, v_norm.t()).fill_diagonal_(0)
    sim = (u_sim_matrix + v_sim_matrix) / 2
    top_sim, nearest_indices = torch.topk(sim, k=k, dim=1)
    top_sim_norm = top_sim / (top_sim.sum(dim=1, keepdim=True) + 1e-8)
    nearest_labels = all_labels[nearest_indices] * top_sim_norm.unsqueeze(-1)
    new_label = nearest_labels.sum(dim=1)
    label_cosine_sim = F.cosine_similarity(all_labels, new_label, dim=1)
    return (gamma + (1 - gamma) * label_cosine_sim).detach()


def _codes(n=10, bits=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    u = F.normalize(torch.tanh(torch.randn(n, bits, generator=g)), dim=1)
    v = F.normalize(u + 0.6 * torch.randn(n, bits, generator=g), dim=1)
    y = (torch.rand(n, 4, generator=g) < 0.4).float()
    y[:, 0] = torch.where(y.sum(dim=1) == 0, 1.0, y[:, 0])
    return u, v, y


# ---- hand cases ----

def test_soft_contrastive_hand_cases():
    eye = torch.eye(2)
    assert math.isclose(soft_shifted_exponential(eye, eye).item(), 2 * (2 + 2 / math.e) / 4, rel_tol=1e-6)
    assert overlap_pull(eye, eye).item() == 0.0
    assert math.isclose(bidirectional_soft_contrastive(eye, eye, eye).item(), 1 / math.e, rel_tol=1e-6)
    ones = torch.ones(2, 2)
    assert math.isclose(soft_shifted_exponential(eye, ones).item(), 2.0, rel_tol=1e-6)
    assert math.isclose(overlap_pull(eye, ones).item(), 2 * math.e / 4, rel_tol=1e-6)
    assert math.isclose(bidirectional_soft_contrastive(eye, eye, ones).item(), 1 + 2 * math.e / 4, rel_tol=1e-6)


def test_jaccard_single_label_is_the_same_class_indicator():
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 0]), 2)
    expected = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]])
    assert torch.allclose(jaccard_similarity(y), expected, atol=1e-7)


def test_reliability_hand_case():
    u = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    a, b = [1, 0], [0, 1]
    w = neighbour_label_reliability(u, u, torch.tensor([a, a, b]), k=1)
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 0.5]))
    w = neighbour_label_reliability(u, u, torch.tensor([a, b, b]), k=1)
    assert torch.allclose(w, torch.tensor([0.5, 0.5, 1.0]))


# ---- the published formulas ----

@pytest.mark.parametrize("margin,shift", [(0.2, 1.0), (0.15, 0.8), (0.3, 1.2)])
def test_bsch_equals_published_contrast_loss(margin, shift):
    u, v, y = _codes()
    ours = bidirectional_soft_contrastive(u, v, jaccard_similarity(y), margin, shift, 1.0)
    assert torch.allclose(ours, published_contrast_loss(u, v, y, margin, shift), atol=1e-6)


def test_reliability_equals_published_select_clean_sample():
    u, v, y = _codes(n=30)
    published = published_select_clean_sample(u, v, y, k=5)
    assert torch.allclose(neighbour_label_reliability(u, v, y, k=5), published, atol=1e-6)
    assert torch.allclose(neighbour_label_reliability(u, v, y, k=5, chunk=7), published, atol=1e-6)


@pytest.mark.parametrize("warm", [True, False])
def test_step_equals_published_multilabel_loss(warm):
    """train.py ``train`` + ``MultiLabelLoss.forward``: ``p_u = sigmoid(u @ W_u)``, ``p_v = sigmoid(v @ W_v)``,
    ``lambda_contrast * contrast + lambda_quant * quant + lambda_class * classification`` (alpha 0.7, beta 0.3)."""
    model = _make(warmup_epochs=1)
    xs, y = _batch()
    model.on_train_start(TrainContext(xs, y))
    epoch = 1 if warm else 0
    if warm:
        model.on_epoch_start(TrainContext(xs, y, epoch=epoch))
    params = list(model.parameters())
    out = model.training_step(xs, y, epoch=epoch, index=torch.arange(12))
    u, v = model.encode(xs)
    p_u = torch.sigmoid(torch.matmul(u, model.classifiers[0]))
    p_v = torch.sigmoid(torch.matmul(v, model.classifiers[1]))
    weights = published_select_clean_sample(u.detach(), v.detach(), y.float(), k=12) if warm else None
    label = y.float()
    published = (0.7 * published_contrast_loss(u, v, label) + 0.3 * published_quant_loss(u, v)
                 + 1.0 * published_classification_loss(p_u, p_v, label, weights))
    assert torch.allclose(out.loss, published, atol=1e-6)
    for a, b in zip(torch.autograd.grad(out.loss, params), torch.autograd.grad(published, params)):
        assert torch.allclose(a, b, atol=1e-6)
    assert (out.weights is not None) == warm


def test_alpha_beta_meaning():
    p = resolve_params("scbch", {})
    assert (p["alpha"], p["beta"]) == (0.7, 0.3)  # alpha: contrast, beta: quantisation (README command's values)
    model = _make(alpha=0.0, beta=1.0, cls_weight=0.0)
    xs, y = _batch()
    out = model.training_step(xs, y, epoch=0)
    assert torch.allclose(out.loss, out.terms["quant"])


# ---- the method ----

def test_reliability_only_after_warmup():
    model = _make(warmup_epochs=2, k=3)
    xs, y = _batch()
    model.on_train_start(TrainContext(xs, y))
    model.on_epoch_start(TrainContext(xs, y, epoch=1))
    assert torch.equal(model.reliability, torch.ones(12))
    assert model.training_step(xs, y, epoch=1, index=torch.arange(12)).weights is None
    model.on_epoch_start(TrainContext(xs, y, epoch=2))
    u, v = model.encode(xs)
    assert torch.allclose(model.reliability, published_select_clean_sample(u.detach(), v.detach(), y.float(), 3))
    w = model.training_step(xs, y, epoch=2, index=torch.arange(12)).weights
    assert torch.all((w >= 0) & (w <= 1))


def test_one_step_decreases_loss():
    model = _make()
    xs, y = _batch()
    model.on_train_start(TrainContext(xs, y))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = model.training_step(xs, y, epoch=0, index=torch.arange(12)).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    after = model.training_step(xs, y, epoch=0, index=torch.arange(12)).loss
    assert after.item() < before.item()


@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_configured_length(bits):
    model = _make(bits=bits)
    xs, _ = _batch()
    for h in model.encode(xs):
        assert h.shape == (12, bits)


def test_training_is_deterministic_on_cpu():
    tr, va, te = toy_splits()
    params = resolve_params("scbch", {**SMALL, "warmup_epochs": 1})
    flags = np.zeros(90, bool)
    a = train_model("scbch", params, 16, tr, va, te, flags, seed=3, device="cpu")
    b = train_model("scbch", params, 16, tr, va, te, flags, seed=3, device="cpu")
    for x, y in zip(a.codes, b.codes):
        assert np.array_equal(x, y)
    assert a.history["loss"] == b.history["loss"]
    assert not np.isnan(a.history["w_mean"][1])  # the reliability weights were used in epoch 1
