"""Network building blocks shared by the methods."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, last_bias: bool = True) -> nn.Sequential:
    """``in_dim -> hidden... -> out_dim`` with ReLU between layers (no activation after the last)."""
    layers: list[nn.Module] = []
    prev = in_dim
    for width in hidden:
        layers += [nn.Linear(prev, int(width)), nn.ReLU(inplace=True)]
        prev = int(width)
    layers.append(nn.Linear(prev, out_dim, bias=last_bias))
    return nn.Sequential(*layers)


class HashEncoder(nn.Module):
    """Modality-specific hash function ``H^m``: MLP -> tanh -> L2 normalisation (RSHNL/SEHA network).

    The continuous output is used by the losses; ``sign`` of it is the binary code (Eq. 1).
    As in the published code the last layer has no bias and is initialised U(-1/sqrt(d_in), 1/sqrt(d_in))
    with ``d_in`` the input feature width.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], bits: int):
        super().__init__()
        self.net = mlp(in_dim, hidden, bits, last_bias=False)
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.net[-1].weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(torch.tanh(self.net(x)), dim=1)


class CenterGenerator(nn.Module):
    """Learned class (hash) centres ``C in R^{K x L}``: identity -> MLP -> tanh -> row-wise L2 norm.

    With ``hidden=[]`` the centres are a single learned linear map of the identity, i.e. free parameters.
    """

    def __init__(self, n_classes: int, hidden: Sequence[int], bits: int):
        super().__init__()
        self.net = mlp(n_classes, hidden, bits, last_bias=True)
        bound = 1.0 / math.sqrt(n_classes)
        nn.init.uniform_(self.net[-1].weight, -bound, bound)
        self.register_buffer("eye", torch.eye(n_classes), persistent=False)

    def forward(self) -> torch.Tensor:
        return nn.functional.normalize(torch.tanh(self.net(self.eye)), dim=1)
