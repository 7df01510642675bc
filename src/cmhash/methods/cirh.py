r"""CIRH: Correlation-Identity Reconstruction Hashing, unsupervised (Zhu et al., TKDE 2022; code XizeWu/CIRH).

Labels are ignored (``uses_labels = False``; codes do not depend on the noise rate for a fixed seed).

Objective (simplified): features standardised by training statistics, fused multi-modal similarity
``S = clip(scale (S^1 + S^2) / 2, -1, 1)`` with ``S^m_ij = cos(x_i^m, x_j^m)``; codes ``h^m``; decoders
``D^m_n`` rebuild modality ``n``'s standardised features from ``h^m``::

    L = L_corr + identity L_id + recon L_rec + quant L_q
    L_corr = mean_{a,b} mean_{ij} (cos(h_i^a, h_j^b) - S_ij)^2          (correlation reconstruction)
    L_id   = mean_i |h_i^1 - h_i^2|^2                                  (identity: one code per pair)
    L_rec  = mean_{m,n} mean |D^m_n(h^m) - xhat^n|^2                      (cross-modal feature reconstruction)
    L_q    = as :func:`.dgcpn.quantisation_loss`

Departures / guesses: CIRH's fusion transformer and its similarity-graph enhancement are replaced by the
average of the two cosine matrices; the weights ``identity`` 1, ``recon`` 0.1, ``quant`` 0.1, ``scale`` 1.5
are guesses; decoders are one linear layer; shared MLP backbone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import StepOutput, register
from .common import StandardisedUnsupervised
from .dgcpn import code_similarity_loss, fused_similarity, quantisation_loss


@register
class CIRH(StandardisedUnsupervised):
    impl = "cirh"
    venue = "TKDE'22"
    defaults = {"hidden": [4096, 4096], "scale": 1.5, "identity": 1.0, "recon": 0.1, "quant": 0.1}

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        self.decoders = nn.ModuleList(nn.Linear(bits, d) for _ in in_dims for d in in_dims)

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        p = self.params
        xc = self.standardised(xs)
        target = fused_similarity(xc, 0.5, 0.0, p["scale"])
        codes = self.encode(xs)
        corr = code_similarity_loss(codes, target)
        ident = ((codes[0] - codes[1]) ** 2).sum(dim=1).mean()
        rec = torch.stack([
            ((self.decoders[2 * m + n](codes[m]) - xc[n]) ** 2).mean() for m in range(2) for n in range(2)
        ]).mean()
        quant = quantisation_loss(codes)
        loss = corr + p["identity"] * ident + p["recon"] * rec + p["quant"] * quant
        terms = {"corr": corr.detach(), "id": ident.detach(), "rec": rec.detach(),
                 "quant": quant.detach()}
        return StepOutput(loss=loss, terms=terms)
