r"""DHRL: Deep Cross-Modal Hashing With Ranking Learning for Noisy Labels (Shu, Bai, Yong, Yu; IEEE Trans.
Big Data 2024).

Official code (per its README; the only public code found): github.com/zzidlezz/DHRL @ 139c1c8 (2024-05-20;
the code itself from d3a421a). Read: ``DHRL_model.py`` (model), ``layers.py`` (MLP ``Encoder``,
``PositionalEncoding``), ``utils.py`` (``Ranking``, ``LRLoss``), ``train_transformer.py`` (loop, selection,
evaluation), ``data.py``. The network is adapted from BSTH (Tan et al., SIGIR 2022). The paper's full text was
not available to us (abstract only: concepts aligned by two transformers and converted to hash codes; noisy
labels identified by a ranking loss, ranked, and the ranking swapped between the modal branches).

Model, per modality ``m`` (common width ``d`` = last ``hidden`` width, ``K`` bits):

1. MLP ``Encoder``: every layer Linear -> BatchNorm1d -> Tanh (image ``hidden`` [2048, 128], text
   ``text_hidden`` [1024, 128]); ``f^m in (-1, 1)^d``.
2. Concepts: Linear(d -> d K) reshaped to ``K`` tokens of ``d`` (one token per bit), plus the sinusoidal
   positional encoding, dropout.
3. A per-modality ``nn.TransformerEncoder``: ``n_layers`` = 2 post-norm layers, ``n_heads`` = 1,
   feed-forward width ``d``, GELU, dropout 0.5, final LayerNorm(d).
4. Hash head SHARED by the modalities: an independent two-layer MLP per bit (grouped 1x1 convolutions),
   token ``k`` -> Linear(d -> d/2) -> BatchNorm (over the ``K d/2`` channels) -> Tanh -> Linear(d/2 -> 1) ->
   Tanh: ``h^m in (-1, 1)^K`` (the codes are ``sign(h^m)``).
5. Classifier SHARED: logits ``p^m = W h^m + b`` (Linear(K -> C)).

Objective per batch (:meth:`DHRL.training_step`), noisy labels ``y in {0,1}^C``:

* label-ranking error (:func:`cmhash.losses.classification.label_ranking_error`, no gradient, used only to
  rank samples): ``e_ab = max(0, 1 + 2 (p_a - p_b))^2`` for a negative class ``a`` and a positive ``b``;
  ``r_i^m = alpha sum_a sqrt(sum_b e_ab + 1e-10) + beta sum_b sqrt(sum_a e_ab + 1e-10)``, alpha 0.2, beta 0.8;
* classification loss per sample (:func:`~cmhash.losses.classification.summed_bce_with_logits`):
  ``l_i^m = sum_c BCEwithLogits(p_ic^m, y_ic)``;
* selection swapped between the branches, from the first step: ``S^m`` = the ``n_keep`` smallest ``r^m``
  (:func:`cmhash.losses.selection.keep_smallest`);
  ``L = mean_{i in S^2} l_i^1 + mean_{i in S^1} l_i^2 + align * mean_{i,k} (h_ik^1 - h_ik^2)^2``.

Training as the code: Adam lr 1e-3, no weight decay, constant lr, batch 128, 10 epochs (HEAD; 20 before, and
a comment deleted at HEAD reads "MIR 80 WIKI 60 nus100"). The logged weight of a sample is the share of the
two branches that train on it (0, 0.5 or 1).

Departures from the code (defaults follow the code):

* ``n_keep``: the code hard-codes ``int(128 * 0.75) = 96`` whatever the batch size (a batch of at most 96
  keeps everything); ours ``int(keep_ratio B)`` (equal to the code at its batch 128); ``keep_count: 96``
  reproduces the code's constant.
* The code injects its own label noise (``random_noise_per_sample(L_tr, 0.8, 0.8)``, one shared subset of 80 %
  of the classes flipped in 80 % of the rows); ours trains on the harness's noisy labels.
* The ranking error's "potential missing/extra label" output is unused by the code and not computed here.
* An unused xavier ``_initialize`` is not ported (the code never calls it: PyTorch default inits, as here).
* Evaluation as every method here (best validation epoch; test split as query set and database); the code
  evaluates the last epoch once, query vs retrieval set, MAP@1000.
* The ``align`` weight (1 in the code, not a parameter there) is exposed for ablations.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from ..losses.classification import label_ranking_error, summed_bce_with_logits
from ..losses.selection import keep_smallest
from .base import Method, OptimizerSpec, Stage, StepOutput, register


def _bn_tanh_mlp(in_dim: int, widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = in_dim
    for w in widths:
        layers += [nn.Linear(prev, int(w)), nn.BatchNorm1d(int(w)), nn.Tanh()]
        prev = int(w)
    return nn.Sequential(*layers)


def sinusoidal_positions(length: int, width: int) -> torch.Tensor:
    """``PE[pos, 2i] = sin(pos / 10000^(2i/d))``, ``PE[pos, 2i+1] = cos(...)`` (``length x width``)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    pe = torch.zeros(length, width)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class _ConceptTransformer(nn.Module):
    """MLP -> K concept tokens (+ positions, dropout) -> transformer encoder; returns ``B x K x d``."""

    def __init__(self, in_dim: int, widths: list[int], bits: int, p: dict[str, Any]):
        super().__init__()
        d = int(widths[-1])
        self.bits, self.width = bits, d
        self.mlp = _bn_tanh_mlp(in_dim, widths)
        self.concept = nn.Linear(d, d * bits)
        self.register_buffer("positions", sinusoidal_positions(bits, d), persistent=False)
        self.dropout = nn.Dropout(p["dropout"])
        layer = nn.TransformerEncoderLayer(d_model=d, nhead=p["n_heads"], dim_feedforward=d, dropout=p["dropout"],
                                           activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, num_layers=p["n_layers"], norm=nn.LayerNorm(d),
                                             enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.concept(self.mlp(x)).reshape(x.shape[0], self.bits, self.width).transpose(0, 1)  # K x B x d
        return self.encoder(self.dropout(tokens + self.positions[:, None, :])).transpose(0, 1)


class _BitwiseHashHead(nn.Module):
    """One two-layer MLP per bit (grouped 1x1 convolutions, shared by the modalities): ``B x K x d -> B x K``."""

    def __init__(self, bits: int, width: int):
        super().__init__()
        half = width // 2
        self.first = nn.Conv1d(bits * width, bits * half, kernel_size=1, groups=bits)
        self.norm = nn.BatchNorm1d(bits * half)
        self.second = nn.Conv1d(bits * half, bits, kernel_size=1, groups=bits)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        z = tokens.reshape(tokens.shape[0], -1, 1)
        return torch.tanh(self.second(torch.tanh(self.norm(self.first(z))))).squeeze(2)


@register
class DHRL(Method):
    impl = "dhrl"
    venue = "TBD'24"
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 10,
        "batch_size": 128,
        "lr": 1e-3,
        "hidden": [2048, 128],
        "text_hidden": [1024, 128],
        "n_heads": 1,
        "n_layers": 2,
        "dropout": 0.5,
        "keep_ratio": 0.75,
        "keep_count": 0,
        "alpha": 0.2,
        "beta": 0.8,
        "align": 1.0,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        widths = [list(p["hidden"]), list(p["text_hidden"])]
        if not widths[0] or not widths[1] or widths[0][-1] != widths[1][-1]:
            raise ValueError(f"dhrl: 'hidden' {widths[0]} and 'text_hidden' {widths[1]} must be non-empty and end "
                             "in the same width (the common token width); set both")
        d = widths[0][-1]
        if d % 2 or d % p["n_heads"]:
            raise ValueError(f"dhrl: the token width {d} (last hidden width) must be even and divisible by n_heads")
        self.branches = nn.ModuleList(_ConceptTransformer(dim, w, bits, p) for dim, w in zip(in_dims, widths))
        self.hash = _BitwiseHashHead(bits, d)
        self.classifier = nn.Linear(bits, n_classes)

    def stages(self) -> list[Stage]:
        return [Stage(optimizers={"main": OptimizerSpec(kind="adam")})]

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.hash(branch(x)) for branch, x in zip(self.branches, xs)]

    def n_keep(self, batch: int) -> int:
        p = self.params
        return int(p["keep_count"]) if p["keep_count"] > 0 else int(p["keep_ratio"] * batch)

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        p = self.params
        codes = self.encode(xs)
        logits = [self.classifier(h) for h in codes]
        with torch.no_grad():
            ranking = [label_ranking_error(z, labels, p["alpha"], p["beta"]) for z in logits]
        cls = [summed_bce_with_logits(z, labels) for z in logits]
        n = self.n_keep(labels.shape[0])
        sel = [keep_smallest(ranking[1], n), keep_smallest(ranking[0], n)]  # swapped: branch m learns from m'
        ranked = cls[0][sel[0]].mean() + cls[1][sel[1]].mean()
        align = (codes[0] - codes[1]).pow(2).mean()
        loss = ranked + p["align"] * align
        weights = (sel[0].to(torch.float32) + sel[1].to(torch.float32)) / 2
        return StepOutput(loss=loss, terms={"cls": ranked.detach(), "align": align.detach()}, weights=weights)
