r"""Closed-form (shallow) supervised cross-modal hashing shared by HCCH, DSCMH and WASH.

Kernel features ``phi^m(x) = rbf(x, anchors^m) - mean`` (``n_anchors`` training rows drawn once, ``sigma``
= mean anchor distance), linear hash functions ``W_m``, one consensus code matrix ``B in {-1,+1}^{N x K}``
shared by both modalities, label regression ``G`` (the discrete supervised hashing form of SDH, Shen et al.
2015, on which these shallow methods build)::

    J = sum_i v_i [ |ytilde_i - G^T b_i|^2 + nu sum_m u_m |b_i - W_m^T phi_i^m|^2 ] + lam (|G|^2 + sum_m |W_m|^2)

``ytilde`` = the training labels (method-specific refinement, e.g. WASH), ``v_i`` instance weights and
``u_m`` view weights (both 1 unless a method sets them, e.g. DSCMH). One epoch of the shared training loop
= one alternating iteration, run in :meth:`on_epoch_start`:

1. ``W_m = (Phi_m^T V Phi_m + lam I)^{-1} Phi_m^T V B``  (weighted ridge, exact)
2. ``G = (B^T V B + lam I)^{-1} B^T V Ytilde``            (exact)
3. ``B``: discrete cyclic coordinate descent, bit ``k``: ``b_k = sign(q_k - B_{-k} G_{-k} g_k^T)`` with
   ``Q = Ytilde G^T + nu sum_m u_m Phi_m W_m`` (each bit update cannot increase ``J`` for fixed ``v``).

``B`` starts as ``sign(Ytilde R)`` with ``R`` a Gaussian ``C x K`` matrix. Codes of new data:
``sign(phi^m(x) W_m)``. ``training_step`` only reports ``J``'s per-sample terms on the batch (no gradient).
Hand check (:func:`dcc_update`): ``Y = [[1,0],[0,1],[1,0]]``, ``K = 1``, ``G = [[1,-1]]``, ``nu = 0`` gives
``q = Y G^T = [1,-1,1]`` and ``B = [[1],[-1],[1]]``.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Method, StepOutput
from .common import rbf_features


def dcc_update(b: torch.Tensor, g: torch.Tensor, q: torch.Tensor, sweeps: int = 1) -> torch.Tensor:
    """Discrete cyclic coordinate descent on ``|Y - B G|^2 - 2 tr(B^T (Q - Y G^T))``: bit by bit
    ``b_k = sign(q_k - B_{-k} G_{-k} g_k^T)`` (``b``: N x K, ``g``: K x C, ``q``: N x K). Returns a new ``B``."""
    b = b.clone()
    k_bits = b.shape[1]
    for _ in range(sweeps):
        for k in range(k_bits):
            rest = [j for j in range(k_bits) if j != k]
            pred = b[:, rest] @ (g[rest] @ g[k]) if rest else torch.zeros_like(q[:, k])
            col = q[:, k] - pred
            b[:, k] = torch.where(col >= 0, 1.0, -1.0).to(b.dtype)
    return b


class ShallowHashing(Method):
    """Base of the closed-form methods; subclasses override :meth:`refine_labels` and :meth:`update_weights`."""

    defaults = {
        "epochs": 10,
        "batch_size": 4096,
        "n_anchors": 500,
        "nu": 1.0,
        "lam": 1.0,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        n_anchors = int(self.params["n_anchors"])
        for m, d in enumerate(in_dims):
            self.register_buffer(f"anchors{m}", torch.zeros(n_anchors, d))
            self.register_buffer(f"phi_mean{m}", torch.zeros(n_anchors))
            self.register_buffer(f"proj{m}", torch.zeros(n_anchors, bits))
        self.register_buffer("sigmas", torch.ones(2))
        self.register_buffer("codes_b", torch.zeros(0, bits))
        self.register_buffer("label_reg", torch.zeros(bits, n_classes))
        self.register_buffer("targets", torch.zeros(0, n_classes))
        self.register_buffer("v", torch.zeros(0))
        self.register_buffer("u", torch.ones(2))
        self._phi: list[torch.Tensor] = []

    # -- hooks for subclasses ------------------------------------------------------------------------
    def refine_labels(self, phis: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return labels.to(torch.float32)

    def update_weights(self, epoch: int) -> None:
        """Set ``self.v`` (N) and ``self.u`` (2) before the iteration; default: all ones."""

    # -- shared machinery ------------------------------------------------------------------------------
    def features(self, x: torch.Tensor, m: int) -> torch.Tensor:
        anchors = getattr(self, f"anchors{m}")
        return rbf_features(x, anchors, float(self.sigmas[m])) - getattr(self, f"phi_mean{m}")

    def on_train_start(
        self, xs: list[torch.Tensor], labels: torch.Tensor, clean_labels: torch.Tensor | None = None
    ) -> None:
        n = labels.shape[0]
        n_anchors = self.anchors0.shape[0]
        rows = torch.randperm(n)[: min(n_anchors, n)].to(labels.device)
        if rows.numel() < n_anchors:  # tiny training sets: repeat rows
            rows = rows[torch.arange(n_anchors, device=labels.device) % rows.numel()]
        sig = []
        for m, x in enumerate(xs):
            setattr(self, f"anchors{m}", x[rows].clone())
            sig.append(torch.cdist(x[: min(n, 2000)], x[rows]).mean().clamp(min=1e-6))
        self.sigmas = torch.stack(sig).to(torch.float32)
        raw = [rbf_features(x, getattr(self, f"anchors{m}"), float(self.sigmas[m])) for m, x in enumerate(xs)]
        for m, phi in enumerate(raw):
            setattr(self, f"phi_mean{m}", phi.mean(dim=0))
        self._phi = [phi - phi.mean(dim=0) for phi in raw]
        self.targets = self.refine_labels(self._phi, labels)
        r = torch.randn(labels.shape[1], self.bits).to(labels.device)
        self.codes_b = torch.where(self.targets @ r >= 0, 1.0, -1.0)
        self.v = torch.ones(n, device=labels.device)

    def ensure_features(self, xs: list[torch.Tensor]) -> None:
        if not self._phi:  # e.g. after a checkpoint restore in a new process
            self._phi = [self.features(x, m) for m, x in enumerate(xs)]

    def per_sample_losses(self, phis: list[torch.Tensor], b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``|y_i - G^T b_i|^2 + nu sum_m u_m |b_i - W_m^T phi_i^m|^2`` per row."""
        nu = self.params["nu"]
        loss = ((y - b @ self.label_reg) ** 2).sum(dim=1)
        for m, phi in enumerate(phis):
            loss = loss + nu * self.u[m] * ((b - phi @ getattr(self, f"proj{m}")) ** 2).sum(dim=1)
        return loss

    def objective(self) -> float:
        """``J`` of the current state on the whole training split."""
        p = self.params
        reg = (self.label_reg**2).sum() + sum((getattr(self, f"proj{m}") ** 2).sum() for m in range(2))
        return float((self.v * self.per_sample_losses(self._phi, self.codes_b, self.targets)).sum() + p["lam"] * reg)

    @torch.no_grad()
    def on_epoch_start(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> None:
        self.ensure_features(xs)
        self.update_weights(epoch)
        p = self.params
        b, y, v = self.codes_b, self.targets, self.v[:, None]
        eye_a = torch.eye(self._phi[0].shape[1], device=b.device)
        for m, phi in enumerate(self._phi):
            setattr(self, f"proj{m}", torch.linalg.solve(phi.T @ (v * phi) + p["lam"] * eye_a, phi.T @ (v * b)))
        eye_k = torch.eye(self.bits, device=b.device)
        self.label_reg = torch.linalg.solve(b.T @ (v * b) + p["lam"] * eye_k, b.T @ (v * y))
        q = y @ self.label_reg.T
        for m, phi in enumerate(self._phi):
            q = q + p["nu"] * self.u[m] * (phi @ getattr(self, f"proj{m}"))
        self.codes_b = dcc_update(b, self.label_reg, q)

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.features(x, m) @ getattr(self, f"proj{m}") for m, x in enumerate(xs)]

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None
    ) -> StepOutput:
        with torch.no_grad():
            phis = [self.features(x, m) for m, x in enumerate(xs)]
            if index is not None and self.codes_b.shape[0] > 0:
                b, y, w = self.codes_b[index], self.targets[index], self.v[index]
            else:
                b = torch.where(sum(phi @ getattr(self, f"proj{m}") for m, phi in enumerate(phis)) >= 0, 1.0, -1.0)
                y, w = labels.to(torch.float32), torch.ones(labels.shape[0], device=labels.device)
            loss = (w * self.per_sample_losses(phis, b, y)).mean()
        return StepOutput(loss=loss, terms={"objective": float(loss)}, weights=w if self.reports_weights else None)

    uses_index = True
    reports_weights = False
