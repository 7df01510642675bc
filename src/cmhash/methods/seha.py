r"""SEHA: Learning Cross-modal Self-distillation Hashing with Noisy Labels (public code LYXRhythm/SEHA).

Networks as RSHNL: per modality MLP -> tanh -> L2 norm gives ``h_i^m``; learned class centres ``C``;
class probabilities ``p_i^m = softmax(h_i^m C^T)`` (no temperature).

Objective ``L = L_SDL + lamda * L_DCL``:

* Dual Contrastive Learning (inter-modal), cross-modal InfoNCE (:func:`cmhash.losses.contrastive.cross_modal_info_nce`)
  on the hash features and on the class-probability vectors, the code's two identical directions summed::

      L_DCL = 2 [ NCE(h^1, h^2) + prob_weight * NCE(p^1, p^2) ]

* Self-distillation Learning (intra-modal). Warm-up (``epoch <= warmup_epochs``): cross-entropy with the
  given labels, ``-sum_m sum_c ybar_ic log p_ic^m`` (``ybar`` = label row normalised to sum 1). Afterwards
  per-sample soft-label tables ``S^1, S^2`` (``N_train x C``) are updated by an EMA before the loss,
  ``S_i^m <- mu S_i^m + (1 - mu) stopgrad(p_i^m)``, and::

      L_SDL = mean_i sum_{a in {1,2}} sum_{b in {1,2}} -sum_c S_ic^b log p_ic^a

  Hand check (:func:`self_distillation_loss`, 2 classes): ``p^1 = p^2 = [[.8,.2],[.5,.5],[.25,.75]]``,
  ``S^1 = [[1,0],[0,1],[0,1]]``, ``S^2 = [.5,.5]`` every row: sample 1 gives
  ``2(-log .8) + 2(-(.5 log .8 + .5 log .2))``, sample 2 ``4 log 2``, sample 3 ``2(-log .75) + 2(-(.5 log .25 + .5 log .75))``;
  the loss is their mean.

Defaults (published code, ``utils.py``): lamda 0.005, prob_weight 0.01, momentum 0.995, warm-up 5, tau 1,
lr 1e-4, batch 256, 150 epochs, hidden [4096, 4096]; no per-dataset values are published.

Departures, guesses and the leakage flag:

- Default: the soft labels start from the NOISY training labels (row-normalised). ``reference_compatible:
  true`` starts them from the CLEAN training labels, as the published code does. That is label leakage: only
  in that mode does the training loop hand the clean labels to the method (``needs_clean_labels``).
- ``reference_compatible: true`` also reproduces the published code's validation pass, which runs the
  criterion on the validation batches and so EMA-writes their predictions into the soft labels of TRAINING
  rows ``0 .. n_valid-1`` (batch positions taken as training indices) after every post-warm-up epoch
  (:meth:`on_validation`). Its validation split lying inside the test split is a data-protocol matter
  (dataset option ``split.val_source: test``).
- Multi-label rows: the warm-up cross-entropy uses the row-normalised label (guess; the code is single-label).
"""

from __future__ import annotations

from typing import Any

import torch

from ..losses.contrastive import cross_modal_info_nce
from ..nets import CenterGenerator, HashEncoder
from .base import Method, StepOutput, register
from .common import normalise_rows


def self_distillation_loss(probs: list[torch.Tensor], soft: list[torch.Tensor], eps: float = 1e-12) -> torch.Tensor:
    """``mean_i sum_a sum_b -sum_c S^b_ic log p^a_ic`` (every modality pulled to both soft-label tables)."""
    total = torch.zeros((), dtype=probs[0].dtype, device=probs[0].device)
    for p in probs:
        log_p = torch.log(p.clamp(min=eps))
        for s in soft:
            total = total - (s * log_p).sum(dim=1).mean()
    return total


@register
class SEHA(Method):
    impl = "seha"
    venue = "SEHA (LYXRhythm/SEHA)"
    uses_index = True
    defaults = {
        "hidden": [4096, 4096],
        "center_hidden": [4096, 4096],
        "lamda": 0.005,
        "prob_weight": 0.01,
        "momentum": 0.995,
        "warmup_epochs": 5,
        "tau": 1.0,
        "reference_compatible": False,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        if not 0.0 <= p["momentum"] < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {p['momentum']}")
        self.encoders = torch.nn.ModuleList(HashEncoder(d, p["hidden"], bits) for d in in_dims)
        self.centers = CenterGenerator(n_classes, p["center_hidden"], bits)
        self.register_buffer("soft_labels", torch.zeros(2, 0, n_classes))

    @property
    def needs_clean_labels(self) -> bool:
        return bool(self.params["reference_compatible"])

    def on_train_start(
        self, xs: list[torch.Tensor], labels: torch.Tensor, clean_labels: torch.Tensor | None = None
    ) -> None:
        start = clean_labels if self.needs_clean_labels else labels
        if start is None:
            raise ValueError("seha: reference_compatible needs the clean training labels")
        self.soft_labels = normalise_rows(start).to(labels.device).unsqueeze(0).repeat(2, 1, 1)

    def _ema_write(self, probs: list[torch.Tensor], index: torch.Tensor) -> None:
        mu = self.params["momentum"]
        for m, q in enumerate(probs):
            self.soft_labels[m, index] = mu * self.soft_labels[m, index] + (1.0 - mu) * q.detach()

    def on_validation(self, xs: list[torch.Tensor], epoch: int) -> None:
        """Reference-compatible only: validation predictions overwrite training rows ``0 .. n_valid-1``."""
        if not self.params["reference_compatible"] or epoch <= self.params["warmup_epochs"]:
            return
        n = min(xs[0].shape[0], self.soft_labels.shape[1])
        batch = int(self.params["batch_size"])
        centers = self.centers()
        for start in range(0, n, batch):
            index = torch.arange(start, min(start + batch, n), device=xs[0].device)
            codes = self.encode([x[index] for x in xs])
            self._ema_write([torch.softmax(h @ centers.T, dim=1) for h in codes], index)

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None
    ) -> StepOutput:
        p = self.params
        codes = self.encode(xs)
        centers = self.centers()
        probs = [torch.softmax(h @ centers.T, dim=1) for h in codes]
        if epoch <= p["warmup_epochs"] or index is None:
            target = normalise_rows(labels)
            sdl = sum(-(target * torch.log(q.clamp(min=1e-12))).sum(dim=1).mean() for q in probs)
        else:
            if self.soft_labels.shape[1] == 0:
                raise RuntimeError("seha: on_train_start was not called (no soft-label table)")
            with torch.no_grad():
                self._ema_write(probs, index)
            sdl = self_distillation_loss(probs, [self.soft_labels[0, index], self.soft_labels[1, index]])
        nce_h = cross_modal_info_nce(codes, p["tau"])
        nce_p = cross_modal_info_nce(probs, p["tau"])
        dcl = 2.0 * (nce_h + p["prob_weight"] * nce_p)
        loss = sdl + p["lamda"] * dcl
        return StepOutput(loss=loss, terms={"sdl": sdl.detach(), "dcl": dcl.detach()})
