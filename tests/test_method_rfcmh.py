"""RFCMH (ICML'26): loss terms on hand-checked cases and against the published formulas of XinchengSun/RFCMH @ 6e79a90
(written literally below), the fixed class matrix, the declared stage (clipping, LR schedule), one step, codes,
ablation flags and CPU determinism of a short toy run."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from toy_data import toy_batch, toy_splits

from cmhash.losses import contrastive, fuzzy
from cmhash.methods import get_method_class, resolve_params
from cmhash.train import build_optimizers, build_schedulers, train_model

REFERENCE = {"form": "reference", "delta": 0.0, "inter_tau": 1.0, "member_tau": 0.5, "member_gamma": 2.0,
             "weight_decay": 0.0}
SMALL = {"hidden": [32], "epochs": 2, "batch_size": 32, "lr": 1e-2, "warmup_epochs": 1}


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


# --- the published formulas, literally (XinchengSun/RFCMH @ 6e79a90) -------------------------------------------

def pub_membership(h, W, member_tau=0.5, member_gamma=2.0):
    # model.py, IDCM_NN.membership (with _W_col_norm)
    proj = h @ F.normalize(W, p=2, dim=0)
    membership = torch.sigmoid(proj / max(member_tau, 1e-6))
    if member_gamma != 1.0:
        membership = membership.pow(member_gamma)
    return membership


def pub_init_w_spread(w, refine_steps=50, eta=0.05):
    # model.py, IDCM_NN._init_w_spread after its randn + normalize
    for _ in range(refine_steps):
        gram = w.t() @ w
        gram.fill_diagonal_(0.0)
        w = F.normalize(w - eta * (w @ gram), p=2, dim=0)
    return w


def pub_normalize_rows(x, eps=1e-12):
    # losses.py, FARLoss._normalize_rows
    return x / (x.sum(dim=1, keepdim=True) + eps)


def pub_credibility(predict, labels, eps=1e-6, comp_topk=4):
    # losses.py, get_train_category_credibility
    predict = predict.clamp(0.0, 1.0)
    labels = labels.float()
    B, K = predict.shape
    k = int(comp_topk)
    if k <= 0:
        w_poss, w_nec, k_eff = 1.0, 0.0, 1
    else:
        w_nec = float(k) / float(k + 1)
        w_poss = 1.0 / float(k + 1)
        k_eff = min(k, K)
    label_mask = labels > 0.5
    label_prob = (predict * labels).sum(dim=1, keepdim=True)
    non_label_predict = predict * (1.0 - labels)
    if k_eff <= 1:
        comp = non_label_predict.max(dim=1, keepdim=True)[0]
    else:
        topk_vals = non_label_predict.topk(k=k_eff, dim=1, largest=True, sorted=False).values
        comp = topk_vals.mean(dim=1, keepdim=True)
    necessity = torch.where(label_mask, 1.0 - comp.expand_as(predict), 1.0 - label_prob.expand_as(predict))
    credibility = w_poss * predict + w_nec * necessity
    return credibility.clamp(eps, 1.0 - eps)


def pub_warmup_fuzzy_loss(v1_pred, v2_pred, labels, comp_topk):
    # losses.py, FARLoss._warmup_fuzzy_loss (gamma_f = 1: no sharpening)
    p1 = pub_normalize_rows(v1_pred)
    p2 = pub_normalize_rows(v2_pred)
    cred1 = pub_credibility(p1, labels, comp_topk=comp_topk)
    cred2 = pub_credibility(p2, labels, comp_topk=comp_topk)
    y = labels.float()
    loss_per_sample = (cred1 - y).pow(2).sum(dim=1) + (cred2 - y).pow(2).sum(dim=1)
    weights = torch.ones_like(loss_per_sample)
    return (weights * loss_per_sample).sum() / (weights.sum() + 1e-8)


def pub_far_weights_from_cred(a1, a2, labels):
    # losses.py, FARLoss._build_far_weights after the credibilities
    eps = 1e-8
    B = labels.size(0)
    a_bar = 0.5 * (a1 + a2)
    t_idx = torch.argmax(labels, dim=1)
    ar = torch.arange(B)
    pos_score = a_bar[ar, t_idx]
    a_bar_mask = a_bar.clone()
    a_bar_mask[ar, t_idx] = -1e9
    neg_score = a_bar_mask.max(dim=1).values
    gap = pos_score - neg_score
    gap = (gap - gap.mean()) / (gap.std(unbiased=False) + eps)
    delta = 0.0
    temp = 0.7
    weights = torch.sigmoid((gap - delta) / temp)
    return weights.clamp(0.0, 1.0).detach()


def pub_build_far_weights(v1_pred, v2_pred, labels, comp_topk):
    a1 = pub_credibility(pub_normalize_rows(v1_pred), labels, comp_topk=comp_topk)
    a2 = pub_credibility(pub_normalize_rows(v2_pred), labels, comp_topk=comp_topk)
    return pub_far_weights_from_cred(a1, a2, labels)


def pub_far_margin_loss(view1_feature, view2_feature, labels, sample_weights):
    # losses.py, FARLoss._far_margin_loss
    B = view1_feature.size(0)
    if B <= 1:
        return torch.zeros(())
    gamma = 0.20
    z1 = F.normalize(view1_feature.tanh(), dim=1)
    z2 = F.normalize(view2_feature.tanh(), dim=1)
    S = (z1 @ z2.t()).clamp(-1.0, 1.0)
    t_idx = torch.argmax(labels, dim=1)
    zeta = torch.where(t_idx.view(B, 1) == t_idx.view(1, B), torch.ones(B, B, dtype=S.dtype),
                       -torch.ones(B, B, dtype=S.dtype))
    w = sample_weights.to(dtype=S.dtype).view(B)
    pair_w = torch.min(w.view(B, 1), w.view(1, B))
    margin_term = torch.relu(gamma - zeta * S)
    valid_mask = ~torch.eye(B, dtype=torch.bool)
    numer = (pair_w[valid_mask] * margin_term[valid_mask]).sum()
    denom = pair_w[valid_mask].sum().clamp_min(1e-8)
    return numer / denom


def pub_inter_loss(view1_feature, view2_feature, labels):
    # losses.py, FARLoss._inter_loss
    margin, shift, tau = 0.2, 1.0, 1.0
    u = view1_feature.tanh()
    v = view2_feature.tanh()
    B = u.size(0)
    label1 = labels.float()
    label2 = labels.float()
    T = (label1 @ label2.t() > 0).float()
    T.fill_diagonal_(0.0)
    S = u.mm(v.t())
    d = S.diag().view(B, 1)
    d1 = d.expand_as(S)
    d2 = d.t().expand_as(S)
    mask_te = (S >= (d1 - margin)).float().detach()
    cost_te = S * mask_te + (1.0 - mask_te) * (S - shift)
    cost_te_max = cost_te.clone()
    eye = torch.eye(B, dtype=S.dtype)
    diag_te = torch.diag(cost_te_max).clamp(min=0.0)
    cost_te_max = cost_te_max * (1 - eye) + torch.diag_embed(diag_te)
    mask_im = (S >= (d2 - margin)).float().detach()
    cost_im = S * mask_im + (1.0 - mask_im) * (S - shift)
    cost_im_max = cost_im.clone()
    diag_im = torch.diag(cost_im_max).clamp(min=0.0)
    cost_im_max = cost_im_max * (1 - eye) + torch.diag_embed(diag_im)
    neg_mask = 1.0 - T
    exp_te = (cost_te_max / tau * neg_mask).exp()
    exp_im = (cost_im_max / tau * neg_mask).exp()
    sum_te = exp_te.sum(dim=1).clamp_min(1e-6)
    sum_im = exp_im.sum(dim=1).clamp_min(1e-6)
    term_te = -cost_te.diag() + tau * sum_te.log() + margin
    term_im = -cost_im.diag() + tau * sum_im.log() + margin
    return (term_te + term_im).mean()


def pub_intra_loss(fea, tau=1.0, q=1.0):
    # losses.py, intra_loss
    n_view = 2
    batch_size = fea[0].shape[0]
    all_fea = torch.cat(fea, dim=0)
    sim = all_fea.mm(all_fea.t())
    sim = torch.exp(sim / tau)
    sim = sim.clone()
    sim.fill_diagonal_(0.0)
    sim_sum1 = sum([sim[:, v * batch_size:(v + 1) * batch_size] for v in range(n_view)])
    diag1 = torch.cat([sim_sum1[v * batch_size:(v + 1) * batch_size].diag() for v in range(n_view)])
    p1 = diag1 / (sim.sum(1) + 1e-8)
    loss1 = (1 - q) * (1. - p1.clamp_min(1e-8) ** q).div(max(q, 1e-8)) + q * (1 - p1)
    sim_sum2 = sum([sim[v * batch_size:(v + 1) * batch_size] for v in range(n_view)])
    diag2 = torch.cat([sim_sum2[:, v * batch_size:(v + 1) * batch_size].diag() for v in range(n_view)])
    p2 = diag2 / (sim.sum(1) + 1e-8)
    loss2 = (1 - q) * (1. - p2.clamp_min(1e-8) ** q).div(max(q, 1e-8)) + q * (1 - p2)
    return loss1.mean() + loss2.mean()


def pub_far_loss_forward(v1, v2, m1, m2, labels, epoch, alpha, tau, q, tp, comp_topk):
    # losses.py, FARLoss.forward (the loss only)
    cur_epoch = int(epoch) + 1
    L_intra = pub_intra_loss([v1, v2], tau=tau, q=q)
    if cur_epoch <= tp:
        return pub_warmup_fuzzy_loss(m1, m2, labels, comp_topk) + alpha * L_intra
    L_inter = pub_inter_loss(v1, v2, labels)
    w = pub_build_far_weights(m1, m2, labels, comp_topk)
    L_FAR = pub_far_margin_loss(v1, v2, labels, w)
    return L_FAR + alpha * L_intra + L_inter


def pub_cosine_restart_lr(epoch, base_lr, periods=(50, 50, 50), restart_weights=(1.0, 0.7, 0.5), eta_min=1e-7):
    # lr_scheduler.py, CosineAnnealingRestartLR.get_lr with get_position_from_periods
    cumulative_period = [sum(periods[0:i + 1]) for i in range(0, len(periods))]
    idx = next(i for i, period in enumerate(cumulative_period) if epoch <= period)
    current_weight = restart_weights[idx]
    nearest_restart = 0 if idx == 0 else cumulative_period[idx - 1]
    current_period = periods[idx]
    return eta_min + current_weight * 0.5 * (base_lr - eta_min) * (
        1 + math.cos(math.pi * ((epoch - nearest_restart) / current_period)))


# --- helpers ---------------------------------------------------------------------------------------------------

def _batch(n=12, dims=(10, 8), c=3, seed=0):
    return toy_batch(n, dims, c, seed)


def _make(bits=16, n_classes=3, **params):
    p = resolve_params("rfcmh", {**SMALL, **params})
    torch.manual_seed(0)
    return get_method_class("rfcmh")((10, 8), n_classes, bits, p)


def _unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1)


# --- hand cases and published formulas, term by term ----------------------------------------------------------

def test_membership_hand_case_and_published_formula():
    z = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    w = torch.eye(2, dtype=torch.float64)
    assert torch.allclose(fuzzy.fuzzy_membership(z, w), torch.tensor([[sig(1), 0.5]], dtype=torch.float64))
    m = fuzzy.fuzzy_membership(z, w, 0.5, 2.0)
    assert torch.allclose(m, torch.tensor([[sig(2) ** 2, 0.25]], dtype=torch.float64))
    assert torch.allclose(fuzzy.normalise_possibility(m), torch.tensor([[0.75629, 0.24371]], dtype=torch.float64),
                          atol=1e-5)
    assert torch.allclose(m, pub_membership(z, w))
    zr, wr = _unit(7, 16, 1), torch.randn(16, 5, dtype=torch.float64)
    assert torch.allclose(fuzzy.fuzzy_membership(zr, wr, 0.5, 2.0), pub_membership(zr, wr))


def test_class_matrix_spread_step_hand_case_and_published_formula():
    w = torch.tensor([[1.0, 0.5], [0.0, math.sqrt(3) / 2]], dtype=torch.float64)
    out = fuzzy.spread_columns(w, steps=1, eta=0.05)
    assert torch.allclose(out, torch.tensor([[0.99976, 0.48090], [-0.02192, 0.87678]], dtype=torch.float64),
                          atol=1e-5)
    assert (out[:, 0] @ out[:, 1]).item() == pytest.approx(0.46156, abs=1e-5)
    w0 = F.normalize(torch.randn(8, 20, generator=torch.Generator().manual_seed(2)), dim=0)
    assert torch.allclose(fuzzy.spread_columns(w0), pub_init_w_spread(w0), atol=1e-6)


@pytest.mark.parametrize("bits,k", [(32, 10), (8, 20)])
def test_class_matrix_unit_columns_seeded(bits, k):
    torch.manual_seed(5)
    a = fuzzy.fixed_class_matrix(bits, k)
    torch.manual_seed(5)
    b = fuzzy.fixed_class_matrix(bits, k)
    assert a.shape == (bits, k) and torch.equal(a, b)
    assert torch.allclose(a.norm(dim=0), torch.ones(k), atol=1e-5)
    gram = a.T @ a
    off = gram[~torch.eye(k, dtype=torch.bool)]
    if bits >= k:  # orthonormal columns
        assert off.abs().max() < 1e-5
    else:  # spread: the repulsion lowers the largest coherence of the Gaussian start
        torch.manual_seed(5)
        start = F.normalize(torch.randn(bits, k), dim=0)
        g0 = (start.T @ start)[~torch.eye(k, dtype=torch.bool)]
        assert off.abs().max() < g0.abs().max()


def test_admissibility_hand_case_and_published_formula():
    p = torch.tensor([[0.6, 0.3, 0.1]], dtype=torch.float64)
    y = torch.tensor([[1, 0, 0]])
    assert fuzzy.competitor_possibility(p, y.double(), 2).item() == pytest.approx(0.2)
    assert fuzzy.competitor_possibility(p, y.double(), 1).item() == pytest.approx(0.3)
    assert torch.allclose(fuzzy.necessity(p, y, 2, "paper"), torch.tensor([[0.8, 0.6, 0.6]], dtype=torch.float64))
    assert torch.allclose(fuzzy.necessity(p, y, 2, "reference"), torch.tensor([[0.8, 0.4, 0.4]], dtype=torch.float64))
    a_paper = fuzzy.admissibility(p, y, 2, "paper")
    a_ref = fuzzy.admissibility(p, y, 2, "reference")
    assert torch.allclose(a_paper, torch.tensor([[2.2 / 3, 0.45, 0.35]], dtype=torch.float64))
    assert torch.allclose(a_ref, torch.tensor([[2.2 / 3, 1.1 / 3, 0.3]], dtype=torch.float64))
    # the same case and random rows with the published get_train_category_credibility
    assert torch.allclose(a_ref, pub_credibility(p, y, comp_topk=2))
    pr = torch.rand(9, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    pr = pr / pr.sum(1, keepdim=True)
    yr = F.one_hot(torch.arange(9) % 6, 6)
    for kappa in (0, 1, 4, 9):
        assert torch.allclose(fuzzy.admissibility(pr, yr, kappa, "reference"), pub_credibility(pr, yr, comp_topk=kappa))


def test_warmup_alignment_hand_case_and_published_formula():
    y = torch.tensor([[1, 0, 0]])
    a = torch.tensor([[2.2 / 3, 1.1 / 3, 0.3]], dtype=torch.float64)
    assert fuzzy.admissibility_alignment_loss(a, y.double(), y).item() == pytest.approx(0.295556, abs=1e-6)
    # published _warmup_fuzzy_loss on memberships = our normalise -> admissibility -> Eq. 3
    m1, m2 = torch.rand(8, 5, dtype=torch.float64), torch.rand(8, 5, dtype=torch.float64)
    yr = F.one_hot(torch.tensor([0, 1, 2, 3, 4, 0, 1, 2]), 5)
    ours = fuzzy.admissibility_alignment_loss(
        fuzzy.admissibility(fuzzy.normalise_possibility(m1), yr, 4, "reference"),
        fuzzy.admissibility(fuzzy.normalise_possibility(m2), yr, 4, "reference"), yr)
    # (the published mean divides by sum(weights) + 1e-8, hence rel 1e-8)
    assert ours.item() == pytest.approx(pub_warmup_fuzzy_loss(m1, m2, yr, 4).item(), rel=1e-8)


def test_reliability_weights_hand_case_and_published_formula():
    a = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.5, 0.3]], dtype=torch.float64)
    y = torch.tensor([[1, 0, 0], [1, 0, 0]])
    w = fuzzy.reliability_weights(a, a, y, delta=0.05, temperature=0.7)
    assert torch.allclose(w, torch.tensor([sig(0.65 / 0.7), sig(-0.5)], dtype=torch.float64))
    assert w.tolist() == pytest.approx([0.71679, 0.37754], abs=1e-5)
    ws = fuzzy.reliability_weights(a, a, y, delta=0.0, temperature=0.7, standardize=True)
    assert ws.tolist() == pytest.approx([sig(1 / 0.7), sig(-1 / 0.7)], abs=1e-7)
    assert torch.allclose(ws, pub_far_weights_from_cred(a, a, y))
    ar1, ar2 = torch.rand(10, 4, dtype=torch.float64), torch.rand(10, 4, dtype=torch.float64)
    yr = F.one_hot(torch.arange(10) % 4, 4)
    assert torch.allclose(fuzzy.reliability_weights(ar1, ar2, yr, 0.0, 0.7, standardize=True),
                          pub_far_weights_from_cred(ar1, ar2, yr))
    assert not fuzzy.reliability_weights(ar1.requires_grad_(), ar2, yr, 0.0, 0.7).requires_grad


def test_reliability_margin_hand_case_and_published_formula():
    z1 = torch.tensor([[1.0], [1.0], [-1.0]], dtype=torch.float64)
    z2 = torch.tensor([[1.0], [-1.0], [-1.0]], dtype=torch.float64)
    y = F.one_hot(torch.tensor([0, 0, 1]), 2)
    w = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    assert fuzzy.reliability_margin_loss(z1, z2, y, w, 0.2, "paper").item() == pytest.approx(0.9)
    ref = fuzzy.reliability_margin_loss(z1, z2, y, w, 0.2, "reference")
    assert ref.item() == pytest.approx(0.45)
    assert ref.item() == pytest.approx(pub_far_margin_loss(z1, z2, y, w).item())
    zr1, zr2 = _unit(9, 16, 4), _unit(9, 16, 5)
    yr = F.one_hot(torch.arange(9) % 3, 3)
    wr = torch.rand(9, dtype=torch.float64)
    assert fuzzy.reliability_margin_loss(zr1, zr2, yr, wr, 0.2, "reference").item() == pytest.approx(
        pub_far_margin_loss(zr1, zr2, yr, wr).item(), rel=1e-12)
    assert fuzzy.reliability_margin_loss(zr1[:1], zr2[:1], yr[:1], wr[:1], 0.2).item() == 0.0


def test_intra_q_contrast_hand_case_and_published_formula():
    z = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    e2 = math.e ** 2
    assert contrastive.q_contrastive_cross_modal(z, z, 1.0, 1.0).item() == pytest.approx(2 / (e2 + 1))
    # reference form = RSHNL's published contrast = RFCMH's intra_loss
    zr1, zr2 = _unit(8, 16, 6), _unit(8, 16, 7)
    ours = contrastive.contrastive_hash_loss([zr1, zr2], 0.7, 0.01, "reference")
    assert ours.item() == pytest.approx(pub_intra_loss([zr1, zr2], tau=0.7, q=0.01).item(), rel=1e-7)
    # paper form: only cross-modal negatives (a different number than the reference form)
    paper = contrastive.q_contrastive_cross_modal(zr1, zr2, 0.7, 0.01)
    s = zr1 @ zr2.T / 0.7
    p_i2t = torch.softmax(s, dim=1).diagonal()
    p_t2i = torch.softmax(s, dim=0).diagonal()
    lq = lambda p: (0.99 * (1 - p ** 0.01) / 0.01 + 0.01 * (1 - p)).mean()  # noqa: E731
    assert paper.item() == pytest.approx((lq(p_i2t) + lq(p_t2i)).item())
    assert abs(paper.item() - ours.item()) > 1e-3


def test_inter_hand_cases_and_published_formula():
    s = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.5, 0.4], [0.0, 0.6, 0.7]], dtype=torch.float64)
    e, ln = math.exp, math.log
    rows = [-0.9 + 0.5 * ln(e(1.6) + e(-1.8)) + 0.2, -0.5 + 0.5 * ln(e(-1.6) + e(0.8)) + 0.2,
            -0.7 + 0.5 * ln(e(-2) + e(1.2)) + 0.2]
    assert contrastive.penalized_lse_margin_loss(s, 0.2, 1.0, 0.5).item() == pytest.approx(sum(rows) / 3)
    assert contrastive.penalized_lse_margin_loss(s, 0.2, 1.0, 0.5).item() == pytest.approx(0.126603, abs=1e-6)
    assert contrastive.penalized_lse_margin_loss(s.T, 0.2, 1.0, 0.5).item() == pytest.approx(-0.456080, abs=1e-6)
    # reference form: hand case with 1-bit codes, then the published _inter_loss
    z = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    t2 = math.tanh(1) ** 2
    diff = F.one_hot(torch.tensor([0, 1]), 2)
    same = F.one_hot(torch.tensor([0, 0]), 2)
    assert contrastive.rfcmh_inter_loss_reference(z, z, diff).item() == pytest.approx(
        2 * (ln(1 + e(-2 * t2 - 1)) + 0.2))
    assert contrastive.rfcmh_inter_loss_reference(z, z, same).item() == pytest.approx(2 * (ln(1 + e(-t2)) + 0.2))
    assert contrastive.rfcmh_inter_loss_reference(z, z, diff).item() == pytest.approx(0.618281, abs=1e-6)
    zr1, zr2 = _unit(10, 16, 8), _unit(10, 16, 9)
    yr = F.one_hot(torch.arange(10) % 3, 3)
    assert contrastive.rfcmh_inter_loss_reference(zr1, zr2, yr).item() == pytest.approx(
        pub_inter_loss(zr1, zr2, yr).item(), rel=1e-12)


@pytest.mark.parametrize("epoch", [0, 4])
def test_reference_step_equals_published_far_loss_forward(epoch):
    model = _make(bits=16, n_classes=5, warmup_epochs=3, alpha=0.1, kappa=4, **REFERENCE).double()
    g = torch.Generator().manual_seed(11)
    xs = [torch.randn(16, 10, generator=g, dtype=torch.float64), torch.randn(16, 8, generator=g, dtype=torch.float64)]
    y = F.one_hot(torch.randint(0, 5, (16,), generator=g), 5)
    out = model.training_step(xs, y, epoch)
    v1, v2 = model.encode(xs)
    m1, m2 = pub_membership(v1, model.W), pub_membership(v2, model.W)
    published = pub_far_loss_forward(v1, v2, m1, m2, y, epoch, alpha=0.1, tau=0.7, q=0.01, tp=3, comp_topk=4)
    assert out.loss.item() == pytest.approx(published.item(), rel=1e-7)
    assert (out.weights is None) == (epoch < 3)
    if out.weights is not None:
        assert torch.allclose(out.weights, pub_build_far_weights(m1, m2, y, 4))


# --- the method -----------------------------------------------------------------------------------------------

def test_stage_declares_clipping_and_the_codes_weighted_cosine_restarts():
    model = _make(lr=1e-4)
    (stage,) = model.stages()
    assert stage.clip_grad_norm == 5.0 and stage.lr_schedule == "cosine_restarts_weighted"
    assert stage.schedule_options == {"periods": [50, 50, 50], "restart_weights": [1.0, 0.7, 0.5], "eta_min": 1e-7}
    opts = build_optimizers(model, stage, model.params)
    (sched,) = build_schedulers(stage, opts, 150, 10).values()
    opt = opts["main"]
    assert opt.defaults["weight_decay"] == 1e-4  # paper; REFERENCE sets the code's 0
    lrs = []
    for _ in range(150):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    published = [pub_cosine_restart_lr(e, 1e-4) for e in range(150)]
    assert lrs == pytest.approx(published, rel=1e-9, abs=1e-15)  # the whole 150-epoch schedule, restarts included
    off = _make(clip_grad_norm=0.0, lr_schedule="constant").stages()[0]
    assert off.clip_grad_norm is None and off.lr_schedule == "constant"


@pytest.mark.parametrize("form", ["paper", "reference"])
@pytest.mark.parametrize("epoch", [0, 3])
def test_one_step_decreases_loss(form, epoch):
    extra = REFERENCE if form == "reference" else {}
    model = _make(**{**extra, "warmup_epochs": 1})
    xs, y = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = model.training_step(xs, y, epoch=epoch).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    after = model.training_step(xs, y, epoch=epoch).loss
    assert after.item() < before.item()


@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_configured_length_and_w_is_a_buffer(bits):
    model = _make(bits=bits)
    xs, _ = _batch()
    for h in model.encode(xs):
        assert h.shape == (12, bits)
    assert "W" in model.state_dict() and all(p is not model.W for p in model.parameters())
    assert model.W.shape == (bits, 3)


def test_stages_and_ablation_flags():
    xs, y = _batch()
    warm = _make(warmup_epochs=2).training_step(xs, y, epoch=1)
    assert warm.weights is None and set(warm.terms) == {"fuzzy", "intra"}
    fine = _make(warmup_epochs=2).training_step(xs, y, epoch=2)
    assert set(fine.terms) == {"far", "intra", "inter"}
    assert fine.weights is not None and torch.all((fine.weights > 0) & (fine.weights < 1))
    assert _make(warmup_epochs=0).training_step(xs, y, epoch=0).weights is not None  # RFCMH-1
    assert set(_make(use_far=False).training_step(xs, y, epoch=3).terms) == {"intra", "inter"}  # RFCMH-2
    no_dgsa = _make(use_dgsa=False).training_step(xs, y, epoch=3)  # RFCMH-3
    assert set(no_dgsa.terms) == {"far"}
    assert no_dgsa.loss.item() == pytest.approx(no_dgsa.terms["far"].item())
    # RFCMH-4: admissibility = possibility, so the warm-up term is ||sigmoid(zW) - y||^2
    m = _make(use_necessity=False, use_dgsa=False)
    z1, z2 = m.encode(xs)
    p1, p2 = (torch.sigmoid(z @ m.W) for z in (z1, z2))
    expect = ((p1 - y).pow(2).sum(1) + (p2 - y).pow(2).sum(1)).mean()
    assert m.training_step(xs, y, epoch=0).loss.item() == pytest.approx(expect.item(), rel=1e-6)
    with pytest.raises(ValueError):
        _make(form="code")


def test_training_is_deterministic_on_cpu_and_seed_matters():
    tr, va, te = toy_splits()
    flags = np.zeros(90, dtype=bool)
    params = resolve_params("rfcmh", SMALL)
    a = train_model("rfcmh", params, 16, tr, va, te, flags, seed=3, device="cpu")
    b = train_model("rfcmh", params, 16, tr, va, te, flags, seed=3, device="cpu")
    c = train_model("rfcmh", params, 16, tr, va, te, flags, seed=4, device="cpu")
    assert all(np.array_equal(x, y) for x, y in zip(a.codes, b.codes))
    assert a.history == b.history
    assert not all(np.array_equal(x, y) for x, y in zip(a.codes, c.codes))
    assert all(code.shape == (30, 16) for code in a.codes)


def test_paper_total_is_eq_11_and_multi_hot_labels_run():
    xs, y = _batch()
    model = _make(alpha=0.3, warmup_epochs=1)
    warm, fine = model.training_step(xs, y, epoch=0), model.training_step(xs, y, epoch=1)
    assert warm.loss.item() == pytest.approx((warm.terms["fuzzy"] + 0.3 * warm.terms["intra"]).item(), rel=1e-6)
    t = fine.terms
    assert fine.loss.item() == pytest.approx((t["far"] + 0.3 * (t["intra"] + t["inter"])).item(), rel=1e-6)
    ref = _make(alpha=0.3, warmup_epochs=1, **REFERENCE).training_step(xs, y, epoch=1)
    t = ref.terms
    assert ref.loss.item() == pytest.approx((t["far"] + 0.3 * t["intra"] + t["inter"]).item(), rel=1e-6)
    multi = y.clone()
    multi[::2, 2] = 1  # multi-hot rows: argmax = first positive, as in the code
    for extra in ({}, REFERENCE):
        for epoch in (0, 3):
            assert torch.isfinite(_make(**extra).training_step(xs, multi, epoch).loss)
