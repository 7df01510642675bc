r"""DGCPN: Deep Graph-neighbor Coherence Preserving Network for unsupervised cross-modal hashing
(Yu, Zhou, Zhan, Tao; AAAI 2021, 35(5) 4626-4634).

Official code: ``Atmegal/DGCPN`` @ ``9f62c56e037c0c399451d0f02db05b8666d439ed`` (2020-12-09; the repository the
paper names), read in full: ``train_div.py`` (``Session.cal_similarity`` = the whole-training-set target,
``Session.loss_cal`` = the loss, ``Session.train`` = the three updates per batch, ``Session.eval``),
``models.py`` (``ImgNet``, ``TxtNet``), ``train.py`` (defaults, epoch loop, early stopping), ``load_data.py``,
``metric.py``. The paper's full text was not available to me (searched the stored web pages for the title and
for its equations): only its abstract and Algorithm 1 as summarised by third parties (the three updates per
batch, validation-based stopping), which agree with the code. So everything below follows the code.

Label-free (``uses_labels = False``): labels are never read (the code's label-based logging, ``calc_dis``,
is left out), so for a fixed seed the codes are the same at every noise rate.

Model: per modality ``C = tanh(W_2 dropout(ReLU(W_1 x)))`` (``hidden`` = [4096] as in the code; a longer list
puts ReLU + dropout after every hidden layer), ``dropout`` 0.5, PyTorch default initialisation except the text
output weight ~ N(0, ``text_init_std``^2 = 0.3^2). Raw input features (the code feeds them unnormalised).
Binary code ``B = sgn(C)``.

Target (once, in :meth:`DGCPN.on_train_start`, over the whole training split; see
:func:`cmhash.losses.similarity.graph_neighbour_target`)::

    S_pair = a1 cos_T + (1 - a1) cos_I                   a1 = text_weight = 0.01 (it weights the TEXT cosine)
    P      = S_pair, each row keeping its k largest entries, its largest (self) then zeroed, rows sum 1
    G      = scale P P'
    S      = 2 [(1 - a2) S_pair + a2 G] - 1              a2 = graph_weight = 0.3, i.e. 2 [0.7 S_pair + 0.3 G] - 1

``k = round(knn_fraction N)`` and ``scale = graph_scale N``: the code's ``knn_number`` 3000 (zeroed entries, so
k = 5000 - 3000 = 2000) and ``scale`` 4000 on its 5000-pair training sets give ``knn_fraction`` 0.4 and
``graph_scale`` 0.8. (Stated relative to N so that ``G`` keeps its range on other training-set sizes: with
rows of ``P`` about 1/k, ``G_ij`` is about ``(scale/k)`` times the share of common neighbours, and
scale/k = 2 in the code.)

Loss of a batch (``Session.loss_cal``; :func:`cmhash.losses.similarity.coherence_preserving_loss`), ``S_B`` =
``S[idx][:, idx]``, ``U`` = row-normalised codes, ``P_II``/``P_TT``/``P_IT`` their Gram matrices, ``O = 1 - I``::

    L(C_I, C_T) = mse(diag P_IT, K) + dw [mse(O P_TT, O S_B) + mse(O P_IT, O S_B) + mse(O P_II, O S_B)]
                + cw [mse(P_IT, P_II) + mse(P_IT, P_TT) + mse(P_II, P_TT) + mse(P_IT, P_IT')]

``K`` = ``pair_target`` 1.5, ``dw`` = ``dis_weight`` 1, ``cw`` = ``cons_weight`` 1; no quantisation term.

Half-real and half-binary optimisation, three updates per batch (``manual_optimization``; Algorithm 1):

1. forward both nets; ``L(C_I, C_T)``; one step of BOTH optimisers on it (done as an image step on
   ``L(C_I, sg C_T)`` and a text step on ``L(sg C_I, C_T)``: the same gradients, since ``C_T`` does not
   depend on the image net and vice versa, with ``C_I`` taken before the image step);
2. forward again (new dropout masks) -> ``C_I'``, ``C_T'``; image step on ``L(C_I', sg sgn C_T')``;
3. text step on ``L(sg sgn C_I', C_T')`` (``C_I'`` from before step 2's update, as in the code).

Optimisers: two SGDs (image net, text net), ``lr`` 0.005, ``momentum`` 0.9, ``weight_decay`` 5e-4, no
schedule, no clipping; batch 32; 100 epochs. Defaults are the code's ``train.py`` values (identical for all its
datasets).

Departures from the official code:
  * ``k`` and ``scale`` are given as fractions of the training-set size (same values on the code's datasets;
    the code's own comment says its kNN number must be changed per dataset).
  * Evaluation follows this harness for every method: best epoch by validation MAP on the validation split, no
    early stopping (the code stops after more than 10 epochs without a better validation MAP; we train all
    ``epochs`` and keep the best), ``sgn(0) = +1``.
  * The code's image net hard-codes a 4096-d input; ours takes the features' width.
  * Step 1 is computed as two backward passes on detached halves (equal gradients, see above) because the
    harness's ``step`` does one backward per optimiser.
  * Dropout draws from the global torch RNG, so a run resumed from a checkpoint is not bit-identical.
Without ``step=`` (tests, evaluation), :meth:`DGCPN.training_step` only returns ``L(C_I, C_T)`` with its graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..losses.similarity import coherence_preserving_loss, graph_neighbour_target
from .base import Method, OptimizerSpec, Stage, StepOutput, TrainContext, register


class DropoutTanhHashNet(nn.Module):
    """DGCPN's hash net (models.py ``ImgNet``/``TxtNet``): [Linear -> ReLU -> Dropout] per hidden layer,
    Linear -> tanh. ``out_std``: N(0, out_std^2) initialisation of the output weight (the code's text net)."""

    def __init__(self, in_dim: int, hidden: list[int], bits: int, dropout: float, out_std: float | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_dim
        for width in hidden:
            layers += [nn.Linear(prev, int(width)), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            prev = int(width)
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(prev, bits)
        if out_std is not None:
            nn.init.normal_(self.out.weight, mean=0.0, std=out_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(self.body(x)))


@register
class DGCPN(Method):
    impl = "dgcpn"
    venue = "AAAI'21"
    uses_labels = False
    uses_index = True
    manual_optimization = True
    defaults = {
        "epochs": 100,
        "batch_size": 32,
        "lr": 0.005,
        "weight_decay": 5e-4,
        "momentum": 0.9,
        "hidden": [4096],
        "dropout": 0.5,
        "text_init_std": 0.3,
        "text_weight": 0.01,
        "graph_weight": 0.3,
        "knn_fraction": 0.4,
        "graph_scale": 0.8,
        "pair_target": 1.5,
        "dis_weight": 1.0,
        "cons_weight": 1.0,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        hidden = list(p["hidden"])
        self.encoders = nn.ModuleList([
            DropoutTanhHashNet(in_dims[0], hidden, bits, p["dropout"]),
            DropoutTanhHashNet(in_dims[1], hidden, bits, p["dropout"], out_std=p["text_init_std"]),
        ])
        # derived from the features in on_train_start (also before a resume), so not part of checkpoints
        self.register_buffer("target", torch.zeros(0, 0), persistent=False)

    def stages(self) -> list[Stage]:
        def sgd(m: int) -> OptimizerSpec:
            return OptimizerSpec(kind="sgd", options={"momentum": self.params["momentum"]},
                                 parameters=lambda model: model.encoders[m].parameters())

        return [Stage(optimizers={"image": sgd(0), "text": sgd(1)})]

    def on_train_start(self, ctx: TrainContext) -> None:
        xs = ctx.xs
        p = self.params
        n = xs[0].shape[0]
        k = min(n, max(2, round(p["knn_fraction"] * n)))
        self.target = graph_neighbour_target(xs[0], xs[1], p["text_weight"], p["graph_weight"], k,
                                             p["graph_scale"] * n)

    def _loss(self, c_i: torch.Tensor, c_t: torch.Tensor, s: torch.Tensor):
        p = self.params
        return coherence_preserving_loss(c_i, c_t, s, p["pair_target"], p["dis_weight"], p["cons_weight"])

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None,
        step: Callable[[torch.Tensor, str], None] | None = None,
    ) -> StepOutput:
        if index is None:
            raise ValueError("dgcpn: training_step needs index= (rows of the batch in the training split)")
        s = self.target[index][:, index]
        c_i, c_t = self.encode(xs)
        if step is None:
            loss, parts = self._loss(c_i, c_t, s)
            return StepOutput(loss=loss, terms=parts)
        # 1. joint real-valued step: each net's gradient of L(C_I, C_T), C_I taken before the image step
        loss, parts = self._loss(c_i, c_t.detach(), s)
        step(loss, "image")
        step(self._loss(c_i.detach(), c_t, s)[0], "text")
        # 2.-3. half-real, half-binary steps on a fresh forward pass
        c_i2, c_t2 = self.encode(xs)
        loss_i, _ = self._loss(c_i2, torch.sign(c_t2).detach(), s)
        step(loss_i, "image")
        loss_t, _ = self._loss(torch.sign(c_i2).detach(), c_t2, s)
        step(loss_t, "text")
        return StepOutput(loss=loss.detach(), terms={**parts, "image_binary": loss_i.detach(),
                                                     "text_binary": loss_t.detach()})
