"""NACD (NeurIPS'25, Rose-bud/NACD @ 57e090f): loss terms by hand and as the official code writes them, the method's
per-sample confidence state, one step, code length and CPU determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from toy_data import toy_batch, toy_splits

from cmhash.losses.partial import (
    class_aware_contrastive_loss,
    class_thresholds,
    confidence_bce,
    confidence_momentum_update,
    confident_pseudo_labels,
    jaccard_similarity,
    momentum_weight,
    neighbour_confidence_reconstruction,
    soft_binary_cross_entropy,
)
from cmhash.losses.quantization import l1_quantization
from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.noise import make_noisy_labels
from cmhash.train import train_model

SMALL = {"hidden": [32], "text_hidden": [32], "epochs": 2, "batch_size": 32, "lr": 1e-3, "k": 5}


# ----------------------------------------------------------------------- the official code, transcribed literally
# Rose-bud/NACD @ 57e090f, NACD/train.py, class MultiLabelLoss (margin, shift as attributes) and the functions
# classification_loss / revise_label_each_epoch / the per-batch confidence update and thresholds in train().
def official_compute_label_similarity(label):
    intersection = torch.matmul(label, label.T)
    union = torch.sum(label, dim=1, keepdim=True) + torch.sum(label, dim=1, keepdim=True).T - intersection
    return intersection / (union + 1e-8)


def official_contrast_loss(u, v, label, label_confidence, class_threshold, margin=0.2, shift=1.0):
    weighted_label = label * torch.where(label_confidence >= class_threshold.unsqueeze(0), 1.0, 0.0)
    sim_matrix = official_compute_label_similarity(weighted_label)
    batch_size = u.size(0)
    eye = torch.eye(batch_size, device=u.device)
    positive_mask = (sim_matrix > 0).float() * (1 - eye)
    negative_mask = (sim_matrix == 0).float() * (1 - eye)
    S = torch.mm(u, v.t())
    diag_s = torch.diag(S).unsqueeze(1)
    mask_te = (S >= (diag_s - margin)).float().detach()
    cost_te = torch.where(mask_te.bool(), S, S - shift)
    mask_im = (S >= (diag_s.T - margin)).float().detach()
    cost_im = torch.where(mask_im.bool(), S, S - shift)
    loss_neg = torch.mean(negative_mask * (cost_te.exp() + cost_im.exp()))
    loss_pos = torch.mean(positive_mask * (-S - sim_matrix).exp())
    return (loss_pos + loss_neg - S.diag().mean()).mean()


def official_quant_loss(u, v):
    loss_u = torch.norm(u - u.sign(), p=1) / u.numel()
    loss_v = torch.norm(v - v.sign(), p=1) / v.numel()
    return loss_u + loss_v


def official_classification_loss(p_u, p_v, label, label_confidence, class_threshold):
    loss_cls_u = F.binary_cross_entropy(p_u, label_confidence)
    loss_cls_v = F.binary_cross_entropy(p_v, label_confidence)
    classification_loss = (loss_cls_u + loss_cls_v) / 2.0
    return (classification_loss).mean()


def official_revise_label_each_epoch(u, v, label, label_confidence, k, Lambda=0.5):
    if k == 0:
        return label_confidence * label
    u = u.detach()
    v = v.detach()
    u_norm = torch.nn.functional.normalize(u, dim=1)
    u_sim_matrix = torch.mm(u_norm, u_norm.t()).fill_diagonal_(0)
    v_norm = torch.nn.functional.normalize(v, dim=1)
    v_sim_matrix = torch.mm(v_norm, v_norm.t()).fill_diagonal_(0)
    sim = (u_sim_matrix + v_sim_matrix) / 2
    top_sim, nearest_indices = torch.topk(sim, k=k, dim=1)
    top_sim_norm = top_sim / (top_sim.sum(dim=1, keepdim=True) + 1e-8)
    nearest_labels = label_confidence[nearest_indices] * top_sim_norm.unsqueeze(-1)
    new_label = (nearest_labels.sum(dim=1)) * label
    new_label = Lambda * new_label + (1 - Lambda) * label_confidence
    return new_label


def official_confidence_update(conf_b, p_u, p_v, label, epoch, epochs):
    pseudo_label_weight = 1.0 * epoch / epochs * (0.8 - 0.95) + 0.95
    return (pseudo_label_weight * conf_b + (1 - pseudo_label_weight) * (p_u.detach() + p_v.detach()) / 2) * label


def official_thresholds(revise_label_confidence):
    mask = revise_label_confidence > 0
    class_sums = torch.sum(revise_label_confidence * mask, dim=0)
    class_counts = torch.sum(mask, dim=0)
    class_counts = torch.where(class_counts == 0, torch.tensor(1.0), class_counts)
    return class_sums / class_counts


def _random_case(b=9, c=5, bits=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = F.normalize(torch.randn(b, bits, generator=g), dim=1)
    v = F.normalize(torch.randn(b, bits, generator=g), dim=1)
    y = (torch.rand(b, c, generator=g) < 0.4).float()
    y[torch.arange(b), torch.randint(0, c, (b,), generator=g)] = 1.0
    conf = torch.rand(b, c, generator=g) * y
    t = torch.rand(c, generator=g) * 0.6
    return u, v, y, conf, t


# ------------------------------------------------------------------------------------------------ loss terms
def test_soft_bce_hand_case_and_torch():
    p, t = torch.tensor([[0.5, 0.8]]), torch.tensor([[1.0, 0.0]])
    assert soft_binary_cross_entropy(p, t).item() == pytest.approx((math.log(2) + math.log(5)) / 2, abs=1e-6)
    g = torch.Generator().manual_seed(1)
    p = torch.rand(6, 4, generator=g)
    t = torch.rand(6, 4, generator=g)
    torch.testing.assert_close(soft_binary_cross_entropy(p, t), F.binary_cross_entropy(p, t))
    # saturated probabilities: the -100 clamp of torch's BCE
    p = torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(soft_binary_cross_entropy(p, torch.tensor([[1.0, 0.0]])), torch.tensor(100.0))


def test_confidence_bce_equals_official_classification_loss():
    u, v, y, conf, t = _random_case()
    g = torch.Generator().manual_seed(2)
    pu, pv = torch.rand(9, 5, generator=g), torch.rand(9, 5, generator=g)
    torch.testing.assert_close(confidence_bce([pu, pv], conf), official_classification_loss(pu, pv, y, conf, t))


def test_pseudo_labels_and_jaccard_hand_cases():
    yhat = confident_pseudo_labels(torch.tensor([[1.0, 1.0]]), torch.tensor([[0.7, 0.2]]), torch.tensor([0.5, 0.5]))
    assert yhat.tolist() == [[1.0, 0.0]]
    t = jaccard_similarity(torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    assert t[0, 0].item() == pytest.approx(1.0, abs=1e-7)
    assert t[0, 1].item() == pytest.approx(1 / 3, abs=1e-7)
    assert t[0, 2].item() == 0.0 and t[2, 2].item() == 0.0
    _, _, y, _, _ = _random_case(seed=3)
    torch.testing.assert_close(jaccard_similarity(y), official_compute_label_similarity(y))


def test_crch_hand_cases():
    eye = torch.eye(2)
    # two easy negatives (S_01 = 0 < S_00 - 0.2): each damped by e^{-1}, twice (both sides)
    assert class_aware_contrastive_loss(eye, eye, eye, 0.2, 1.0).item() == pytest.approx(math.exp(-1) - 1, abs=1e-6)
    # two positives with T = 0.5: mean over 4 entries of exp(-0 - 0.5) on the off-diagonal
    pos = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    got = class_aware_contrastive_loss(eye, eye, pos, 0.2, 1.0).item()
    assert got == pytest.approx(2 * math.exp(-0.5) / 4 - 1, abs=1e-6)
    # two hard negatives (0.8 >= 0.6 - 0.2 on both sides): full weight e^{0.8}
    v = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    got = class_aware_contrastive_loss(eye, v, eye, 0.2, 1.0).item()
    assert got == pytest.approx(math.exp(0.8) - 0.6, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crch_equals_official_contrast_loss_with_gradients(seed):
    u, v, y, conf, t = _random_case(seed=seed)
    u1, v1 = u.clone().requires_grad_(True), v.clone().requires_grad_(True)
    u2, v2 = u.clone().requires_grad_(True), v.clone().requires_grad_(True)
    ours = class_aware_contrastive_loss(u1, v1, jaccard_similarity(confident_pseudo_labels(y, conf, t)), 0.2, 1.0)
    ref = official_contrast_loss(u2, v2, y, conf, t)
    torch.testing.assert_close(ours, ref)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(u1.grad, u2.grad)
    torch.testing.assert_close(v1.grad, v2.grad)


def test_l1_quantization_hand_case_and_official():
    assert l1_quantization(torch.tensor([[0.5, -1.0]])).item() == pytest.approx(0.25)
    assert l1_quantization(torch.tensor([[0.0, 0.2]])).item() == pytest.approx(0.4)
    u, v, *_ = _random_case(seed=4)
    torch.testing.assert_close(l1_quantization(u) + l1_quantization(v), official_quant_loss(u, v))


def test_momentum_update_hand_case_schedule_and_official():
    new = confidence_momentum_update(torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[0.2, 0.9, 0.7]]),
                                     torch.tensor([[1.0, 1.0, 0.0]]), 0.9)
    torch.testing.assert_close(new, torch.tensor([[0.92, 0.99, 0.0]]))
    assert momentum_weight(0, 100) == pytest.approx(0.95)
    assert momentum_weight(99, 100) == pytest.approx(0.8015)
    assert momentum_weight(50, 100) == pytest.approx(0.875)
    _, _, y, conf, _ = _random_case(seed=5)
    g = torch.Generator().manual_seed(6)
    pu, pv = torch.rand(9, 5, generator=g), torch.rand(9, 5, generator=g)
    for epoch in (0, 37, 99):
        torch.testing.assert_close(confidence_momentum_update(conf, (pu + pv) / 2, y, momentum_weight(epoch, 100)),
                                   official_confidence_update(conf, pu, pv, y, epoch, 100))


def test_reconstruction_and_thresholds_hand_case():
    z = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    y = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    conf = torch.tensor([[1.0, 0.5], [0.2, 0.0], [0.0, 0.4]])
    new = neighbour_confidence_reconstruction([z, z], conf, y, k=1, lam=0.2)
    torch.testing.assert_close(new, torch.tensor([[0.84, 0.4], [0.36, 0.0], [0.0, 0.32]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(class_thresholds(new), torch.tensor([0.6, 0.36]), atol=1e-6, rtol=0)
    # k = 0: the code returns P * y unchanged
    torch.testing.assert_close(neighbour_confidence_reconstruction([z, z], conf, y, k=0, lam=0.2), conf)


@pytest.mark.parametrize("chunk", [4096, 7])
def test_reconstruction_and_thresholds_equal_official(chunk):
    g = torch.Generator().manual_seed(7)
    n, c = 40, 6
    u, v = torch.randn(n, 8, generator=g), torch.randn(n, 8, generator=g)
    y = (torch.rand(n, c, generator=g) < 0.4).float()
    y[torch.arange(n), torch.randint(0, c, (n,), generator=g)] = 1.0
    y[:, 5] = 0.0  # an empty column: threshold sum / max(count, 1) = 0
    conf = torch.rand(n, c, generator=g) * y
    ours = neighbour_confidence_reconstruction([u, v], conf, y, k=20, lam=0.2, chunk=chunk)
    ref = official_revise_label_each_epoch(u, v, y, conf, 20, Lambda=0.2)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(class_thresholds(ours), official_thresholds(ref))


# ---------------------------------------------------------------------------------------------------- method
def _make(bits=16, **params):
    p = resolve_params("nacd", {**SMALL, **params})
    torch.manual_seed(0)
    return get_method_class("nacd")((10, 8), 3, bits, p)


def _batch(n=12, dims=(10, 8), c=3, seed=0):
    return toy_batch(n, dims, c, seed)


def test_defaults_follow_the_official_code():
    d = get_method_class("nacd").defaults
    assert (d["alpha"], d["beta"], d["lam"], d["k"], d["margin"], d["shift"]) == (0.3, 0.7, 0.2, 20, 0.2, 1.0)
    assert (d["epochs"], d["batch_size"], d["lr"], d["weight_decay"]) == (100, 128, 1e-5, 1e-5)
    assert d["hidden"] == [8192, 8192] and d["text_hidden"] == [8192] and d["warmup_epochs"] == 10
    stage, = _make().stages()
    assert stage.optimizers["main"].kind == "rmsprop" and stage.lr_schedule == "constant"
    assert stage.clip_grad_norm is None


def test_one_step_decreases_loss():
    model = _make()
    xs, y = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = model.training_step(xs, y, epoch=0).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    after = model.training_step(xs, y, epoch=0).loss
    assert after.item() < before.item()


@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_configured_length(bits):
    model = _make(bits=bits)
    xs, _ = _batch()
    for h in model.encode(xs):
        assert h.shape == (12, bits)
        torch.testing.assert_close(h.norm(dim=1), torch.ones(12))


def test_step_reads_confidence_before_update_and_masks_it():
    model = _make()
    xs, y = _batch()
    y = y.clone()
    y[0, 1] = 1  # one two-candidate row
    model.on_train_start(TrainContext(xs, y))
    idx = torch.arange(12)
    before = model.confidence.clone()
    out = model.training_step(xs, y, epoch=0, index=idx)
    # the loss used P = y (read before the update) ...
    with torch.no_grad():
        u, v = model.encode(xs)
        probs = [torch.sigmoid(z @ w) for z, w in zip((u, v), model.classifiers)]
    torch.testing.assert_close(out.terms["nacr"], confidence_bce(probs, before))
    # ... and the buffer now holds the momentum update, zero outside the candidates
    expected = official_confidence_update(before, probs[0], probs[1], y.float(), 0, 2)
    torch.testing.assert_close(model.confidence, expected)
    assert torch.all(model.confidence[y == 0] == 0)
    assert out.weights is not None and torch.all((out.weights >= 0) & (out.weights <= 1))


def test_reconstruction_runs_only_after_warmup_epochs():
    model = _make(warmup_epochs=2)
    xs, y = _batch()
    model.on_train_start(TrainContext(xs, y))
    model.confidence = model.confidence * 0.7
    kept = model.confidence.clone()
    for epoch in (0, 1, 2):  # the code's first reconstruction follows epoch e = warmup = 2, i.e. before epoch 3
        model.on_epoch_start(TrainContext(xs, y, epoch=epoch))
        torch.testing.assert_close(model.confidence, kept)
        assert torch.all(model.thresholds == 0.5)
    model.on_epoch_start(TrainContext(xs, y, epoch=3))
    with torch.no_grad():
        u, v = model.encode(xs)
    ref = official_revise_label_each_epoch(u, v, y.float(), kept, 5, Lambda=0.2)
    torch.testing.assert_close(model.confidence, ref)
    torch.testing.assert_close(model.thresholds, official_thresholds(ref))


def _run(seed, labels=None, **params):
    tr, va, te = toy_splits()
    if labels is not None:
        tr.labels = labels
    p = resolve_params("nacd", {**SMALL, "warmup_epochs": 0, **params})
    return train_model("nacd", p, 16, tr, va, te, np.zeros(tr.labels.shape[0], bool), seed=seed, device="cpu")


def test_training_is_deterministic_on_cpu_and_seed_matters():
    a, b, c = _run(3), _run(3), _run(4)
    for x, y in zip(a.codes, b.codes):
        np.testing.assert_array_equal(x, y)
        assert x.shape == (30, 16) and set(np.unique(x)) <= {-1, 1}
    assert a.history["val_map_mean"] == b.history["val_map_mean"]
    assert any(not np.array_equal(x, y) for x, y in zip(a.codes, c.codes))


@pytest.mark.parametrize("kind,rate", [("sym", 0.4), ("flip", 0.4), ("redundant", 1.5)])
def test_runs_on_single_label_data_with_any_noise_kind(kind, rate):
    tr, _, _ = toy_splits()
    noisy = make_noisy_labels(tr.labels, rate, seed=0, kind=kind).noisy
    res = _run(0, labels=noisy, epochs=3)
    assert all(math.isfinite(v) for v in res.history["loss"])
    assert res.codes[0].shape == (30, 16)


def test_resumed_training_is_bit_identical(tmp_path, monkeypatch):
    """The confidence buffer and thresholds travel in the checkpoint: a killed and resumed run equals a full one."""
    from cmhash.methods import nacd as nacd_module

    tr, va, te = toy_splits()
    tr.labels = make_noisy_labels(tr.labels, 1.0, seed=0, kind="redundant").noisy
    params = resolve_params("nacd", {**SMALL, "epochs": 5, "warmup_epochs": 1})
    flags = np.zeros(90, bool)
    ref = train_model("nacd", params, 16, tr, va, te, flags, seed=5, device="cpu")
    ckpt = tmp_path / "checkpoint.pt"
    original = nacd_module.NACD.training_step

    def crash_at_epoch_3(self, xs, labels, epoch, index=None):
        if epoch == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(self, xs, labels, epoch, index=index)

    monkeypatch.setattr(nacd_module.NACD, "training_step", crash_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_model("nacd", params, 16, tr, va, te, flags, seed=5, device="cpu",
                    checkpoint_path=ckpt, checkpoint_every=2, checkpoint_key="k")
    monkeypatch.setattr(nacd_module.NACD, "training_step", original)
    resumed = train_model("nacd", params, 16, tr, va, te, flags, seed=5, device="cpu",
                          checkpoint_path=ckpt, checkpoint_every=2, checkpoint_key="k")
    for a, b in zip(ref.codes, resumed.codes):
        np.testing.assert_array_equal(a, b)
    assert ref.history["val_map_mean"] == resumed.history["val_map_mean"]
