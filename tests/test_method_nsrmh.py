"""NSRMH (vindahi/NSRMH): hand-checked terms against the published formulas, the two selection rules, one step
decreases the loss, code length, determinism of a toy run."""

import math

import numpy as np
import pytest
import torch
from toy_data import toy_batch, toy_splits

from cmhash.losses.proxy import prototype_contrast_loss, prototype_contrast_per_sample
from cmhash.losses.selection import (
    clean_probability,
    discriminative_error,
    median_confidence_split,
    reference_clean_probability,
)
from cmhash.losses.similarity import cosine_affinity_loss
from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.train import train_model

E = math.e


def _params(**extra):
    small = {"hidden": [16], "epochs": 2, "batch_size": 6, "lr": 1e-2, "dropout": 0.0, "warmup_epochs": 0}
    return resolve_params("nsrmh", {**small, **extra})


def _batch(n=12, dims=(10, 8), c=3, seed=0):
    return toy_batch(n, dims, c, seed, float_labels=True)


def _make(bits=8, **extra):
    torch.manual_seed(0)
    model = get_method_class("nsrmh")((10, 8), 3, bits, _params(**extra))
    xs, y = _batch()
    model.on_train_start(TrainContext(xs, y))
    return model, xs, y


# ---------------------------------------------------------------- terms: hand cases and the published formulas
def test_similarity_term_hand_case_and_published_main_py():
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    expected = 5 * (1 - math.tanh(0.5)) ** 2 / 9
    assert cosine_affinity_loss([codes, codes.clone()], y).item() == pytest.approx(expected, rel=1e-6)
    # vindahi/NSRMH utilss.py::affinity_tag_multi and main.py (similarity_loss = loss_l2(H_norm H_norm^T, aff_label))
    g = torch.Generator().manual_seed(1)
    h = torch.randn(5, 4, generator=g)
    lab = (torch.rand(5, 3, generator=g) > 0.5).float()
    aff = np.matmul(lab.numpy(), lab.numpy().T).astype(np.float32)
    aff = 2 * (1 / (1 + np.exp(-aff))) - 1
    h_norm = torch.nn.functional.normalize(h)
    published = torch.nn.MSELoss()(h_norm.mm(h_norm.t()), torch.Tensor(aff))
    torch.testing.assert_close(cosine_affinity_loss([h], lab), published)


def test_prototype_term_hand_case_and_published_code_center_loss():
    h = torch.tensor([[1.0], [-1.0], [1.0]])
    mu = torch.tensor([[1.0], [-1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    good, bad = -math.log(E / (E + 1 / E)), -math.log((1 / E) / (1 / E + E))
    assert prototype_contrast_loss([h], mu, y).item() == pytest.approx((2 * good + bad) / 3, rel=1e-6)
    # vindahi/NSRMH utilss.py::code_center_loss, literally (its 1e-5 terms are the only difference)
    g = torch.Generator().manual_seed(2)
    code, center = torch.tanh(torch.randn(6, 8, generator=g)), torch.randn(4, 8, generator=g)
    label = (torch.rand(6, 4, generator=g) > 0.5).float()
    label[:, 0] = 1.0  # every row has a positive label
    eps = 1e-5
    logit_ii = code.mm(center.t()) / code.shape[1]
    our_logit_ii = torch.exp(logit_ii) * label
    mu_logit_ii = (torch.exp(logit_ii) * (1 - label)).sum(1).view(-1, 1).expand(6, 4) + our_logit_ii
    lossi = -((torch.log((our_logit_ii) / (mu_logit_ii + eps) + eps) * label).sum(1) / label.sum(1))
    torch.testing.assert_close(prototype_contrast_per_sample(code, center, label), lossi, atol=1e-4, rtol=1e-4)


def test_discriminative_error_hand_case_and_published_improvedmulti_get_loss():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    torch.testing.assert_close(discriminative_error(s, y), torch.tensor([1 / 6, 1.5 / 6, 0.5 / 6]))
    # vindahi/NSRMH losses.py::Improvedmulti_get_loss @ d020a40, literally
    g = torch.Generator().manual_seed(3)
    code, w = torch.tanh(torch.randn(7, 8, generator=g)), torch.randn(5, 8, generator=g)
    label = (torch.rand(7, 5, generator=g) > 0.6).float()
    yy = label.float()
    inverted_y = torch.add(torch.mul(yy, -1.0), 1.0)
    features_sims = code @ w.tanh().t()
    select_examples = torch.mul(yy.unsqueeze(1), inverted_y.unsqueeze(0))
    features_errors = torch.abs(features_sims.unsqueeze(1) - features_sims.unsqueeze(0))
    paired_errors = features_errors * select_examples
    sample_error = paired_errors.mean(dim=1)
    published = torch.tensor([float(sample_error[i].mean()) for i in range(len(sample_error))])
    torch.testing.assert_close(discriminative_error(features_sims, label), published)


def test_median_confidence_split_hand_cases_and_published_advanced_split_prob():
    assert median_confidence_split(np.array([0.9, 0.8, 0.2, 0.1]), 0.0).tolist() == [True, True, False, False]
    assert median_confidence_split(np.array([0.9, 0.8, 0.2, 0.1]), 0.85).tolist() == [True, False, False, False]
    assert median_confidence_split(np.array([0.9, 0.7, 0.3, 0.1]), 0.0).tolist() == [True, False, False, False]

    def advanced_split_prob(prob, threshold):  # vindahi/NSRMH losses.py @ d020a40, literally
        median_prob = np.median(prob)
        threshold = max(threshold, median_prob)
        pred = (prob > threshold).astype(int)
        confidence_weight = np.abs(prob - 0.5) * 2
        pred = (pred * confidence_weight > 0.5).astype(int)
        return pred

    rng = np.random.default_rng(0)
    for threshold in (0.0, 0.3):
        prob = rng.beta(0.5, 0.5, 200)
        np.testing.assert_array_equal(median_confidence_split(prob, threshold), advanced_split_prob(prob, threshold) == 1)
        assert median_confidence_split(prob, threshold).sum() <= 100


def test_reference_gmm_hand_case_matches_sklearn_and_differs_from_our_em():
    np.testing.assert_allclose(reference_clean_probability(np.array([3.0, 3.0, 5.0, 5.0])), [1, 1, 0, 0], atol=1e-12)
    assert np.all(reference_clean_probability(np.ones(4)) == 1.0)
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.3, 0.08, 600), rng.normal(0.55, 0.12, 400)])
    ours = reference_clean_probability(scores)
    # the setting matters: our 20-round EM from percentile starts gives visibly different posteriors
    assert np.abs(clean_probability(scores, 20) - ours).max() > 0.1
    mixture = pytest.importorskip("sklearn.mixture")  # not a dependency: checked where it is installed
    # vindahi/NSRMH losses.py::Improvedmulti_get_loss @ d020a40: normalisation, GMM settings, predict_proba
    x = ((scores - scores.min() + 1e-8) / (scores.max() - scores.min() + 1e-8)).reshape(-1, 1)
    gmm = mixture.GaussianMixture(n_components=2, max_iter=10, tol=5e-1, reg_covar=5e-4, random_state=0)
    gmm.fit(x)
    prob = gmm.predict_proba(x)[:, gmm.means_.argmin()]
    assert gmm.n_iter_ == 2
    np.testing.assert_allclose(ours, prob, atol=1e-8)


# ---------------------------------------------------------------- the two selection rules
def test_reference_mode_builds_the_published_extra_first_layer():
    paper, _, _ = _make()
    ref, _, _ = _make(selection="reference")
    first = [m for m in ref.branches[0].body if isinstance(m, torch.nn.Linear)][0]
    assert (first.in_features, first.out_features) == (10, 10)
    assert len([m for m in paper.branches[0].body if isinstance(m, torch.nn.Linear)]) == 1
    assert len([m for m in ref.branches[1].body if isinstance(m, torch.nn.Linear)]) == 2


def test_reference_selection_from_epoch_zero_with_the_threshold_from_epoch_19():
    model, xs, y = _make(selection="reference", threshold_rate=0.85, threshold_epoch=19)
    w = torch.tensor([0.9, 0.8, 0.2, 0.1] * 3)
    model.clean_probability = lambda scores: w  # the rule, apart from the score
    model.on_epoch_start(TrainContext(xs, y, epoch=0))  # no warm-up: selects at epoch 0, T = 0 -> median
    assert model.selected.tolist() == [1.0, 1.0, 0.0, 0.0] * 3
    model.on_epoch_start(TrainContext(xs, y, epoch=18))
    assert model.selected.tolist() == [1.0, 1.0, 0.0, 0.0] * 3
    model.on_epoch_start(TrainContext(xs, y, epoch=19))  # epoch + 1 >= 20: T = 0.85
    assert model.selected.tolist() == [1.0, 0.0, 0.0, 0.0] * 3


def test_reference_step_trains_only_the_kept_rows_on_their_noisy_labels():
    model, xs, y = _make(selection="reference")
    model.eval()  # same BatchNorm function for both evaluations
    keep = torch.tensor([1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 1], dtype=torch.bool)
    model.selected = keep.float()
    out = model.training_step(xs, y, 5, index=torch.arange(12))
    expected, _ = model._batch_loss([x[keep] for x in xs], y[keep])
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.weights, keep.float())
    model.selected = torch.zeros(12)
    model.selected[3] = 1.0  # one kept row: nothing to train on
    out = model.training_step(xs, y, 5, index=torch.arange(12))
    assert not out.loss.requires_grad and out.loss.item() == 0.0


def test_paper_mode_trains_noisy_labels_in_warm_up_then_soft_pseudo_labels():
    model, xs, y = _make(warmup_epochs=2)
    model.on_epoch_start(TrainContext(xs, y, epoch=1))  # warm-up: nothing changes
    torch.testing.assert_close(model.pseudo, y)
    model.on_epoch_start(TrainContext(xs, y, epoch=2))
    w = model.reliability
    assert w.shape == (12,) and float(w.min()) >= 0.0 and float(w.max()) <= 1.0
    hs = model.scored_codes(xs)  # the fused code (the fusion head is built by default)
    assert len(hs) == 1
    q = torch.softmax(hs[0] @ model.prototypes.T / model.bits / model.params["pseudo_temperature"], dim=1)
    torch.testing.assert_close(model.pseudo, w[:, None] * y + (1 - w[:, None]) * q)
    model.eval()
    out = model.training_step(xs, y, 2, index=torch.arange(12))
    expected, _ = model._batch_loss(xs, model.pseudo)
    torch.testing.assert_close(out.loss, expected)


def test_scores_use_the_modality_codes_without_a_fusion_head():
    model, xs, y = _make(fused_weight=0.0)
    assert model.encode_fused(xs) is None and len(model.scored_codes(xs)) == 2


# ---------------------------------------------------------------- behaviour
@pytest.mark.parametrize("selection", ["paper", "reference"])
def test_one_step_decreases_loss(selection):
    model, xs, y = _make(selection=selection)
    model.eval()  # the loss as a fixed function of the weights (BatchNorm running statistics)
    idx = torch.arange(12)
    model.on_epoch_start(TrainContext(xs, y, epoch=1))
    if selection == "reference":  # 12 untrained rows may keep none: fix the kept rows
        model.selected = (torch.arange(12) < 8).float()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = model.training_step(xs, y, 1, index=idx).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    assert model.training_step(xs, y, 1, index=idx).loss.item() < before.item()


@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_configured_length(bits):
    model, xs, _ = _make(bits=bits)
    model.eval()
    for h in [*model.encode(xs), model.encode_fused(xs)]:
        assert h.shape == (12, bits)


@pytest.mark.parametrize("selection", ["paper", "reference"])
def test_two_epoch_toy_run_is_deterministic(selection):
    tr, va, te = toy_splits()
    params = _params(selection=selection, batch_size=32, warmup_epochs=1)
    a = train_model("nsrmh", params, 16, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    b = train_model("nsrmh", params, 16, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    for x, y in zip(a.codes, b.codes):
        assert x.shape == (30, 16)
        np.testing.assert_array_equal(x, y)
