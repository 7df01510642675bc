r"""SCBCH: Semantic-Consistent Bidirectional Contrastive Hashing for Noisy Multi-Label Cross-Modal Retrieval
(L. Peng, C. Su, W. Wu, Y. Sun, D. Peng, X. Peng, X. Wang; AAAI 2026; arXiv 2511.07780).

Official code: ``github.com/Plke/SCBCH`` @ ``cfcc18c01c8e55a14ede8befc1a4f2050ddf02d9`` (read in full):
``train.py`` (``MultiLabelLoss`` = the objective, ``select_clean_sample`` = the reliability weights, ``train``,
``__main__`` with the per-dataset settings), ``network.py`` (``ImgModule``, ``TxtModule``, as NRCH's),
``utils/tools.py`` (data, MAP), ``noise_label/generate.py``; ``readme.md`` (the run command). The code is derived
from NRCH's (``LonganWANG-cs/NRCH``). Paper: only the abstract and summaries could be read (the arXiv HTML body
was not available here): two modules, CSCC (cross-modal semantic-consistent classification, "estimate sample
reliability") and BSCH (bidirectional soft contrastive hashing, soft pairs from multi-label overlap), and an
epoch-dependent schedule (plain classification first, then the reliability-weighted one). The equations below are
the code's; the defaults follow the code except for alpha/beta (below).

Networks: image MLP ``d -> 8192 -> 8192 -> L``, text ``d -> 8192 -> L`` (our ``hidden`` / ``text_hidden``),
biases, default init, ``z = tanh(o) / ||tanh(o)||``; ``u = z^1``, ``v = z^2`` (no second tanh). Two classifiers
``W_u, W_v in R^{L x C}`` (``orthogonal_``, gain 1): ``p^u = sigmoid(u W_u)``, ``p^v = sigmoid(v W_v)`` (codes not
detached: the classification trains the encoders too).

Objective per batch, ``y`` the noisy multi-hot labels, ``S = u v^T``
(:mod:`cmhash.losses.shifted_contrastive`, :func:`cmhash.losses.partial.jaccard_similarity`,
:func:`cmhash.losses.quantization.l1_quantization`, :func:`cmhash.losses.classification.per_sample_classification_loss`)::

    T_ij  = y_i . y_j / (|y_i| + |y_j| - y_i . y_j + 1e-8)                       (Jaccard; T_ii = 1)
    L_con = mean_ij [tau exp(C~^te_ij (1 - T_ij)/tau) + tau exp(C~^im_ij (1 - T_ij)/tau)]
            + mean_ij [1[T_ij > 0, i != j] exp(Delta - S_ij)] - mean_i S_ii            (BSCH)
    L_q   = mean |u - sign(u)| + mean |v - sign(v)|
    l_i   = (mean_k BCE(p^u_ik, y_ik) + mean_k BCE(p^v_ik, y_ik)) / 2
    L_cls = mean_i w_i l_i  from epoch ``warmup_epochs`` (0-based) on, mean_i l_i before                (CSCC)
    L     = alpha L_con + beta L_q + cls_weight L_cls

with ``C~^te`` / ``C~^im`` the shifted-margin costs (row threshold ``S_ii - mu`` / column threshold ``S_jj - mu``,
``S_ij - Delta`` below it, diagonal ``max(S_ii, 0)``). Reliability weights (``select_clean_sample``), at the start
of every epoch from ``warmup_epochs`` on, over the whole training split, without gradient
(:func:`cmhash.losses.selection.neighbour_label_reliability`)::

    A = (cos(U, U) + cos(V, V)) / 2, diagonal 0;  the k largest entries a_i1..a_ik of row i (neighbours n_ic);
    yhat_i = sum_c a_ic / (sum_c a_ic + 1e-8) y_{n_ic};   w_i = gamma + (1 - gamma) cos(y_i, yhat_i).

Only ``L_cls`` is weighted; the contrast uses every sample with its noisy labels.

Hyper-parameters (code): ``k`` 20, ``gamma`` 0.5, ``tau`` 1, ``cls_weight`` 1, warm-up 5 epochs, Adam lr 1e-4,
weight decay 1e-5, batch 128, 50 epochs. ``margin``/``shift``: argparse 0.2 / 1.0 (= its NUS-WIDE setting; the
``__main__`` overrides MIRFlickr 0.15 / 0.8, MS-COCO 0.3 / 1.1, IAPR 0.3 / 1.2); the defaults here are 0.2 / 1.0.

alpha / beta: in the code ``alpha`` weights the contrastive term (``lambda_contrast``) and ``beta`` the quantisation
(``lambda_quant``). Their VALUES are swapped between the code's argparse defaults (``--alpha 0.3 --beta 0.7``) and
its README's run command (``--alpha=0.7 --beta=0.3``, also ``MultiLabelLoss``'s own constructor defaults). We keep
the names' meaning (alpha: contrast, beta: quantisation) and default to contrast 0.7 / quantisation 0.3, the README
command's values (how the authors say to run it; the paper body, which would settle it, was not readable here).
``{"alpha": 0.3, "beta": 0.7}`` reproduces the argparse defaults.

Single-label data (multi-hot rows with one 1, as our shipped data): the same formulas; ``T`` is the same-class
indicator (``1 / (1 + 1e-8)`` on the same class, 0 elsewhere), ``l_i`` the mean BCE against the one-hot row, and
``cos(y_i, yhat_i)`` the normalised neighbour weight of the sample's own noisy class.

Departures from the code (defaults reproduce the code otherwise):

- alpha / beta as above. ``warmup_epochs`` (the code's absolute 5 of 50 epochs) is a parameter, default 5.
- Two Adam optimisers (image net + W_u, text net + W_v) with identical settings -> one Adam over everything
  (per-parameter state: the same updates).
- The BCE is computed from the logits (``binary_cross_entropy_with_logits``) instead of from ``sigmoid``'s output
  (the same value; the published log clamp at -100 cannot bind since ``|u W_u|`` <= ``||W_u||``).
- The reliability pass encodes the split in chunks of 1024 rows (code: the shuffled loader, then re-sorted) and
  computes the ``N x N`` similarity in row chunks; ``k`` is capped at ``N``. Its codes come from the model in train
  mode (code: eval mode; these networks have no dropout or batch norm, so the same values).
- Protocol (as for every method here): best epoch on the validation split (the code evaluates the TEST queries
  before every epoch and reports the best: selection on the test set; the last epoch's update is never evaluated
  there); our loop drops a 1-sample tail batch and shuffles with its seeded generator (the code seeds 123).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..losses.classification import per_sample_classification_loss
from ..losses.partial import jaccard_similarity
from ..losses.quantization import l1_quantization
from ..losses.selection import neighbour_label_reliability
from ..losses.shifted_contrastive import bidirectional_soft_contrastive
from ..nets import mlp
from .base import Method, StepOutput, TrainContext, register


@register
class SCBCH(Method):
    impl = "scbch"
    venue = "AAAI'26"
    uses_index = True
    defaults = {
        "epochs": 50,
        "batch_size": 128,
        "lr": 1e-4,
        "weight_decay": 1e-5,
        "hidden": [8192, 8192],
        "text_hidden": [8192],
        "alpha": 0.7,
        "beta": 0.3,
        "cls_weight": 1.0,
        "margin": 0.2,
        "shift": 1.0,
        "tau": 1.0,
        "k": 20,
        "gamma": 0.5,
        "warmup_epochs": 5,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        if p["k"] < 1:
            raise ValueError(f"scbch: k (neighbours of the reliability weights) must be >= 1, got {p['k']}")
        widths = [p["hidden"], p["text_hidden"]]
        self.nets = nn.ModuleList(mlp(d, widths[m], bits, last_bias=True) for m, d in enumerate(in_dims))
        self.classifiers = nn.ParameterList(
            nn.Parameter(nn.init.orthogonal_(torch.empty(bits, n_classes), gain=1.0)) for _ in in_dims)
        self.register_buffer("reliability", torch.zeros(0))

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [nn.functional.normalize(torch.tanh(net(x)), dim=1) for net, x in zip(self.nets, xs)]

    def on_train_start(self, ctx: TrainContext) -> None:
        labels = ctx.labels
        self.reliability = torch.ones(labels.shape[0], device=labels.device)

    @torch.no_grad()
    def on_epoch_start(self, ctx: TrainContext) -> None:
        xs, labels, epoch = ctx.xs, ctx.labels, ctx.epoch
        p = self.params
        if epoch < p["warmup_epochs"]:
            return
        chunk = 1024
        parts = [self.encode([x[s:s + chunk] for x in xs]) for s in range(0, labels.shape[0], chunk)]
        u, v = (torch.cat([part[m] for part in parts]) for m in range(2))
        self.reliability = neighbour_label_reliability(u, v, labels, p["k"], p["gamma"]).to(torch.float32)

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None
    ) -> StepOutput:
        p = self.params
        u, v = self.encode(xs)
        t = jaccard_similarity(labels).to(u.dtype)
        l_con = bidirectional_soft_contrastive(u, v, t, p["margin"], p["shift"], p["tau"])
        l_q = l1_quantization(u) + l1_quantization(v)
        per_sample = 0.5 * sum(per_sample_classification_loss(z @ w, labels, multilabel=True)
                               for z, w in zip((u, v), self.classifiers))
        weights = None
        if epoch >= p["warmup_epochs"] and index is not None and self.reliability.numel() > 0:
            weights = self.reliability[index].to(per_sample.dtype)
            l_cls = (weights * per_sample).mean()
        else:
            l_cls = per_sample.mean()
        loss = p["alpha"] * l_con + p["beta"] * l_q + p["cls_weight"] * l_cls
        return StepOutput(loss=loss, terms={"con": l_con.detach(), "quant": l_q.detach(), "cls": l_cls.detach()},
                          weights=weights)
