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
