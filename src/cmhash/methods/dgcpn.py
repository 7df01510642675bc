r"""DGCPN: Deep Graph-neighbor Coherence Preserving Network for unsupervised cross-modal hashing
(Yu et al., AAAI 2021). No public code was found; written from the paper's idea.

Labels are ignored (``uses_labels = False``; codes do not depend on the noise rate for a fixed seed).

Objective: features are standardised by training statistics (:class:`.common.StandardisedUnsupervised`, so
cosines span [-1, 1] and the encoders do not collapse); within a batch
``S^m_ij = cos(x_i^m, x_j^m)``, the fused first-order similarity ``S1 = beta S^1 + (1 - beta) S^2`` and the
graph-neighbour (second-order) coherence ``S2 = normalise(S1 S1^T)`` (rows of ``S1`` L2-normalised, so
``S2_ij = cos(S1_i, S1_j)``); target ``S = (1 - eta) S1 + eta S2``, stretched by ``scale`` and clipped
to [-1, 1]. With codes ``h^m``::

    L = mean_{a,b in {1,2}} mean_{i,j} (cos(h_i^a, h_j^b) - S_ij)^2  +  quant * mean_m mean (h^m/|h^m|_inf - sign)^2

Hand check of the target: ``x^1 = x^2 = [[1,0],[0,1],[1,0]]`` (already centred), ``beta = 0.5``,
``eta = 0``, ``scale = 1``: ``S`` is 1 where the rows agree and 0 otherwise.

Departures / guesses: the paper's kNN graph over the whole training set is replaced by the in-batch
second-order similarity; ``beta`` 0.5, ``eta`` 0.4, ``scale`` 1.5 and ``quant`` 0.1 are guesses; shared MLP
backbone.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import StepOutput, register
from .common import StandardisedUnsupervised


def fused_similarity(
    xs: list[torch.Tensor], beta: float, eta: float, scale: float
) -> torch.Tensor:
    """``clip(scale ((1 - eta) S1 + eta S2), -1, 1)`` of the (standardised) batch features (module docstring)."""
    sims = [nn.functional.normalize(x, dim=1) @ nn.functional.normalize(x, dim=1).T for x in xs]
    s1 = beta * sims[0] + (1.0 - beta) * sims[1]
    s1n = nn.functional.normalize(s1, dim=1)
    s2 = s1n @ s1n.T
    return (scale * ((1.0 - eta) * s1 + eta * s2)).clamp(-1.0, 1.0)


def code_similarity_loss(codes: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """``mean_{a,b} mean_{ij} (cos(h_i^a, h_j^b) - S_ij)^2``."""
    normed = [nn.functional.normalize(h, dim=1) for h in codes]
    return torch.stack([((a @ b.T - target) ** 2).mean() for a in normed for b in normed]).mean()


def quantisation_loss(codes: list[torch.Tensor]) -> torch.Tensor:
    """``mean_m mean (h / max|h| - sign h)^2`` per row (unit-norm codes rescaled to the cube first)."""
    out = []
    for h in codes:
        u = h / h.abs().max(dim=1, keepdim=True).values.clamp(min=1e-12)
        out.append(((u - torch.sign(u).detach()) ** 2).mean())
    return torch.stack(out).mean()


@register
class DGCPN(StandardisedUnsupervised):
    impl = "dgcpn"
    venue = "AAAI'21"
    defaults = {"hidden": [4096, 4096], "beta": 0.5, "eta": 0.4, "scale": 1.5, "quant": 0.1}

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        p = self.params
        target = fused_similarity(self.standardised(xs), p["beta"], p["eta"], p["scale"])
        codes = self.encode(xs)
        sim = code_similarity_loss(codes, target)
        quant = quantisation_loss(codes)
        loss = sim + p["quant"] * quant
        return StepOutput(loss=loss, terms={"sim": sim.detach(), "quant": quant.detach()})
