"""RSHNL: Robust Self-paced Hashing with Noisy Labels (Pu et al., AAAI'25, arXiv 2501.01699).

Objective (paper Eq. 9), equations in :mod:`cmhash.losses`::

    L = L_p + alpha L_C                       if epoch < N_w   (warm-up)
    L = L_S + alpha L_C                       otherwise

with ``L_C`` the contrastive hashing loss (Eq. 2-3), ``L_p`` the centre aggregation loss (Eq. 4-6) and
``L_S`` its self-paced form (Eq. 7-8) with closed-form weights ``w_i = max(0, 1 - l_i/gamma)`` (Eq. 12),
recomputed for every mini-batch from the current per-pair losses and held fixed during the step.

Networks: per modality MLP -> tanh -> L2 norm; class centres from a learned generator (identity ->
MLP -> tanh -> L2 norm), as in the published code.

Flags (ablations are flags of this method, never copies):

- ``warmup_epochs`` (``N_w``; 0 = RSHNL-1), ``use_contrastive`` (false = RSHNL-2),
  ``self_paced`` = ``linear`` | ``binary`` (RSHNL-S) | ``off`` (RSHNL-3), ``gamma`` > 198.02 (RSHNL-D).
- ``contrastive_form``: ``paper`` (Eq. 2 as printed, self-similarity included) or ``reference`` (published
  code: anchor excluded from numerator and denominator; same reduction as Eq. 3).

Official code read: perquisite/RSHNL @ 34de146 -- ``losses.py`` (``cross_modal_contrastive_ctriterion_q`` = L_C,
``SupConLoss`` = the centre term with the self-paced weights), ``model.py`` (``ImgNN``/``TextNN``, ``Embedding`` =
the centre generator), ``train_model.py`` (loop, warm-up ``tp``), ``main.py`` (defaults). The defaults follow the
paper where paper and code differ (``contrastive_form``), the code elsewhere (networks, r, tau, schedule).

Departures / guesses: Eq. 4 has a temperature; the code has none (``tau = 1`` reproduces it). The paper's
centres are "normalised and discretised"; like the code we use continuous unit-norm centres during training.

Self-paced collapse (measured, ``benchmarks/spl_collapse.py``, mfeat, this module's mfeat config, 40 epochs):
when every pair loss of a batch exceeds ``gamma`` all weights are 0, the centre term is constant and training is
label-free; the loop warns naming the run and epoch. With ``contrastive_form: paper`` no run collapsed (5 seeds
at 16 and 128 bits, 3 at 32 bits; noise 0.4-0.8); with ``reference`` every run at noise 0.8 and 16 or 32 bits
(8 of 8) collapsed from the first self-paced epoch (6) to the end, none at 128 bits or noise <= 0.6. On a real
image/text benchmark the opposite form was reported to collapse (issue 10), so collapse depends on the data and
the code length; docs/methods.md has the table.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import losses
from ..nets import CenterGenerator, HashEncoder
from .base import Method, StepOutput, register


@register
class RSHNL(Method):
    impl = "rshnl"
    venue = "AAAI'25"
    stackable = True
    defaults = {
        "hidden": [4096, 4096],
        "center_hidden": [4096, 4096],
        "alpha": 0.1,
        "gamma": 5.0,
        "r": 0.01,
        "tau": 1.0,
        "warmup_epochs": 5,
        "use_contrastive": True,
        "self_paced": "linear",
        "contrastive_form": "paper",
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        if p["self_paced"] not in ("linear", "binary", "off"):
            raise ValueError(f"self_paced must be linear, binary or off, got {p['self_paced']!r}")
        if not 0.0 < p["r"] <= 1.0:
            raise ValueError(f"r must be in (0, 1], got {p['r']}")
        if p["gamma"] <= 0:
            raise ValueError(f"gamma must be positive, got {p['gamma']}")
        self.encoders = torch.nn.ModuleList(HashEncoder(d, p["hidden"], bits) for d in in_dims)
        self.centers = CenterGenerator(n_classes, p["center_hidden"], bits)

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        p = self.params
        codes = self.encode(xs)
        pair_loss = losses.center_aggregation_per_pair(codes, self.centers(), labels, p["tau"], p["r"])
        terms: dict[str, torch.Tensor] = {"cal": pair_loss.mean().detach()}
        weights = None
        if epoch < p["warmup_epochs"] or p["self_paced"] == "off":
            center_term = pair_loss.mean()
        else:
            weights = losses.self_paced_weights(pair_loss, p["gamma"], p["self_paced"])
            reg = losses.self_paced_regulariser(weights, p["gamma"])
            center_term = (weights * pair_loss + reg).mean()
            terms["spl"] = center_term.detach()
        loss = center_term
        if p["use_contrastive"] and p["alpha"] > 0:
            chl = losses.contrastive_hash_loss(codes, p["tau"], p["r"], p["contrastive_form"])
            terms["chl"] = chl.detach()
            loss = loss + p["alpha"] * chl
        return StepOutput(loss=loss, terms=terms, weights=weights)
