r"""CMMQ: Mutual Quantization for Cross-Modal Search with Noisy Labels (Yang, Yao, Liu, Deng; CVPR 2022).

Official code: github.com/yangerkun/Mutual-Quantization-for-Cross-Modal-Search-With-Noisy-Labels @ 2b17232
(2023-07-17). Read: ``My_method.py`` (objective ``Robust_Loss``, the unused ``KLLoss``, the loop ``train_val``,
``get_config``), ``network.py`` (``ResNet``, ``TextNet``), ``utils/tools.py`` (data, ``CalcTopMap``). The
paper's full text was not available to us; its abstract (CVF open access) says: a proxy-based contrastive
(PC) loss, networks of both modalities trained jointly on small-loss samples selected with the PC loss AND a
mutual quantization loss that maximises the agreement of the modalities. A third-party digest describes the
mutual term as a Jensen-Shannon divergence simplified to a symmetric KL between the two modalities' outputs,
which is the formula of the code's (uninstantiated) ``KLLoss``.

Per batch of ``B`` pairs, ``u = tanh(f^1(x^1))``, ``v = tanh(f^2(x^2))`` (``B x K``), noisy labels ``y``:

1. Fixed hash centres (CSQ's rule, :func:`cmhash.losses.proxy.hadamard_hash_centers`): rows of
   ``[H_K; -H_K]``, random balanced rows for classes beyond ``2K``; the target ``t_i`` is the centre of the
   label (single-label) or the sign of the summed centres of its classes, zeros broken by a fixed random bit
   vector (multi-label; :func:`~cmhash.losses.proxy.label_hash_centers`). Centres and tie bits are buffers.
2. PC loss per bit: ``BCE((u_ik+1)/2, (t_ik+1)/2) + BCE((v_ik+1)/2, (t_ik+1)/2)``
   (:func:`~cmhash.losses.proxy.center_bce`).
3. Quantisation per bit: ``Q_ik = (|u_ik| - 1)^2 + (|v_ik| - 1)^2``, weight ``quant`` (lambda = 1e-4).
4. Joint per-pair loss ``l_i = mean_k [BCE_u + BCE_v + quant Q]_ik + mutual * M_i`` with the mutual term
   ``mutual_form = "sym_kl"`` (default): ``M_i = mean_k (p - q)(log p - log q)``, ``p = (u+1)/2``,
   ``q = (v+1)/2`` (:func:`cmhash.losses.contrastive.code_symmetric_kl_per_sample`, the ``KLLoss`` formula per
   pair); ``"info_nce"``: the code's ``MQ_loss``, ``M_j = -log( exp(u_j.v_j) / sum_i exp(u_i.v_j) )``
   (:func:`~cmhash.losses.contrastive.column_info_nce_per_sample`).
5. Small-loss selection, ONE kept set for both networks: forget rate ``r_t = linspace(0, forget_rate,
   num_gradual)[t]`` for epoch ``t < num_gradual``, then ``forget_rate``
   (:func:`cmhash.losses.selection.linear_forget_rate`); keep the ``int((1 - r_t) B)`` smallest ``l_i``
   (detached ranking, :func:`~cmhash.losses.selection.keep_smallest`); ``L = mean_{i kept} l_i``.

Training as the code: RMSprop (torch defaults alpha 0.99, eps 1e-8) over both networks, lr 1e-5, weight decay
1e-5, constant lr, batch 128, 100 epochs (:meth:`CMMQ.stages`). Codes ``sign(u)``, ``sign(v)``.

**The forget rate.** The code sets it to the dataset's noise rate (``--noise_rate``, default 0.6, which must
match the noisy-label file), as co-teaching does. ``forget_rate: -1`` (the default) does the same: the loop passes
the run's nominal noise rate (:attr:`Method.noise_rate`, ``uses_noise_rate = True``); a value in [0, 1) fixes it
for every run (0.6 = the code's argparse default).

Departures from the code (defaults follow the code unless marked *paper*):

* *paper*: the mutual term is ON (``mutual = 1``, the symmetric-KL form) and inside the selection score, as
  the abstract describes; the code runs with ``--beta 0`` (no mutual term) by default and its active form is
  the InfoNCE ``MQ_loss``. ``mutual: 0`` reproduces the code's default run, ``mutual_form: info_nce`` its
  ``--beta > 0`` runs. The weight 1 is a guess (the paper's value is unknown to us); the KL's ``p, q`` are
  clamped at 1e-12 (the code would give inf/NaN on saturated outputs).
* Networks: the code fine-tunes an ImageNet ResNet-18 on raw images (+ Linear(512, K), N(0, 0.01) init) and a
  text net that is in effect linear (``fc3(fc1(x))``, its ReLU output discarded); we get frozen features,
  so both modalities use a ReLU MLP (``hidden``) whose last Linear(-, K) has the image hash layer's init
  N(0, 0.01), bias 0.
* Single vs multi-label: the code decides by dataset name (``flickr`` multi-label; its ``nuswide10`` and
  ``ms-coco`` fall on the single-label branch); ours by the labels (any row with two labels: multi-label).
* Hash centres: for ``K`` not a power of two every centre is a random balanced row (CSQ's fallback; the
  code's ``hadamard`` fails); random draws use the torch generator seeded by the run (the code: Python's
  ``random``). ``int((1 - r_t) B)`` is floored at 1 kept sample (the code's mean of an empty set is NaN).
* ``InfoNCE``: log-softmax instead of log of softmax (same values, no ``log 0``).
* Evaluation as every method here: best validation epoch, test split as query set and database; the code
  evaluates every second epoch on query vs database splits with MAP@5000 and no model selection.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..losses.contrastive import code_symmetric_kl_per_sample, column_info_nce_per_sample
from ..losses.proxy import center_bce, hadamard_hash_centers, label_hash_centers
from ..losses.quantization import abs_quantization
from ..losses.selection import keep_smallest, linear_forget_rate
from ..nets import mlp
from .base import Method, OptimizerSpec, Stage, StepOutput, register

MUTUAL_FORMS = ("sym_kl", "info_nce")


@register
class CMMQ(Method):
    impl = "cmmq"
    venue = "CVPR'22"
    uses_noise_rate = True
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 100,
        "batch_size": 128,
        "lr": 1e-5,
        "weight_decay": 1e-5,
        "hidden": [4096, 4096],
        "forget_rate": -1.0,
        "num_gradual": 20,
        "quant": 1e-4,
        "mutual": 1.0,
        "mutual_form": "sym_kl",
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        if p["mutual_form"] not in MUTUAL_FORMS:
            raise ValueError(f"cmmq: mutual_form must be one of {MUTUAL_FORMS}, got {p['mutual_form']!r}")
        if not (p["forget_rate"] == -1.0 or 0.0 <= p["forget_rate"] < 1.0):
            raise ValueError(f"cmmq: forget_rate must be -1 (the run's noise rate) or in [0, 1), "
                             f"got {p['forget_rate']!r}")
        self.nets = nn.ModuleList(mlp(d, p["hidden"], bits) for d in in_dims)
        for net in self.nets:
            nn.init.normal_(net[-1].weight, 0.0, 0.01)
            nn.init.zeros_(net[-1].bias)
        self.register_buffer("centers", hadamard_hash_centers(n_classes, bits))
        self.register_buffer("tie_bits", torch.randint(0, 2, (bits,)).to(torch.float32) * 2 - 1)

    def stages(self) -> list[Stage]:
        return [Stage(optimizers={"main": OptimizerSpec(kind="rmsprop")})]

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.tanh(net(x)) for net, x in zip(self.nets, xs)]

    def final_forget_rate(self) -> float:
        """``forget_rate``, or the run's noise rate for ``forget_rate: -1`` (the code's ``--noise_rate``)."""
        rate = self.params["forget_rate"]
        if rate >= 0:
            return rate
        if self.noise_rate is None or not 0.0 <= self.noise_rate < 1.0:
            raise ValueError(f"cmmq: forget_rate -1 uses the run's noise rate, which is {self.noise_rate!r}; pass "
                             "train_model(noise_rate=...) or set forget_rate in [0, 1)")
        return float(self.noise_rate)

    def forget_rate(self, epoch: int) -> float:
        return linear_forget_rate(epoch, self.final_forget_rate(), self.params["num_gradual"])

    def per_pair_loss(self, u: torch.Tensor, v: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(l, pc, mutual)`` per pair: the joint selection loss and its PC and mutual parts."""
        p = self.params
        t = label_hash_centers(labels, self.centers, self.multilabel, self.tie_bits)
        pc = center_bce(u, t) + center_bce(v, t)
        per_bit = pc + p["quant"] * (abs_quantization(u) + abs_quantization(v))
        if p["mutual_form"] == "sym_kl":
            mq = code_symmetric_kl_per_sample(u, v)
        else:
            mq = column_info_nce_per_sample(u, v)
        return per_bit.mean(dim=1) + p["mutual"] * mq, pc.mean(dim=1), mq

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        u, v = self.encode(xs)
        loss_i, pc, mq = self.per_pair_loss(u, v, labels)
        rate = self.forget_rate(epoch)
        kept = keep_smallest(loss_i, int((1 - rate) * loss_i.numel()))
        loss = loss_i[kept].mean()
        return StepOutput(loss=loss, terms={"pc": pc[kept].mean().detach(), "mutual": mq[kept].mean().detach(),
                                            "forget_rate": rate}, weights=kept.to(torch.float32))
