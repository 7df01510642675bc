"""MIAN (E-Galois/MIAN @ eea7e79): hand-checked terms against the published formulas, the code's three network
losses written out literally, the options, one step decreases the loss, code length, determinism."""

import math

import numpy as np
import pytest
import torch
from toy_data import toy_batch, toy_splits

from cmhash.losses.bottleneck import bottleneck_alignment_loss, gaussian_kl_standard, reparameterised_relu
from cmhash.losses.similarity import asymmetric_pair_nll, asymmetric_pair_squared
from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.train import train_model

E = math.e
F = torch.nn.functional


def _params(**extra):
    return resolve_params("mian", {"hidden": [16, 12], "epochs": 2, "batch_size": 6, "lr": 1e-3, **extra})


def _batch(n=12, dims=(10, 8), c=3, seed=0):
    return toy_batch(n, dims, c, seed, float_labels=True)


def _make(bits=8, **extra):
    torch.manual_seed(0)
    model = get_method_class("mian")((10, 8), 3, bits, _params(**extra))
    xs, y = _batch()
    model.on_train_start(TrainContext(xs, y))
    return model, xs, y


# ---------------------------------------------------------------- terms
def test_pair_terms_hand_cases_and_published_forms():
    stored = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    h = torch.tensor([[1.0, 0.0]])
    sim = torch.tensor([[1.0], [0.0], [1.0]])  # theta = [1, 0, 1]
    assert asymmetric_pair_nll(stored, h, sim).item() == pytest.approx(2 * (math.log(1 + E) - 1) + math.log(2))
    assert asymmetric_pair_squared(stored, h, sim).item() == pytest.approx(
        2 * (1 - math.log(1 + E)) ** 2 + math.log(2) ** 2, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    big_u, codes = torch.randn(9, 4, generator=g), torch.tanh(torch.randn(3, 4, generator=g))
    s = (torch.rand(9, 3, generator=g) > 0.5).float() * 0.999
    # E-Galois/MIAN MICH.py::train_img_net (Loss_pair_Hsh_MH): mse_loss(S * theta, softplus(theta), sum)
    theta = 1.0 / 2 * big_u.mm(codes.transpose(1, 0))
    published_sq = F.mse_loss(s.mul(theta), F.softplus(theta), reduction="sum")
    torch.testing.assert_close(asymmetric_pair_squared(big_u, codes, s) * 3, published_sq)
    # MICH.py::calc_loss (term_mh, the unused likelihood): sum(softplus(theta) - Sim * theta)
    theta_np = np.matmul(big_u.numpy(), codes.numpy().T) / 2
    term = np.sum(F.softplus(torch.from_numpy(theta_np)).numpy() - s.numpy() * theta_np)
    assert asymmetric_pair_nll(big_u, codes, s).item() * 3 == pytest.approx(float(term), rel=1e-5)


def test_bottleneck_terms_hand_cases_and_published_image_loss():
    mu, s = torch.tensor([1.0, -1.0]), torch.tensor([0.0, 2 * math.log(2)])
    torch.testing.assert_close(reparameterised_relu(mu, s, torch.ones(2)), torch.tensor([2.0, 1.0]))
    kl = gaussian_kl_standard(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2)]]))
    assert kl.item() == pytest.approx(1 - math.log(2) / 2, rel=1e-6)
    mu3 = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    value = bottleneck_alignment_loss(torch.zeros(3, 2), torch.zeros(3, 2), mu3, 0.5, torch.zeros(3, 2))
    assert value.item() == pytest.approx((6 * math.log(2) + 0.5 * 3) / 3, rel=1e-6)
    g = torch.Generator().manual_seed(1)
    mu_i, log_sigma_i = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g) * 0.3
    fea_t_pred, fea_t_real = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    # E-Galois/MIAN MICH.py::train_img_net: Loss_prior_kl and Loss_cross_hash_MI (hyper_sigma 0.01), literally
    loss_prior_kl = torch.sum(mu_i.pow(2).add_(log_sigma_i.exp()).mul_(-1).add_(1).add_(log_sigma_i)).mul_(-0.5)
    published = F.binary_cross_entropy_with_logits(fea_t_pred, torch.sigmoid(fea_t_real), reduction="sum") \
        + 0.01 * loss_prior_kl
    ours = bottleneck_alignment_loss(fea_t_pred, fea_t_real, mu_i, 0.01, log_sigma_i)
    torch.testing.assert_close(ours * 4, published)


# ---------------------------------------------------------------- the whole step vs MICH.py's three losses
def test_step_equals_the_published_three_network_losses_in_the_code_form():
    model, xs, y = _make(pair_form="squared")
    p = model.params
    index = torch.tensor([3, 0, 7, 10, 5])
    xb = [x[index] for x in xs]
    yb = y[index]
    b = model.epoch_targets[index].clone()  # B of this pass (computed before the step)
    before_feature = model.stored_text_feature.clone()
    torch.manual_seed(5)
    out = model.training_step(xb, yb, 0, index=index)
    image, text = model.branches
    torch.manual_seed(5)  # the same eps as the step
    mu_i, log_sigma_i = image.moments(xb[0])
    fea_i = reparameterised_relu(mu_i, log_sigma_i)
    hsh_i, lab_i = image.heads(fea_i)
    fea_t = torch.relu(text.moments(xb[1])[0])
    hsh_t, lab_t = text.heads(fea_t)
    hsh_l = model.label_net(yb)  # the code's LabelNet: no tanh
    big_f, big_g, big_h = model.stored_image, model.stored_text, model.stored_label  # rows already overwritten
    torch.testing.assert_close(big_f[index], hsh_i)
    torch.testing.assert_close(model.stored_text_feature[index], fea_t)
    torch.testing.assert_close(model.stored_text_feature[[1, 2]], before_feature[[1, 2]])
    s = ((model.train_labels @ yb.T) > 0).float() * 0.999  # ops.py::calc_neighbor

    def pair(u, h):  # MICH.py: mse_loss(S * theta, softplus(theta), reduction='sum')
        theta = 1.0 / 2 * u.mm(h.transpose(1, 0))
        return F.mse_loss(s.mul(theta), F.softplus(theta), reduction="sum")

    loss_l = pair(big_f, hsh_l) + pair(big_g, hsh_l) + p["eta"] * F.mse_loss(b, hsh_l, reduction="sum")
    loss_t = (pair(big_h, hsh_t) + pair(big_g, hsh_t)) + p["alpha_t"] * F.mse_loss(b, hsh_t, reduction="sum") \
        + p["gamma"] * F.mse_loss(yb, lab_t, reduction="sum")
    kl = torch.sum(mu_i.pow(2).add_(log_sigma_i.exp()).mul_(-1).add_(1).add_(log_sigma_i)).mul_(-0.5)
    mi = F.binary_cross_entropy_with_logits(model.predict_text(fea_i), torch.sigmoid(fea_t), reduction="sum") \
        + p["sigma"] * kl
    loss_i = (pair(big_h, hsh_i) + pair(big_f, hsh_i)) + p["alpha_v"] * F.mse_loss(b, hsh_i, reduction="sum") \
        + p["gamma"] * F.mse_loss(yb, lab_i, reduction="sum") + p["mi"] * mi
    torch.testing.assert_close(out.loss * 5, loss_l + loss_t + loss_i, rtol=1e-5, atol=1e-3)


# ---------------------------------------------------------------- options
def test_label_net_is_linear_unless_label_tanh():
    model, _, y = _make()
    w = model.label_net.weight
    torch.testing.assert_close(model.label_codes(y), y @ w.T)
    model_t, _, _ = _make(label_tanh=True)
    torch.testing.assert_close(model_t.label_codes(y), torch.tanh(y @ model_t.label_net.weight.T))


def test_targets_once_per_epoch_or_per_step():
    model, xs, y = _make()
    idx = torch.arange(12)
    b0 = model.epoch_targets.clone()
    torch.testing.assert_close(b0, model.targets(idx))
    model.training_step(xs, y, 0, index=idx)  # overwrites every stored row ...
    torch.testing.assert_close(model.epoch_targets, b0)  # ... but B waits for the next pass
    model.on_epoch_start(TrainContext(xs, y, epoch=1))
    torch.testing.assert_close(model.epoch_targets, torch.sign(
        0.01 * model.stored_image + 0.99 * model.stored_text + 100.0 * model.stored_label))
    model.stored_image.fill_(1.0)
    model.stored_text.fill_(-1.0)  # alpha_t U^2 outweighs alpha_v U^1 where U^L is 0; elsewhere eta U^L wins
    model.stored_label[:] = torch.tensor([0.0, 0.0, 0.5, -0.5, 0, 0, 0, 0])
    torch.testing.assert_close(model.targets(idx)[:, :4], torch.tensor([-1.0, -1.0, 1.0, -1.0]).expand(12, 4))


def test_alignment_target_current_or_stored():
    for target in ("current", "stored"):
        model, xs, y = _make(align_target=target, bottleneck="mean")
        idx = torch.tensor([1, 4, 6])
        stored = model.stored_text_feature[idx].clone()
        out = model.training_step([x[idx] for x in xs], y[idx], 0, index=idx)
        image, text = model.branches
        f1 = torch.relu(image.moments(xs[0][idx])[0])
        f2 = torch.relu(text.moments(xs[1][idx])[0])
        t = f2 if target == "current" else stored
        mu1 = image.moments(xs[0][idx])[0]
        expected = bottleneck_alignment_loss(model.predict_text(f1), t, mu1, model.params["sigma"])
        torch.testing.assert_close(out.terms["align"], expected.detach())


def test_encoding_is_deterministic_and_uses_the_mean_feature():
    model, xs, _ = _make()
    a, b = model.encode(xs), model.encode(xs)
    torch.testing.assert_close(a[0], b[0])
    image = model.branches[0]
    torch.testing.assert_close(a[0], image.heads(torch.relu(image.moments(xs[0])[0]))[0])


# ---------------------------------------------------------------- behaviour
@pytest.mark.parametrize("extra", [{}, {"pair_form": "squared"}, {"targets": "per_step", "label_tanh": True,
                                                                  "bottleneck": "mean"}])
def test_one_step_decreases_loss(extra):
    model, xs, y = _make(**extra)
    idx = torch.arange(12)
    model.on_epoch_start(TrainContext(xs, y, epoch=1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    torch.manual_seed(1)
    before = model.training_step(xs, y, 1, index=idx).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    torch.manual_seed(1)  # the same bottleneck noise
    assert model.training_step(xs, y, 1, index=idx).loss.item() < before.item()


@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_configured_length(bits):
    model, xs, _ = _make(bits=bits)
    for h in model.encode(xs):
        assert h.shape == (12, bits)


def test_two_epoch_toy_run_is_deterministic():
    tr, va, te = toy_splits()
    params = _params(batch_size=32)
    a = train_model("mian", params, 16, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    b = train_model("mian", params, 16, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    for x, y in zip(a.codes, b.codes):
        assert x.shape == (30, 16)
        np.testing.assert_array_equal(x, y)
