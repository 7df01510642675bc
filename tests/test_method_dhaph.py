"""DHaPH (methods/dhaph.py): self-paced contrastive loss, Poincare maps and distance, reciprocal triplets, the
LCA triplet loss and the detach switch, each by hand and by the published formula (QinLab-WFU/DHaPH @ 44c3c9c:
utils/MSLoss.py, utils/HPloss.py, utils/pmath.py, model/hp_model.py); one step, code length, determinism."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from toy_data import toy_batch, toy_splits

from cmhash.losses.hyperbolic import (
    expmap0,
    hierarchical_proxy_loss,
    lca_triplet_loss,
    poincare_distance_matrix,
    project,
    reciprocal_triplets,
    to_poincare,
)
from cmhash.losses.selfpaced import self_paced_contrastive_loss, self_paced_pair_exponent
from cmhash.methods import get_method_class, resolve_params
from cmhash.train import train_model

E = math.e
SMALL = {"hidden": [32], "epochs": 2, "batch_size": 32, "lr": 1e-2, "dropout": 0.0, "n_proxies": 20,
         "topk": 4, "triplets_per_anchor": 5}


def _make(bits=8, n_classes=3, **params):
    torch.manual_seed(0)
    return get_method_class("dhaph")((10, 8), n_classes, bits, resolve_params("dhaph", {**SMALL, **params}))


def _batch(n=12, c=3):
    return toy_batch(n, c=c, float_labels=True)


def _published_msloss(image_feature, text_feature, labels, epoch, totalepoch, temperature=0.3):
    # published (utils/MSLoss.py, MSLoss.forward, self_paced=True)
    mask = (torch.mm(labels.float(), labels.float().T) > 0).float()
    pos_mask, neg_mask = mask, 1 - mask
    image_dot_text = torch.matmul(F.normalize(image_feature, dim=1), F.normalize(text_feature, dim=1).T)
    all_exp = torch.exp(image_dot_text / temperature)
    pos_exp, neg_exp = pos_mask * all_exp, neg_mask * all_exp
    if epoch <= int(totalepoch / 3):
        delta = epoch / int(totalepoch / 3)
    else:
        delta = 1
    pos_exp *= torch.exp(-1 - image_dot_text).detach() ** (delta / 4)
    neg_exp *= torch.exp(-1 + image_dot_text).detach() ** (delta)
    return (-torch.log(pos_exp.sum(1) / (neg_exp.sum(1) + pos_exp.sum(1)))).mean()


# ---------------------------------------------------------------- self-paced contrastive loss
def test_self_paced_exponent_hand_case_and_published():
    assert [self_paced_pair_exponent(t, 100) for t in (1, 33, 34, 50)] == pytest.approx([1 / 33, 1, 1, 1])
    assert self_paced_pair_exponent(1, 2) == 1.0  # floor(E/3) = 0 (the code divides by zero)
    for total in (9, 40, 100):
        for t in range(1, total + 1):
            published = t / int(total / 3) if t <= int(total / 3) else 1
            assert self_paced_pair_exponent(t, total) == published


def test_self_paced_contrastive_hand_cases():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    plain = (2 * -math.log(2 * E / (2 * E + 1)) - math.log(E / (E + 2))) / 3
    assert self_paced_contrastive_loss(a, a, y, 1.0, 0.0).item() == pytest.approx(plain, rel=1e-6)
    assert self_paced_contrastive_loss(a, a, y, 1.0, 1.0, self_paced=False).item() == pytest.approx(plain, rel=1e-6)
    # delta = 1: positives (c = 1) weigh e^{-1/2}, negatives (c = 0) e^{-1}
    r0 = -math.log(2 * E**0.5 / (2 * E**0.5 + 1 / E))
    r1 = -math.log(E**0.5 / (E**0.5 + 2 / E))
    assert self_paced_contrastive_loss(a, a, y, 1.0, 1.0).item() == pytest.approx((2 * r0 + r1) / 3, rel=1e-6)


def test_self_paced_contrastive_equals_the_published_msloss():
    g = torch.Generator().manual_seed(1)
    a, b = torch.tanh(torch.randn(10, 8, generator=g)), torch.tanh(torch.randn(10, 8, generator=g))
    y = (torch.rand(10, 4, generator=g) > 0.5).float()
    y[:, 0] = 1.0  # every row has a positive
    for epoch, total in ((1, 100), (20, 100), (60, 100), (5, 40)):
        ours = self_paced_contrastive_loss(a, b, y, 0.3, self_paced_pair_exponent(epoch, total))
        assert ours.item() == pytest.approx(_published_msloss(a, b, y, epoch, total).item(), rel=1e-5)


def test_self_paced_contrastive_leaves_out_rows_without_positives():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # row 1 shares no label with anyone, not even itself
    only_row0 = -math.log(E / (E + 1))
    assert self_paced_contrastive_loss(a, a, y, 1.0, 0.0).item() == pytest.approx(only_row0, rel=1e-6)


# ---------------------------------------------------------------- Poincare maps
def test_poincare_maps_equal_the_published_pmath():
    c = 0.1
    x = torch.randn(6, 5) * 3
    # published (utils/pmath.py, _expmap0 with its tanh clamp, and _project)
    sqrt_c = c**0.5
    u_norm = torch.clamp_min(x.norm(dim=-1, p=2, keepdim=True), 1e-5)
    gamma_1 = (sqrt_c * u_norm).clamp(-15, 15).tanh() * x / (sqrt_c * u_norm)
    torch.testing.assert_close(expmap0(x, c), gamma_1)
    norm = torch.clamp_min(gamma_1.norm(dim=-1, keepdim=True, p=2), 1e-5)
    maxnorm = (1 - 1e-3) / (c**0.5)
    torch.testing.assert_close(project(gamma_1, c), torch.where(norm > maxnorm, gamma_1 / norm * maxnorm, gamma_1))
    # published (model/hp_model.py, ToPoincare.forward with clip_r): clip, then expmap0 + project
    x_norm = torch.norm(x, dim=-1, keepdim=True) + 1e-5
    clipped = x * torch.minimum(torch.ones_like(x_norm), 2.3 / x_norm)
    torch.testing.assert_close(to_poincare(x, c, 2.3), project(expmap0(clipped, c), c))


def test_riemannian_gradient_scales_by_the_conformal_factor():
    x = (torch.randn(4, 3) * 0.5).requires_grad_()
    out = to_poincare(x, 0.1)
    g = torch.randn(4, 3)
    out.backward(g)
    y = x.detach().clone().requires_grad_()
    plain = to_poincare(y, 0.1, riemannian=False)
    scale = (1 - 0.1 * plain.detach().pow(2).sum(-1, keepdim=True)).pow(2) / 4  # pmath.RiemannianGradient
    plain.backward(g * scale)
    torch.testing.assert_close(x.grad, y.grad)


def test_poincare_distance_hand_case_and_published():
    d = poincare_distance_matrix(torch.zeros(1, 1), torch.tensor([[0.5]]), 1.0)
    assert d.item() == pytest.approx(math.log(3), rel=1e-4)  # 2 artanh(0.5); 1e-5 in the Mobius denominator
    c = 0.1
    x, y = to_poincare(torch.randn(5, 4), c, 2.3), to_poincare(torch.randn(7, 4), c, 2.3)

    # published (utils/HPloss.py, _mobius_addition_batch and _dist_matrix)
    def mobius(x, y, c):
        xy = torch.einsum("ij,kj->ik", (x, y))
        x2 = x.pow(2).sum(-1, keepdim=True)
        y2 = y.pow(2).sum(-1, keepdim=True)
        num = 1 + 2 * c * xy + c * y2.permute(1, 0)
        num = num.unsqueeze(2) * x.unsqueeze(1)
        num = num + (1 - c * x2).unsqueeze(2) * y
        denom = 1 + 2 * c * xy + c**2 * x2 * y2.permute(1, 0)
        return num / (denom.unsqueeze(2) + 1e-5)

    arg = (c**0.5 * torch.norm(mobius(-x, y, c), dim=-1)).clamp(-1 + 1e-5, 1 - 1e-5)
    published = 2 / c**0.5 * (torch.log(1 + arg) - torch.log(1 - arg)) * 0.5
    torch.testing.assert_close(poincare_distance_matrix(x, y, c), published)


# ---------------------------------------------------------------- triplets and the LCA loss
def test_reciprocal_triplets_draw_reciprocal_positives():
    torch.manual_seed(0)
    # top-3 (self included): rows 0, 1, 2 are each other's neighbours; row 3's neighbours {3, 2, 0} are not
    # reciprocated, so 3 is no anchor and nobody's positive
    sim = torch.tensor([[9.0, 5.0, 5.0, 0.0], [5.0, 9.0, 5.0, 0.0], [5.0, 5.0, 9.0, 1.0], [1.0, 0.0, 4.0, 9.0]])
    i, j, k = reciprocal_triplets(sim, topk=3, per_anchor=50)
    assert set(i.tolist()) == {0, 1, 2} and i.numel() == 150
    assert (i != j).all() and (j != 3).all()
    assert ((k == i) | (k == 3)).all()  # negatives: R < 1, the anchor itself included (diagonal -1), as published
    assert (k == i).any() and (k == 3).any()


def test_reciprocal_triplets_none_without_anchors():
    sim = torch.tensor([[9.0, 5.0, 1.0], [5.0, 9.0, 0.0], [1.0, 0.0, 9.0]])
    assert reciprocal_triplets(sim, topk=2, per_anchor=4) is None  # each anchor has at most one partner


def test_lca_triplet_loss_hand_case():
    dist = torch.tensor([[1.0, 1.05], [1.0, 1.05], [4.0, 2.0]])
    trip = (torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([2, 0]))  # second: lca_ij == lca_ijk
    assert lca_triplet_loss(dist, trip, tau=0.1, margin=0.1, noise=False).item() == pytest.approx(0.05, rel=1e-5)


def test_lca_triplet_loss_equals_the_published_compute_ghhc():
    g = torch.Generator().manual_seed(4)
    dist = torch.rand(9, 6, generator=g) * 3
    i, j, k = (torch.randint(0, 9, (40,), generator=g) for _ in range(3))
    torch.manual_seed(11)
    ours = lca_triplet_loss(dist, (i, j, k), tau=0.1, margin=0.1)
    torch.manual_seed(11)
    # published (utils/HPloss.py, HPLoss.compute_gHHC)
    cp_dist = dist
    max_dists_ij = torch.maximum(cp_dist[i], cp_dist[j])
    lca_ij_prob = F.gumbel_softmax(-max_dists_ij / 0.1, dim=1, hard=True)
    lca_ij_idx = lca_ij_prob.argmax(-1)
    max_dists_ijk = torch.maximum(cp_dist[k], max_dists_ij)
    lca_ijk_prob = F.gumbel_softmax(-max_dists_ijk / 0.1, dim=1, hard=True)
    lca_ijk_idx = lca_ijk_prob.argmax(-1)
    dist_i_lca_ij, dist_i_lca_ijk = (cp_dist[i] * lca_ij_prob).sum(1), (cp_dist[i] * lca_ijk_prob).sum(1)
    dist_j_lca_ij, dist_j_lca_ijk = (cp_dist[j] * lca_ij_prob).sum(1), (cp_dist[j] * lca_ijk_prob).sum(1)
    dist_k_lca_ij, dist_k_lca_ijk = (cp_dist[k] * lca_ij_prob).sum(1), (cp_dist[k] * lca_ijk_prob).sum(1)
    hc_loss = (torch.relu(dist_i_lca_ij - dist_i_lca_ijk + 0.1) + torch.relu(dist_j_lca_ij - dist_j_lca_ijk + 0.1)
               + torch.relu(dist_k_lca_ijk - dist_k_lca_ij + 0.1))
    published = (hc_loss * (lca_ij_idx != lca_ijk_idx).float()).mean()
    assert ours.item() == pytest.approx(published.item(), rel=1e-6)


def test_hierarchical_proxy_loss_is_finite_and_reaches_points_and_proxies():
    torch.manual_seed(0)
    y = torch.nn.functional.one_hot(torch.arange(12) % 3, 3).float()
    raw = [torch.randn(12, 8, requires_grad=True) for _ in range(2)]
    pe = (torch.randn(20, 8) / math.sqrt(8) * 2.3 * 0.9).requires_grad_()
    loss = hierarchical_proxy_loss([to_poincare(r, 0.1, 2.3) for r in raw], to_poincare(pe, 0.1, 2.3), y, topk=4,
                                   per_anchor=5)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() >= 0
    assert raw[0].grad.abs().sum() > 0 and pe.grad.abs().sum() > 0


# ---------------------------------------------------------------- the method
@pytest.mark.parametrize("detach", [False, True])
def test_hp_detach_decides_whether_the_proxy_loss_reaches_the_codes(detach):
    model = _make(hp_detach=detach)
    xs, y = _batch()
    h = model.encode(xs)
    z = [model.hp_head(x.detach() if detach else x) for x in h]
    loss = hierarchical_proxy_loss(z, to_poincare(model.proxies, 0.1, 2.3), y, topk=4, per_anchor=5)
    loss.backward()
    enc = sum(p.grad.abs().sum() for p in model.encoders.parameters() if p.grad is not None)
    assert (float(enc) == 0.0) is detach
    assert model.proxies.grad.abs().sum() > 0


def test_training_loss_is_the_sum_of_the_four_terms():
    model = _make(alpha=2.0)
    xs, y = _batch()
    out = model.training_step(xs, y, 4)
    t = out.terms
    total = t["ms_img"] + t["ms_txt"] + t["ms_cross"] + 2.0 * t["hp"]
    assert out.loss.item() == pytest.approx(float(total), rel=1e-5)
    assert t["delta"] == 1.0  # epochs 2: floor(2/3) = 0, no ramp
    h = model.encode(xs)  # dropout 0: the same codes
    assert float(t["ms_cross"]) == pytest.approx(_published_msloss(h[0], h[1], y, 5, 2).item(), rel=1e-5)


def test_alpha_zero_skips_the_proxy_loss():
    model = _make(alpha=0.0)
    xs, y = _batch()
    assert float(model.training_step(xs, y, 0).terms["hp"]) == 0.0


def test_one_step_decreases_the_loss():
    model = _make()
    xs, y = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    torch.manual_seed(1)
    before = model.training_step(xs, y, 1).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    torch.manual_seed(1)  # the same triplet and Gumbel draws
    assert model.training_step(xs, y, 1).loss.item() < before.item()


def test_stages_follow_the_published_optimisers():
    (stage,) = _make().stages()
    assert set(stage.optimizers) == {"main", "hp"}
    assert stage.optimizers["main"].kind == "adamw" and stage.optimizers["main"].options["betas"] == (0.9, 0.98)
    assert stage.optimizers["hp"].lr == 1e-5
    assert stage.lr_schedule == "cosine" and stage.schedule_interval == "step" and stage.clip_grad_norm == 1.0


@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_the_configured_length(bits):
    model = _make(bits=bits)
    xs, _ = _batch()
    for h in model.encode(xs):
        assert h.shape == (12, bits) and h.abs().max() < 1


def test_two_epoch_toy_run_is_deterministic():
    tr, va, te = toy_splits()
    params = resolve_params("dhaph", {**SMALL, "dropout": 0.2})
    a = train_model("dhaph", params, 8, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    b = train_model("dhaph", params, 8, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    for x, z in zip(a.codes, b.codes):
        np.testing.assert_array_equal(x, z)
