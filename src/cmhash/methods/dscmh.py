r"""DSCMH: Dual Self-Paced Cross-Modal Hashing (Sun, Dai, Ren, Chen, Peng, Hu; AAAI 2024).

Official code: https://github.com/sunyuan-cs/DSCMH-AAAI-2024, the ``.m`` files under ``DSCMH-aaai2024-demo/spl/``
read at commit ``0d89b888bcc2c906d8021c0218002364a772e9f5`` (no full clone was available; the zip
``DSCMH-aaai2024-demo.zip`` @ ``203c618`` is binary). The demo ``demo_SPL.m`` runs **``DSCMH_3.m``** (objective,
model and loop in one function; ``DSCMH.m`` is an earlier two-latent variant). Features: ``utils/rbf2.m`` and
``RBF_fast`` (not in this repository; the same author's copy in ``sunyuan-cs/HCCH`` ``utils/RBF_fast.m``). Of the
paper only the abstract could be read: weights "to each instance and feature", increased from easy to hard.

Shallow, supervised, two modalities; one iteration of ``DSCMH_3.m``'s loop per epoch. Notation as the code:
``X_m`` (N x a) kernel features, ``Lhat`` the noisy labels with rows scaled to unit L2 norm (``NormalizeFea``),
``V`` (k x N) a real latent with orthonormal rows, ``B`` (k x N) codes, ``U_m`` (a x k) dictionaries, instance
weights ``s`` (N, ``S = diag(s)``) and feature weights ``f_m`` (a, ``F_m = diag(f_m)``). Objective implied by
the updates (not stated in the code; logged each epoch)::

    J = sum_m || F_m^{1/2} (X_m^T - U_m V) S^{1/2} ||_F^2 + alpha || k Lhat Lhat^T - V^T B ||_F^2,  V V^T = I

Initialisation: ``B = sign(randn(k, N))`` (``randn < 0 -> -1``), ``V = randn(k, N)``, ``s = 1``, ``f_m = 1``,
thresholds ``gamma_s = gamma_b1 = gamma_b2 = gamma0``. Each iteration, in the code's order:

1. U-step (weighted least squares): ``U_m = X_m^T S V^T (V S V^T)^{-1}``.
2. V-step (orthogonal Procrustes, ``myOrth``): ``Z = S X_1 F_1 U_1 + S X_2 F_2 U_2 + k Lhat (Lhat^T alpha B^T)``,
   ``V = (P R^T)^T`` with ``Z = P Sigma R^T`` (:func:`.shallow.procrustes`; ``myOrth.m`` is not in the repository,
   the polar factor is inferred from its use).
3. B-step: ``B = sgn(k alpha V Lhat Lhat^T)`` (the exact minimiser of ``J`` over ``B`` given ``V V^T = I``).
4. Instance weights: ``l_i = || F_1 (X_1^T - U_1 V)_{:, i} ||`` (image residual, as the code), then
   :func:`cmhash.losses.selfpaced.logistic_self_paced_weights` ``s = w(l, gamma_s, cmm)``, ``gamma_s <- pace gamma_s``.
5. Feature weights: ``E_m = (X_m^T - U_m V) S``, ``l_j = || E_m(j, :) ||`` over the samples for kernel dimension
   ``j``, ``f_m = w(l, gamma_bm, cmm)``, ``gamma_bm <- pace gamma_bm`` (image, then text).
6. Hash functions (the code fits them once after the loop; here after every iteration, from the current ``B`` --
   nothing feeds back, so the last epoch's functions are the published ones):
   ``P_m = (X_m^T X_m + lam I)^{-1} X_m^T B^T``; codes ``sign(phi_m(x) P_m)``.

Defaults (``demo_SPL.m`` / ``DSCMH_3.m``): 5 iterations (``param.maxIter``), 1500 anchors per modality drawn
separately, ``alpha = 1e-3``, ``lam = 1e-2``, ``cmm = 15``, ``pace = 1.2``, ``gamma0 = 8``. Kernel: ``RBF_fast``
(unsquared distance, ``sigma`` = mean training distance to the anchors, ``exp(-D / (2 sigma^2))``; see
:mod:`.shallow`); ``min(1500, N)`` anchors.

Where DSCMH_3.m departs from the abstract -- the defaults follow the abstract's model, ``reference_compatible:
true`` reproduces the code exactly:

* the instance weights are computed into a new variable (``R_SPLs``) and never used: ``s`` stays 1 all run;
* the feature-weight loop runs over the ``a`` kernel dimensions but takes ``norm(E(:, ind))``, the residual of
  training **sample** ``ind``: weight ``j`` comes from sample ``j``'s residual (needs ``N >= a``; guaranteed by the
  anchor cap);
* the V-step's text term is ``S X_1 F_2 U_2`` (image features times the text dictionary), not ``S X_2 F_2 U_2``;
* ``B = sign(.)`` keeps an exact 0 (e.g. a sample whose label row is empty) instead of ``-1``.

Other departures from the code (both modes): queries *and* database are encoded by the hash functions (the code
uses the training codes ``B`` as the database, one code for both modalities); the best iteration is selected on
the validation split (the code reports the last); test kernel features use the training ``sigma`` (``RBF_fast``
recomputes it on the test set); the random streams are torch's, not MATLAB's ``rng(2023)``; the labels are the
noisy training labels of our protocol (the code's ``.mat`` files bake noise in). The V-step is the code's
Procrustes on the linear terms, not an exact minimiser of ``J`` (the quadratic term ``tr(U^T F U V S V^T)`` is
left out), so ``J`` need not fall monotonically; the U- and B-steps are exact.
"""

from __future__ import annotations

from typing import Any

import torch

from ..losses.selfpaced import logistic_self_paced_weights
from ..losses.similarity import scaled_gram_residual
from .base import register
from .shallow import F64, ShallowHashing, procrustes, ridge, row_l2_normalised, sgn


@register
class DSCMH(ShallowHashing):
    impl = "dscmh"
    venue = "AAAI'24"
    kernel_rule = "rbf_fast"
    reports_weights = True
    defaults = {
        **ShallowHashing.defaults,
        "epochs": 5,
        "n_anchors": 1500,
        "alpha": 1e-3,
        "lam": 1e-2,
        "cmm": 15.0,
        "pace": 1.2,
        "gamma0": 8.0,
        "reference_compatible": False,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        self.register_buffer("codes_b", torch.zeros(bits, 0, dtype=F64))
        self.register_buffer("latent_v", torch.zeros(bits, 0, dtype=F64))
        self.register_buffer("inst_w", torch.zeros(0, dtype=F64))
        for m in range(2):
            self.register_buffer(f"dict{m}", torch.zeros(0, bits, dtype=F64))
            self.register_buffer(f"feat_w{m}", torch.zeros(0, dtype=F64))
        self.register_buffer("gammas", torch.zeros(3, dtype=F64))  # gamma_s, gamma_b1, gamma_b2

    def init_state(self, phis: list[torch.Tensor], labels: torch.Tensor, generator: torch.Generator) -> None:
        n, a, k, dev = phis[0].shape[0], phis[0].shape[1], self.bits, phis[0].device
        self.codes_b = sgn(torch.randn(k, n, generator=generator, dtype=F64)).to(dev)
        self.latent_v = torch.randn(k, n, generator=generator, dtype=F64).to(dev)
        self.inst_w = torch.ones(n, dtype=F64, device=dev)
        for m in range(2):
            setattr(self, f"dict{m}", torch.zeros(a, k, dtype=F64, device=dev))
            setattr(self, f"feat_w{m}", torch.ones(a, dtype=F64, device=dev))
        self.gammas = torch.full((3,), float(self.params["gamma0"]), dtype=F64, device=dev)

    def iterate(self, phis: list[torch.Tensor], labels: torch.Tensor, epoch: int, generator: torch.Generator) -> None:
        p = self.params
        ref = bool(p["reference_compatible"])
        alpha, k, cmm, pace = float(p["alpha"]), float(self.bits), float(p["cmm"]), float(p["pace"])
        x1, x2 = phis
        lh = row_l2_normalised(labels)
        s, v, b = self.inst_w, self.latent_v, self.codes_b
        # 1. U-step: U_m = X_m^T S V^T (V S V^T)^{-1}
        svt = s[:, None] * v.T
        gram = v @ svt
        dicts = [torch.linalg.solve(gram, (x.T @ svt).T).T for x in (x1, x2)]
        # 2. V-step (Procrustes); the code's text term multiplies X_1 (not X_2) by F_2 U_2
        x_text = x1 if ref else x2
        z = ((s[:, None] * x1) @ (self.feat_w0[:, None] * dicts[0])
             + (s[:, None] * x_text) @ (self.feat_w1[:, None] * dicts[1])
             + k * lh @ (lh.T @ (alpha * b.T)))
        v = procrustes(z).T
        # 3. B-step
        pre = (k * alpha * (v @ lh)) @ lh.T
        b = torch.sign(pre) if ref else sgn(pre)
        # 4. instance weights from the image residual (computed but not applied in DSCMH_3.m)
        resid = [x.T - u @ v for x, u in zip((x1, x2), dicts)]
        g = self.gammas.clone()
        w_s = logistic_self_paced_weights((self.feat_w0[:, None] * resid[0]).norm(dim=0), float(g[0]), cmm)
        g[0] = pace * g[0]
        if not ref:
            s = w_s
        # 5. feature weights, per kernel dimension (the code: per training sample 1..a)
        a = x1.shape[1]
        for m in range(2):
            e = resid[m] * s[None, :]
            losses = e[:, :a].norm(dim=0) if ref else e.norm(dim=1)
            setattr(self, f"feat_w{m}", logistic_self_paced_weights(losses, float(g[1 + m]), cmm))
            g[1 + m] = pace * g[1 + m]
        self.gammas, self.inst_w, self.latent_v, self.codes_b = g, s, v, b
        for m, u in enumerate(dicts):
            setattr(self, f"dict{m}", u)
        # 6. hash functions P_m = (X_m^T X_m + lam I)^{-1} X_m^T B^T
        for m, x in enumerate(phis):
            gram_x = self.derived(f"xtx{m}", lambda x=x: x.T @ x)
            setattr(self, f"proj{m}", ridge(x, b.T, float(p["lam"]), gram=gram_x))

    def objective_terms(self, phis: list[torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
        s, v, b = self.inst_w, self.latent_v, self.codes_b
        rec = sum(float((getattr(self, f"feat_w{m}")[:, None] * (x.T - getattr(self, f"dict{m}") @ v) ** 2
                         * s[None, :]).sum()) for m, x in enumerate(phis))
        sim = float(self.params["alpha"]) * float(scaled_gram_residual(v.T, b.T, row_l2_normalised(labels),
                                                                       float(self.bits)))
        return {"objective": rec + sim, "reconstruction": rec, "similarity": sim,
                "mean_instance_weight": float(s.mean())}

    def sample_weights(self, index: torch.Tensor) -> torch.Tensor | None:
        return self.inst_w[index].to(torch.float32)
