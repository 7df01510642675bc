r"""Small building blocks shared by several methods (each with its equation and a hand-checked case).

* Cross-modal InfoNCE (SEHA's DCL, UCCH): stack ``Z = [z^1; z^2]`` (``2N`` rows); for anchor ``a`` with
  cross-modal partner ``a'``: ``P_a = exp(z_a.z_a'/tau) / sum_{b != a} exp(z_a.z_b/tau)``,
  ``L = mean_a -log(P_a + eps)``.
  Hand check (1-d codes, tau = 1): ``z^1 = z^2 = [1, 1, -1]``. Anchors with ``z = 1`` (four of them):
  ``P = e / (3e + 2/e) = e^2 / (3e^2 + 2)``; anchors with ``z = -1`` (two): ``P = e / (e + 4/e) = e^2 / (e^2 + 4)``;
  ``L = [4 (-log(e^2/(3e^2+2))) + 2 (-log(e^2/(e^2+4)))] / 6``.
* Two-component 1-d Gaussian mixture fitted by EM (NSRMH's sample split; numpy, no scikit-learn).
* RBF anchor features of the shallow methods: ``phi(x)_j = exp(-||x - a_j||^2 / (2 sigma^2))``.
* Rank-based label-similarity helpers: ``S_ij = 1[y_i . y_j > 0]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..nets import HashEncoder
from .base import Method


def cross_modal_info_nce(codes: list[torch.Tensor], tau: float = 1.0, eps: float = 1e-8) -> torch.Tensor:
    """Mean over the ``2N`` anchors of ``-log P_a`` (anchor excluded from the denominator)."""
    n = codes[0].shape[0]
    z = torch.cat(codes, dim=0)
    logits = (z @ z.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    log_p = logits[torch.arange(2 * n, device=z.device), partner] - torch.logsumexp(logits, dim=1)
    return -torch.log(torch.exp(log_p) + eps).mean()


def gmm_two_components(
    x: np.ndarray, iters: int = 20, reg_covar: float = 5e-4, tol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """EM for a 2-component 1-d Gaussian mixture. Returns ``(posterior N x 2, means, variances, weights)``.

    Deterministic initialisation: means at the 25th and 75th percentiles, both variances the data variance,
    equal weights. ``reg_covar`` is added to each variance (as scikit-learn does).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    mu = np.percentile(x, [25.0, 75.0]).astype(np.float64)
    var = np.full(2, x.var() + reg_covar)
    pi = np.array([0.5, 0.5])
    prev = -np.inf
    resp = np.full((x.size, 2), 0.5)
    for _ in range(iters):
        log_p = -0.5 * ((x[:, None] - mu) ** 2 / var + np.log(2 * np.pi * var)) + np.log(pi)
        top = log_p.max(axis=1, keepdims=True)
        log_norm = top + np.log(np.exp(log_p - top).sum(axis=1, keepdims=True))
        resp = np.exp(log_p - log_norm)
        nk = resp.sum(axis=0) + 1e-12
        pi = nk / x.size
        mu = (resp * x[:, None]).sum(axis=0) / nk
        var = (resp * (x[:, None] - mu) ** 2).sum(axis=0) / nk + reg_covar
        ll = float(log_norm.mean())
        if abs(ll - prev) < tol:
            break
        prev = ll
    return resp, mu, var, pi


def clean_probability(scores: np.ndarray, iters: int = 20, reg_covar: float = 5e-4) -> np.ndarray:
    """Posterior of the low-mean component of a 2-GMM fitted to min-max normalised ``scores`` (loss-like:
    small = reliable). Constant scores give probability 1 everywhere."""
    s = np.asarray(scores, dtype=np.float64)
    span = s.max() - s.min()
    if not np.isfinite(span) or span <= 0:
        return np.ones_like(s)
    resp, mu, _, _ = gmm_two_components((s - s.min()) / span, iters, reg_covar)
    return resp[:, int(np.argmin(mu))]


def rbf_features(x: torch.Tensor, anchors: torch.Tensor, sigma: float) -> torch.Tensor:
    """``phi(x)_j = exp(-||x - a_j||^2 / (2 sigma^2))`` (``N x n_anchors``)."""
    return torch.exp(-torch.cdist(x, anchors).pow(2) / (2.0 * sigma * sigma))


def label_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``S_ij = 1[a_i . b_j > 0]`` as float (share at least one label)."""
    return (a.to(torch.float32) @ b.to(torch.float32).T > 0).to(torch.float32)


def normalise_rows(y: torch.Tensor) -> torch.Tensor:
    """Rows scaled to sum 1 (a multi-hot label becomes a distribution; all-zero rows stay zero)."""
    y = y.to(torch.float32)
    return y / y.sum(dim=1, keepdim=True).clamp(min=1e-12)


class StandardisedUnsupervised(Method):
    """Base of the unsupervised deep methods: labels ignored, each modality's inputs standardised by the
    training mean and standard deviation (label-free statistics computed once in :meth:`on_train_start`),
    then the shared MLP -> tanh -> L2-norm encoder. Nothing here reads the labels or draws random numbers
    that depend on them, so codes are identical across noise rates for a fixed seed."""

    uses_labels = False

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        self.encoders = torch.nn.ModuleList(HashEncoder(d, self.params["hidden"], bits) for d in in_dims)
        for m, d in enumerate(in_dims):
            self.register_buffer(f"mean{m}", torch.zeros(d))
            self.register_buffer(f"std{m}", torch.ones(d))

    def on_train_start(
        self, xs: list[torch.Tensor], labels: torch.Tensor, clean_labels: torch.Tensor | None = None
    ) -> None:
        for m, x in enumerate(xs):
            setattr(self, f"mean{m}", x.mean(dim=0))
            setattr(self, f"std{m}", x.std(dim=0).clamp(min=1e-6) if x.shape[0] > 1 else torch.ones_like(x[0]))

    def standardised(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [(x - getattr(self, f"mean{m}")) / getattr(self, f"std{m}") for m, x in enumerate(xs)]

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [enc(x) for enc, x in zip(self.encoders, self.standardised(xs))]
