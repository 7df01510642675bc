r"""UCCH: Unsupervised Contrastive Cross-modal Hashing (Hu, Zhu, Lin, Peng, Zhao, Peng; IEEE TPAMI 45(3), 2023).

Official code: ``penghu-cs/UCCH`` @ ``0c20e62b99875cd2ec9d7a496eae80b3ab8ba61b`` (2023-12-29), read in full:
``UCCH.py`` (model construction, optimiser, scheduler, the training loop ``train``), ``NCE/NCEAverage.py``
(the hashing memory bank and its logits), ``NCE/NCECriterion.py`` (softmax cross-entropy, positive first),
``NCE/alias_multinomial.py`` (uniform sampler), ``src/utils.py`` (``ContrastiveLoss`` = the ranking loss),
``nets/ImageNet.py`` / ``nets/TextNet.py`` (hash MLPs), ``utils/config.py`` (defaults), README (run commands);
and the paper (``paper/UCCH.pdf`` in the repository), Secs. 3-4.2 and Algorithm 1.

Label-free (``uses_labels = False``): the noisy labels never reach the loss and no random number depends on
them, so for a fixed seed the codes are the same at every noise rate.

Model. Per modality ``h = tanh(f(x)) / ||tanh(f(x))||_2``; ``f`` = MLP with biases, ReLU, PyTorch's default
initialisation (image: ``hidden``, official 8192-8192; text: ``text_hidden``, official 8192 -- the text net has one
hidden layer less). Raw input features (the official code feeds them unnormalised). Binary code ``b = sgn(h)``.

Objective (Eq. 15), with ``beta`` = ``alpha``::

    L = beta L_c + (1 - beta) L_r

* Hashing memory bank: ``V`` (``N x L`` buffer, one row per training pair, indexed by ``index``), keys
  ``k_r = sgn(v_r)`` (entries +/-1, no gradient). For pair ``i`` the keys are ``k^+_i = sgn(v_i)`` (column 0)
  and ``K`` = ``n_negatives`` rows drawn uniformly with replacement from all ``N`` (no exclusion of ``i`` or the
  batch; one draw per anchor per batch, shared by the image and the text query of the pair).
* Contrastive hashing loss (Eqs. 3-4; :func:`cmhash.losses.contrastive.hash_key_contrast_loss`)::

      P(i | h^m_i) = exp(<h^m_i, k^+_i/sqrt(L)> / tau) / sum_{c=0..K} exp(<h^m_i, k_{i,c}/sqrt(L)> / tau)
      L_c = mean_i -log P(i | h^x_i) + mean_i -log P(i | h^y_i)

* Warm-up (code only, ``epoch < warmup_epochs``): keys in-batch instead of the bank: ``u_j = sgn((h^x_j +
  h^y_j)/2)``, positive ``u_i``, negatives the other ``B - 1`` rows of the batch; momentum 0 in the bank update.
* Bank update after the loss, without gradient, every batch (Eq. 5; ``delta`` = ``momentum``, 0 in warm-up)::

      bank_update = "paper":      v_i <- delta v_i + (1 - delta) (h^x_i + h^y_i) / 2
      bank_update = "normalised": v_i <- normalise(delta v_i + (1 - delta) normalise((h^x_i + h^y_i) / 2))  (code)

  Initialisation (code, ``NCEAverage.__init__``): ``v = normalise(sgn(2 s z - s))``, ``z ~ N(0, 1)``,
  ``s = 1/sqrt(L/3)``, i.e. ``sgn(z - 1/2)/sqrt(L)``: about 69 % of the entries are -1 (a quirk of the code,
  kept; it only matters until a row's first update).
* Cross-modal ranking loss (Eqs. 8, 14; :func:`cmhash.losses.contrastive.cross_modal_ranking_loss`), in-batch,
  ``M_ij = <h^x_i, h^y_j>``: ``S_ij = M_ij`` if ``M_ii - M_ij <= m`` else ``M_ij - xi`` (per query direction),
  ``L_r = mean_i [m + kappa log sum_j exp(S^xy_ij/kappa) - S^xy_ii] + (same for text queries)``.

Training: one Adam over both nets (``lr`` 1e-4, ``weight_decay`` 1e-6 coupled L2 as ``torch.optim.Adam``),
gradient clipping of the total norm to ``clip_grad_norm`` = 1.0 every step, MultiStepLR ``lr_milestones``
[30, 60, 90, 120] / ``lr_gamma`` 0.1 stepped per epoch (never reached in the paper's 20 epochs), batch 256.

Defaults: paper where it states a value (``delta`` 0.4, ``tau`` 0.9, ``K`` 4096, ``m`` 0.2, lr 1e-4, 20 epochs
(Sec. 4.3.4), the bank update of Eq. 5); the code's ``utils/config.py`` where the paper is silent (``alpha`` 0.9
-- the paper tunes beta per dataset, the README's MIRFlickr command uses 0.7 --, ``shift`` xi 1.0 -- README
0.1 --, ``kappa`` 1, weight decay 1e-6, clipping 1.0, one warm-up epoch, batch 256, the LR milestones, the bank
initialisation, the network widths).

Departures from the paper:
  * ``L_c`` is a MEAN over anchors (code) although Eq. 3 writes a sum over the n samples while Eq. 14 (``L_r``)
    is a mean: taken literally, beta would weigh ``L_c`` n times more than ``L_r``, which contradicts the
    paper's own beta study (Fig. 9) and ablation; the code's means are the consistent reading.
  * ``L_r`` over the batch (code) rather than over all n pairs (the paper's notation, not trainable as is).
  * The warm-up epoch with in-batch keys, clipping, weight decay and the LR schedule are the code's (the paper
    does not mention them).
Departures from the official code:
  * Bank update: Eq. 5 by default (no L2 normalisations); the code's form is ``bank_update: normalised``.
  * The last partial batch is kept (the code drops it, ``drop_last=True``); our loop only drops a 1-sample tail.
  * LR milestones take effect one epoch earlier: the code calls ``lr_schedu.step(epoch)`` after epoch ``epoch``
    (decay from 0-based epoch 31), our loop steps MultiStepLR once per epoch (decay from epoch 30).
  * Evaluation and model selection follow this harness for every method: best epoch by validation MAP on the
    validation split, queries = test split, database = test or database split, ``sgn(0) = +1``. The code
    selects on the first 2000 TRAINING rows retrieving themselves and uses the training set as database.
  * No raw-image mode (VGG/ResNet backbone, crops); features only, as in the paper's comparison.
  * Negatives are drawn with ``torch.randint`` on the bank's device (the code's alias sampler with uniform
    weights is the same distribution); the global torch RNG is used, so a run resumed from a checkpoint draws
    other negatives than an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..losses.contrastive import cross_modal_ranking_loss, hash_key_contrast_loss
from ..nets import mlp
from .base import Method, OptimizerSpec, Stage, StepOutput, TrainContext, register

BANK_UPDATES = ("paper", "normalised")


class UnitTanhHashNet(nn.Module):
    """UCCH's hash net: MLP (biases, default init) -> tanh -> L2 normalisation (nets/ImageNet.py, TextNet.py)."""

    def __init__(self, in_dim: int, hidden: list[int], bits: int):
        super().__init__()
        self.fc = mlp(in_dim, hidden, bits, last_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(torch.tanh(self.fc(x)), dim=1)


@register
class UCCH(Method):
    impl = "ucch"
    venue = "TPAMI'23"
    uses_labels = False
    uses_index = True
    defaults = {
        "epochs": 20,
        "batch_size": 256,
        "lr": 1e-4,
        "weight_decay": 1e-6,
        "hidden": [8192, 8192],
        "text_hidden": [8192],
        "alpha": 0.9,
        "tau": 0.9,
        "n_negatives": 4096,
        "momentum": 0.4,
        "margin": 0.2,
        "shift": 1.0,
        "kappa": 1.0,
        "warmup_epochs": 1,
        "clip_grad_norm": 1.0,
        "lr_milestones": [30, 60, 90, 120],
        "lr_gamma": 0.1,
        "bank_update": "paper",
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        if self.params["bank_update"] not in BANK_UPDATES:
            raise ValueError(f"ucch: bank_update must be one of {BANK_UPDATES}, got {self.params['bank_update']!r}")
        widths = (self.params["hidden"], self.params["text_hidden"])
        self.encoders = nn.ModuleList(UnitTanhHashNet(d, list(w), bits) for d, w in zip(in_dims, widths))
        self.register_buffer("memory", torch.zeros(0, bits))

    def stages(self) -> list[Stage]:
        p = self.params
        milestones = list(p["lr_milestones"])
        return [Stage(
            optimizers={"main": OptimizerSpec(kind="adam")},
            lr_schedule="multistep" if milestones else "constant",
            schedule_options={"milestones": milestones, "gamma": p["lr_gamma"]} if milestones else {},
            clip_grad_norm=p["clip_grad_norm"] if p["clip_grad_norm"] > 0 else None,
        )]

    def on_train_start(self, ctx: TrainContext) -> None:
        xs = ctx.xs
        n, dev = xs[0].shape[0], xs[0].device
        s = 1.0 / (self.bits / 3.0) ** 0.5
        rnd = torch.randn(n, self.bits, device=dev) * (2 * s) - s
        self.memory = nn.functional.normalize(torch.sign(rnd), dim=1)

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None
    ) -> StepOutput:
        if index is None:
            raise ValueError("ucch: training_step needs index= (rows of the batch in the training split)")
        p = self.params
        h_x, h_y = self.encode(xs)
        b = h_x.shape[0]
        warmup = epoch < p["warmup_epochs"]
        if warmup:
            keys = torch.sign((h_x + h_y).detach() / 2)
            rows = torch.arange(b, device=h_x.device)
            others = rows[None, :].expand(b, b)[~torch.eye(b, dtype=torch.bool, device=h_x.device)].view(b, b - 1)
            key_index = torch.cat([rows[:, None], others], dim=1)
        else:
            keys = torch.sign(self.memory)
            negatives = torch.randint(0, keys.shape[0], (b, p["n_negatives"]), device=keys.device)
            key_index = torch.cat([index.to(keys.device)[:, None], negatives], dim=1)
        l_c = hash_key_contrast_loss(h_x, keys, key_index, p["tau"]) + hash_key_contrast_loss(
            h_y, keys, key_index, p["tau"])
        l_r = cross_modal_ranking_loss(h_x, h_y, p["margin"], p["shift"], p["kappa"])
        loss = p["alpha"] * l_c + (1.0 - p["alpha"]) * l_r
        self._update_memory(index, h_x.detach(), h_y.detach(), 0.0 if warmup else p["momentum"])
        return StepOutput(loss=loss, terms={"contrast": l_c.detach(), "ranking": l_r.detach()})

    @torch.no_grad()
    def _update_memory(self, index: torch.Tensor, h_x: torch.Tensor, h_y: torch.Tensor, delta: float) -> None:
        mean = (h_x + h_y).to(self.memory.dtype) / 2
        if self.params["bank_update"] == "normalised":
            mean = nn.functional.normalize(mean, dim=1)
        new = delta * self.memory[index] + (1.0 - delta) * mean
        if self.params["bank_update"] == "normalised":
            new = nn.functional.normalize(new, dim=1)
        self.memory[index] = new
