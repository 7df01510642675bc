r"""UCCH: Unsupervised Contrastive Cross-modal Hashing (Hu et al., TPAMI 2023; public code penghu-cs/UCCH).

Labels are ignored (``uses_labels = False``): the noisy labels never reach the loss, and no random numbers
depend on them, so for a fixed seed the codes are identical at every noise rate.

Objective (simplified): per modality ``h^m = H^m(x^m)`` (the shared MLP -> tanh -> L2 norm encoder), binary
codes by the straight-through "greedy" sign ``b^m = h^m + stopgrad(sign(h^m) - h^m)``, and a cross-modal
contrastive loss on ``b / sqrt(K)``::

    L = NCE(b^1 / sqrt(K), b^2 / sqrt(K); tau)        (:func:`cmhash.losses.contrastive.cross_modal_info_nce`)

Departures / guesses: UCCH contrasts against a momentum memory bank of the whole training set with a
ranking (margin) form of the contrastive loss; we use in-batch negatives with InfoNCE. ``tau`` = 0.3 is a
guess. Inputs standardised by training statistics (:class:`.common.StandardisedUnsupervised`; without it the
encoders collapse to one code on raw features). Backbone = the shared MLP of every deep method here (the paper freezes backbones in RSHNL's tables).
"""

from __future__ import annotations

import math

import torch

from ..losses.contrastive import cross_modal_info_nce
from .base import StepOutput, register
from .common import StandardisedUnsupervised


def straight_through_sign(h: torch.Tensor) -> torch.Tensor:
    """``sign`` in the forward pass, identity gradient in the backward pass (greedy hashing)."""
    return h + (torch.where(h >= 0, 1.0, -1.0).to(h.dtype) - h).detach()


@register
class UCCH(StandardisedUnsupervised):
    impl = "ucch"
    venue = "TPAMI'23"
    defaults = {"hidden": [4096, 4096], "tau": 0.3}

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        b = [straight_through_sign(h) / math.sqrt(self.bits) for h in self.encode(xs)]
        loss = cross_modal_info_nce(b, self.params["tau"])
        return StepOutput(loss=loss, terms={"nce": loss.detach()})
