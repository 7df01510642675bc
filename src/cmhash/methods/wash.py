r"""WASH: Weakly-supervised cross-modal hashing robust to noisy labels (Zhang et al., TKDE 2023; MATLAB
code czhangnju/WASH).

Shallow, designed for noisy / weak labels: the labels are first enhanced by the feature-neighbourhood
structure, then codes are learned by the discrete optimisation of :class:`.shallow.ShallowHashing`::

    A_ij = exp(-|phi_i - phi_j|^2 / s) over the k nearest neighbours j of i (concatenated kernel features of
           both views, self excluded), rows normalised to sum 1
    Ytilde = (1 - rho) Y + rho A Y                  (label enhancement / propagation)
    J = |Ytilde - B G|^2 + nu sum_m |B - Phi_m W_m|^2 + lam (...)

Hand check of the enhancement: three samples, ``Y = [[1,0],[1,0],[0,1]]``, ``k = 1``, sample 3's nearest
neighbour sample 1, ``rho = 0.5``: ``Ytilde_3 = [0.5, 0.5]``.

Departures / guesses: WASH's weak-label matrix completion and its semantic-aware asymmetric terms are
replaced by one-step kNN label propagation; ``k`` 10, ``rho`` 0.5 and the bandwidth ``s`` (mean kNN
squared distance) are guesses; RBF anchor features (500 anchors).
"""

from __future__ import annotations

import torch

from .base import register
from .shallow import ShallowHashing


def knn_label_enhancement(feats: torch.Tensor, labels: torch.Tensor, k: int, rho: float, chunk: int = 2048):
    """``(1 - rho) Y + rho A Y`` with ``A`` the row-normalised Gaussian kNN graph of ``feats`` (self excluded)."""
    n = feats.shape[0]
    k = max(1, min(int(k), n - 1))
    y = labels.to(torch.float32)
    dists, nbrs = [], []
    for start in range(0, n, chunk):
        d = torch.cdist(feats[start : start + chunk], feats).pow(2)
        d[torch.arange(d.shape[0]), torch.arange(start, start + d.shape[0])] = float("inf")
        val, idx = torch.topk(d, k, dim=1, largest=False)
        dists.append(val)
        nbrs.append(idx)
    dist, nbr = torch.cat(dists), torch.cat(nbrs)
    w = torch.exp(-dist / dist.mean().clamp(min=1e-12))
    w = w / w.sum(dim=1, keepdim=True)
    propagated = (w[:, :, None] * y[nbr]).sum(dim=1)
    return (1.0 - rho) * y + rho * propagated


@register
class WASH(ShallowHashing):
    impl = "wash"
    venue = "TKDE'23"
    defaults = {**ShallowHashing.defaults, "k": 10, "rho": 0.5}

    def refine_labels(self, phis: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        feats = torch.cat([torch.nn.functional.normalize(phi, dim=1) for phi in phis], dim=1)
        return knn_label_enhancement(feats, labels, self.params["k"], self.params["rho"])
