r"""SEHA: Learning Cross-modal Self-distillation Hashing with Noisy Labels (authors and venue are not stated in
the repository).

Sources. Paper: the full text was not found (searched the stored web pages for the title and the module names);
the README's abstract is the paper statement used here: a Dual Contrastive Learning module (DCL, cross-modal
consistency at feature and hash level) and a Self-distillation Learning module (SDL) that contrasts the
external (noisy) supervision with the model's historically stabilised predictions. Official code:
LYXRhythm/SEHA @ ``7c36487`` (2026-01-09; the code came in one commit ``4105af5``, later commits only touch the
README and a default dataset name). Files read: ``losses.py`` (``SEHALoss``: ``intra_modal_loss``,
``inter_modal_loss``, ``forward``), ``model.py`` (``FeatureExtractor``, ``Embedding``, ``CMNN``), ``train.py``
(loop, soft-label construction, validation pass, model selection), ``utils.py`` (defaults), ``load_data.py``
(splits, noise), ``evaluate.py`` (MAP), the four ``run_*.bat`` scripts, README.

Networks (``model.py``, as RSHNL's): per modality Linear(d, 4096) -> ReLU -> Linear(4096, 4096) -> ReLU ->
Linear(4096, K, no bias; weight U(-1/sqrt(d), 1/sqrt(d))) -> tanh -> L2 norm gives ``h_i^m``; class centres
``C = norm(tanh(MLP(I_C)))`` (C -> 4096 -> 4096 -> K, last weight U(-1/sqrt(C), 1/sqrt(C))); class probabilities
``p_i^m = softmax(h_i^m C^T)`` (no temperature). One Adam over both (lr 1e-4, no weight decay, no schedule).

Objective ``L = L_SDL + lamda * L_DCL`` (``SEHALoss.forward``):

* DCL (``inter_modal_loss``), with ``Z = [z^1; z^2]`` the ``2B`` stacked rows and ``a'`` the other-modality
  partner of anchor ``a``::

      NCE(z) = mean_a -log( exp(z_a.z_a'/tau) / sum_{b != a} exp(z_a.z_b/tau) + 1e-8 )
      L_DCL  = 2 [ NCE(h) + prob_weight * NCE(p) ]        (the code's two directions are equal: factor 2)

  on the hash features ``h`` and on the probability vectors ``p`` (raw dot products of softmax vectors),
  :func:`cmhash.losses.contrastive.cross_modal_info_nce`.
* SDL (``intra_modal_loss``). Warm-up, ``epoch <= warmup_epochs`` (epochs 0..5, six epochs): cross-entropy
  with the noisy labels ``L_SDL = mean_i sum_m -sum_c ybar_ic log p_ic^m``. Afterwards, per-sample soft-label
  tables ``S^1, S^2`` (``N_train x C``) are updated BEFORE the loss, ``S_i^m <- mu S_i^m + (1 - mu) stopgrad(p_i^m)``,
  and ``L_SDL = mean_i sum_{a in {1,2}} sum_{b in {1,2}} -sum_c S_ic^b log p_ic^a``
  (:func:`cmhash.losses.classification.cross_soft_label_distillation`).

  Hand check (2 classes): ``p^1 = p^2 = [[.8,.2],[.5,.5],[.25,.75]]``, ``S^1 = [[1,0],[0,1],[0,1]]``,
  ``S^2 = [.5,.5]`` every row: sample 1 gives ``2(-log .8) + 2(-(.5 log .8 + .5 log .2))``, sample 2 ``4 log 2``,
  sample 3 ``2(-log .75) + 2(-(.5 log .25 + .5 log .75))``; the loss is their mean.

Defaults (``utils.py``): lamda 0.005, momentum 0.995, warm-up (``tp``) 5, tau 1, lr 1e-4, batch 256, 150 epochs,
hidden [4096, 4096] (both the hash nets and the centre generator); prob_weight 0.01 is hard-coded in
``inter_modal_loss``; ``q`` and ``linear`` are parsed but unused. The ``.bat`` scripts sweep only bits and noise:
no per-dataset values are published. Defaults here follow the code, except the soft-label start (below).

Departures (from the code, and what ``reference_compatible`` restores):

- Soft labels start from the NOISY training labels (the abstract's "external supervision"; row-normalised, which
  is the code's one-hot row for single-label data). The code builds ``SEHALoss(noisy_labels=input_data_par
  ['label_train'])``, which is the CLEAN training label matrix (``load_data.py`` keeps the noisy one in
  ``label_noisy``): label leakage. ``reference_compatible: true`` starts them from the clean labels (only then does
  the training loop hand the clean labels to the method, ``needs_clean_labels``).
- ``reference_compatible: true`` also reproduces the code's validation pass: after each post-warm-up epoch the
  criterion runs on the validation batches (in order, ``batch_size`` at a time) and its EMA write puts their
  predictions into the soft labels of TRAINING rows ``0 .. n_valid-1`` (:meth:`SEHA.on_validation`).
- Not implemented: the ``GCE`` and ``RC`` warm-up losses (``--loss_type``; default ``CE`` is implemented).
- ``log`` clamped at 1e-12 in the cross-entropies (the code takes ``log`` of the softmax directly).
- Multi-label rows (the code is single-label): the warm-up cross-entropy and the soft-label start use the
  row-normalised label.
- Protocol (not this module's): the code's validation split lies inside its test split for xmedia, INRIA and
  xmedianet (dataset option ``split.val_source: test`` reproduces it); its MAP scores queries without a relevant
  item as 0. Here every method selects its best epoch on a disjoint validation split.
"""

from __future__ import annotations

from typing import Any

import torch

from ..losses.classification import cross_soft_label_distillation
from ..losses.contrastive import cross_modal_info_nce
from ..nets import CenterGenerator, HashEncoder
from .base import Method, StepOutput, TrainContext, register
from .common import normalise_rows

# the term's name as earlier callers import it from this module
self_distillation_loss = cross_soft_label_distillation


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

    def on_train_start(self, ctx: TrainContext) -> None:
        labels, clean_labels = ctx.labels, ctx.clean_labels
        start = clean_labels if self.needs_clean_labels else labels
        if start is None:
            raise ValueError("seha: reference_compatible needs the clean training labels")
        self.soft_labels = normalise_rows(start).to(labels.device).unsqueeze(0).repeat(2, 1, 1)

    def _ema_write(self, probs: list[torch.Tensor], index: torch.Tensor) -> None:
        mu = self.params["momentum"]
        for m, q in enumerate(probs):
            self.soft_labels[m, index] = mu * self.soft_labels[m, index] + (1.0 - mu) * q.detach()

    def on_validation(self, ctx: TrainContext) -> None:
        """Reference-compatible only: validation predictions overwrite training rows ``0 .. n_valid-1``."""
        xs, epoch = ctx.val_xs, ctx.epoch
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
            sdl = cross_soft_label_distillation(probs, [self.soft_labels[0, index], self.soft_labels[1, index]])
        nce_h = cross_modal_info_nce(codes, p["tau"])
        nce_p = cross_modal_info_nce(probs, p["tau"])
        dcl = 2.0 * (nce_h + p["prob_weight"] * nce_p)
        loss = sdl + p["lamda"] * dcl
        return StepOutput(loss=loss, terms={"sdl": sdl.detach(), "dcl": dcl.detach()})
