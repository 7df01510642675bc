r"""Building blocks shared by several methods that are not loss terms (those live in :mod:`cmhash.losses`).

* RBF anchor features of the shallow methods: ``phi(x)_j = exp(-||x - a_j||^2 / (2 sigma^2))``.
* Row normalisation of multi-hot labels; the standardised label-free encoder base of unsupervised methods.
"""

from __future__ import annotations

from typing import Any

import torch

from ..nets import HashEncoder
from .base import Method, TrainContext


def rbf_features(x: torch.Tensor, anchors: torch.Tensor, sigma: float) -> torch.Tensor:
    """``phi(x)_j = exp(-||x - a_j||^2 / (2 sigma^2))`` (``N x n_anchors``)."""
    return torch.exp(-torch.cdist(x, anchors).pow(2) / (2.0 * sigma * sigma))


def normalise_rows(y: torch.Tensor) -> torch.Tensor:
    """Rows scaled to sum 1 (a multi-hot label becomes a distribution; all-zero rows stay zero)."""
    y = y.to(torch.float32)
    return y / y.sum(dim=1, keepdim=True).clamp(min=1e-12)


class StandardisedUnsupervised(Method):
    """Base of the unsupervised deep methods: labels ignored, each modality's inputs standardised by the
    training mean and standard deviation (label-free statistics computed once in :meth:`on_train_start`),
    then the shared MLP -> tanh -> L2-norm encoder. Nothing here reads the labels or draws random numbers
    that depend on them, so codes are identical across noise rates for a fixed seed."""

    uses_labels = False

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        self.encoders = torch.nn.ModuleList(HashEncoder(d, self.params["hidden"], bits) for d in in_dims)
        for m, d in enumerate(in_dims):
            self.register_buffer(f"mean{m}", torch.zeros(d))
            self.register_buffer(f"std{m}", torch.ones(d))

    def on_train_start(self, ctx: TrainContext) -> None:
        xs = ctx.xs
        for m, x in enumerate(xs):
            setattr(self, f"mean{m}", x.mean(dim=0))
            setattr(self, f"std{m}", x.std(dim=0).clamp(min=1e-6) if x.shape[0] > 1 else torch.ones_like(x[0]))

    def standardised(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [(x - getattr(self, f"mean{m}")) / getattr(self, f"std{m}") for m, x in enumerate(xs)]

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [enc(x) for enc, x in zip(self.encoders, self.standardised(xs))]
