r"""Class-centre (proxy) losses.

* RSHNL's centre probability (Eq. 4) and semantic aggregation probability (Eq. 5):
  ``p(k|x_i^m) = softmax_k(b_i^m.c_k / tau)``, ``v_i^m = sum_k y_ik p(k|x_i^m)``.
* RSHNL's per-pair centre aggregation loss: ``l_i = sum_m l_r(v_i^m)``; ``L_p = mean_i l_i`` (Eq. 6).
  Hand check: 1 pair, 2 classes, 1-bit codes, centres ``+1 / -1``, image code ``+1``, text code ``-1``, label
  class 0, ``tau = r = 1``: ``p_img = e/(e + 1/e)``, ``p_txt = 1 - p_img``, ``l = (1 - p_img) + (1 - p_txt) = 1``.
"""

from __future__ import annotations

import torch

from .robust import robust_loss


def center_probabilities(code: torch.Tensor, centers: torch.Tensor, tau: float) -> torch.Tensor:
    """``p(k|x_i^m)`` of RSHNL Eq. 4: softmax over classes of ``b_i^m . c_k / tau`` (``N x K``)."""
    return torch.softmax(code @ centers.T / tau, dim=1)


def center_aggregation_per_pair(
    codes: list[torch.Tensor], centers: torch.Tensor, labels: torch.Tensor, tau: float, r: float
) -> torch.Tensor:
    """Per-pair loss ``l_i = sum_m l_r(v_i^m)`` with ``v_i^m = sum_k y_ik p(k|x_i^m)`` (RSHNL Eq. 5-7)."""
    y = labels.to(codes[0].dtype)
    total = torch.zeros(codes[0].shape[0], dtype=codes[0].dtype, device=codes[0].device)
    for code in codes:
        v = (y * center_probabilities(code, centers, tau)).sum(dim=1)
        total = total + robust_loss(v, r)
    return total


def proxy_regression_errors(code: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""NRCH's per-entry proxy error ``e_ik = (yhat_ik - z_i . tanh(w_k))^2`` with ``yhat = 2y - 1`` in ``{-1, 1}``
    (``N x C``; ``proxies`` is ``C x L``). Its mean trains the proxies (codes detached by the caller) and its
    worst positive entry scores a sample (:func:`worst_positive_error`).
    Hand check: ``z = [[1, 0]]``, ``tanh(W) = [[0.5, 0], [0, 0]]``, ``y = [[1, 0]] -> e = [[0.25, 1]]``.
    """
    target = 2.0 * labels.to(code.dtype) - 1.0
    return (target - code @ torch.tanh(proxies).T) ** 2


def worst_positive_error(errors: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""``l_i = max_k y_ik e_ik``: the largest error over a row's (noisy) positive classes (NRCH's DNS per-sample
    loss; 0 for a row without positives). Hand check: ``e = [[0.25, 1]]``: ``y = [[1, 0]] -> [0.25]``,
    ``y = [[1, 1]] -> [1]``.
    """
    return (labels.to(errors.dtype) * errors).max(dim=1).values


def hadamard_matrix(n: int) -> torch.Tensor:
    r"""Sylvester Hadamard matrix ``H_n`` (``n`` a power of two): ``H_1 = [1]``,
    ``H_2n = [[H_n, H_n], [H_n, -H_n]]`` (the matrix ``scipy.linalg.hadamard`` returns).
    Hand check: ``H_2 = [[1, 1], [1, -1]]``.
    """
    if n < 1 or n & (n - 1):
        raise ValueError(f"hadamard_matrix: n must be a power of two, got {n}")
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], dim=1), torch.cat([h, -h], dim=1)], dim=0)
    return h


def hadamard_hash_centers(
    n_classes: int, bits: int, generator: torch.Generator | None = None, tries: int = 20
) -> torch.Tensor:
    r"""Fixed class hash centres of CSQ / CMMQ (``C x K``, entries +-1).

    ``K`` a power of two: centre ``c`` = row ``c`` of ``[H_K; -H_K]`` for the first ``min(C, 2K)`` classes.
    Classes beyond ``2K`` (and every class when ``K`` is not a power of two) get random balanced rows
    (``K // 2`` entries -1 at random positions), redrawn up to ``tries`` times until the minimum pairwise
    Hamming distance over all ``C`` centres exceeds ``K/4`` and the mean is at least ``K/2``; otherwise the
    last draw is kept. Hand check: ``C = 3, K = 2``: rows ``[1, 1], [1, -1], [-1, -1]``.
    """
    pow2 = bits >= 1 and not bits & (bits - 1)
    base = torch.cat([hadamard_matrix(bits), -hadamard_matrix(bits)]) if pow2 else torch.zeros(0, bits)
    centers = torch.zeros(n_classes, bits)
    n_fixed = min(n_classes, base.shape[0])
    centers[:n_fixed] = base[:n_fixed]
    if n_fixed == n_classes:
        return centers
    iu = torch.triu_indices(n_classes, n_classes, offset=1)
    for _ in range(tries):
        for c in range(n_fixed, n_classes):
            row = torch.ones(bits)
            row[torch.randperm(bits, generator=generator)[: bits // 2]] = -1.0
            centers[c] = row
        hamming = (centers[:, None, :] != centers[None, :, :]).sum(dim=2)[iu[0], iu[1]].to(torch.float32)
        if hamming.min() > bits / 4 and hamming.mean() >= bits / 2:
            break
    return centers


def label_hash_centers(
    labels: torch.Tensor, centers: torch.Tensor, multilabel: bool, tie_bits: torch.Tensor
) -> torch.Tensor:
    r"""Target code of each row (CMMQ's ``label2center``). Single-label: ``t_i = c_{argmax y_i}``.
    Multi-label: ``s_i = y_i C`` (sum of the centres of the positive classes), ``t_ik = sign(s_ik)`` with
    ``s_ik = 0`` broken by the fixed +-1 vector ``tie_bits``.
    Hand check: centres ``[[1, 1], [1, -1]]``, ``y = [1, 1]``: ``s = [2, 0] -> t = [1, tie_2]``.
    """
    y = labels.to(centers.dtype)
    if not multilabel:
        return centers[y.argmax(dim=1)]
    s = y @ centers
    return torch.where(s > 0, 1.0, torch.where(s < 0, -1.0, tie_bits.to(s.dtype).expand_as(s))).to(s.dtype)


def center_bce(code: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Per-bit binary cross-entropy of a code in (-1, 1) to a +-1 centre (CSQ / CMMQ, elementwise ``N x K``):
    ``BCE((u_ik + 1)/2, (t_ik + 1)/2) = -[p log q + (1 - p) log(1 - q)]``, ``q = (u+1)/2``, ``p = (t+1)/2``,
    each log clamped at -100 as torch's ``BCELoss``. Hand check: ``u = [[0, 0.5]]``, ``t = [[1, -1]]``:
    ``[[log 2, log 4]]``.
    """
    q = (0.5 * (code + 1.0)).clamp(0.0, 1.0)
    return torch.nn.functional.binary_cross_entropy(q, 0.5 * (target.to(code.dtype) + 1.0), reduction="none")


def prototype_contrast_per_sample(code: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""NSRMH's prototype alignment per sample: ``sum_c y_ic l_ic / sum_c y_ic`` with
    ``l_ic = -log( e^{z_ic} / (e^{z_ic} + sum_{c' != c} (1 - y_ic') e^{z_ic'}) )``, ``z_ic = h_i . mu_c / K``
    (each positive class against the sample's negative classes; soft labels weight the positives and soften the
    negative mask). The published ``code_center_loss`` (``utilss.py``) adds ``1e-5`` inside and outside the log;
    for 0/1 labels it is otherwise the same expression.

    Hand check: ``K = 1``, ``mu = [[1], [-1]]``, ``h = [[1], [-1], [1]]``, one-hot ``[c0, c1, c1]``:
    ``z = [[1,-1], [-1,1], [1,-1]]``; samples 1 and 2 give ``-log(e / (e + 1/e))``,
    sample 3 ``-log((1/e) / (1/e + e))``.
    """
    z = code @ prototypes.T / code.shape[1]
    y = labels.to(z.dtype)
    exp_z = torch.exp(z - z.max(dim=1, keepdim=True).values)
    neg = ((1.0 - y) * exp_z).sum(dim=1, keepdim=True) - (1.0 - y) * exp_z  # sum over c' != c
    log_ratio = torch.log(exp_z) - torch.log(exp_z + neg)
    return -(y * log_ratio).sum(dim=1) / y.sum(dim=1).clamp(min=1e-12)


def prototype_contrast_loss(codes: list[torch.Tensor], prototypes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """:func:`prototype_contrast_per_sample` averaged over the samples, then over the given codes."""
    return torch.stack([prototype_contrast_per_sample(h, prototypes, labels).mean() for h in codes]).mean()
