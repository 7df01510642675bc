r"""DSCMH: Dual Self-paced Cross-modal Hashing (Sun et al., AAAI 2024; MATLAB code sunyuan-cs/DSCMH-AAAI-2024).

Shallow supervised with two self-paced mechanisms on top of the discrete optimisation of
:class:`.shallow.ShallowHashing`::

    J = sum_i v_i [ |y_i - G^T b_i|^2 + nu sum_m u_m |b_i - W_m^T phi_i^m|^2 ] + lam (...)

* instance level (easy samples first): ``v_i = max(0, 1 - l_i / gamma_t)`` (linear self-paced regulariser,
  closed form as RSHNL Eq. 12) with ``l_i`` the bracket above at the current state and ``gamma_t`` the
  ``pace_t``-quantile of the ``l_i`` divided by ``(1 - floor)`` so that ``pace_t`` of the samples get a
  weight >= ``floor``. ``pace_t`` grows linearly from ``pace_start`` to 1 over the iterations;
* view/feature level: ``u_m = 2 e^{-r_m / T} / sum_n e^{-r_n / T}`` with ``r_m`` the mean weighted
  hash-regression residual of view ``m`` (easier view weighted more), ``T`` = mean of the ``r``.

Hand check of the instance weights: losses ``[1, 2, 4]``, ``gamma = 4`` give ``v = [0.75, 0.5, 0]``.

Departures / guesses: the paper's feature-level self-paced term weights individual feature dimensions; we
weight the two views (modalities); the pace schedule, ``pace_start`` 0.5, ``floor`` 0.1 and the view
temperature are guesses; RBF anchor features (500 anchors) as the MATLAB code.
"""

from __future__ import annotations

import torch

from .base import register
from .shallow import ShallowHashing


def linear_spl_weights(losses: torch.Tensor, gamma: float) -> torch.Tensor:
    """``max(0, 1 - l / gamma)``."""
    return torch.clamp(1.0 - losses / gamma, min=0.0)


@register
class DSCMH(ShallowHashing):
    impl = "dscmh"
    venue = "AAAI'24"
    defaults = {**ShallowHashing.defaults, "pace_start": 0.5, "floor": 0.1}
    reports_weights = True

    def update_weights(self, epoch: int) -> None:
        if epoch == 0:
            return  # first iteration: nothing fitted yet, all weights 1
        p = self.params
        losses = self.per_sample_losses(self._phi, self.codes_b, self.targets)
        n_iter = max(int(p["epochs"]) - 1, 1)
        pace = min(1.0, p["pace_start"] + (1.0 - p["pace_start"]) * (epoch - 1) / n_iter)
        gamma = float(torch.quantile(losses, pace)) / (1.0 - p["floor"]) + 1e-12
        self.v = linear_spl_weights(losses, gamma)
        resid = torch.stack([
            (self.v * ((self.codes_b - phi @ getattr(self, f"proj{m}")) ** 2).sum(dim=1)).sum() / self.v.sum()
            for m, phi in enumerate(self._phi)
        ])
        self.u = 2.0 * torch.softmax(-resid / resid.mean().clamp(min=1e-12), dim=0)
