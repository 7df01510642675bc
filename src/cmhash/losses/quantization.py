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
