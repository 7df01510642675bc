r"""NACD: Neighbor-aware Contrastive Disambiguation for Cross-Modal Hashing with Redundant Annotations.

C. Su, L. Peng, Y. Sun, D. Peng, X. Peng, X. Wang, NeurIPS 2025 (OpenReview ``Bi1udlTjMb``).
Official code: ``github.com/Rose-bud/NACD`` @ ``57e090f5a67f1f253de5a2186e31cdd460aa57ad`` (HEAD, 2025-12-05), read
in full: ``NACD/train.py`` (objective: ``MultiLabelLoss``, ``classification_loss``; confidence reconstruction:
``revise_label_each_epoch``; loop, schedule and defaults: ``train``, ``get_config``, argparse, ``__main__``),
``NACD/network.py`` (``ImgModule``/``TxtModule``), ``NACD/utils/tools.py`` (data, ``calc_map_k``),
``noise_label/generate.py`` (the noise: our ``cmhash.noise`` kind ``redundant``), ``readme.md``.
The paper's equations could not be read: the text conversion the project's reference notes were written from
drops them, and we found no other copy (searched: OpenReview/paper pages by title). So the equations below are the
code's; the paper's numbers quoted below (§4.2, §4.5) come from those notes' reading of its prose.

Setting: "redundant annotations" -- every training row keeps its true labels and carries extra false ones
(``redundant`` noise: ``round(r n_i)`` added per row). NACD keeps a label confidence ``P in [0,1]^{N x C}`` per
training sample (a buffer, initialised to the noisy labels ``y``) and class thresholds ``t in R^C`` (0.5).

Model (``network.py``): per modality an MLP with ReLU and biases (PyTorch default init; image 4096 -> 8192 ->
8192 -> L, text d -> 8192 -> L: ``hidden`` / ``text_hidden``), ``z = tanh(o) / ||tanh(o)||_2``; linear classifiers
``W_1, W_2 in R^{L x C}`` without bias, orthogonally initialised; ``p^m = sigmoid(z^m W_m)``.

Per mini-batch (``train``), with ``P_b = P[index]`` read before this batch's update (terms in
:mod:`cmhash.losses.partial` and :func:`cmhash.losses.quantization.l1_quantization`, equations there)::

    L_nacr  = (BCE(p^1, P_b) + BCE(p^2, P_b)) / 2                     (soft targets = confidences)
    yhat    = y * 1[P_b >= t];   T_ij = Jaccard(yhat_i, yhat_j)
    S = Z^1 Z^2^T;  pos = 1[T > 0](1 - I);  neg = 1[T = 0](1 - I)
    C^te_ij = S_ij if S_ij >= S_ii - delta else S_ij - xi;  C^im_ij likewise with S_jj (masks detached)
    L_crch  = mean[neg (exp C^te + exp C^im)] + mean[pos exp(-S - T)] - mean_i S_ii
    L_q     = mean|Z^1 - sign Z^1| + mean|Z^2 - sign Z^2|
    L       = L_nacr + alpha L_crch + beta L_q                          (alpha 0.3, beta 0.7)
    P[index] <- (omega_e P_b + (1 - omega_e) (sg p^1 + sg p^2) / 2) * y,   omega_e = 0.95 - 0.15 e / E

After the batches of every epoch ``e >= warmup_epochs`` (10; so first used in epoch 11, our
:meth:`NACD.on_epoch_start` of epoch ``e + 1``): codes of the whole training split,
``A = (cos(Z^1, Z^1) + cos(Z^2, Z^2)) / 2`` with zero diagonal, the ``k = 20`` largest entries per row with
similarities ``a``, ``q_i = (sum_n a_n / (sum a + 1e-8) P_n) * y_i``, ``P <- lambda q + (1 - lambda) P``
(``lambda`` 0.2), then ``t_c = mean of the positive entries of column c of P`` (0 where a column has none:
``sum / max(count, 1)``).

Optimiser: RMSprop (lr 1e-5, weight decay 1e-5, torch defaults otherwise), no schedule, no clipping; 100 epochs,
batch 128. RMSprop has no bias correction, so its first steps are about ``10 x lr`` per weight: on the shipped
mfeat features (raw, up to 6) one step at ``lr = 1e-3`` shifts the pre-tanh outputs far beyond their spread over
samples (image view: median ``|o|`` about 51 after step 1), every sample gets the same code and MAP stays at chance
(measured); ``1e-4`` trains. Defaults follow the code (``get_config``, argparse, ``__main__`` and the
``readme.md`` command, which all agree: alpha 0.3, beta 0.7, Lambda 0.2, k 20, margin 0.2, shift 1.0).
The paper's prose agrees on delta 0.2, xi 1.0, 20 neighbours, batch 128, RMSprop lr 1e-5, 100 epochs and 10
warm-up epochs; its sensitivity study reports the best lambda in [0.01, 0.04] and alpha in [0.1, 0.5], beta in
[0.5, 1.5]. The code's lambda = 0.2 lies outside that range; without the paper's equation we cannot tell whether
lambda is defined differently there, so the code's value is kept (``lam`` is a parameter).

Single-label data (our shipped mfeat) with any noise kind: nothing changes in the method. ``P`` is masked by the
noisy label, so on one-hot ``sym``/``flip`` noise every row holds one nonzero confidence (its given class) that
NACR and the momentum update move between 0 and 1; a row whose confidence falls below its class threshold gets
an empty pseudo-label ``yhat`` and becomes a negative of every other row in ``L_crch`` (a soft form of sample
selection), and ``L_nacr`` pulls its class probability towards that confidence. A true class that the noise
switched off can never be recovered (``P * y``). With ``redundant`` noise on single-label data (rate > 0.5, see
:mod:`cmhash.noise`) every row has 2+ candidates and NACD does the disambiguation it was built for.

Departures from the code (none from the paper's prose):

* Evaluation as every method here: best epoch by validation MAP, codes of the test split (database split where the
  dataset has one). The code evaluates on its query set every 20 epochs (before epochs 20, 40, ..., 100, i.e.
  never after the last one) against a database that includes the training rows, and reports the best sum of
  I->T and T->I over those evaluations (selection on the test queries).
* One RMSprop over all parameters instead of two (image net + W_1, text net + W_2) with equal settings: RMSprop
  keeps per-parameter state, so the updates are the same.
* The loop's seeded shuffling; a 1-sample tail batch is dropped by our loop (the code keeps every batch).
* ``z / max(||z||, 1e-12)`` (``F.normalize``) instead of ``z / ||z||``; the BCE computed in float32 by formula
  (same value as ``F.binary_cross_entropy``, also under autocast); ``k`` capped at ``N - 1`` for tiny splits
  (the code's ``topk`` would fail); the ``N x N`` neighbour similarity computed in row chunks (same values).
* The code's unused ``--num_gradual``, its dead ``test`` function and checkpoint folders are not reproduced.
  Its noise is made offline with an unseeded ``torch.rand``; ours comes from the run's seed (``cmhash.noise``).
* ``StepOutput.weights`` (logging only) reports each batch row's mean confidence over its candidate labels after
  the update; the code logs nothing like it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..losses.partial import (
    class_aware_contrastive_loss,
    class_thresholds,
    confidence_bce,
    confidence_momentum_update,
    confident_pseudo_labels,
    jaccard_similarity,
    momentum_weight,
    neighbour_confidence_reconstruction,
)
from ..losses.quantization import l1_quantization
from ..nets import mlp
from .base import Method, OptimizerSpec, Stage, StepOutput, TrainContext, register


class _Encoder(nn.Module):
    """MLP (ReLU, biases, default init) -> tanh -> L2 normalisation (NACD ``ImgModule``/``TxtModule``)."""

    def __init__(self, in_dim: int, hidden: list[int], bits: int):
        super().__init__()
        self.net = mlp(in_dim, hidden, bits, last_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(torch.tanh(self.net(x)), dim=1)


@register
class NACD(Method):
    impl = "nacd"
    venue = "NeurIPS'25"
    uses_index = True
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": [8192, 8192],  # image network (modality 0)
        "text_hidden": [8192],  # text network (modality 1)
        "epochs": 100,
        "batch_size": 128,
        "lr": 1e-5,
        "weight_decay": 1e-5,
        "alpha": 0.3,  # weight of L_crch
        "beta": 0.7,  # weight of L_q
        "lam": 0.2,  # NACR mixture weight lambda (code: --Lambda)
        "k": 20,  # neighbours of NACR
        "margin": 0.2,  # delta
        "shift": 1.0,  # xi
        "warmup_epochs": 10,  # NACR and the thresholds update after every epoch e >= warmup_epochs
        "momentum_start": 0.95,  # omega at epoch 0
        "momentum_end": 0.8,  # omega reached at epoch E (the last epoch uses 0.95 - 0.15 (E-1)/E)
        "threshold_init": 0.5,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        if len(in_dims) != 2:
            raise ValueError(f"NACD is a two-modality method; got {len(in_dims)} modalities")
        for key in ("k", "warmup_epochs"):
            if p[key] < 0:
                raise ValueError(f"{key} must be >= 0, got {p[key]!r}")
        if not 0.0 <= p["lam"] <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {p['lam']!r}")
        self.encoders = nn.ModuleList(
            [_Encoder(in_dims[0], list(p["hidden"]), bits), _Encoder(in_dims[1], list(p["text_hidden"]), bits)]
        )
        self.classifiers = nn.ParameterList()
        for _ in in_dims:
            w = torch.empty(bits, n_classes)
            nn.init.orthogonal_(w, gain=1)
            self.classifiers.append(nn.Parameter(w))
        self.register_buffer("confidence", torch.zeros(0, n_classes))
        self.register_buffer("thresholds", torch.full((n_classes,), float(p["threshold_init"])))

    def stages(self) -> list[Stage]:
        return [Stage(optimizers={"main": OptimizerSpec(kind="rmsprop")})]

    def on_train_start(self, ctx: TrainContext) -> None:
        labels = ctx.labels
        self.confidence = labels.to(torch.float32).clone()
        self.thresholds = torch.full(
            (labels.shape[1],), float(self.params["threshold_init"]), device=labels.device
        )

    @torch.no_grad()
    def _split_codes(self, xs: list[torch.Tensor], batch: int = 4096) -> list[torch.Tensor]:
        out: list[list[torch.Tensor]] = [[] for _ in xs]
        for s in range(0, xs[0].shape[0], batch):
            for m, z in enumerate(self.encode([x[s : s + batch] for x in xs])):
                out[m].append(z.float())
        return [torch.cat(c) for c in out]

    @torch.no_grad()
    def on_epoch_start(self, ctx: TrainContext) -> None:
        xs, labels, epoch = ctx.xs, ctx.labels, ctx.epoch
        # the code runs this after the batches of epoch e >= warmup: here, before epoch e + 1
        if epoch - 1 < self.params["warmup_epochs"] or self.confidence.shape[0] != labels.shape[0]:
            return
        codes = self._split_codes(xs)  # train mode, as the code (our encoders have no dropout/BN)
        self.confidence = neighbour_confidence_reconstruction(
            codes, self.confidence, labels, int(self.params["k"]), float(self.params["lam"])
        )
        self.thresholds = class_thresholds(self.confidence)

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None
    ) -> StepOutput:
        p = self.params
        u, v = self.encode(xs)
        probs = [torch.sigmoid(z @ w) for z, w in zip((u, v), self.classifiers)]
        y = labels.to(torch.float32)
        has_state = index is not None and self.confidence.shape[0] > 0
        conf = self.confidence[index] if has_state else y  # advanced indexing: a copy, read before the update
        l_nacr = confidence_bce(probs, conf)
        label_sim = jaccard_similarity(confident_pseudo_labels(y, conf, self.thresholds))
        l_crch = class_aware_contrastive_loss(u, v, label_sim, p["margin"], p["shift"])
        l_q = l1_quantization(u) + l1_quantization(v)
        loss = l_nacr + p["alpha"] * l_crch + p["beta"] * l_q
        weights = None
        if has_state and self.training:
            omega = momentum_weight(epoch, p["epochs"], p["momentum_start"], p["momentum_end"])
            mean_prob = (probs[0].detach().float() + probs[1].detach().float()) / 2.0
            new = confidence_momentum_update(conf, mean_prob, y, omega)
            self.confidence[index] = new
            weights = ((new * y).sum(dim=1) / y.sum(dim=1).clamp(min=1.0)).clamp(0.0, 1.0)
        terms = {"nacr": l_nacr.detach(), "crch": l_crch.detach(), "quant": l_q.detach()}
        return StepOutput(loss=loss, terms=terms, weights=weights)
