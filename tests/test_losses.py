"""RSHNL loss terms against the hand-computed values written in cmhash.losses."""

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


def test_contrastive_reference_form_excludes_self_and_doubles():
    b1, b2 = torch.tensor([[1.0], [-1.0]]), torch.tensor([[1.0], [-1.0]])
    q = losses.contrastive_hash_probability([b1, b2], tau=1.0, form="reference")
    # anchor excluded: q = e / (e + 2/e)
    expected = math.e / (math.e + 2 / math.e)
    assert torch.allclose(q, torch.full((2, 2), expected))
    assert losses.contrastive_hash_loss([b1, b2], 1.0, 1.0, "reference").item() == pytest.approx(4 * (1 - expected))


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
