r"""Similarity-preserving terms and label similarities.

* Label similarity: ``S_ij = 1[y_i . y_j > 0]`` (share at least one label).
  Hand check: ``y = [[1,0],[0,1],[1,1]] -> S = [[1,0,1],[0,1,1],[1,1,1]]``.
"""

from __future__ import annotations

import torch


def label_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``S_ij = 1[a_i . b_j > 0]`` as float (share at least one label)."""
    return (a.to(torch.float32) @ b.to(torch.float32).T > 0).to(torch.float32)
