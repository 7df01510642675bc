r"""Sample selection: which training pairs a method trusts.

* Two-component 1-d Gaussian mixture fitted by EM (NumPy): deterministic initialisation (means at the 25th and
  75th percentiles, both variances the data variance, equal weights), ``reg_covar`` added to each variance as
  scikit-learn does. ``clean_probability``: posterior of the low-mean component on min-max normalised scores.
* Small-loss selection: the ``ceil(keep_rate * B)`` smallest losses (at least one).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def gmm_two_components(
    x: np.ndarray, iters: int = 20, reg_covar: float = 5e-4, tol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """EM for a 2-component 1-d Gaussian mixture. Returns ``(posterior N x 2, means, variances, weights)``."""
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


def small_loss_selection(losses: torch.Tensor, keep_rate: float) -> torch.Tensor:
    """Boolean mask of the ``ceil(keep_rate * B)`` smallest losses (at least one; ties by position)."""
    n_keep = max(1, math.ceil(keep_rate * losses.numel() - 1e-9))
    mask = torch.zeros_like(losses, dtype=torch.bool)
    mask[torch.argsort(losses.detach(), stable=True)[:n_keep]] = True
    return mask
