"""CMMQ (methods/cmmq.py): hash centres, PC loss, quantisation, mutual terms, the forget-rate schedule and the
joint small-loss selection, each by hand and by the published formula (yangerkun/Mutual-Quantization-for-
Cross-Modal-Search-With-Noisy-Labels @ 2b17232, My_method.py); one step, code length, determinism."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from toy_data import toy_batch, toy_splits

from cmhash.losses.contrastive import code_symmetric_kl_per_sample, column_info_nce_per_sample
from cmhash.losses.proxy import center_bce, hadamard_hash_centers, hadamard_matrix, label_hash_centers
from cmhash.losses.quantization import abs_quantization
from cmhash.losses.selection import keep_smallest, linear_forget_rate
from cmhash.methods import get_method_class, resolve_params
from cmhash.train import train_model

E = math.e
SMALL = {"forget_rate": 0.6, "hidden": [32], "epochs": 2, "batch_size": 32, "lr": 1e-2}


def _make(bits=16, n_classes=3, **params):
    torch.manual_seed(0)
    return get_method_class("cmmq")((10, 8), n_classes, bits, resolve_params("cmmq", {**SMALL, **params}))


def _batch(n=12, c=3):
    return toy_batch(n, c=c, float_labels=True)


# ---------------------------------------------------------------- hash centres
def test_hadamard_matrix_is_scipys():
    assert hadamard_matrix(2).tolist() == [[1.0, 1.0], [1.0, -1.0]]
    for k in (1, 2, 8, 32):
        np.testing.assert_array_equal(hadamard_matrix(k).numpy(), scipy.linalg.hadamard(k))
    with pytest.raises(ValueError, match="power of two"):
        hadamard_matrix(12)


def test_hash_centers_hand_case_and_published_rows():
    assert hadamard_hash_centers(3, 2).tolist() == [[1, 1], [1, -1], [-1, -1]]
    # published (My_method.py, Robust_Loss.get_hash_targets): H_2K = concat(H_K, -H_K); rows [:n_class]
    h = scipy.linalg.hadamard(16)
    np.testing.assert_array_equal(hadamard_hash_centers(10, 16).numpy(), np.concatenate((h, -h), 0)[:10])


def test_hash_centers_beyond_2k_are_random_balanced_rows():
    g = torch.Generator().manual_seed(0)
    c = hadamard_hash_centers(9, 4, generator=g)
    h = scipy.linalg.hadamard(4)
    np.testing.assert_array_equal(c[:8].numpy(), np.concatenate((h, -h), 0))
    assert (c[8] == -1).sum() == 2 and (c[8] == 1).sum() == 2  # K // 2 entries set to -1
    odd = hadamard_hash_centers(3, 6, generator=g)  # K not a power of two: all rows random, balanced
    assert ((odd == -1).sum(dim=1) == 3).all()


def test_label_centers_hand_case_and_published_label2center():
    centers = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    tie = torch.tensor([-1.0, 1.0])
    y = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    # multi-label: s = [2, 0] -> [1, tie_2 = 1]; s = [1, -1] -> [1, -1]
    assert label_hash_centers(y, centers, True, tie).tolist() == [[1.0, 1.0], [1.0, -1.0]]
    assert label_hash_centers(y, centers, False, tie).tolist() == [[1.0, 1.0], [1.0, -1.0]]  # argmax = first
    # published (My_method.py, Robust_Loss.label2center), multi-label branch; random_center in {0, 1}
    random_center = (tie + 1) / 2
    center_sum = y @ centers
    rc = random_center.repeat(center_sum.shape[0], 1)
    center_sum[center_sum == 0] = rc[center_sum == 0]
    published = 2 * (center_sum > 0).float() - 1
    torch.testing.assert_close(label_hash_centers(y, centers, True, tie), published)


# ---------------------------------------------------------------- loss terms
def test_center_bce_hand_case_and_published_bceloss():
    u, t = torch.tensor([[0.0, 0.5]]), torch.tensor([[1.0, -1.0]])
    torch.testing.assert_close(center_bce(u, t), torch.tensor([[math.log(2), math.log(4)]]))
    g = torch.Generator().manual_seed(1)
    u = torch.tanh(3 * torch.randn(5, 8, generator=g))
    t = torch.where(torch.randn(5, 8, generator=g) > 0, 1.0, -1.0)
    # published (My_method.py, Robust_Loss.forward): BCELoss(reduction='none')(0.5 * (u + 1), 0.5 * (hash_center + 1))
    published = torch.nn.BCELoss(reduction="none")(0.5 * (u + 1), 0.5 * (t + 1))
    torch.testing.assert_close(center_bce(u, t), published)


def test_quantisation_hand_case_and_published():
    h = torch.tensor([[0.5, -1.0]])
    torch.testing.assert_close(abs_quantization(h), torch.tensor([[0.25, 0.0]]))
    u = torch.tanh(torch.randn(4, 6))
    torch.testing.assert_close(abs_quantization(u), (u.abs() - 1).pow(2))  # published: Q_loss = (u.abs() - 1).pow(2)


def test_mutual_terms_hand_cases_and_published():
    u, v = torch.tensor([[0.5, 0.0]]), torch.tensor([[-0.5, 0.0]])
    assert code_symmetric_kl_per_sample(u, v).item() == pytest.approx(0.25 * math.log(3), rel=1e-6)
    a, b = torch.tensor([[1.0], [-1.0]]), torch.tensor([[1.0], [1.0]])
    expected = [-math.log(E / (E + 1 / E)), -math.log((1 / E) / (E + 1 / E))]
    torch.testing.assert_close(column_info_nce_per_sample(a, b), torch.tensor(expected))
    g = torch.Generator().manual_seed(2)
    u, v = torch.tanh(torch.randn(6, 8, generator=g)), torch.tanh(torch.randn(6, 8, generator=g))
    # published (My_method.py, Robust_Loss.forward): prob = Softmax(dim=0)(u @ v.T); MQ_loss = -log(diag(prob))
    published_mq = -1 * torch.log(torch.diag(torch.nn.Softmax(dim=0)(torch.matmul(u, v.T))))
    torch.testing.assert_close(column_info_nce_per_sample(u, v), published_mq)
    # published (My_method.py, KLLoss.forward), kept per sample (mean over bits instead of over everything)
    pu, pv = 0.5 * (u + 1), 0.5 * (v + 1)
    kl = pu * torch.log(torch.div(pu, pv)) + pv * torch.log(torch.div(pv, pu))
    torch.testing.assert_close(code_symmetric_kl_per_sample(u, v), kl.mean(dim=1))
    assert code_symmetric_kl_per_sample(u, v).mean().item() == pytest.approx(kl.mean().item(), rel=1e-5)


# ---------------------------------------------------------------- selection
def test_forget_rate_schedule_hand_case_and_published_linspace():
    assert [linear_forget_rate(t, 0.6, 4) for t in range(6)] == pytest.approx([0, 0.2, 0.4, 0.6, 0.6, 0.6])
    for rate, gradual, epochs in ((0.6, 20, 100), (0.2, 20, 40), (0.8, 1, 5), (0.4, 0, 3), (0.5, 7, 7)):
        # published (My_method.py, train_val): rate_schedule[0:num_gradual] = np.linspace(0, forget_rate, num_gradual)
        schedule = np.ones(epochs) * rate
        schedule[0:gradual] = np.linspace(0, rate**1, gradual)
        assert [linear_forget_rate(t, rate, gradual) for t in range(epochs)] == schedule.tolist()


def test_keep_smallest_hand_case_and_published_remember_count():
    assert keep_smallest(torch.tensor([0.1, 2.0, 0.5]), 2).tolist() == [True, False, True]
    assert keep_smallest(torch.tensor([3.0, 1.0]), 0).tolist() == [False, True]  # at least one
    losses = torch.rand(100, generator=torch.Generator().manual_seed(3))
    for forget in (0.0, 0.2, 0.6, 0.31578947368421):
        # published (My_method.py, Robust_Loss.forward): ind_sorted = np.argsort(loss); int(remember_rate * len)
        num_remember = int((1 - forget) * len(losses))
        idx = np.argsort(losses.numpy())[:num_remember]
        mask = keep_smallest(losses, int((1 - forget) * losses.numel()))
        assert sorted(torch.nonzero(mask).squeeze(1).tolist()) == sorted(idx.tolist())


@pytest.mark.parametrize("form", ["sym_kl", "info_nce"])
def test_training_loss_equals_the_published_robust_loss(form):
    model = _make(mutual=0.5, mutual_form=form, quant=1e-2)
    xs, y = _batch()
    epoch = 3
    out = model.training_step(xs, y, epoch)
    u, v = model.encode(xs)
    with torch.no_grad():
        # published (My_method.py, Robust_Loss.forward, single-label branch) with beta = 0.5
        hash_center = model.centers[y.argmax(axis=1)]
        crit = torch.nn.BCELoss(reduction="none")
        loss = crit(0.5 * (u + 1), 0.5 * (hash_center + 1)) + crit(0.5 * (v + 1), 0.5 * (hash_center + 1))
        loss = (loss + 1e-2 * ((u.abs() - 1).pow(2) + (v.abs() - 1).pow(2))).mean(axis=1)
        if form == "info_nce":
            mq = -1 * torch.log(torch.diag(torch.nn.Softmax(dim=0)(torch.matmul(u, v.T))))
        else:  # KLLoss's formula per pair
            pu, pv = 0.5 * (u + 1), 0.5 * (v + 1)
            mq = (pu * torch.log(pu / pv) + pv * torch.log(pv / pu)).mean(dim=1)
        loss = loss + 0.5 * mq
        forget = np.linspace(0, 0.6, 20)[epoch]
        keep = np.argsort(loss.numpy())[: int((1 - forget) * len(loss))]
        published = loss[keep].mean()
    assert out.loss.item() == pytest.approx(published.item(), rel=1e-5)
    assert out.weights.sum().item() == int((1 - forget) * 12)


def test_one_selection_for_both_modalities_and_full_batch_at_epoch_0():
    model = _make()
    xs, y = _batch()
    assert model.training_step(xs, y, 0).weights.tolist() == [1.0] * 12
    assert model.training_step(xs, y, 25).weights.sum().item() == int(0.4 * 12)


def test_bad_params_raise():
    with pytest.raises(ValueError, match="mutual_form"):
        _make(mutual_form="js")
    with pytest.raises(ValueError, match="forget_rate"):
        _make(forget_rate=1.0)


# ---------------------------------------------------------------- behaviour
def test_one_step_decreases_the_loss():
    model = _make()
    xs, y = _batch()
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    before = model.training_step(xs, y, 1).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    assert model.training_step(xs, y, 1).loss.item() < before.item()


@pytest.mark.parametrize("bits", [8, 32, 24])
def test_codes_have_the_configured_length(bits):
    model = _make(bits=bits)
    xs, _ = _batch()
    for h in model.encode(xs):
        assert h.shape == (12, bits) and h.abs().max() < 1


def test_two_epoch_toy_run_is_deterministic():
    tr, va, te = toy_splits()
    params = resolve_params("cmmq", {**SMALL, "num_gradual": 2})
    a = train_model("cmmq", params, 16, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    b = train_model("cmmq", params, 16, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    for x, z in zip(a.codes, b.codes):
        np.testing.assert_array_equal(x, z)


def test_forget_rate_minus_one_is_the_runs_noise_rate():
    # the code passes the data's noise rate (--noise_rate) as the forget rate; forget_rate -1 does the same
    model = get_method_class("cmmq")((10, 8), 3, 16, resolve_params("cmmq", {**SMALL, "forget_rate": -1.0}))
    with pytest.raises(ValueError, match="noise rate"):
        model.forget_rate(25)
    model.noise_rate = 0.4
    assert model.forget_rate(25) == pytest.approx(0.4)
    assert model.forget_rate(0) == 0.0


def test_train_model_passes_the_noise_rate():
    from toy_data import toy_splits

    from cmhash.train import train_model

    tr, va, te = toy_splits()
    params = resolve_params("cmmq", {**SMALL, "forget_rate": -1.0, "epochs": 1})
    with pytest.raises(ValueError, match="noise rate"):
        train_model("cmmq", params, 8, tr, va, te, np.zeros(90, bool), seed=0, device="cpu")
    res = train_model("cmmq", params, 8, tr, va, te, np.zeros(90, bool), seed=0, device="cpu", noise_rate=0.2)
    assert res.codes[0].shape == (30, 8)
