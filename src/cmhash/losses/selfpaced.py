r"""Self-paced learning: closed-form sample weights and their regularisers.

* RSHNL (Eq. 10-12): closed form of ``argmin_{w in [0,1]} w l + gamma (w^2/2 - w)``:
  ``w_i = max(0, 1 - l_i / gamma)``; regulariser ``R(w, gamma) = gamma (w^2/2 - w)`` (Eq. 8).
  ``L_S = mean_i [w_i l_i + R(w_i, gamma)]`` (Eq. 7) with ``w`` held fixed (alternating optimisation).
  Hand check: ``gamma = 5, l = [0, 1, 2.5, 5, 7] -> w = [1, 0.8, 0.5, 0, 0]``.
"""

from __future__ import annotations

import torch


def self_paced_weights(pair_losses: torch.Tensor, gamma: float, mode: str = "linear") -> torch.Tensor:
    """Closed-form SPL weights (RSHNL Eq. 12), detached from the graph.

    ``linear``: ``w = max(0, 1 - l/gamma)``; ``binary``: ``w = 1[l < gamma]`` (RSHNL-S: every weight > 0
    set to 1); ``off``: ``w = 1``.
    """
    l = pair_losses.detach()
    if mode == "linear":
        return torch.clamp(1.0 - l / gamma, min=0.0)
    if mode == "binary":
        return (l < gamma).to(l.dtype)
    if mode == "off":
        return torch.ones_like(l)
    raise ValueError(f"self_paced must be 'linear', 'binary' or 'off', got {mode!r}")


def self_paced_regulariser(weights: torch.Tensor, gamma: float) -> torch.Tensor:
    """``R(w, gamma) = gamma (w^2/2 - w)`` (RSHNL Eq. 8), elementwise."""
    return gamma * (0.5 * weights * weights - weights)


def logistic_self_paced_weights(losses: torch.Tensor, gamma: float, scale: float) -> torch.Tensor:
    r"""DSCMH's soft self-paced weights (sunyuan-cs/DSCMH-AAAI-2024 ``spl/DSCMH_3.m``, the ``rs``/``rb`` steps):
    the losses are min-max mapped to ``[0, scale]`` (MATLAB ``mapminmax(l, 0, 1) * cmm``; a constant vector maps
    to 0), then ``w = (1 + e^{-gamma}) / (1 + e^{l - gamma})`` (1 at the smallest loss, about 1/2 at ``l = gamma``).

    Hand check: ``l = [1, 2, 3]``, ``scale = 15``, ``gamma = 8`` -> mapped ``[0, 7.5, 15]`` ->
    ``w = [1, (1 + e^-8) / (1 + e^-0.5), (1 + e^-8) / (1 + e^7)] = [1, 0.622668, 0.000911]``.
    """
    lo, hi = losses.min(), losses.max()
    span = hi - lo
    mapped = torch.where(span > 0, (losses - lo) / torch.where(span > 0, span, 1.0), 0.0) * scale
    return (1.0 + torch.exp(torch.as_tensor(-gamma, dtype=losses.dtype))) / (1.0 + torch.exp(mapped - gamma))


def self_paced_pair_exponent(epoch: int, total_epochs: int) -> float:
    r"""DHaPH's self-paced exponent ``delta`` at 1-based epoch ``t`` of ``E``: ``t / floor(E/3)`` while
    ``t <= floor(E/3)``, then 1 (1 from the start when ``floor(E/3) = 0``).
    Hand check: ``E = 100``: ``t = 1 -> 1/33``, ``t = 33 -> 1``, ``t = 50 -> 1``.
    """
    ramp = int(total_epochs / 3)
    if ramp <= 0 or epoch > ramp:
        return 1.0
    return epoch / ramp


def self_paced_contrastive_loss(
    a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor, tau: float, delta: float, self_paced: bool = True
) -> torch.Tensor:
    r"""DHaPH's self-paced multi-similarity contrastive loss (``MSLoss``) of anchors ``a`` against items ``b``.

    ``S_ij = 1[y_i.y_j > 0]``, ``c_ij = cos(a_i, b_j)`` (diagonal included), ``e_ij = exp(c_ij / tau)``;
    detached pair weights ``w+_ij = exp(-1 - c_ij)^(delta/4)``, ``w-_ij = exp(-1 + c_ij)^delta`` (both 1 when
    ``self_paced`` is off)::

        L = mean_i -log( P_i / (P_i + N_i) ),  P_i = sum_j S_ij w+_ij e_ij,  N_i = sum_j (1 - S_ij) w-_ij e_ij

    Rows without any positive (an all-zero label row against ``b``) are left out of the mean (the published
    loss is infinite there). Hand check (``tau = 1``, ``delta = 0``): ``a = b = [[1,0],[0,1],[1,0]]``, classes
    ``[0, 1, 0]``: rows 0 and 2 give ``-log(2e / (2e + 1))``, row 1 ``-log(e / (e + 2))``.
    """
    sim = (labels.to(torch.float32) @ labels.to(torch.float32).T > 0).to(a.dtype)
    c = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    e = torch.exp(c / tau)
    pos, neg = sim * e, (1.0 - sim) * e
    if self_paced:
        cd = c.detach()
        pos = pos * torch.exp(-1.0 - cd) ** (delta / 4.0)
        neg = neg * torch.exp(-1.0 + cd) ** delta
    p, n = pos.sum(dim=1), neg.sum(dim=1)
    rows = sim.sum(dim=1) > 0
    if not bool(rows.any()):
        return c.sum() * 0.0
    return -torch.log(p[rows] / (p[rows] + n[rows])).mean()
