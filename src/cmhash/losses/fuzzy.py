r"""Fuzzy possibility / necessity / admissibility terms (RFCMH, Sun et al., ICML'26, "Fuzzy Admissibility
Refinement").

Notation: a batch of ``B`` pairs, ``K`` classes, ``L`` bits; ``z`` unit-norm continuous codes (``B x L``), ``y`` the
(noisy) multi-hot labels (``B x K``, one-hot for the single-label datasets RFCMH reports), ``t_i = argmax_k y_ik``,
``W`` a fixed ``L x K`` class matrix with unit columns ``w_k``. "Paper" = the equations printed in the paper (PDF in
XinchengSun/RFCMH @ 6e79a90); "reference" = the published code of that commit (``losses.py``: ``FARLoss``,
``get_train_category_credibility``; ``model.py``: ``IDCM_NN.membership``, ``_init_w_spread``).

* Class matrix (:func:`fixed_class_matrix`; code only, the paper calls it a "possibility collection layer
  P in R^{L x K}"): ``L >= K``: the first ``K`` columns of an ``L x L`` random orthogonal matrix; ``L < K``:
  unit Gaussian columns spread by ``steps`` repulsion steps ``W <- colnorm(W - eta W G)``, ``G = W^T W`` with
  its diagonal zeroed. Hand check (one step on two columns) in the function.
* Membership (:func:`fuzzy_membership`): ``m_ik = sigmoid(z_i.w_k / tau_m)^gamma_m``. Paper: ``tau_m = gamma_m = 1``
  (``p = sigma(P(z))``); reference: ``tau_m = 0.5, gamma_m = 2``, then row-normalised
  (:func:`normalise_possibility`: ``p_ik = m_ik / (sum_k m_ik + 1e-12)``).
  Hand check: ``z = [1, 0]``, ``w_1 = [1, 0]``, ``w_2 = [0, 1]``: paper ``m = [sigmoid(1), 0.5] = [0.73106, 0.5]``;
  reference ``m = [sigmoid(2)^2, 0.25] = [0.77580, 0.25]``, ``p = [0.75629, 0.24371]``.
* Competitor possibility (:func:`competitor_possibility`): ``c_i`` = mean of the ``kappa`` largest entries of
  ``p_i * (1 - y_i)`` (``kappa <= 0``: the largest); ``ell_i = sum_k y_ik p_ik`` (``= p_{i t_i}`` for one-hot rows).
* Necessity (:func:`necessity`, paper Eq. 1): ``n_ik = 1 - c_i`` if ``y_ik = 1``; for ``y_ik = 0``: paper
  ``n_ik = p_{i t_i}`` (as printed: rendered page 4 of the PDF shows no "1 -"), reference ``n_ik = 1 - ell_i``.
  The paper's first case prints ``1 - max_{j != k} p_ij`` and its text then aggregates the top-kappa non-target
  possibilities, as the code does; both forms use ``c_i``.
* Admissibility (:func:`admissibility`, paper Eq. 2): paper ``a_ik = (p_ik + kappa n_ik)/(1 + kappa)`` if
  ``y_ik = 1`` and ``(p_ik + n_ik)/2`` if ``y_ik = 0``; reference ``(p_ik + kappa n_ik)/(1 + kappa)`` for every ``k``
  (``kappa <= 0``: ``a = p``), clamped to ``[1e-6, 1 - 1e-6]``.
  Hand check (``K = 3``, ``y = [1, 0, 0]``, ``p = [0.6, 0.3, 0.1]``, ``kappa = 2``): ``c = (0.3 + 0.1)/2 = 0.2``,
  ``ell = 0.6``; paper ``n = [0.8, 0.6, 0.6]``, ``a = [2.2/3, 0.45, 0.35]``; reference ``n = [0.8, 0.4, 0.4]``,
  ``a = [2.2/3, 1.1/3, 0.3]``. ``kappa = 1``: ``c = 0.3``.
* Warm-up alignment (:func:`admissibility_alignment_loss`, paper Eq. 3, same in the code):
  ``L_FAR = (1/B) sum_i sum_m ||a_i^m - y_i||^2``. Hand check: the reference ``a`` above against ``y`` and a
  perfect second modality: ``(0.8/3)^2 + (1.1/3)^2 + 0.3^2 = 0.295556``.
* Reliability weights (:func:`reliability_weights`, paper Eq. 4): ``abar = (a^1 + a^2)/2``,
  ``g_i = abar_{i t_i} - max_{k != t_i} abar_ik``, ``w_i = sigmoid((g_i - delta)/T)``, detached. Reference: ``g`` is
  first standardised over the batch, ``(g - mean g)/(std_pop g + 1e-8)`` (and the code's ``delta = 0``).
  Hand check: ``abar = [[0.8, 0.1, 0.1], [0.2, 0.5, 0.3]]``, ``t = [0, 0]``: ``g = [0.7, -0.3]``; paper
  (``delta = 0.05, T = 0.7``) ``w = [sigmoid(0.65/0.7), sigmoid(-0.5)] = [0.71679, 0.37754]``; standardised
  (``delta = 0``) ``g = [1, -1]``, ``w = [sigmoid(1/0.7), sigmoid(-1/0.7)] = [0.80668, 0.19332]``.
* Reliability-weighted margin (:func:`reliability_margin_loss`, paper Eq. 5): ``zeta_ij = +1`` if ``t_i = t_j``
  else ``-1``; ``pi_ij = min(w_i, w_j)``; paper ``L = sum_{i != j} pi_ij max(0, gamma - zeta_ij z_i^1.z_j^2)``
  (a sum); reference: codes re-squashed ``zhat = normalize(tanh(z))``, ``S`` clamped to ``[-1, 1]``, and the
  weighted MEAN ``sum_{i != j} pi_ij max(...) / max(sum_{i != j} pi_ij, 1e-8)``; 0 for ``B <= 1``.
  Hand check (1-bit codes, unchanged by tanh + normalisation): ``z^1 = [1, 1, -1]``, ``z^2 = [1, -1, -1]``,
  ``t = [0, 0, 1]``, ``w = [1, 0.5, 0.25]``, ``gamma = 0.2``: only pairs (0,1) (``zeta = +1, S = -1``: 1.2, weight 0.5)
  and (2,1) (``zeta = -1, S = 1``: 1.2, weight 0.25) violate; paper ``0.6 + 0.3 = 0.9``; the off-diagonal weights
  sum to 2.0, so reference ``0.45``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

FORMS = ("paper", "reference")


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")


def fixed_class_matrix(bits: int, n_classes: int, steps: int = 50, eta: float = 0.05,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The fixed ``bits x n_classes`` class matrix ``W`` with unit columns (module docstring), drawn from
    ``generator`` (``None``: torch's global generator, i.e. the run's seed).

    Hand check of one repulsion step (:func:`spread_columns`, ``eta = 0.05``): unit columns ``w_1 = [1, 0]``,
    ``w_2 = [1/2, sqrt(3)/2]`` (cosine 0.5) have ``G_12 = 0.5``, so ``w_1 <- colnorm([1, 0] - 0.025 w_2) =
    [0.99976, -0.02192]`` and ``w_2 <- colnorm(w_2 - 0.025 w_1) = [0.48090, 0.87678]``: cosine 0.46156.
    """
    if bits >= n_classes:
        q = torch.nn.init.orthogonal_(torch.empty(bits, bits), generator=generator)
        return F.normalize(q[:, :n_classes], dim=0)
    w = F.normalize(torch.randn(bits, n_classes, generator=generator), dim=0)
    return spread_columns(w, steps, eta)


def spread_columns(w: torch.Tensor, steps: int = 50, eta: float = 0.05) -> torch.Tensor:
    """``steps`` repulsion steps ``W <- colnorm(W - eta W G)``, ``G = W^T W`` with zero diagonal."""
    for _ in range(steps):
        gram = w.T @ w
        gram.fill_diagonal_(0.0)
        w = F.normalize(w - eta * (w @ gram), dim=0)
    return w


def fuzzy_membership(z: torch.Tensor, w: torch.Tensor, tau: float = 1.0, gamma: float = 1.0) -> torch.Tensor:
    """``m_ik = sigmoid(z_i . w_k / tau)^gamma`` with the columns of ``w`` renormalised (``B x K``)."""
    m = torch.sigmoid(z @ F.normalize(w, dim=0) / max(tau, 1e-6))
    return m if gamma == 1.0 else m.pow(gamma)


def normalise_possibility(m: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to sum 1: ``p_ik = m_ik / (sum_k m_ik + eps)`` (reference form)."""
    return m / (m.sum(dim=1, keepdim=True) + eps)


def competitor_possibility(p: torch.Tensor, labels: torch.Tensor, kappa: int) -> torch.Tensor:
    """``c_i``: mean of the ``kappa`` largest non-label possibilities (``kappa <= 0``: the largest), ``B x 1``."""
    others = p * (1.0 - labels)
    k = min(int(kappa), p.shape[1])
    if k <= 1:
        return others.max(dim=1, keepdim=True).values
    return others.topk(k, dim=1).values.mean(dim=1, keepdim=True)


def necessity(p: torch.Tensor, labels: torch.Tensor, kappa: int, form: str = "paper") -> torch.Tensor:
    """Paper Eq. 1 (``B x K``): ``1 - c_i`` on label classes; ``p_{i t_i}`` (paper) or ``1 - p_{i t_i}``
    (reference) elsewhere, with ``p_{i t_i}`` read as ``sum_k y_ik p_ik``."""
    _check_form(form)
    y = labels.float()
    comp = competitor_possibility(p, y, kappa)
    label_p = (p * y).sum(dim=1, keepdim=True)
    other = label_p if form == "paper" else 1.0 - label_p
    return torch.where(y > 0.5, 1.0 - comp, other)


def admissibility(p: torch.Tensor, labels: torch.Tensor, kappa: int, form: str = "paper") -> torch.Tensor:
    """Paper Eq. 2 (``B x K``): label classes ``(p + kappa n)/(1 + kappa)``; other classes ``(p + n)/2`` (paper)
    or the same ``(p + kappa n)/(1 + kappa)`` clamped to ``[1e-6, 1 - 1e-6]`` (reference)."""
    _check_form(form)
    y = labels.float()
    if form == "reference":
        p = p.clamp(0.0, 1.0)
        if kappa <= 0:
            return p.clamp(1e-6, 1.0 - 1e-6)
    n = necessity(p, y, kappa, form)
    mixed = (p + kappa * n) / (1.0 + kappa)
    if form == "reference":
        return mixed.clamp(1e-6, 1.0 - 1e-6)
    return torch.where(y > 0.5, mixed, 0.5 * (p + n))


def admissibility_alignment_loss(a1: torch.Tensor, a2: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 3: ``(1/B) sum_i (||a_i^1 - y_i||^2 + ||a_i^2 - y_i||^2)``."""
    y = labels.float()
    return ((a1 - y).pow(2).sum(dim=1) + (a2 - y).pow(2).sum(dim=1)).mean()


def reliability_weights(a1: torch.Tensor, a2: torch.Tensor, labels: torch.Tensor, delta: float,
                        temperature: float, standardize: bool = False, eps: float = 1e-8) -> torch.Tensor:
    """Paper Eq. 4: ``w_i = sigmoid((abar_{i t_i} - max_{k != t_i} abar_ik - delta)/T)``, detached (``B``);
    ``standardize``: the gap is batch-standardised first (reference)."""
    a_bar = 0.5 * (a1 + a2)
    t = labels.argmax(dim=1)
    rows = torch.arange(a_bar.shape[0], device=a_bar.device)
    pos = a_bar[rows, t]
    neg = a_bar.index_put((rows, t), torch.full_like(pos, float("-inf"))).max(dim=1).values
    gap = pos - neg
    if standardize:
        gap = (gap - gap.mean()) / (gap.std(unbiased=False) + eps)
    return torch.sigmoid((gap - delta) / temperature).detach()


def reliability_margin_loss(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                            margin: float, form: str = "paper") -> torch.Tensor:
    """Paper Eq. 5: reliability-weighted cross-modal margin over the off-diagonal pairs; a sum (paper) or a
    weighted mean of re-squashed codes (reference)."""
    _check_form(form)
    b = z1.shape[0]
    if b <= 1:
        return z1.sum() * 0.0
    if form == "reference":
        z1, z2 = F.normalize(torch.tanh(z1), dim=1), F.normalize(torch.tanh(z2), dim=1)
    s = z1 @ z2.T
    if form == "reference":
        s = s.clamp(-1.0, 1.0)
    t = labels.argmax(dim=1)
    zeta = (t[:, None] == t[None, :]).to(s.dtype) * 2.0 - 1.0
    w = weights.to(s.dtype)
    pair_w = torch.minimum(w[:, None], w[None, :])
    off = ~torch.eye(b, dtype=torch.bool, device=s.device)
    hinge = torch.relu(margin - zeta * s)
    total = (pair_w * hinge)[off].sum()
    if form == "paper":
        return total
    return total / pair_w[off].sum().clamp_min(1e-8)
