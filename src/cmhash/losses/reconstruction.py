r"""Feature reconstruction terms (decoders that rebuild a modality's input features from a code).

* ``L_rec = sum_m mean_{i,d} (D^m_id - x^m_id)^2`` over the modalities ``m`` (CIRH's ``loss_CCR`` without its
  weight: ``F.mse_loss(DeI_feat, imgN) + F.mse_loss(DeT_feat, txtN)``).
  Hand check: ``D = [[1, 2]]``, ``x = [[1, 0]]`` and ``D' = [[0]]``, ``x' = [[3]]``: ``(0 + 4) / 2 + 9 = 11``.
"""

from __future__ import annotations

import torch


def feature_reconstruction(decoded: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """``sum_m mean (decoded_m - targets_m)^2`` (targets detached: they are inputs, not predictions)."""
    return sum(((d - x.detach()) ** 2).mean() for d, x in zip(decoded, targets))
