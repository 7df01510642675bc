r"""Quantisation terms: how far continuous codes are from binary ones.

* Squared quantisation error: ``Q = mean_{i,k} (h_ik - sign(h_ik))^2`` with the sign detached.
  Hand check: ``h = [[0.5, -1.0]] -> ((0.5 - 1)^2 + 0) / 2 = 0.125``.
"""

from __future__ import annotations

import torch


def squared_quantization(h: torch.Tensor) -> torch.Tensor:
    """``mean (h - sign(h))^2``, sign detached (zeros count as +1, as the codes do)."""
    b = torch.where(h >= 0, 1.0, -1.0).to(h.dtype).detach()
    return ((h - b) ** 2).mean()


def l1_quantization(h: torch.Tensor) -> torch.Tensor:
    """``Q_1 = mean_{i,k} |h_ik - sign(h_ik)|`` with ``torch.sign`` (zeros stay 0; no gradient through the sign).

    NACD (``Rose-bud/NACD`` ``NACD/train.py::MultiLabelLoss.quant_loss``: ``torch.norm(u - u.sign(), p=1) /
    u.numel()``, summed over the two modalities by the caller). Hand check: ``h = [[0.5, -1.0]] -> (0.5 + 0) / 2 =
    0.25``; ``h = [[0.0, 0.2]] -> (0 + 0.8) / 2 = 0.4``.
    """
    return (h - torch.sign(h).detach()).abs().mean()


def magnitude_quantization_per_sample(h: torch.Tensor) -> torch.Tensor:
    r"""``Q_i = mean_k (|h_ik| - 1/sqrt(L))^2`` for ``L``-bit rows (NRCH's ``Q_loss``, one modality): every coordinate's
    magnitude is pulled to that of a unit-norm binary code. Hand check: ``[[0.5, -0.5, 0.5, -0.5]] -> [0]``;
    ``[[1, 0, 0, 0]] -> [(0.25 + 3 * 0.25) / 4] = [0.25]``.
    """
    return (h.abs() - 1.0 / h.shape[1] ** 0.5).pow(2).mean(dim=1)


def abs_quantization(h: torch.Tensor) -> torch.Tensor:
    r"""Elementwise ``(|h_ik| - 1)^2`` (CMMQ's / CSQ's quantisation term, before any reduction).
    Hand check: ``[[0.5, -1.0]] -> [[0.25, 0]]``.
    """
    return (h.abs() - 1.0).pow(2)
