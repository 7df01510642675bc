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
