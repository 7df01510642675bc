r"""Adversarial (GAN) terms: a discriminator on codes against samples of a prior.

Least-squares GAN (LSGAN) terms, as HMAH's teacher uses them to push its continuous codes towards a standard
normal prior (FutureTwT/HMAH, ``train.py`` ``train_teacher``; ``MSELoss`` = mean over entries):

* Discriminator: ``L_D = mean_i (D(z_i) - 1)^2 + mean_i D(h_i)^2`` (``z`` prior samples = "real", ``h`` codes =
  "fake").
  Hand check: ``D(z) = [1, 0]``, ``D(h) = [0.5, -1]``: ``(0 + 1) / 2 + (0.25 + 1) / 2 = 1.125``.
* Generator: ``L_G = mean_i (D(h_i) - 1)^2``.
  Hand check: ``D(h) = [0.5, -1]``: ``(0.25 + 4) / 2 = 2.125``.
"""

from __future__ import annotations

import torch


def lsgan_discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """``mean (D(real) - 1)^2 + mean D(fake)^2`` (least-squares GAN, targets 1 for real and 0 for fake)."""
    return ((d_real - 1.0) ** 2).mean() + (d_fake**2).mean()


def lsgan_generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """``mean (D(fake) - 1)^2``: the generator wants its samples scored as real."""
    return ((d_fake - 1.0) ** 2).mean()
