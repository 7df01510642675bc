r"""CMMQ (Yang et al., CVPR 2022): cross-modal hashing with noisy labels by small-loss sample selection.

RSHNL's related-work summary: CMMQ "selects confidence samples with smaller loss values" (memorisation
effect). No public code was found; written from that description as a cross-modal co-teaching scheme.

Per batch, per modality ``m``: codes ``h^m`` (shared MLP encoder), per-sample classification loss
``l_i^m = CE(softmax(s h_i^m Theta^T), y_i)`` (single-label) or BCE (multi-label), ``Theta`` a shared
linear classifier, ``s = scale``. Keep rate ``R(t) = 1 - forget_rate * min(1, t / ramp_epochs)``; the
``ceil(R(t) B)`` samples with the smallest ``l^1`` train modality 2 and those with the smallest ``l^2``
train modality 1 (co-teaching across modalities)::

    L = sum_m mean_{i in Sel(l^{other m})} l_i^m  +  align * mean_i |h_i^1 - h_i^2|^2

Hand check of the selection: ``l^1 = [0.1, 2.0, 0.5]``, ``l^2 = [3.0, 0.2, 0.4]``, ``R = 2/3`` selects
rows {0, 2} for modality 2 and rows {1, 2} for modality 1.

Departures / guesses: the quantisation/meta parts of CMMQ are not modelled; the co-teaching exchange
between modalities, ``forget_rate`` 0.5, ``ramp_epochs`` 10, ``align`` 1 and ``scale`` 8 are guesses.
The logged weight of a sample is 1 if it was selected for either modality.
"""

from __future__ import annotations

from typing import Any

import torch

from ..losses.classification import per_sample_classification_loss
from ..losses.selection import small_loss_selection
from ..nets import HashEncoder
from .base import Method, StepOutput, register


@register
class CMMQ(Method):
    impl = "cmmq"
    venue = "CVPR'22"
    defaults = {"hidden": [4096, 4096], "forget_rate": 0.5, "ramp_epochs": 10, "align": 1.0, "scale": 8.0}

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        self.encoders = torch.nn.ModuleList(HashEncoder(d, self.params["hidden"], bits) for d in in_dims)
        self.classifier = torch.nn.Linear(bits, n_classes)

    def keep_rate(self, epoch: int) -> float:
        p = self.params
        return 1.0 - p["forget_rate"] * min(1.0, epoch / max(1, p["ramp_epochs"]))

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        p = self.params
        codes = self.encode(xs)
        losses = [per_sample_classification_loss(self.classifier(p["scale"] * h), labels, self.multilabel)
                  for h in codes]
        rate = self.keep_rate(epoch)
        sel = [small_loss_selection(losses[1], rate), small_loss_selection(losses[0], rate)]  # partner selects
        cls = sum(l[s].mean() for l, s in zip(losses, sel))
        align = ((codes[0] - codes[1]) ** 2).sum(dim=1).mean()
        loss = cls + p["align"] * align
        weights = (sel[0] | sel[1]).to(torch.float32)
        return StepOutput(loss=loss, terms={"cls": cls.detach(), "align": align.detach()},
                          weights=weights)
