r"""HMAH: Teacher-Student Learning: Efficient Hierarchical Message Aggregation Hashing (Tan et al., TMM 2022).
No public code was found; written from the title's idea.

A teacher sees both modalities (its encoder takes the concatenated features) and is trained with the
labels; lightweight per-modality students learn the labels and distil the teacher's codes::

    t_i = T([x_i^1, x_i^2]),  h_i^m = H^m(x_i^m)   (MLP -> tanh -> L2 norm)
    L = CE(Theta s t, y) + sum_m CE(Theta s h^m, y) + distill * sum_m mean_i |h_i^m - stopgrad(t_i)|^2

(CE = softmax cross-entropy, BCE for multi-label; ``Theta`` a shared linear classifier, ``s = scale``.)
Hand check of the distillation term: ``h = [[1,0],[0,1],[1,0]]``, ``t = [[1,0],[1,0],[0,1]]``: ``(0+2+2)/3``.

Departures / guesses: HMAH's hierarchical message aggregation inside the teacher is a plain MLP on the
concatenation; the teacher and students are trained jointly rather than in two stages; ``distill`` 1 and
``scale`` 8 are guesses; shared MLP backbone; retrieval uses the students (one code per modality).
"""

from __future__ import annotations

from typing import Any

import torch

from ..losses.classification import per_sample_classification_loss
from ..nets import HashEncoder
from .base import Method, StepOutput, register


def distillation_loss(students: list[torch.Tensor], teacher: torch.Tensor) -> torch.Tensor:
    return sum(((h - teacher.detach()) ** 2).sum(dim=1).mean() for h in students)


@register
class HMAH(Method):
    impl = "hmah"
    venue = "TMM'22"
    defaults = {"hidden": [4096, 4096], "distill": 1.0, "scale": 8.0}

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        self.encoders = torch.nn.ModuleList(HashEncoder(d, self.params["hidden"], bits) for d in in_dims)
        self.teacher = HashEncoder(sum(in_dims), self.params["hidden"], bits)
        self.classifier = torch.nn.Linear(bits, n_classes)

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        p = self.params
        codes = self.encode(xs)
        t = self.teacher(torch.cat(xs, dim=1))
        ce = [per_sample_classification_loss(self.classifier(p["scale"] * z), labels, self.multilabel).mean()
              for z in [t, *codes]]
        dist = distillation_loss(codes, t)
        loss = sum(ce) + p["distill"] * dist
        return StepOutput(loss=loss, terms={"teacher": ce[0].detach(),
                                            "students": (ce[1] + ce[2]).detach(),
                                            "distill": dist.detach()})
