"""Plain supervised baseline: the RSHNL networks trained by cross-entropy on the noisy labels.

A reference row for the tables with no noise handling at all::

    logits_i^m = W b_i^m + c        (one linear classifier shared by both modalities)
    L = mean_i sum_m CE(softmax(logits_i^m), y_i)    single-label (one-hot y)
    L = mean_i sum_m BCE(sigmoid(logits_i^m), y_i)   multi-label (rows with several positives)
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from ..nets import HashEncoder
from .base import Method, StepOutput, register


@register
class CrossEntropyBaseline(Method):
    impl = "ce_baseline"
    venue = "-"
    defaults = {"hidden": [4096, 4096]}

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        self.encoders = torch.nn.ModuleList(HashEncoder(d, self.params["hidden"], bits) for d in in_dims)
        self.classifier = torch.nn.Linear(bits, n_classes)

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        y = labels.to(torch.float32)
        loss = torch.zeros((), device=y.device)
        for code in self.encode(xs):
            logits = self.classifier(code)
            if self.multilabel:
                loss = loss + F.binary_cross_entropy_with_logits(logits, y)
            else:
                loss = loss + F.cross_entropy(logits, y.argmax(dim=1))
        return StepOutput(loss=loss, terms={"ce": loss.detach()})
