"""SEHA (LYXRhythm/SEHA @ 7c36487): hand-checked terms, the whole objective against the published
``SEHALoss`` written out literally, one step decreases the loss, code length, determinism of a toy run."""

import math

import numpy as np
import pytest
import torch
from toy_data import toy_batch, toy_splits

from cmhash.losses.classification import cross_soft_label_distillation
from cmhash.losses.contrastive import cross_modal_info_nce
from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.train import train_model


def _params(**extra):
    small = {"hidden": [16], "center_hidden": [16], "epochs": 2, "batch_size": 6, "lr": 1e-2, "warmup_epochs": 1}
    return resolve_params("seha", {**small, **extra})


def _batch(n=12, dims=(10, 8), c=3, seed=0):
    return toy_batch(n, dims, c, seed, float_labels=True)


def _make(bits=8, **extra):
    torch.manual_seed(0)
    model = get_method_class("seha")((10, 8), 3, bits, _params(**extra))
    xs, y = _batch()
    model.on_train_start(TrainContext(xs, y, y))
    return model, xs, y


class PublishedSEHALoss:
    """LYXRhythm/SEHA losses.py::SEHALoss (CE warm-up), written out literally (no CUDA)."""

    def __init__(self, labels, momentum):
        self.momentum = momentum
        self.soft_labels1 = torch.Tensor(labels).clone()
        self.soft_labels2 = torch.Tensor(labels).clone()

    def intra_modal_loss(self, predict1, predict2, index, labels, epoch, tp):
        if epoch <= tp:
            tmp1 = - (labels * predict1.log()).sum(1)
            tmp2 = - (labels * predict2.log()).sum(1)
        else:
            self.soft_labels1[index] = self.momentum * self.soft_labels1[index] + \
                (1 - self.momentum) * predict1.detach()
            self.soft_labels2[index] = self.momentum * self.soft_labels2[index] + \
                (1 - self.momentum) * predict2.detach()
            tmp1 = -torch.sum(torch.log(predict1) * self.soft_labels1[index], dim=1)
            tmp2 = -torch.sum(torch.log(predict2) * self.soft_labels2[index], dim=1)
            tmp3 = -torch.sum(torch.log(predict1) * self.soft_labels2[index], dim=1)
            tmp4 = -torch.sum(torch.log(predict2) * self.soft_labels1[index], dim=1)
            tmp1 = tmp1 + tmp3
            tmp2 = tmp2 + tmp4
        return (tmp1 + tmp2).mean()

    @staticmethod
    def inter_modal_loss(features, predicts, tau=1.0):
        n_view = len(features)
        batch_size = features[0].shape[0]
        out = []
        for k, mats in enumerate((features, predicts)):
            allm = torch.cat(mats, dim=0)
            similarity = torch.exp(allm @ allm.t() / tau)
            similarity = similarity - torch.diag(similarity.diag())
            sim_sum1 = sum(similarity[:, v * batch_size:(v + 1) * batch_size] for v in range(n_view))
            diag1 = torch.cat([sim_sum1[v * batch_size:(v + 1) * batch_size].diag() for v in range(n_view)])
            loss1 = -torch.log(diag1 / similarity.sum(dim=1) + 1e-8)
            sim_sum2 = sum(similarity[v * batch_size:(v + 1) * batch_size, :] for v in range(n_view))
            diag2 = torch.cat([sim_sum2[:, v * batch_size:(v + 1) * batch_size].diag() for v in range(n_view)])
            loss2 = -torch.log(diag2 / similarity.sum(dim=1) + 1e-8)
            scale = 1.0 if k == 0 else 0.01
            out += [loss1 * scale, loss2 * scale]
        return sum(out).mean()


# ---------------------------------------------------------------- terms
def test_self_distillation_hand_case_and_published_intra_modal_loss():
    p = torch.tensor([[0.8, 0.2], [0.5, 0.5], [0.25, 0.75]])
    s1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    s2 = torch.full((3, 2), 0.5)
    lg = math.log
    rows = [2 * -lg(0.8) + 2 * -(0.5 * lg(0.8) + 0.5 * lg(0.2)), 4 * lg(2),
            2 * -lg(0.75) + 2 * -(0.5 * lg(0.25) + 0.5 * lg(0.75))]
    assert cross_soft_label_distillation([p, p.clone()], [s1, s2]).item() == pytest.approx(sum(rows) / 3, rel=1e-6)
    # the published post-warm-up branch with momentum 0 writes p into both tables first: S^1 = S^2 = p
    g = torch.Generator().manual_seed(0)
    p1, p2 = (torch.softmax(torch.randn(5, 4, generator=g), dim=1) for _ in range(2))
    published = PublishedSEHALoss(torch.zeros(5, 4), momentum=0.0)
    value = published.intra_modal_loss(p1, p2, torch.arange(5), None, epoch=2, tp=1)
    torch.testing.assert_close(cross_soft_label_distillation([p1, p2], [p1, p2]), value)


def test_dual_contrastive_term_equals_published_inter_modal_loss():
    g = torch.Generator().manual_seed(1)
    h = [torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1) for _ in range(2)]
    p = [torch.softmax(torch.randn(6, 3, generator=g), dim=1) for _ in range(2)]
    ours = 2.0 * (cross_modal_info_nce(h, 1.0) + 0.01 * cross_modal_info_nce(p, 1.0))
    torch.testing.assert_close(ours, PublishedSEHALoss.inter_modal_loss(h, p))


# ---------------------------------------------------------------- the whole objective vs the published criterion
def test_training_steps_equal_the_published_criterion_and_soft_label_updates():
    model, xs, y = _make(warmup_epochs=1, momentum=0.9)
    published = PublishedSEHALoss(y, momentum=0.9)
    index = torch.tensor([4, 0, 7, 2, 9, 11])
    noisy = y[index]
    for epoch in (0, 1, 2, 3):  # warm-up (epoch <= tp), then two EMA steps on the same rows
        out = model.training_step([x[index] for x in xs], noisy, epoch, index=index)
        with torch.no_grad():
            codes = model.encode([x[index] for x in xs])
            centers = model.centers()
            probs = [torch.softmax(h @ centers.T, dim=1) for h in codes]
            value = published.intra_modal_loss(probs[0], probs[1], index, noisy, epoch, tp=1) \
                + 0.005 * PublishedSEHALoss.inter_modal_loss(codes, probs)
        torch.testing.assert_close(out.loss.detach(), value)
        torch.testing.assert_close(model.soft_labels[0], published.soft_labels1)
        torch.testing.assert_close(model.soft_labels[1], published.soft_labels2)


def test_soft_labels_start_noisy_by_default_clean_when_reference_compatible():
    xs, y = _batch()
    clean = torch.roll(y, 1, dims=0)
    for flag, start in ((False, y), (True, clean)):
        model = get_method_class("seha")((10, 8), 3, 8, _params(reference_compatible=flag))
        assert model.needs_clean_labels is flag
        model.on_train_start(TrainContext(xs, y, clean if flag else None))
        torch.testing.assert_close(model.soft_labels[1], start)


# ---------------------------------------------------------------- behaviour
@pytest.mark.parametrize("epoch", [0, 3])
def test_one_step_decreases_loss(epoch):
    model, xs, y = _make()
    idx = torch.arange(12)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = model.training_step(xs, y, epoch, index=idx).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    assert model.training_step(xs, y, epoch, index=idx).loss.item() < before.item()


@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_configured_length(bits):
    model, xs, _ = _make(bits=bits)
    for h in model.encode(xs):
        assert h.shape == (12, bits)
        torch.testing.assert_close(h.norm(dim=1), torch.ones(12))


def test_two_epoch_toy_run_is_deterministic():
    tr, va, te = toy_splits()
    params = _params(batch_size=32, warmup_epochs=0)
    a = train_model("seha", params, 16, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    b = train_model("seha", params, 16, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    for x, y in zip(a.codes, b.codes):
        assert x.shape == (30, 16)
        np.testing.assert_array_equal(x, y)
