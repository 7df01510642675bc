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


def optimal_two_means_1d(x: np.ndarray) -> np.ndarray:
    r"""Labels (``True`` = upper cluster) of the 2-means partition of 1-d ``x`` with the least within-cluster sum
    of squares (SSE). In 1-d an optimal partition is a threshold on the sorted values, so every split between two
    distinct values is scored exactly by prefix sums: deterministic, where scikit-learn's k-means (the
    initialisation of its ``GaussianMixture``) reaches this optimum from a random k-means++ start. Constant or
    one-element ``x``: all ``False``.

    Hand check: ``x = [0, 0.1, 0.9, 1]``: splits after 1, 2, 3 values have SSE 0.486667, 0.01, 0.486667, so the
    labels are ``[False, False, True, True]``.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    labels = np.zeros(x.size, dtype=bool)
    if x.size < 2 or x.min() == x.max():
        return labels
    order = np.argsort(x, kind="stable")
    xs = x[order]
    n = xs.size
    c1, c2 = np.cumsum(xs), np.cumsum(xs * xs)
    m = np.arange(1, n)  # size of the lower cluster
    lower = c2[m - 1] - c1[m - 1] ** 2 / m
    upper = (c2[-1] - c2[m - 1]) - (c1[-1] - c1[m - 1]) ** 2 / (n - m)
    sse = lower + upper
    sse[xs[m - 1] == xs[m]] = np.inf  # equal values stay in one cluster
    labels[order[int(np.argmin(sse)) + 1:]] = True
    return labels


def gmm_two_components_kmeans_init(
    x: np.ndarray, max_iter: int = 10, tol: float = 0.5, reg_covar: float = 5e-4
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""EM for a 2-component 1-d Gaussian mixture on scikit-learn's schedule, as NRCH's DNS fits it
    (``GaussianMixture(n_components=2, max_iter=10, tol=0.5, reg_covar=5e-4)``, default ``init_params="kmeans"``).

    Start: responsibilities = the hard 2-means partition (:func:`optimal_two_means_1d`, deterministic, instead of
    scikit-learn's randomly started k-means), then one M-step. Then up to ``max_iter`` rounds of E-step + M-step,
    stopping when the E-step's mean log-likelihood moved by less than ``tol`` from the previous round's (round 1
    compares with ``-inf``, so at least two rounds run). The returned posterior is an E-step with the final
    parameters (``predict_proba``). M-step: ``n_k = sum_i r_ik + 10 eps``, ``pi_k = n_k / sum_k n_k``,
    ``mu_k = sum_i r_ik x_i / n_k``, ``var_k = sum_i r_ik (x_i - mu_k)^2 / n_k + reg_covar``; E-step:
    ``r_ik = pi_k N(x_i; mu_k, var_k) / sum_l pi_l N(x_i; mu_l, var_l)``.
    Returns ``(posterior N x 2, means, variances, weights)``; component 0 is the lower 2-means cluster.

    Hand check: ``x = [0, 0, 1, 1]``: the partition {0, 0} | {1, 1} gives ``mu = (0, 1)``, ``var = (5e-4, 5e-4)``,
    ``pi = (1/2, 1/2)``; the E-steps leave them unchanged (change 0 < tol in round 2) and the posterior of
    component 0 is ``[1, 1, 0, 0]``.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    upper = optimal_two_means_1d(x)
    resp = np.stack([~upper, upper], axis=1).astype(np.float64)
    eps10 = 10 * np.finfo(np.float64).eps

    def m_step(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nk = r.sum(axis=0) + eps10
        mu = (r * x[:, None]).sum(axis=0) / nk
        var = (r * (x[:, None] - mu) ** 2).sum(axis=0) / nk + reg_covar
        return mu, var, nk / nk.sum()

    def e_step(mu: np.ndarray, var: np.ndarray, pi: np.ndarray) -> tuple[float, np.ndarray]:
        log_p = -0.5 * (np.log(2 * np.pi) + np.log(var) + (x[:, None] - mu) ** 2 / var) + np.log(pi)
        top = log_p.max(axis=1, keepdims=True)
        log_norm = top + np.log(np.exp(log_p - top).sum(axis=1, keepdims=True))
        return float(log_norm.mean()), np.exp(log_p - log_norm)

    mu, var, pi = m_step(resp)
    lower_bound = -np.inf
    for _ in range(max_iter):
        previous = lower_bound
        lower_bound, resp = e_step(mu, var, pi)
        mu, var, pi = m_step(resp)
        if abs(lower_bound - previous) < tol:
            break
    _, posterior = e_step(mu, var, pi)
    return posterior, mu, var, pi


def neighbour_label_reliability(
    u: torch.Tensor, v: torch.Tensor, labels: torch.Tensor, k: int = 20, gamma: float = 0.5, chunk: int = 1024
) -> torch.Tensor:
    r"""SCBCH's per-sample reliability (train.py ``select_clean_sample``), over a whole split::

        A = (cos(U, U) + cos(V, V)) / 2 with a zero diagonal;  n_i1..n_ik, a_i1..a_ik: the k largest entries of row i;
        yhat_i = sum_c a_ic / (sum_c a_ic + 1e-8) * y_{n_ic};   w_i = gamma + (1 - gamma) cos(y_i, yhat_i)

    (``y`` the noisy labels; ``w`` in ``[gamma - (1 - gamma), 1]``, in ``[0, 1]`` for ``gamma = 1/2``). Rows are
    done ``chunk`` at a time (the k largest of a row do not depend on it); ``k`` is capped at ``N``.

    Hand check: ``u = v = [[1, 0], [0.8, 0.6], [0, 1]]``, labels ``[A, A, B]``, ``k = 1``: nearest neighbours 1, 0, 1
    -> ``w = [1, 1, 0.5]``; with labels ``[A, B, B]``: ``w = [0.5, 0.5, 1]``.
    """
    y = labels.to(u.dtype)
    un = torch.nn.functional.normalize(u, dim=1)
    vn = torch.nn.functional.normalize(v, dim=1)
    n = un.shape[0]
    k = min(int(k), n)
    out = torch.empty(n, dtype=u.dtype, device=u.device)
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n), device=u.device)
        sim_u = un[rows] @ un.T
        sim_v = vn[rows] @ vn.T
        sim_u[torch.arange(rows.numel(), device=u.device), rows] = 0.0
        sim_v[torch.arange(rows.numel(), device=u.device), rows] = 0.0
        top, idx = torch.topk((sim_u + sim_v) / 2, k=k, dim=1)
        share = top / (top.sum(dim=1, keepdim=True) + 1e-8)
        y_hat = (y[idx] * share.unsqueeze(-1)).sum(dim=1)
        out[rows] = gamma + (1 - gamma) * torch.nn.functional.cosine_similarity(y[rows], y_hat, dim=1)
    return out


def linear_forget_rate(epoch: int, forget_rate: float, num_gradual: int) -> float:
    r"""Co-teaching forget-rate schedule as CMMQ's code builds it: ``np.linspace(0, r, G)[t]`` for epoch
    ``t < G``, then ``r``; i.e. ``r_t = t * (r / (G - 1))`` (``G > 1``), the last ramp value exactly ``r``.
    ``G = 1``: 0 at ``t = 0``, then ``r``; ``G = 0``: ``r`` throughout.
    Hand check: ``r = 0.6, G = 4``: ``[0, 0.2, 0.4, 0.6, 0.6, ...]``.
    """
    r = float(forget_rate)
    if num_gradual <= 0 or epoch >= num_gradual:
        return r
    if num_gradual == 1:
        return 0.0
    return r if epoch == num_gradual - 1 else epoch * (r / (num_gradual - 1))


def keep_smallest(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    r"""Boolean mask of the ``n_keep`` smallest ``scores`` (detached, stable order; ``n_keep`` clipped to
    ``[1, B]``). Hand check: ``[0.1, 2.0, 0.5]``, ``n_keep = 2 -> [True, False, True]``.
    """
    n = max(1, min(int(n_keep), scores.numel()))
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask[torch.argsort(scores.detach(), stable=True)[:n]] = True
    return mask


def discriminative_error(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""NSRMH's per-sample "dynamic discriminative loss" (``losses.py::Improvedmulti_get_loss``, vindahi/NSRMH at
    d020a40): ``e_i = 1/(B C) sum_j sum_c y_ic (1 - y_jc) |s_ic - s_jc|`` over the ``B`` rows of one batch, with
    ``s_i = h_i tanh(W)^T`` computed by the caller (``W`` a fixed random orthogonal ``C x K`` matrix): how far sample
    ``i``'s score on each of its labelled classes lies from the scores on that class of the batch's samples
    without it. Small = reliable (the low-mean GMM component).

    Hand check: ``s = [[1, 0], [0, 1], [.5, .5]]``, one-hot ``[c0, c1, c0]`` (``B = 3``, ``C = 2``):
    ``e = [1/6, (1 + .5)/6, .5/6]``.
    """
    y = labels.to(scores.dtype)
    mask = y[:, None, :] * (1.0 - y[None, :, :])  # B x B x C: a class c of i, a sample j without c
    diff = (scores[:, None, :] - scores[None, :, :]).abs()
    return (mask * diff).mean(dim=(1, 2))


def reference_clean_probability(
    scores: np.ndarray, max_iter: int = 10, tol: float = 0.5, reg_covar: float = 5e-4
) -> np.ndarray:
    r"""NSRMH's published clean probability (``Improvedmulti_get_loss`` at d020a40): scores normalised as
    ``(s - min + 1e-8) / (max - min + 1e-8)``, :func:`gmm_two_components_kmeans_init` (scikit-learn's
    ``GaussianMixture`` schedule: k-means start, at least two EM rounds, stop when the mean log-likelihood moves
    by less than ``tol``) with the code's ``max_iter=10, tol=0.5, reg_covar=5e-4``, posterior of the low-mean
    component. Constant scores give probability 1.

    Hand check: scores ``[3, 3, 5, 5]`` normalise to ``[~0, ~0, 1, 1]`` -> probabilities ``[1, 1, 0, 0]``.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    span = s.max() - s.min()
    if not np.isfinite(span) or span <= 0:
        return np.ones_like(s)
    x = (s - s.min() + 1e-8) / (span + 1e-8)
    resp, mu, _, _ = gmm_two_components_kmeans_init(x, max_iter, tol, reg_covar)
    return resp[:, int(np.argmin(mu))]


def median_confidence_split(prob: np.ndarray, threshold: float) -> np.ndarray:
    r"""NSRMH's published keep rule (``advanced_split_prob`` at d020a40), a boolean mask:
    ``keep_i = [p_i > max(T, median(p))] and [2 |p_i - 1/2| > 1/2]`` -- never more than half the samples.

    Hand check: ``p = [.9, .8, .2, .1]``: ``T = 0`` -> median ``.5``, keep ``[1, 1, 0, 0]``;
    ``T = .85`` -> ``[1, 0, 0, 0]``.
    ``p = [.9, .7, .3, .1]``, ``T = 0``: ``.7`` passes the median but ``2 |.7 - .5| = .4`` fails -> ``[1, 0, 0, 0]``.
    """
    p = np.asarray(prob, dtype=np.float64).ravel()
    above = (p > max(float(threshold), float(np.median(p)))).astype(np.float64)
    return above * np.abs(p - 0.5) * 2.0 > 0.5
