r"""NSRMH: Noise-aware Semantic Robust Multi-modal Hashing ("Noise-Aware Semantic Robust Multi-modal Hashing for
Multi-modal Retrieval"; venue not stated in the repository), one code per modality plus the paper's fused code.

Sources. Paper: the full text was not found (searched the stored web pages, documentation and issue corpora for
the title, the method name and its key phrases); its statements used here are the abstract and the overview in
the repository's README: a *dynamic discriminative loss* assesses sample reliability, a *probabilistic model*
generates *soft pseudo-labels*, and the refined labels guide a *prototype-based semantic alignment module*.
Official code: vindahi/NSRMH, HEAD ``dc56594`` (2025-08-01), read at every commit. Files: ``network.py``
(``MLP``, ``FusionNwt``; only version ``bc741ea``), ``main.py`` (HEAD ``bf76280``: losses and loop),
``losses.py`` (selection; ``d020a40`` and HEAD ``a9b3a05``), ``utilss.py`` (``affinity_tag_multi``,
``code_center_loss``, MAP@50; ``d020a40``), ``test.py`` (``d020a40``/``dc81568``: the older full training
script; HEAD ``722c456`` is the text ``none``), ``flickr.sh``, ``tsne.sh``, ``generate.py``, README.
No commit says which one produced the paper's tables. The grid script ``flickr.sh`` at HEAD (``ef87bee``: bits
16/32/64/128 x noise 0.4/0.8, 150 epochs) calls ``test.py``, which the same day became ``none``; the last
runnable pipeline it can have run is therefore ``test.py @ dc81568`` with ``losses.py @ d020a40`` (inferred).
The HEAD selection (``losses.py @ a9b3a05``) cannot run: it multiplies a ``B x B x C`` tensor with a
``B x B x C x 1`` mask, a shape error unless ``B = C``. The selection read here is ``d020a40``'s.

Model (as ``FusionNwt``; cross-modal adaptation ours). Per modality an MLP with layers Linear -> Tanh ->
BatchNorm1d -> Dropout(``dropout``) over ``hidden``, a head ``H^m = tanh(FC^m(.))`` (our per-modality code), and
the paper's fused code ``H^f = tanh(FC^f(MLP^1(x^1) + MLP^2(x^2)))`` (``fused_weight > 0``; encoded by
:meth:`NSRMH.encode_joint` as the joint code set ``fused``: task ``FUSED``). Prototypes ``mu in R^{C x K}`` learned from a standard-normal
start; ``W in R^{C x K}`` fixed random orthogonal (the code registers it as a parameter but it never enters a
loss, so it never changes). ``selection: reference`` also builds the code's extra first layer
Linear(d_in, d_in) -> Tanh -> BN -> Dropout in each branch (its ``MLP`` gets ``[d_in, h1, 128]`` and builds
Linear(d_in, d_in) first; its last Linear(128, 128) is never executed and is not built here).

Losses on a batch (HEAD ``main.py``; ``Y`` the batch's labels -- soft pseudo-labels or noisy labels, below)::

    A_ij   = 2 sigmoid(y_i . y_j) - 1 = tanh(y_i . y_j / 2)                       (affinity_tag_multi)
    L_sim  = mean_{a,b} mean_{i,j} (cos(H_i^a, H_j^b) - A_ij)^2                    (mse of H_n H_n^T and A)
    L_cen  = mean_codes mean_i [ sum_c y_ic l_ic / sum_c y_ic ],                  (code_center_loss)
             l_ic = -log( e^{z_ic} / (e^{z_ic} + sum_{c' != c} (1 - y_ic') e^{z_ic'}) ),  z_ic = H_i . mu_c / K
    L_sign = mean_codes mean (H - sign(H))^2
    L      = sim_weight L_sim + cen_weight L_cen + sign_weight L_sign              (1, 1, 0.01)
    total  = L(H^1, H^2) + fused_weight L(H^f)          (a, b over the modality codes; L(H^f) over the fused code)

Terms: :func:`cmhash.losses.similarity.cosine_affinity_loss`, :func:`cmhash.losses.proxy.prototype_contrast_loss`,
:func:`cmhash.losses.quantization.squared_quantization`.

Sample reliability, every epoch over the whole training split (codes in eval mode; the codes scored are
``H^f`` when the fusion head exists, as the code scores its fused code, else ``H^1`` and ``H^2`` averaged):

1. Dynamic discriminative loss (``score: discriminative``, the code's): ``s_i = H_i tanh(W)^T``,
   ``d_i = 1/(B C) sum_{j in batch} sum_c y_ic (1 - y_jc) |s_ic - s_jc|`` over shuffled chunks of ``batch_size``
   (:func:`cmhash.losses.selection.discriminative_error`; ``y`` the noisy labels). ``score: prototype`` (ours):
   ``d_i`` = the per-sample ``L_cen`` with the noisy label. Measured on mfeat (noise 0.6, 32 bits, MLPs [512, 512],
   trained on the noisy labels): the AUC of ``-d`` against the true clean flags stays at 0.46-0.53 over epochs
   0-11 for ``discriminative`` (chance: ``W`` is random and never trained, so ``s`` carries no class
   information), 0.80-0.98 from epoch 1 on for ``prototype``.
2. Clean probability ``w_i`` = posterior of the low-mean component of a 2-component GMM on the min-max
   normalised ``d``: ``gmm: reference`` = scikit-learn's ``GaussianMixture(max_iter=10, tol=0.5,
   reg_covar=5e-4)`` schedule (k-means start, stop when the mean log-likelihood moves less than 0.5, so two EM
   rounds in practice; :func:`cmhash.losses.selection.reference_clean_probability`); ``gmm: em`` = our earlier EM
   (percentile start, ``gmm_iters`` rounds; :func:`cmhash.losses.selection.clean_probability`). They differ
   (on bimodal scores the posteriors differ by up to 0.3-0.5, by about 0.1 on average, measured).
3. ``selection: paper`` (default; the abstract's rule): from epoch ``warmup_epochs`` on, every sample trains on
   its soft pseudo-label ``ytilde_i = w_i y_i + (1 - w_i) q_i``, ``q_i`` = mean over the scored codes of
   ``softmax(H_i mu^T / (K T))`` (single-label) or ``sigmoid`` of the same logits (multi-label),
   ``T = pseudo_temperature``; before that on its noisy label.
   ``selection: reference`` (the published code): from epoch 0, keep sample ``i`` iff
   ``w_i > max(T_e, median(w))`` and ``2 |w_i - 1/2| > 1/2`` (:func:`cmhash.losses.selection.median_confidence_split`)
   with ``T_e = 0`` before epoch ``threshold_epoch`` (19) and ``threshold_rate`` (0.3) from then on (``epoch+1 >= 20``);
   kept samples train on their NOISY labels, the others are left out of the batch (never more than half the
   training set in any epoch). ``warmup_epochs`` and ``pseudo_temperature`` are unused in this mode.

Hand checks. ``L_cen`` (1-bit codes, ``mu = [[1], [-1]]``, ``H = [[1], [-1], [1]]``, one-hot ``[c0, c1, c1]``):
``z = [[1,-1], [-1,1], [1,-1]]``, samples 1 and 2 give ``-log(e/(e + 1/e))``, sample 3 ``-log((1/e)/(1/e + e))``.
``L_sim`` (``H^1 = H^2 = [[1,0],[0,1],[1,0]]``, one-hot ``[c0, c1, c0]``): ``5 (1 - tanh(1/2))^2 / 9``.
Selection rule (``w = [.9, .7, .3, .1]``, ``T = 0``): median .5, ``.7`` fails the confidence test -> keep ``[1,0,0,0]``.

Departures from the code (both modes) and guesses:

- Cross-modal codes: one code per modality and ``L_sim`` over the four modality pairs are ours (the method is
  fused multi-modal hashing); the fused code trains jointly with them (shared MLPs and prototypes) and is taken
  from the epoch of best cross-modal validation MAP; the code trains on the fused code alone.
- ``selection: paper``: the code has no soft pseudo-labels (a hard keep/drop mask); the pseudo-label rule, ``q``,
  its temperature, the warm-up of 5 epochs and the ``prototype`` score are our reading of the abstract.
  With soft labels, ``L_cen`` weights the positive classes by ``y`` and softens the negative mask.
- Loss composition: HEAD ``main.py``'s. The older ``test.py`` (``dc81568``) trains
  ``L_sim + L_rec + L_cen + 1e-4 BCE(H mu^T, Y)`` with ``L_rec = mse(sigmoid(classify(H)), Y)`` and no sign
  term; not implemented. The ``1e-5`` terms of ``code_center_loss`` are dropped; ``sign(0)`` counts as +1.
- BatchNorm/dropout: trained in train mode with batch statistics; the code switches to eval mode for its first
  evaluation (epoch 1) and never switches back, so it trains with frozen running statistics and no dropout
  afterwards, and its epoch-0 selection runs in train mode. Selection here always encodes in eval mode.
- ``selection: reference``: a batch with fewer than 2 kept samples is skipped (BatchNorm needs 2; the code
  trains on 1); the d020a40 normalisation and no all-0/all-1 guard (HEAD adds one); k-means started from the
  exact 2-means optimum instead of scikit-learn's randomly seeded k-means++ (the code sets no seed).
- Text hidden widths: one ``hidden`` for both modalities (the code: image [2048, 128], text [1024, 128]).
- Evaluation: the shared protocol (best epoch on the validation split, MAP@all cross-modal); the code reports
  the best test-set MAP@50 of the fused code over epochs, evaluated every second epoch.

Defaults: the code's hyperparameters (lr 1e-5, Adam weight decay 1e-5, batch 512, 100 epochs, hidden
[2048, 128], dropout 0.01, loss weights 1/1/0.01, threshold 0.3 from epoch 19) and its score and GMM; the
selection rule is the abstract's (soft pseudo-labels).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..losses.proxy import prototype_contrast_loss, prototype_contrast_per_sample
from ..losses.quantization import squared_quantization
from ..losses.selection import (
    clean_probability,
    discriminative_error,
    median_confidence_split,
    reference_clean_probability,
)
from ..losses.similarity import cosine_affinity_loss, sigmoid_label_affinity
from .base import Method, StepOutput, TrainContext, register

# names of the terms as earlier callers import them from this module
label_affinity = sigmoid_label_affinity
similarity_loss = cosine_affinity_loss
prototype_loss_per_sample = prototype_contrast_per_sample
prototype_loss = prototype_contrast_loss

SELECTIONS = ("paper", "reference")
SCORES = ("discriminative", "prototype")
GMMS = ("reference", "em")


def sign_loss(codes: list[torch.Tensor]) -> torch.Tensor:
    """``L_sign``: :func:`squared_quantization` averaged over the codes."""
    return torch.stack([squared_quantization(h) for h in codes]).mean()


class _Branch(nn.Module):
    """Linear -> Tanh -> BatchNorm1d -> Dropout per layer, then ``tanh(Linear(.))``; ``input_layer`` puts the
    published code's extra Linear(d_in, d_in) layer first."""

    def __init__(self, in_dim: int, hidden: list[int], bits: int, dropout: float, input_layer: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_dim
        for width in ([in_dim] if input_layer else []) + list(hidden):
            layers += [nn.Linear(prev, width), nn.Tanh(), nn.BatchNorm1d(width), nn.Dropout(dropout)]
            prev = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self.body(x)))


@register
class NSRMH(Method):
    impl = "nsrmh"
    venue = "NSRMH (vindahi/NSRMH)"
    uses_index = True
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": [2048, 128],
        "dropout": 0.01,
        "epochs": 100,
        "batch_size": 512,
        "lr": 1e-5,
        "weight_decay": 1e-5,
        "sim_weight": 1.0,
        "cen_weight": 1.0,
        "sign_weight": 0.01,
        "selection": "paper",
        "warmup_epochs": 5,
        "score": "discriminative",
        "gmm": "reference",
        "gmm_iters": 20,
        "pseudo_temperature": 0.1,
        "threshold_rate": 0.3,
        "threshold_epoch": 19,
        "fused_weight": 1.0,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        for key, allowed in (("selection", SELECTIONS), ("score", SCORES), ("gmm", GMMS)):
            if p[key] not in allowed:
                raise ValueError(f"nsrmh: {key} must be one of {allowed}, got {p[key]!r}")
        if p["fused_weight"] < 0:
            raise ValueError(f"fused_weight must be >= 0 (0 = no fused code), got {p['fused_weight']!r}")
        self.reference = p["selection"] == "reference"
        self.branches = nn.ModuleList(
            _Branch(d, p["hidden"], bits, p["dropout"], input_layer=self.reference) for d in in_dims)
        self.prototypes = nn.Parameter(torch.randn(n_classes, bits))
        w = torch.empty(n_classes, bits)
        nn.init.orthogonal_(w)
        self.register_buffer("w_fixed", w)
        self.register_buffer("pseudo", torch.zeros(0, n_classes))
        self.register_buffer("reliability", torch.zeros(0))
        self.register_buffer("selected", torch.zeros(0))
        self.fusion: nn.Linear | None = None
        if p["fused_weight"] > 0:  # built last, so the layers above draw the same initial weights either way
            widths = [p["hidden"][-1] if p["hidden"] else d for d in in_dims]
            if widths[0] != widths[1]:
                raise ValueError(
                    f"the fused code adds the branches' last hidden layers, which have widths {widths}; give "
                    "`hidden` at least one layer or set `fused_weight: 0` (no fused code)"
                )
            self.fusion = nn.Linear(widths[0], bits)

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [b(x) for b, x in zip(self.branches, xs)]

    def encode_fused(self, xs: list[torch.Tensor]) -> torch.Tensor | None:
        """The fused code ``H^f`` of each pair, or ``None`` without a fusion head (``fused_weight: 0``)."""
        if self.fusion is None:
            return None
        return self._fuse([b.body(x) for b, x in zip(self.branches, xs)])

    def encode_joint(self, xs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {} if self.fusion is None else {"fused": self.encode_fused(xs)}

    def _fuse(self, hidden: list[torch.Tensor]) -> torch.Tensor:
        return torch.tanh(self.fusion(hidden[0] + hidden[1]))

    def _losses(self, codes: list[torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """``L`` of the module docstring over ``codes`` and its logged terms."""
        p = self.params
        l_sim = cosine_affinity_loss(codes, y)
        l_cen = prototype_contrast_loss(codes, self.prototypes, y)
        l_sign = sign_loss(codes)
        loss = p["sim_weight"] * l_sim + p["cen_weight"] * l_cen + p["sign_weight"] * l_sign
        return loss, {"sim": l_sim.detach(), "cen": l_cen.detach(), "sign": l_sign.detach()}

    def on_train_start(self, ctx: TrainContext) -> None:
        labels = ctx.labels
        n = labels.shape[0]
        self.pseudo = labels.to(torch.float32).clone()
        self.reliability = torch.ones(n, device=labels.device)
        self.selected = torch.ones(n, device=labels.device)

    @torch.no_grad()
    def scored_codes(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The codes selection looks at, in eval mode: ``[H^f]`` with a fusion head, else ``[H^1, H^2]``."""
        was_training = self.training
        self.eval()
        parts: list[list[torch.Tensor]] = []
        for s in range(0, xs[0].shape[0], 4096):
            chunk = [x[s : s + 4096] for x in xs]
            fused = self.encode_fused(chunk)
            parts.append([fused] if fused is not None else self.encode(chunk))
        self.train(was_training)
        return [torch.cat([p[m] for p in parts]) for m in range(len(parts[0]))]

    @torch.no_grad()
    def discriminative_scores(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, codes: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """``d_i`` of every training sample (small = reliable), averaged over the scored codes."""
        hs = self.scored_codes(xs) if codes is None else codes
        y = labels.to(torch.float32)
        if self.params["score"] == "prototype":
            return torch.stack([prototype_contrast_per_sample(h, self.prototypes, y) for h in hs]).mean(dim=0)
        d = torch.zeros(y.shape[0], device=y.device)
        gen = torch.Generator().manual_seed(int(epoch))  # own generator: the global stream is untouched
        order = torch.randperm(y.shape[0], generator=gen).to(y.device)
        chunk = int(self.params["batch_size"])
        w = torch.tanh(self.w_fixed)
        for h in hs:
            s_all = h @ w.T
            for start in range(0, y.shape[0], chunk):
                idx = order[start : start + chunk]
                d[idx] += discriminative_error(s_all[idx], y[idx]) / len(hs)
        return d

    def clean_probability(self, scores: torch.Tensor) -> torch.Tensor:
        """``w_i``: posterior of the low-mean GMM component (``gmm`` selects the fit)."""
        s = scores.cpu().numpy()
        if self.params["gmm"] == "reference":
            w = reference_clean_probability(s)
        else:
            w = clean_probability(s, int(self.params["gmm_iters"]))
        return torch.as_tensor(w.astype(np.float32), device=scores.device)

    @torch.no_grad()
    def on_epoch_start(self, ctx: TrainContext) -> None:
        xs, labels, epoch = ctx.xs, ctx.labels, ctx.epoch
        p = self.params
        if not self.reference and epoch < p["warmup_epochs"]:
            return
        hs = self.scored_codes(xs)
        w = self.clean_probability(self.discriminative_scores(xs, labels, epoch, hs))
        self.reliability = w
        if self.reference:
            threshold = p["threshold_rate"] if epoch >= p["threshold_epoch"] else 0.0
            keep = median_confidence_split(w.cpu().numpy(), threshold)
            self.selected = torch.as_tensor(keep, dtype=torch.float32, device=labels.device)
            return
        logits = torch.stack([h @ self.prototypes.T / self.bits for h in hs]) / p["pseudo_temperature"]
        q = (torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=2)).mean(dim=0)
        self.pseudo = w[:, None] * labels.to(torch.float32) + (1.0 - w[:, None]) * q

    def _batch_loss(self, xs: list[torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        hidden = [b.body(x) for b, x in zip(self.branches, xs)]  # once: the fused code shares dropout masks
        codes = [torch.tanh(b.head(h)) for b, h in zip(self.branches, hidden)]
        loss, terms = self._losses(codes, y)
        if self.fusion is not None:
            l_fused, _ = self._losses([self._fuse(hidden)], y)
            loss = loss + self.params["fused_weight"] * l_fused
            terms["fused"] = l_fused.detach()
        return loss, terms

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None
    ) -> StepOutput:
        if self.reference:
            if index is None or self.selected.shape[0] == 0:
                keep = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
            else:
                keep = self.selected[index] > 0.5
            n_kept = int(keep.sum())
            if n_kept < 2:  # nothing to train on (BatchNorm needs 2 rows): logged, no step
                zero = torch.zeros((), device=labels.device)
                names = ["sim", "cen", "sign", "kept"] + (["fused"] if self.fusion is not None else [])
                return StepOutput(loss=zero, terms=dict.fromkeys(names, zero), weights=keep.float())
            loss, terms = self._batch_loss([x[keep] for x in xs], labels[keep].to(torch.float32))
            terms["kept"] = torch.tensor(n_kept / keep.numel(), device=labels.device)
            return StepOutput(loss=loss, terms=terms, weights=keep.float())
        use_pseudo = index is not None and epoch >= self.params["warmup_epochs"] and self.pseudo.shape[0] > 0
        y = self.pseudo[index] if use_pseudo else labels.to(torch.float32)
        loss, terms = self._batch_loss(xs, y)
        weights = self.reliability[index] if use_pseudo else None
        return StepOutput(loss=loss, terms=terms, weights=weights)
