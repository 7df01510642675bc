r"""WASH: Weakly-supervised enhAnced Semantic-aware Hashing for cross-modal retrieval (Zhang, Li, Gao, Chen;
IEEE TKDE 35(6), 2023, DOI 10.1109/TKDE.2022.3172216).

Official code: https://github.com/czhangnju/WASH @ ``ea7d58411be7e062bc6329f3795560c5cbc60c93`` (2024-04-29; code
uploaded in ``6109523``). Objective, initialisation and loop: ``WASH.m`` (its function is named ``RWSH12``);
features: ``Kernelize.m`` + ``sqdist.m``; entry and defaults: ``demo_IAP.m`` (IAPR TC-12, noisy labels
``noisyLabel0.4.mat``). Of the paper only the abstract could be read (low-rank + sparse decomposition of the noisy
labels, a semantic factor and a label correlation matrix, joint factorisation with the features into a common
subspace, codes by binarising the shared representation with pairwise similarity preserved); the equations below
are the code's, whose header states the problem.

Shallow, designed for noisy labels; one iteration of ``WASH.m``'s loop per epoch. Column convention as the code:
``X_1``, ``X_2`` (d x N) kernel features, ``Y`` (c x N) the noisy labels, ``V`` (r x N, r = bits) a real shared
representation, ``B`` (r x N) codes, ``G`` (kk x N) the semantic factor (``kk = latent_dim``, default c), ``S``
(c x kk) the label correlation matrix, ``E`` (c x N) sparse label noise, ``W_0`` (kk x r), ``W_m`` (d x r),
label predictors ``P_m`` (c x d), multiplier ``F`` (c x N), penalty ``rho``; ``Yhat`` = columns of ``Y - E``
scaled to unit norm (the "enhanced" labels). Problem (``WASH.m`` header)::

    min beta |E|_1 + gamma sum_{i=0,1,2} eta_i |X_i - W_i V|^2 + mu sum_m |P_m X_m - S G|^2 + phi |B - V|^2
        + xi |V^T B - r Yhat^T Yhat|^2 + lam (|W|^2 + |P|^2)   s.t.  Y = S G + E,  X_0 = G,  V V^T = N I,  V 1 = 0

(augmented Lagrangian in ``Y = SG + E``; the logged objective is this sum plus the constraint residual apart).

Initialisation: ``V = (A_1^T X_1 + A_2^T X_2) / 2`` with ``A_m`` the top-``r`` eigenvectors of the covariance
of ``min(10000, N)`` random training columns of ``X_m``; ``G = A_Y^T Y`` with the top-``kk`` eigenvectors of the
covariance of ``min(5000, N)`` random label columns; ``E = 0``, ``B = sgn(V)``, ``P_m = mu Y X_m^T (mu X_m X_m^T
+ lam I)^{-1}``, ``F = 0``, ``rho = rho0``, ``Yhat = Y ./ (colnorm(Y) + 1e-8)``. Each iteration, in the code's
order:

1. ``B = sgn(phi V + r xi V Yhat^T Yhat)`` (with the previous ``Yhat``);
2. ``W_0 = gamma eta_0 G V^T (gamma eta_0 V V^T + lam I)^{-1}``, ``W_m`` likewise with ``X_m``, ``eta_m``;
3. ``S = [rho/2 T G^T + mu (P_1 X_1 + P_2 X_2) G^T] [(rho/2 + 2 mu) G G^T + 1e-8 I]^{-1}``,
   ``T = Y - E + F / rho``;
4. ``G = [(rho/2 + 2 mu) S^T S + (gamma eta_0 + 1e-8) I]^{-1} [rho/2 S^T T + gamma eta_0 W_0 V + mu S^T (P_1 X_1
   + P_2 X_2)]``;
5. ``Yhat = colnormalise(Y - E)`` (the previous ``E``);
6. ``P_m = mu S G X_m^T (mu X_m X_m^T + lam I)^{-1}``;
7. ``E = soft(Y - S G + F / rho, beta / rho)`` (``sign(t) max(|t| - tau, 0)``);
8. ``V``: :func:`.shallow.balanced_orthogonal` of ``Z = [gamma (eta_0 W_0^T G + eta_1 W_1^T X_1 + eta_2 W_2^T X_2)
   + r xi B Yhat^T Yhat + phi B]^T`` (eigenvalues ``> 1e-6`` kept);
9. ``F <- F + rho (Y - S G - E)``, ``rho <- min(rho_max, rho_rate rho)``.

Hash functions (the code fits them once after the loop; here after every iteration, from the current ``B`` --
nothing feeds back, so the last epoch's are the published ones): ``G_m = B X_m^T (X_m X_m^T + 1e-3 I)^{-1}``,
codes ``sign(phi_m(x) G_m^T)``.

Defaults (``demo_IAP.m`` / ``WASH.m``): 8 iterations, ``beta = 5e-3``, ``gamma = 1e-2``, ``mu = 0.1``,
``phi = 1e-3``, ``lam = 1e-4``, ``eta = (0.9, 0.05, 0.05)``, ``xi = 1``, ``rho0 = 1``, ``rho <- min(1e4, 1.3 rho)``,
``kk = c``, final ridge ``1e-3``. Kernel: ``Kernelize(.., 1000)`` after centring the raw features: 1000 anchor
rows shared by both modalities, squared distance, ``sigma`` = mean training squared distance,
``exp(-D / (2 sigma))``, centred by the training kernel mean (see :mod:`.shallow`); ``min(1000, N)`` anchors.

Where the code departs from its own stated constraints -- the default follows the header (``V V^T = N I``,
``V 1 = 0``), ``reference_compatible: true`` the code: when ``Z^T J Z`` is rank-deficient the code fills the
missing directions with ``orth(randn(N, r - r'))``, neither centred nor orthogonal to the kept part; the default
centres them and orthogonalises them against it (as DGH and HCCH's ``hash_const``). With full-rank ``Z`` the two
agree exactly; on single-label data ``B`` is nearly class-constant and 1-7 of the 32 directions fall below the
tolerance in each iteration on mfeat (32 bits), so the branch runs there (measured: 81.6 vs 81.8 mean MAP at noise
0.2).

Other departures from the code: queries *and* database are encoded by the hash functions (the code uses the
training codes ``B`` as the database, one code for both modalities); the best iteration is selected on the
validation split; the PCA eigenvectors' signs are fixed (largest-magnitude entry positive; ``eigs`` leaves them
arbitrary) and, when ``r`` exceeds the kernel dimension (tiny training splits only), missing PCA directions are
zero; ``Yhat``'s division guards an all-zero column (the code's in-loop normalisation would give NaN); the
random streams are torch's (the code: unseeded ``randsample``/``randn`` and ``rand('seed', 2021)`` for anchors);
``randsample(n, 10000)`` needs ``N >= 10000`` in the code, here ``min(10000, N)``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..losses.similarity import scaled_gram_residual
from .base import register
from .shallow import F64, ShallowHashing, balanced_orthogonal, sgn


def soft_threshold(t: torch.Tensor, tau: float) -> torch.Tensor:
    """``sign(t) max(|t| - tau, 0)`` (the l1 proximal step of WASH's E-update)."""
    return torch.sign(t) * torch.clamp(t.abs() - tau, min=0.0)


def column_normalised(y: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """``y ./ (colnorm(y) + eps)``; an all-zero column stays zero."""
    norm = (y * y).sum(dim=0, keepdim=True).sqrt() + eps
    return y / torch.where(norm > 0, norm, 1.0)


def top_covariance_eigenvectors(cols: torch.Tensor, count: int) -> torch.Tensor:
    """Top-``count`` eigenvectors (d x count) of the covariance of the columns of ``cols`` (d x M; MATLAB
    ``eigs(cov(cols'), count)``), signs fixed so the largest-magnitude entry is positive; zero columns where
    ``count > d``."""
    d, m = cols.shape
    centred = cols - cols.mean(dim=1, keepdim=True)
    cov = centred @ centred.T / max(m - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    top = evecs[:, torch.argsort(evals, descending=True)[: min(count, d)]]
    flip = torch.sign(top.gather(0, top.abs().argmax(dim=0, keepdim=True)))
    top = top * torch.where(flip == 0, 1.0, flip)
    if count > d:
        top = torch.cat([top, torch.zeros(d, count - d, dtype=top.dtype, device=top.device)], dim=1)
    return top


@register
class WASH(ShallowHashing):
    impl = "wash"
    venue = "TKDE'23"
    kernel_rule = "kernelize"
    defaults = {
        **ShallowHashing.defaults,
        "epochs": 8,
        "n_anchors": 1000,
        "beta": 5e-3,
        "gamma": 1e-2,
        "mu": 0.1,
        "phi": 1e-3,
        "lam": 1e-4,
        "eta0": 0.9,
        "eta1": 0.05,
        "eta2": 0.05,
        "xi": 1.0,
        "rho0": 1.0,
        "rho_rate": 1.3,
        "rho_max": 1e4,
        "hash_ridge": 1e-3,
        "latent_dim": 0,
        "pca_samples": 10000,
        "pca_label_samples": 5000,
        "reference_compatible": False,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        kk = int(self.params["latent_dim"]) or n_classes
        for name, shape in (("latent_v", (bits, 0)), ("codes_b", (bits, 0)), ("factor_g", (kk, 0)),
                            ("corr_s", (n_classes, kk)), ("noise_e", (n_classes, 0)), ("mult_f", (n_classes, 0)),
                            ("yhat", (n_classes, 0)), ("load_w0", (kk, bits)), ("rho", ())):
            self.register_buffer(name, torch.zeros(shape, dtype=F64))
        for m in range(2):
            self.register_buffer(f"load_w{m + 1}", torch.zeros(0, bits, dtype=F64))
            self.register_buffer(f"pred_p{m}", torch.zeros(n_classes, 0, dtype=F64))

    # X_m X_m^T and (mu X_m X_m^T + lam I)^{-1}, fixed for the run
    def _xxt(self, m: int, x: torch.Tensor) -> torch.Tensor:
        return self.derived(f"xxt{m}", lambda: x @ x.T)

    def _pred_inverse(self, m: int, x: torch.Tensor) -> torch.Tensor:
        p = self.params
        eye = torch.eye(x.shape[0], dtype=F64, device=x.device)
        return self.derived(f"xin{m}", lambda: torch.linalg.inv(float(p["mu"]) * self._xxt(m, x) + float(p["lam"]) * eye))

    def init_state(self, phis: list[torch.Tensor], labels: torch.Tensor, generator: torch.Generator) -> None:
        p = self.params
        xs, y = [phi.T for phi in phis], labels.T
        n, r, dev = y.shape[1], self.bits, y.device
        kk = int(p["latent_dim"]) or y.shape[0]
        v = 0.0
        for x in xs:
            cols = torch.randperm(n, generator=generator)[: min(int(p["pca_samples"]), n)].to(dev)
            v = v + top_covariance_eigenvectors(x[:, cols], r).T @ x
        self.latent_v = v / 2.0
        cols = torch.randperm(n, generator=generator)[: min(int(p["pca_label_samples"]), n)].to(dev)
        self.factor_g = top_covariance_eigenvectors(y[:, cols], kk).T @ y
        self.noise_e = torch.zeros_like(y)
        self.codes_b = sgn(self.latent_v)
        for m, x in enumerate(xs):
            setattr(self, f"pred_p{m}", (float(p["mu"]) * y @ x.T) @ self._pred_inverse(m, x))
            setattr(self, f"load_w{m + 1}", torch.zeros(x.shape[0], r, dtype=F64, device=dev))
        self.mult_f = torch.zeros_like(y)
        self.yhat = column_normalised(y, eps=1e-8)
        self.rho = torch.tensor(float(p["rho0"]), dtype=F64, device=dev)

    def iterate(self, phis: list[torch.Tensor], labels: torch.Tensor, epoch: int, generator: torch.Generator) -> None:
        p = self.params
        beta, gamma, mu, phi, lam, xi = (float(p[key]) for key in ("beta", "gamma", "mu", "phi", "lam", "xi"))
        etas = [float(p["eta0"]), float(p["eta1"]), float(p["eta2"])]
        xs, y = [ph.T for ph in phis], labels.T
        r = float(self.bits)
        rho = float(self.rho)
        v, g, e, f, yhat = self.latent_v, self.factor_g, self.noise_e, self.mult_f, self.yhat
        eye_r = torch.eye(self.bits, dtype=F64, device=y.device)
        # 1. B
        b = sgn(phi * v + r * xi * (v @ yhat.T) @ yhat)
        # 2. W (ridge)
        vvt = v @ v.T
        loads = [torch.linalg.solve(gamma * eta * vvt + lam * eye_r, (gamma * eta * target @ v.T).T).T
                 for eta, target in zip(etas, [g, *xs])]
        # 3. S and 4. G
        px = self.pred_p0 @ xs[0] + self.pred_p1 @ xs[1]
        t = y - e + f / rho
        eye_k = torch.eye(g.shape[0], dtype=F64, device=y.device)
        lhs = (rho / 2 + 2 * mu) * g @ g.T + 1e-8 * eye_k
        s = torch.linalg.solve(lhs, (rho / 2 * t @ g.T + mu * px @ g.T).T).T
        g = torch.linalg.solve((rho / 2 + 2 * mu) * s.T @ s + (gamma * etas[0] + 1e-8) * eye_k,
                               rho / 2 * s.T @ t + gamma * etas[0] * loads[0] @ v + mu * s.T @ px)
        # 5. enhanced labels from the previous E
        yhat = column_normalised(y - e)
        # 6. label predictors
        sg = s @ g
        for m, x in enumerate(xs):
            setattr(self, f"pred_p{m}", (mu * sg @ x.T) @ self._pred_inverse(m, x))
        # 7. sparse noise
        e = soft_threshold(y - sg + f / rho, beta / rho)
        # 8. V (balanced, orthogonal)
        z = gamma * sum(eta * w.T @ target for eta, w, target in zip(etas, loads, [g, *xs]))
        z = z + r * xi * (b @ yhat.T) @ yhat + phi * b
        completion = "independent" if p["reference_compatible"] else "orthogonal"
        v = balanced_orthogonal(z.T, 1e-6, generator, fill="normal", completion=completion).T
        # 9. multiplier and penalty
        f = f + rho * (y - sg - e)
        self.rho = torch.tensor(min(float(p["rho_max"]), float(p["rho_rate"]) * rho), dtype=F64, device=y.device)
        self.latent_v, self.codes_b, self.factor_g, self.corr_s = v, b, g, s
        self.noise_e, self.mult_f, self.yhat = e, f, yhat
        self.load_w0, self.load_w1, self.load_w2 = loads
        # hash functions G_m = B X_m^T (X_m X_m^T + 1e-3 I)^{-1}; proj_m = G_m^T
        for m, x in enumerate(xs):
            eye_d = torch.eye(x.shape[0], dtype=F64, device=y.device)
            setattr(self, f"proj{m}", torch.linalg.solve(self._xxt(m, x) + float(p["hash_ridge"]) * eye_d, x @ b.T))

    def objective_terms(self, phis: list[torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
        p = self.params
        xs, y = [ph.T for ph in phis], labels.T
        v, b, g, s, e = self.latent_v, self.codes_b, self.factor_g, self.corr_s, self.noise_e
        etas = [float(p["eta0"]), float(p["eta1"]), float(p["eta2"])]
        loads = [self.load_w0, self.load_w1, self.load_w2]
        sparse = float(p["beta"]) * float(e.abs().sum())
        factor = float(p["gamma"]) * sum(eta * float(((t - w @ v) ** 2).sum())
                                         for eta, w, t in zip(etas, loads, [g, *xs]))
        sg = s @ g
        predict = float(p["mu"]) * sum(float(((getattr(self, f"pred_p{m}") @ x - sg) ** 2).sum())
                                       for m, x in enumerate(xs))
        quant = float(p["phi"]) * float(((b - v) ** 2).sum())
        sim = float(p["xi"]) * float(scaled_gram_residual(v.T, b.T, self.yhat.T, float(self.bits)))
        reg = float(p["lam"]) * (sum(float((w * w).sum()) for w in loads)
                                 + sum(float((getattr(self, f"pred_p{m}") ** 2).sum()) for m in range(2)))
        total = sparse + factor + predict + quant + sim + reg
        return {"objective": total, "sparse": sparse, "factorisation": factor, "prediction": predict,
                "quantisation": quant, "similarity": sim, "ridge": reg,
                "constraint_residual": float((y - sg - e).norm())}
