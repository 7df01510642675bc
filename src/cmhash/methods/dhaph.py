r"""DHaPH: Deep Hierarchy-aware Proxy Hashing (Huo et al., TKDE 2024; code QinLab-WFU/DHaPH).

Proxy-based supervised hashing that "pays more attention to difficult sample pairs" (RSHNL's summary):
learnable class proxies ``p_c`` shared by both modalities and the Proxy-Anchor form of the loss, whose
log-sum-exp gives hard samples larger weights. With ``s(x, p) = cos(x, p)`` over the codes ``X`` of both
modalities in the batch, ``X_c^+`` the codes labelled ``c``, ``X_c^-`` the others and ``P^+`` the classes
present in the batch::

    L_pa = 1/|P^+| sum_{c in P^+} log(1 + sum_{x in X_c^+} e^{-alpha (s(x,p_c) - delta)})
         + 1/C     sum_c          log(1 + sum_{x in X_c^-} e^{ alpha (s(x,p_c) + delta)})
    L = L_pa + quant * L_q      (L_q as :func:`.dgcpn.quantisation_loss`)

Hand check (``alpha = 1``, ``delta = 0``, 2 classes, 1 modality): codes ``[1,0], [0,1], [1,0]``, labels
``[c0, c1, c0]``, proxies ``[1,0], [0,1]``: positive part ``[log(1 + 2/e) + log(1 + 1/e)] / 2``, negative
part ``[log(1 + e^0) + log(1 + 2 e^0)] / 2 = [log 2 + log 3] / 2``.

Departures / guesses: DHaPH's hierarchy-aware (hyperbolic, multi-level) proxies are reduced to one level of
Euclidean (cosine) proxies; ``alpha`` 32, ``delta`` 0.1 are Proxy-Anchor's defaults, ``quant`` 0.1 a guess;
shared MLP backbone (CLIP backbones are frozen in RSHNL's comparison anyway).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..nets import HashEncoder
from .base import Method, StepOutput, register
from .dgcpn import quantisation_loss


def proxy_anchor_loss(
    codes: torch.Tensor, labels: torch.Tensor, proxies: torch.Tensor, alpha: float, delta: float
) -> torch.Tensor:
    """``L_pa`` of the module docstring (``codes`` N x K, multi-hot ``labels`` N x C, ``proxies`` C x K)."""
    cos = nn.functional.normalize(codes, dim=1) @ nn.functional.normalize(proxies, dim=1).T  # N x C
    pos = labels.to(torch.bool)
    zeros = torch.zeros(1, cos.shape[1], dtype=cos.dtype, device=cos.device)
    pos_terms = torch.logsumexp(torch.cat([zeros, (-alpha * (cos - delta)).masked_fill(~pos, float("-inf"))]), 0)
    neg_terms = torch.logsumexp(torch.cat([zeros, (alpha * (cos + delta)).masked_fill(pos, float("-inf"))]), 0)
    present = pos.any(dim=0)
    return pos_terms[present].sum() / present.sum().clamp(min=1) + neg_terms.mean()


@register
class DHaPH(Method):
    impl = "dhaph"
    venue = "TKDE'24"
    defaults = {"hidden": [4096, 4096], "alpha": 32.0, "delta": 0.1, "quant": 0.1}

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        self.encoders = torch.nn.ModuleList(HashEncoder(d, self.params["hidden"], bits) for d in in_dims)
        self.proxies = nn.Parameter(nn.functional.normalize(torch.randn(n_classes, bits), dim=1))

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        p = self.params
        codes = self.encode(xs)
        pa = proxy_anchor_loss(torch.cat(codes), torch.cat([labels, labels]), self.proxies, p["alpha"], p["delta"])
        quant = quantisation_loss(codes)
        loss = pa + p["quant"] * quant
        return StepOutput(loss=loss, terms={"proxy": pa.detach(), "quant": quant.detach()})
