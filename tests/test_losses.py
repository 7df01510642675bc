"""RSHNL loss terms against the hand-computed values written in cmhash.losses (robust, contrastive, proxy,
selfpaced)."""

import math

import pytest
import torch

from cmhash import losses


def test_robust_loss_hand_values():
    p = torch.tensor([0.25, 1.0, 0.0])
    out = losses.robust_loss(p, 0.5)
    assert out[0].item() == pytest.approx(0.875)
    assert out[1].item() == pytest.approx(0.0)
    assert out[2].item() == pytest.approx((0.25 - 0.5 + 1) / 0.5, rel=1e-5)  # the bound (r^2 - r + 1)/r
    assert losses.robust_loss(torch.tensor([0.3]), 1.0).item() == pytest.approx(0.7)


def test_robust_loss_max_matches_paper_bound():
    assert losses.robust_loss_max(0.01) == pytest.approx(198.02)


def test_contrastive_probability_hand_case():
    b1, b2 = torch.tensor([[1.0], [-1.0]]), torch.tensor([[1.0], [-1.0]])
    q = losses.contrastive_hash_probability([b1, b2], tau=1.0)
    expected = math.e**2 / (math.e**2 + 1)
    assert torch.allclose(q, torch.full((2, 2), expected))
    # L_C with r = 1 is mean_i sum_m (1 - q) = 2 (1 - q)
    assert losses.contrastive_hash_loss([b1, b2], 1.0, 1.0).item() == pytest.approx(2 * (1 - expected))


def test_contrastive_reference_form_equals_published_formula():
    # Worked by hand from perquisite/RSHNL @ 34de146, losses.py, cross_modal_contrastive_ctriterion_q:
    # sim = exp(Z Z^T / tau) with its diagonal zeroed; p1 = p2 = exp(partner) / (row sum without self)
    # = e / (e + 2/e) for every anchor here; loss = loss1.mean() + loss2.mean() = 2 * l_r(p) (r = q = 1: 1 - p).
    b1, b2 = torch.tensor([[1.0], [-1.0]]), torch.tensor([[1.0], [-1.0]])
    q = losses.contrastive_hash_probability([b1, b2], tau=1.0, form="reference")
    p_published = math.e / (math.e + 2 / math.e)
    assert torch.allclose(q, torch.full((2, 2), p_published))
    assert losses.contrastive_hash_loss([b1, b2], 1.0, 1.0, "reference").item() == pytest.approx(2 * (1 - p_published))
    # r = 0.5: published (1 - q)(1 - p^q)/q + q(1 - p), doubled by the two directions
    r = 0.5
    lr = (1 - r) * (1 - p_published**r) / r + r * (1 - p_published)
    assert losses.contrastive_hash_loss([b1, b2], 1.0, r, "reference").item() == pytest.approx(2 * lr)


def test_contrastive_reference_form_equals_published_code_on_random_codes():
    # The published expression evaluated literally (same file), against ours, on random unit codes.
    torch.manual_seed(0)
    fea = [torch.nn.functional.normalize(torch.randn(5, 8), dim=1) for _ in range(2)]
    tau, q = 0.7, 0.3
    b = fea[0].shape[0]
    all_fea = torch.cat(fea)
    sim = (all_fea @ all_fea.T / tau).exp()
    sim = sim - sim.diag().diag()
    sum1 = sum(sim[:, v * b:(v + 1) * b] for v in range(2))
    p1 = torch.cat([sum1[v * b:(v + 1) * b].diag() for v in range(2)]) / sim.sum(1)
    sum2 = sum(sim[v * b:(v + 1) * b] for v in range(2))
    p2 = torch.cat([sum2[:, v * b:(v + 1) * b].diag() for v in range(2)]) / sim.sum(1)
    published = sum(((1 - q) * (1 - p**q) / q + q * (1 - p)).mean() for p in (p1, p2))
    ours = losses.contrastive_hash_loss(fea, tau, q, "reference")
    assert ours.item() == pytest.approx(published.item(), rel=1e-5)


def test_center_aggregation_hand_case():
    # 1 pair, 2 classes, 1-bit codes: centres +1 / -1; image code +1, text code -1; label = class 0
    centers = torch.tensor([[1.0], [-1.0]])
    codes = [torch.tensor([[1.0]]), torch.tensor([[-1.0]])]
    y = torch.tensor([[1, 0]])
    p_img = math.e / (math.e + 1 / math.e)  # softmax([1, -1])[0]
    p_txt = 1 - p_img
    out = losses.center_aggregation_per_pair(codes, centers, y, tau=1.0, r=1.0)
    assert out.item() == pytest.approx((1 - p_img) + (1 - p_txt))  # = 1 with r = 1


def test_self_paced_weights_closed_form():
    l = torch.tensor([0.0, 1.0, 2.5, 5.0, 7.0])
    w = losses.self_paced_weights(l, gamma=5.0)
    assert torch.allclose(w, torch.tensor([1.0, 0.8, 0.5, 0.0, 0.0]))
    assert torch.equal(losses.self_paced_weights(l, 5.0, "binary"), torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]))
    assert torch.equal(losses.self_paced_weights(l, 5.0, "off"), torch.ones(5))


def test_self_paced_weights_minimise_the_objective():
    # w* = argmin_{w in [0,1]} w l + gamma (w^2/2 - w): compare with a fine grid search
    gamma = 3.0
    grid = torch.linspace(0, 1, 10001)
    for l in [0.0, 0.7, 1.5, 2.9, 3.0, 4.2]:
        objective = grid * l + losses.self_paced_regulariser(grid, gamma)
        best = grid[torch.argmin(objective)].item()
        assert losses.self_paced_weights(torch.tensor([l]), gamma).item() == pytest.approx(best, abs=1e-3)


def test_weights_are_detached():
    l = torch.tensor([1.0, 2.0], requires_grad=True)
    assert not losses.self_paced_weights(l, 5.0).requires_grad
