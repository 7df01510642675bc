r"""DHaPH: Deep Hierarchy-aware Proxy Hashing with Self-paced Learning for Cross-modal Retrieval (Huo, Qin,
Zhang, Huang, Nie; IEEE TKDE 36(11), 2024).

Official code: github.com/QinLab-WFU/DHaPH @ 44c3c9c (2024-10-10; code from 00c37eb). Read: ``train/hash_train.py``
(``Trainer``: loop, losses, optimisers), ``utils/MSLoss.py`` (self-paced contrastive loss), ``utils/HPloss.py``
(hyperbolic hierarchy-aware proxy loss), ``model/hp_model.py`` (``HPmodel``, ``ToPoincare``), ``utils/pmath.py``,
``model/hash_model.py`` (``LinearHash``), ``model/optimization.py`` (``BertAdam``), ``utils/get_args.py``. The
paper's full text was not available to us; its abstract: shared hierarchy proxies as learnable ancestors, a
hierarchy-aware proxy loss modelling the latent semantic hierarchy of the modalities' samples, and self-paced
learning.

Per modality ``m``: ``h^m = tanh(dropout_0.2(W^m g^m(x^m)))`` (``K`` bits; ``g^m`` a ReLU MLP, ``hidden``).
Hierarchy head shared by the modalities: ``z^m = to_poincare(W_p LN(h^m))`` (LayerNorm without affine,
Linear(K, K), clip 2.3, Poincare ball of curvature 0.1); ``n_proxies`` = 500 learnable proxies
``P = to_poincare(P_e)``, ``P_e`` initialised ``randn / sqrt(K) * 2.3 * 0.9``. Per batch, at 1-based epoch
``t`` of ``E``:

* self-paced exponent ``delta = t / floor(E/3)`` for ``t <= floor(E/3)``, then 1
  (:func:`cmhash.losses.selfpaced.self_paced_pair_exponent`);
* ``L_MS(a, b) = mean_i -log(P_i / (P_i + N_i))``, ``P_i = sum_j S_ij w+_ij exp(c_ij/tau)``,
  ``N_i = sum_j (1 - S_ij) w-_ij exp(c_ij/tau)``, ``c = cos(a, b)``, ``S_ij = 1[y_i.y_j > 0]``,
  ``w+ = exp(-1 - c)^(delta/4)``, ``w- = exp(-1 + c)^delta`` (detached), ``tau`` 0.3
  (:func:`~cmhash.losses.selfpaced.self_paced_contrastive_loss`);
  ``L1 = L_MS(h^1, h^1)``, ``L2 = L_MS(h^2, h^2)``, ``L3 = L_MS(h^1, h^2)`` (image anchors only, as the code);
* ``L4`` = the hierarchy-aware proxy loss (:func:`cmhash.losses.hyperbolic.hierarchical_proxy_loss`: reciprocal
  top-15 neighbour triplets, 50 per anchor, lowest-common-ancestor triplet loss over the proxies with a hard
  Gumbel-softmax at temperature 0.1, margin 0.1, for the batch points and for the proxies themselves, both
  modalities);
* ``L = L1 + L2 + L3 + alpha L4`` (``alpha`` 1).

Paper vs code: in the code the hierarchy head receives DETACHED codes (``hpmodel(hash_img.detach())``), so
``L4`` trains only the head and the proxies and never shapes the codes, while the abstract presents the
hierarchy-aware proxy loss as shaping them. Default ``hp_detach: false`` (paper: ``L4``'s gradient reaches the
hash networks through the head); ``hp_detach: true`` is the code's behaviour (codes then depend on
``L1 + L2 + L3`` alone). ``alpha: 0`` skips ``L4`` altogether: with ``hp_detach: true`` it trains codes from
the same objective as the code (``L4`` cannot reach them) at a fraction of the cost; ``L4`` is the expensive
part (tensors of triplets x proxies, about 10^7 entries per step at 500 proxies: seconds per step on a CPU).

Training as the code as far as the loop allows: AdamW (betas 0.9/0.98, eps 1e-6, decoupled weight decay
0.2) over the hash networks at ``lr`` (1e-3), a second AdamW (lr ``hp_lr`` 1e-5, weight decay 0.01) over the
head and the proxies, cosine LR annealing per step over the whole run, gradient-norm clipping 1.0, batch 64,
100 epochs (:meth:`DHaPH.stages`).

Departures from the code:

* Backbone: the code fine-tunes CLIP ViT-B/32 end to end (lr 1e-5) on raw images and captions, then
  ``LinearHash`` (Linear(512, K) -> dropout 0.2 -> tanh). CLIP fine-tuning is outside our scope (we get
  frozen features): a ReLU MLP (``hidden``) before the same hash layer stands in for the trainable backbone,
  at the hash layer's lr.
* Optimiser: ``BertAdam`` has no bias correction, a 10 % linear warm-up before its cosine (``0.5 (1 + cos(pi
  x))`` of the overall progress ``x``), and clips each parameter TENSOR to norm 1; ours uses torch's AdamW (bias
  corrected), no warm-up (the loop has no warm-up schedule), the clip over each optimiser's parameters
  jointly, and the cosine also on the head's optimiser (constant lr in the code) and the clip on it too.
* Randomness: triplets are drawn with torch's generator (the code: NumPy's) and ``topk`` is capped at the
  batch size (the code fails below 15); the proxy-proxy distances are computed once per step and shared by
  the two modalities' proxy terms (identical values; the code recomputes them). Rows without any label-sharing
  partner are left out of ``L_MS`` (infinite in the code).
* Evaluation as every method here (best validation epoch, test split as query set and database); the code
  takes the best epoch on its query set, separately for I->T and T->I, against a retrieval set that contains
  the training set.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from ..losses.hyperbolic import hierarchical_proxy_loss, to_poincare
from ..losses.selfpaced import self_paced_contrastive_loss, self_paced_pair_exponent
from ..nets import mlp
from .base import Method, OptimizerSpec, Stage, StepOutput, register


class _LinearHash(nn.Module):
    """``tanh(dropout(W g(x)))`` (``g``: ReLU MLP standing in for the fine-tuned backbone)."""

    def __init__(self, in_dim: int, hidden: list[int], bits: int, dropout: float):
        super().__init__()
        self.net = mlp(in_dim, hidden, bits)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dropout(self.net(x)))


class _HierarchyHead(nn.Module):
    """``HPmodel``: LayerNorm (no affine) -> Linear -> Poincare ball."""

    def __init__(self, bits: int, c: float, clip_r: float):
        super().__init__()
        self.norm = nn.LayerNorm(bits, elementwise_affine=False)
        self.linear = nn.Linear(bits, bits)
        self.c, self.clip_r = c, clip_r

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return to_poincare(self.linear(self.norm(h)), self.c, self.clip_r)


@register
class DHaPH(Method):
    impl = "dhaph"
    venue = "TKDE'24"
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 100,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 0.2,
        "hidden": [4096, 4096],
        "dropout": 0.2,
        "tau": 0.3,
        "self_paced": True,
        "alpha": 1.0,
        "n_proxies": 500,
        "topk": 15,
        "triplets_per_anchor": 50,
        "margin": 0.1,
        "lca_tau": 0.1,
        "curvature": 0.1,
        "clip_r": 2.3,
        "hp_lr": 1e-5,
        "hp_weight_decay": 0.01,
        "hp_detach": False,
        "clip_grad_norm": 1.0,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        self.encoders = nn.ModuleList(_LinearHash(d, p["hidden"], bits, p["dropout"]) for d in in_dims)
        self.hp_head = _HierarchyHead(bits, p["curvature"], p["clip_r"])
        self.proxies = nn.Parameter(torch.randn(p["n_proxies"], bits) / math.sqrt(bits) * p["clip_r"] * 0.9)

    def stages(self) -> list[Stage]:
        p = self.params
        return [Stage(
            optimizers={
                "main": OptimizerSpec(kind="adamw", options={"betas": (0.9, 0.98), "eps": 1e-6},
                                      parameters=lambda m: m.encoders.parameters()),
                "hp": OptimizerSpec(kind="adamw", lr=p["hp_lr"], weight_decay=p["hp_weight_decay"],
                                    parameters=lambda m: [*m.hp_head.parameters(), m.proxies]),
            },
            lr_schedule="cosine", schedule_interval="step",
            clip_grad_norm=p["clip_grad_norm"] if p["clip_grad_norm"] > 0 else None,
        )]

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        p = self.params
        h = self.encode(xs)
        delta = self_paced_pair_exponent(epoch + 1, int(p["epochs"]))
        ms = [self_paced_contrastive_loss(a, b, labels, p["tau"], delta, p["self_paced"])
              for a, b in ((h[0], h[0]), (h[1], h[1]), (h[0], h[1]))]
        if p["alpha"] > 0:
            z = [self.hp_head(x.detach() if p["hp_detach"] else x) for x in h]
            proxies = to_poincare(self.proxies, p["curvature"], p["clip_r"])
            hp = hierarchical_proxy_loss(z, proxies, labels, p["curvature"], p["topk"], p["triplets_per_anchor"],
                                         p["lca_tau"], p["margin"])
        else:  # L4 off: skip its cost (with hp_detach it could not change the codes anyway)
            hp = torch.zeros((), device=h[0].device)
        loss = ms[0] + ms[1] + ms[2] + p["alpha"] * hp
        return StepOutput(loss=loss, terms={"ms_img": ms[0].detach(), "ms_txt": ms[1].detach(),
                                            "ms_cross": ms[2].detach(), "hp": hp.detach(), "delta": delta})
