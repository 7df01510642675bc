r"""Per-sample classification losses.

* ``per_sample_classification_loss``: cross-entropy against the label (single-label: argmax of the row) or mean
  binary cross-entropy over classes (multi-label), one value per sample.
  Hand check: logits ``[[0, 0]]``, label ``[1, 0]``: CE ``log 2``; BCE ``log 2`` (both classes at p = 1/2).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def per_sample_classification_loss(logits: torch.Tensor, labels: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """CE against the label (single-label, argmax of the row) or mean BCE over classes (multi-label)."""
    y = labels.to(logits.dtype)
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(dim=1)
    return F.cross_entropy(logits, y.argmax(dim=1), reduction="none")
