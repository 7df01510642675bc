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

Departures / guesses: Eq. 4 has a temperature; the code has none (``tau = 1`` reproduces it). The paper's
centres are "normalised and discretised"; like the code we use continuous unit-norm centres during training.
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
