r"""Robust losses of a probability ``p`` of the right target (small when ``p`` is near 1).

* RSHNL's blend of GCE and MAE (Eq. 3 and 6 of Pu et al., AAAI'25):
  ``l_r(p) = (1 - r) (1 - p^r) / r + r (1 - p)``;  ``l_r(1) = 0``, ``l_r(0) = (r^2 - r + 1) / r``.
  Hand check: ``r = 0.5, p = 0.25 -> 0.5 * 0.5 / 0.5 + 0.5 * 0.75 = 0.875``; ``r = 1 -> 1 - p``.
  Published code: perquisite/RSHNL losses.py, ``(1 - q) * (1 - p ** q) / q + q * (1 - p)``.
"""

from __future__ import annotations

import torch


def robust_loss(p: torch.Tensor, r: float) -> torch.Tensor:
    """Elementwise ``l_r(p) = (1 - r)(1 - p^r)/r + r(1 - p)`` for probabilities ``p``."""
    if not 0.0 < r <= 1.0:
        raise ValueError(f"r must be in (0, 1], got {r}")
    p = p.clamp(min=1e-12, max=1.0)
    return (1.0 - r) * (1.0 - p.pow(r)) / r + r * (1.0 - p)


def robust_loss_max(r: float, n_modalities: int = 2) -> float:
    """Upper bound of the per-pair loss ``l_i`` (RSHNL Eq. 14): ``M (r^2 - r + 1) / r``."""
    return n_modalities * (r * r - r + 1.0) / r
