r"""NSRMH: Noise-aware Semantic Robust Multi-modal Hashing (public code vindahi/NSRMH), one code per modality.

NSRMH is a multi-modal (fused) hashing method; for our cross-modal tables each modality gets its own code
``H^m = tanh(FC^m(MLP^m(x^m)))`` (MLP layers: Linear -> Tanh -> BatchNorm -> Dropout, as the code) instead of
one fused code. Learnable prototypes ``mu in R^{C x K}`` (standard-normal init).

The paper's fused code is kept beside them (:meth:`NSRMH.encode_fused`, evaluated by the ``FUSED`` task
when ``evaluation.fused_topk`` is set): ``H^f = tanh(FC^f(MLP^1(x^1) + MLP^2(x^2)))``, the element-wise sum
of the two branches' last hidden layers through its own head, as the code's ``FusionNwt``. It is trained by
the same three losses on ``H^f`` with the same labels, added with weight ``fused_weight``;
``fused_weight: 0`` builds no fusion head (no fused code) and trains exactly as the cross-modal method alone.

Per epoch (from ``warmup_epochs`` on), sample reliability and soft pseudo-labels:

1. Dynamic discriminative loss ``d_i``, selectable by ``score``:
   ``prototype`` (default): ``d_i = mean_m l_cen(H_i^m, y_i)`` (the prototype loss below with the noisy label;
   small = reliable). ``reference``: the published error ``d_i = mean_{j,c} y_ic (1 - y_jc) |s_ic - s_jc|``
   with ``s_i = H_i tanh(W)^T``, ``W`` a fixed random orthogonal ``C x K`` matrix, ``j`` over a shuffled chunk
   of ``batch_size`` samples, averaged over the two modalities.
2. ``d`` min-max normalised, a 2-component 1-d GMM fitted by EM (:func:`cmhash.losses.selection.clean_probability`);
   ``w_i`` = posterior of the low-mean component (clean probability).
3. Soft pseudo-label ``ytilde_i = w_i y_i + (1 - w_i) q_i`` with ``q_i = mean_m softmax(H_i^m mu^T / (K T))``
   (single-label) or ``sigmoid`` of the same logits (multi-label); ``T = pseudo_temperature``.

Losses on the batch (HEAD ``main.py``), with labels ``ytilde`` (``y`` during warm-up)::

    A = 2 sigmoid(Y Y^T) - 1                                     (A_ij = tanh(y_i.y_j / 2))
    L_sim  = mean_{a,b in {1,2}} mean_{i,j} (cos(H_i^a, H_j^b) - A_ij)^2
    L_cen  = mean_m mean_i [ sum_c y_ic l_ic^m / sum_c y_ic ],
             l_ic = -log( e^{z_ic} / (e^{z_ic} + sum_{c' != c} (1 - y_ic') e^{z_ic'}) ),  z_ic = H_i.mu_c / K
    L_sign = mean_m mean (H^m - sign(H^m))^2
    L = sim_weight L_sim + cen_weight L_cen + sign_weight L_sign        (1, 1, 0.01)
    L_fused = the same L with H^f as the only code;   total = L + fused_weight L_fused   (fused_weight 1)

Hand check (:func:`prototype_loss`, 1-bit codes ``K = 1``, prototypes ``mu = [[1], [-1]]``, ``H = [[1], [-1], [1]]``,
one-hot labels ``[c0, c1, c1]``): ``z = [[1,-1], [-1,1], [1,-1]]``; samples 1 and 2 give ``-log(e/(e + 1/e))``,
sample 3 gives ``-log((1/e)/(1/e + e))``; ``L_cen`` is the mean. :func:`similarity_loss` with
``H^1 = H^2 = [[1,0],[0,1],[1,0]]`` and one-hot ``[c0, c1, c0]``: ``A`` has ``tanh(1/2)`` where the classes
agree and 0 otherwise, cosines are 1 where the classes agree and 0 otherwise, so ``L_sim = 5 (1 - tanh(1/2))^2 / 9``.

Departures and guesses: the one-code-per-modality design and ``L_sim`` over the four modality pairs are ours;
the code has no soft pseudo-labels (it drops samples with a hard mask) so the pseudo-label rule, ``q``, its
temperature and the ``prototype`` score are guesses from the README ("dynamic discriminative loss",
"probabilistic model generates soft pseudo-labels"); the ``1e-5`` terms of the code's ``L_cen`` are dropped;
soft labels weight the positive classes and soften the negative mask; BatchNorm statistics are updated in
training (the code freezes them by accident); selection by validation MAP@all as every method here (the
code reports the best test MAP@50). Fused code: training it jointly with the cross-modal codes (shared MLPs
and prototypes, gradients of ``L_fused`` reach the MLPs), selecting the samples and pseudo-labels from the
modality codes, and taking the fused code from the epoch of best cross-modal validation MAP are ours; the
code trains and selects on the fused code alone. Defaults from the code: lr 1e-5, weight decay 1e-5, batch
512, 100 epochs, hidden [2048, 128] for both modalities (the code uses [1024, 128] for text), dropout 0.01.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..losses.selection import clean_probability
from .base import Method, StepOutput, register


def label_affinity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``A = 2 sigmoid(a b^T) - 1``."""
    return 2.0 * torch.sigmoid(a @ b.T) - 1.0


def similarity_loss(codes: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """``L_sim`` averaged over every (query modality, item modality) combination."""
    a = label_affinity(labels, labels)
    normed = [nn.functional.normalize(h, dim=1) for h in codes]
    terms = [((x @ y.T - a) ** 2).mean() for x in normed for y in normed]
    return torch.stack(terms).mean()


def prototype_loss_per_sample(code: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample ``sum_c y_ic l_ic / sum_c y_ic`` (soft labels allowed), ``l_ic`` as in the module docstring."""
    z = code @ prototypes.T / code.shape[1]
    y = labels.to(z.dtype)
    exp_z = torch.exp(z - z.max(dim=1, keepdim=True).values)
    neg = ((1.0 - y) * exp_z).sum(dim=1, keepdim=True) - (1.0 - y) * exp_z  # sum over c' != c
    log_ratio = torch.log(exp_z) - torch.log(exp_z + neg)
    return -(y * log_ratio).sum(dim=1) / y.sum(dim=1).clamp(min=1e-12)


def prototype_loss(codes: list[torch.Tensor], prototypes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.stack([prototype_loss_per_sample(h, prototypes, labels).mean() for h in codes]).mean()


def sign_loss(codes: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([((h - torch.sign(h)) ** 2).mean() for h in codes]).mean()


class _Branch(nn.Module):
    def __init__(self, in_dim: int, hidden: list[int], bits: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_dim
        for width in hidden:
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
        "warmup_epochs": 5,
        "score": "prototype",
        "pseudo_temperature": 0.1,
        "gmm_iters": 20,
        "fused_weight": 1.0,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        if p["score"] not in ("prototype", "reference"):
            raise ValueError(f"score must be prototype or reference, got {p['score']!r}")
        if p["fused_weight"] < 0:
            raise ValueError(f"fused_weight must be >= 0 (0 = no fused code), got {p['fused_weight']!r}")
        self.branches = nn.ModuleList(_Branch(d, p["hidden"], bits, p["dropout"]) for d in in_dims)
        self.prototypes = nn.Parameter(torch.randn(n_classes, bits))
        w = torch.empty(n_classes, bits)
        nn.init.orthogonal_(w)
        self.register_buffer("w_fixed", w)
        self.register_buffer("pseudo", torch.zeros(0, n_classes))
        self.register_buffer("reliability", torch.zeros(0))
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
        if self.fusion is None:
            return None
        return self._fuse([b.body(x) for b, x in zip(self.branches, xs)])

    def _fuse(self, hidden: list[torch.Tensor]) -> torch.Tensor:
        return torch.tanh(self.fusion(hidden[0] + hidden[1]))

    def _losses(self, codes: list[torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """``L`` of the module docstring over ``codes`` and its logged terms."""
        p = self.params
        l_sim = similarity_loss(codes, y)
        l_cen = prototype_loss(codes, self.prototypes, y)
        l_sign = sign_loss(codes)
        loss = p["sim_weight"] * l_sim + p["cen_weight"] * l_cen + p["sign_weight"] * l_sign
        return loss, {"sim": l_sim.detach(), "cen": l_cen.detach(), "sign": l_sign.detach()}

    def on_train_start(
        self, xs: list[torch.Tensor], labels: torch.Tensor, clean_labels: torch.Tensor | None = None
    ) -> None:
        self.pseudo = labels.to(torch.float32).clone()
        self.reliability = torch.ones(labels.shape[0], device=labels.device)

    @torch.no_grad()
    def discriminative_scores(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> torch.Tensor:
        """``d_i`` of every training sample (small = reliable)."""
        was_training = self.training
        self.eval()
        codes: list[list[torch.Tensor]] = [[], []]
        for s in range(0, labels.shape[0], 4096):
            for m, h in enumerate(self.encode([x[s : s + 4096] for x in xs])):
                codes[m].append(h)
        hs = [torch.cat(c) for c in codes]
        y = labels.to(torch.float32)
        if self.params["score"] == "prototype":
            d = torch.stack([prototype_loss_per_sample(h, self.prototypes, y) for h in hs]).mean(dim=0)
        else:
            d = torch.zeros(y.shape[0], device=y.device)
            gen = torch.Generator().manual_seed(int(epoch))  # own generator: the global stream is untouched
            order = torch.randperm(y.shape[0], generator=gen).to(y.device)
            chunk = int(self.params["batch_size"])
            for h in hs:
                s_all = h @ torch.tanh(self.w_fixed).T
                for start in range(0, y.shape[0], chunk):
                    idx = order[start : start + chunk]
                    s, yb = s_all[idx], y[idx]
                    diff = (s[:, None, :] - s[None, :, :]).abs()  # B x B x C
                    mask = yb[:, None, :] * (1.0 - yb[None, :, :])
                    d[idx] += (mask * diff).mean(dim=(1, 2)) / len(hs)
        self.train(was_training)
        return d

    @torch.no_grad()
    def on_epoch_start(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> None:
        if epoch < self.params["warmup_epochs"]:
            return
        d = self.discriminative_scores(xs, labels, epoch)
        w = torch.as_tensor(
            clean_probability(d.cpu().numpy(), int(self.params["gmm_iters"])).astype(np.float32), device=labels.device
        )
        was_training = self.training
        self.eval()
        logits = torch.stack(
            [h @ self.prototypes.T / self.bits for h in self.encode(xs)]
        ) / self.params["pseudo_temperature"]
        self.train(was_training)
        q = (torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=2)).mean(dim=0)
        y = labels.to(torch.float32)
        self.reliability = w
        self.pseudo = w[:, None] * y + (1.0 - w[:, None]) * q

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None
    ) -> StepOutput:
        p = self.params
        hidden = [b.body(x) for b, x in zip(self.branches, xs)]  # once: the fused code shares dropout masks
        codes = [torch.tanh(b.head(h)) for b, h in zip(self.branches, hidden)]
        use_pseudo = index is not None and epoch >= p["warmup_epochs"] and self.pseudo.shape[0] > 0
        y = self.pseudo[index] if use_pseudo else labels.to(torch.float32)
        loss, terms = self._losses(codes, y)
        if self.fusion is not None:
            l_fused, _ = self._losses([self._fuse(hidden)], y)
            loss = loss + p["fused_weight"] * l_fused
            terms["fused"] = l_fused.detach()
        weights = self.reliability[index] if use_pseudo else None
        return StepOutput(loss=loss, terms=terms, weights=weights)
