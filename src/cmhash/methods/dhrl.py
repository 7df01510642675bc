r"""DHRL: Deep Cross-Modal Hashing With Ranking Learning for Noisy Labels (Shu, Bai, Yong, Yu; IEEE Trans.
Big Data 2024). No public code was found; written from the abstract and RSHNL's summary ("constructs a ranking
and swapping module to estimate the uncertainty from noisy labels").

Abstract, in short: a *refined semantic concept alignment* module (two transformers align the modalities on a
set of refined concepts, then convert them into hash codes) and a *ranking-swapping* module (identify the noisy
labels by a ranking loss, rank them, and swap the ranking information between the two modal branches); no
assumption on the noise distribution. Our reading, per modality ``m`` (partner ``m'``):

* concept alignment: MLP feature ``f^m``; ``n_concepts`` learned concept vectors ``Q`` shared by both
  modalities; one attention step ``a^m = softmax(f^m Q^T / sqrt(d))``, ``r^m = f^m + a^m Q``;
  ``h^m = normalize(tanh(W^m r^m))``; ``L_align = mean_i |a_i^1 - a_i^2|^2``.
* per-sample ranking loss against the partner modality in the batch, with ``c_ij = h_i^m . h_j^{m'}``,
  positives ``P_i = {j : S_ij = 1}`` (noisy labels, the pair itself included), negatives ``N_i`` the rest::

      rank_i^m = mean_{n in N_i} [margin - mean_{p in P_i} c_ip + c_in]_+      (0 if N_i is empty)

  and ``l_i^m = rank_i^m + cls * CE(softmax(s h_i^m Theta^T), y_i)`` (``Theta`` a shared classifier).
* swapping: after ``warmup_epochs`` each branch learns only from the samples its PARTNER ranks as clean --
  those whose partner loss is at most the batch mean of the partner's losses (a threshold from the data,
  no noise rate given)::

      L = sum_m mean_{i in Sel(l^{m'})} l_i^m + align * L_align,   Sel(l) = {i : l_i <= mean(l)}

Hand checks (:func:`ranking_loss`, :func:`below_mean_selection`): ``h^1 = [[1,0],[0,1],[1,0]]``,
``h^2 = [[0,1],[0,1],[1,0]]``, classes ``[0, 1, 0]``, margin 1: anchor 0 has positives {0, 2} (mean cosine 0.5)
and negative {1} (cosine 0): ``1 - 0.5 + 0 = 0.5``; anchor 1: positive {1} (1), negatives {0, 2} (1, 0):
``mean(1, 0) = 0.5``; anchor 2: ``0.5``. Selection of ``[0.1, 2.0, 0.5]`` (mean 0.867): rows {0, 2}.

Guesses: the transformers are reduced to one attention step per modality over shared concepts; the
alignment term, the mean threshold of the swap, ``n_concepts`` 64, ``margin`` 0.5, ``cls`` 1, ``scale`` 8,
``align`` 1 and ``warmup_epochs`` 2. The logged weight of a sample is 1 if either branch uses it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..losses.classification import per_sample_classification_loss
from ..losses.similarity import label_similarity
from ..nets import mlp
from .base import Method, StepOutput, register


def ranking_loss(anchor: torch.Tensor, partner: torch.Tensor, sim: torch.Tensor, margin: float) -> torch.Tensor:
    """Per-anchor ``mean_{n in N_i} [margin - mean_{p in P_i} c_ip + c_in]_+`` with ``c = anchor @ partner.T``."""
    c = anchor @ partner.T
    pos = sim.sum(dim=1).clamp(min=1.0)
    pos_mean = (sim * c).sum(dim=1) / pos
    neg = 1.0 - sim
    hinge = F.relu(margin - pos_mean[:, None] + c) * neg
    return hinge.sum(dim=1) / neg.sum(dim=1).clamp(min=1.0)


def below_mean_selection(losses: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the losses at most their mean (never empty: the minimum is always kept)."""
    values = losses.detach()
    mask = values <= values.mean()
    mask[values.argmin()] = True  # equal losses can put the float mean just below all of them
    return mask


class _ConceptBranch(nn.Module):
    """MLP feature -> one attention step over the shared concepts -> hash code."""

    def __init__(self, in_dim: int, hidden: list[int], bits: int):
        super().__init__()
        if not hidden:
            raise ValueError("dhrl: 'hidden' needs at least one layer (its last width is the concept width)")
        self.trunk = nn.Sequential(mlp(in_dim, hidden[:-1], hidden[-1]), nn.ReLU())
        self.hash = nn.Linear(hidden[-1], bits)

    def forward(self, x: torch.Tensor, concepts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.trunk(x)
        attn = torch.softmax(f @ concepts.T / math.sqrt(f.shape[1]), dim=1)
        h = F.normalize(torch.tanh(self.hash(f + attn @ concepts)), dim=1)
        return h, attn


@register
class DHRL(Method):
    impl = "dhrl"
    venue = "TBD'24"
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": [4096, 4096],
        "n_concepts": 64,
        "margin": 0.5,
        "cls": 1.0,
        "scale": 8.0,
        "align": 1.0,
        "warmup_epochs": 2,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        width = int(p["hidden"][-1]) if p["hidden"] else 0
        self.branches = nn.ModuleList(_ConceptBranch(d, list(p["hidden"]), bits) for d in in_dims)
        self.concepts = nn.Parameter(torch.randn(int(p["n_concepts"]), width) / math.sqrt(max(width, 1)))
        self.classifier = nn.Linear(bits, n_classes)

    def forward_both(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        out = [branch(x, self.concepts) for branch, x in zip(self.branches, xs)]
        return [h for h, _ in out], [a for _, a in out]

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.forward_both(xs)[0]

    def per_sample_losses(self, xs: list[torch.Tensor], labels: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``([l^1, l^2], L_align)`` of a batch (``l^m``: ranking + classification loss per sample)."""
        p = self.params
        codes, attn = self.forward_both(xs)
        sim = label_similarity(labels, labels)
        per_sample = []
        for m in (0, 1):
            rank = ranking_loss(codes[m], codes[1 - m], sim, p["margin"])
            ce = per_sample_classification_loss(self.classifier(p["scale"] * codes[m]), labels, self.multilabel)
            per_sample.append(rank + p["cls"] * ce)
        return per_sample, (attn[0] - attn[1]).pow(2).sum(dim=1).mean()

    def selection(self, per_sample: list[torch.Tensor], epoch: int) -> list[torch.Tensor]:
        """Rows each branch learns from: all during warm-up, then those its partner ranks as clean."""
        if epoch < self.params["warmup_epochs"]:
            return [torch.ones_like(per_sample[0], dtype=torch.bool)] * 2
        return [below_mean_selection(per_sample[1]), below_mean_selection(per_sample[0])]  # swapped

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        per_sample, align = self.per_sample_losses(xs, labels)
        sel = self.selection(per_sample, epoch)
        ranked = sum(loss[s].mean() for loss, s in zip(per_sample, sel))
        loss = ranked + self.params["align"] * align
        weights = (sel[0] | sel[1]).to(torch.float32)
        return StepOutput(loss=loss, terms={"ranked": ranked.detach(), "align": align.detach()},
                          weights=weights)
