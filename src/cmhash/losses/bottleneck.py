r"""Variational (information) bottleneck terms: a Gaussian feature sampled by reparameterisation, its KL to the
standard normal prior, and MIAN's modality alignment through the bottleneck.

* Reparameterised feature: ``f = relu(mu + exp(s / 2) * eps)``, ``eps ~ N(0, I)``, ``s`` the log-variance
  (MIAN ``tnet.py::ImageNet.forward``).
  Hand check: ``mu = [1, -1]``, ``s = [0, 2 log 2]``, ``eps = [1, 1]`` -> ``relu([2, 1]) = [2, 1]``.
* Gaussian KL to ``N(0, I)``: ``KL = -1/2 sum (1 + s - mu^2 - exp(s))`` (summed over the batch and dimensions).
  Hand check: ``mu = [[1, 0]]``, ``s = [[0, log 2]]`` ->
  ``-1/2 [(1 + 0 - 1 - 1) + (1 + log 2 - 0 - 2)] = 1 - log(2) / 2``;
  with ``s = 0`` it is ``sum mu^2 / 2``.
* MIAN alignment: ``1/B [ sum BCE_logits(g(f^1), sigmoid(stopgrad t)) + sigma KL ]`` where ``g(f^1)`` predicts the
  text feature ``t`` from the image feature (``MICH.py::train_img_net``; the code sums over the batch).
  Hand check: ``g = 0``, ``t = 0`` (3 x 2), ``mu = [[2,0],[0,0],[1,1]]``, ``s = 0``, ``sigma = 0.5``:
  ``(6 log 2 + 0.5 * 3) / 3``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def reparameterised_relu(mu: torch.Tensor, log_var: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """``relu(mu + exp(log_var / 2) * eps)``; ``eps`` drawn from the global torch generator unless given."""
    eps = torch.randn_like(mu) if noise is None else noise
    return torch.relu(mu + torch.exp(0.5 * log_var) * eps)


def gaussian_kl_standard(mu: torch.Tensor, log_var: torch.Tensor | None = None) -> torch.Tensor:
    """``-1/2 sum (1 + s - mu^2 - exp(s))`` (``s = 0`` when ``log_var`` is ``None``: ``sum mu^2 / 2``)."""
    if log_var is None:
        return 0.5 * mu.pow(2).sum()
    return -0.5 * (1.0 + log_var - mu.pow(2) - log_var.exp()).sum()


def bottleneck_alignment_loss(
    predicted: torch.Tensor,
    target_feature: torch.Tensor,
    mu: torch.Tensor,
    sigma: float,
    log_var: torch.Tensor | None = None,
) -> torch.Tensor:
    """``1/B [sum BCE_logits(predicted, sigmoid(stopgrad target)) + sigma KL(mu, log_var)]``."""
    bce = F.binary_cross_entropy_with_logits(predicted, torch.sigmoid(target_feature.detach()), reduction="sum")
    return (bce + sigma * gaussian_kl_standard(mu, log_var)) / predicted.shape[0]
