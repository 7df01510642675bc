r"""Shifted-margin cross-modal contrast: the cost matrices of RCH (NRCH, ACM MM'24) and SCBCH (AAAI'26).

Notation: ``S = u v^T`` (``B x B``) for image codes ``u`` and text codes ``v`` of one batch (row ``i`` of each is the
pair ``i``), margin ``mu``, shift ``Delta``, temperature ``tau``, label-similarity matrix ``T``.

* Shifted-margin costs (both codes): a pair ``(i, j)`` that is at least ``S_ii - mu`` (row direction, "te": text
  ``j`` against the positive of row ``i``) resp. ``S_jj - mu`` (column direction, "im") keeps its similarity; any
  other pair is shifted down by ``Delta``; the mask is not differentiated; the diagonal is then replaced by
  ``max(S_ii, 0)``::

      C^te_ij = S_ij if S_ij >= S_ii - mu else S_ij - Delta,   C^im_ij = S_ij if S_ij >= S_jj - mu else S_ij - Delta,
      C~_ii = max(S_ii, 0).

  Hand check: ``S = I_2``, ``mu = 0.2``, ``Delta = 1``: both directions give ``[[1, -1], [-1, 1]]``.
* RCH's per-sample robust contrastive loss (NRCH.py ``Robust_Loss``), ``T`` with a zero diagonal::

      r^te_i = -S_ii + tau log sum_j exp(C~^te_ij (1 - T_ij) / tau) + mu,
      r^im_j = -S_jj + tau log sum_i exp(C~^im_ij (1 - T_ij) / tau) + mu.

  The published code builds ``C^im`` but its second term uses the row log-sum of ``C~^te`` again, so its loss is
  ``2 r^te_i`` (``directions="code"``); ``directions="bidirectional"`` gives ``r^te_i + r^im_i``.
  Hand check: ``S = I_2``, ``T = 0``, ``mu = 0.2``, ``Delta = tau = 1``: ``r^te_i = log(e + 1/e) - 0.8 = 0.326928``,
  code form ``0.653856`` per sample; with ``T_01 = T_10 = 1`` the off-diagonal exponent is 0:
  ``r^te_i = log(e + 1) - 0.8 = 0.513262``.
* SCBCH's soft bidirectional term (train.py ``MultiLabelLoss.contrast_loss``), ``T`` the Jaccard similarity
  (``T_ii = 1``)::

      L_r   = mean_{i,j} [ tau exp(C~^te_ij (1 - T_ij) / tau) + tau exp(C~^im_ij (1 - T_ij) / tau) ],
      L_sep = mean_{i,j} [ 1[T_ij > 0, i != j] exp(Delta - S_ij) ],
      L_con = L_r + L_sep - mean_i S_ii.

  Hand check (``S = I_2``, ``mu = 0.2``, ``Delta = tau = 1``): ``T = I``: ``L_r = 2 (2 + 2/e)/4 = 1.367879``,
  ``L_sep = 0``, ``L_con = 0.367879``; ``T = 1`` (one class): ``L_r = 2``, ``L_sep = 2e/4 = 1.359141``,
  ``L_con = 2.359141``.
"""

from __future__ import annotations

import torch


def shifted_margin_costs(s: torch.Tensor, margin: float, shift: float, direction: str = "row") -> torch.Tensor:
    """``C~`` of the module docstring: ``direction="row"`` (threshold ``S_ii - mu``, NRCH/SCBCH ``cost_te``) or
    ``"column"`` (threshold ``S_jj - mu``, ``cost_im``); mask detached, diagonal ``max(S_ii, 0)``."""
    if direction not in ("row", "column"):
        raise ValueError(f"shifted_margin_costs: direction must be 'row' or 'column', got {direction!r}")
    diag = torch.diagonal(s)
    threshold = (diag[:, None] if direction == "row" else diag[None, :]) - margin
    keep = (s >= threshold).detach()
    cost = torch.where(keep, s, s - shift)
    eye = torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
    return torch.where(eye, torch.diagonal(cost).clamp(min=0).diag_embed(), cost)


def rch_contrastive_per_sample(
    u: torch.Tensor, v: torch.Tensor, t: torch.Tensor, margin: float = 0.2, shift: float = 1.0, tau: float = 1.0,
    directions: str = "code",
) -> torch.Tensor:
    """RCH's per-sample loss (``B``): ``2 r^te_i`` (``directions="code"``, the published computation) or
    ``r^te_i + r^im_i`` (``"bidirectional"``); ``t`` is the label similarity with its diagonal already zero."""
    if directions not in ("code", "bidirectional"):
        raise ValueError(f"rch_contrastive_per_sample: directions must be 'code' or 'bidirectional', got {directions!r}")
    s = u @ v.T
    pos = torch.diagonal(s)
    keep = 1.0 - t.to(s.dtype)
    te = shifted_margin_costs(s, margin, shift, "row")
    r_te = -pos + tau * torch.logsumexp(te * keep / tau, dim=1) + margin
    if directions == "code":
        return 2.0 * r_te
    im = shifted_margin_costs(s, margin, shift, "column")
    r_im = -pos + tau * torch.logsumexp(im * keep / tau, dim=0) + margin
    return r_te + r_im


def soft_shifted_exponential(
    s: torch.Tensor, t: torch.Tensor, margin: float = 0.2, shift: float = 1.0, tau: float = 1.0
) -> torch.Tensor:
    """SCBCH's ``L_r``: mean over all ``B x B`` entries of ``tau exp(C~ (1 - T) / tau)``, both directions summed."""
    keep = 1.0 - t.to(s.dtype)
    te = shifted_margin_costs(s, margin, shift, "row")
    im = shifted_margin_costs(s, margin, shift, "column")
    return (tau * torch.exp(te / tau * keep) + tau * torch.exp(im / tau * keep)).mean()


def overlap_pull(s: torch.Tensor, t: torch.Tensor, shift: float = 1.0) -> torch.Tensor:
    """SCBCH's ``L_sep``: ``mean_{i,j} 1[T_ij > 0, i != j] exp(Delta - S_ij)`` (mean over all ``B x B`` entries)."""
    eye = torch.eye(t.shape[0], dtype=t.dtype, device=t.device)
    mask = ((t - eye) > 0).to(s.dtype)
    return (mask * torch.exp(shift - s)).mean()


def bidirectional_soft_contrastive(
    u: torch.Tensor, v: torch.Tensor, t: torch.Tensor, margin: float = 0.2, shift: float = 1.0, tau: float = 1.0
) -> torch.Tensor:
    """SCBCH's ``L_con = L_r + L_sep - mean_i S_ii`` with ``S = u v^T`` and the soft label similarity ``t``."""
    s = u @ v.T
    return soft_shifted_exponential(s, t, margin, shift, tau) + overlap_pull(s, t, shift) - torch.diagonal(s).mean()
