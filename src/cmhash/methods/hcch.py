r"""HCCH: Hierarchical Consensus Cross-Modal Hashing (Sun, Ren, Hu, Peng, Wang; IEEE TMM 2024,
DOI 10.1109/TMM.2023.3272169).

Official code: https://github.com/sunyuan-cs/HCCH @ ``a332e6f5ca698acb2af6d652715534105352d243`` (2022-09-12), where
the method is named **HSPCH**. Objective and loop: ``utils/HSPCH.m``; consensus code: ``utils/hash_const.m`` (+
``utils/Schmidt.m``); eigenvectors: ``utils/eig1.m``; ``utils/sgn.m``; features: ``utils/rbf2.m``,
``utils/RBF_fast.m``, ``utils/EuDist2.m``; entry and defaults: ``HSPCH_wiki.m``. Of the paper only the abstract
could be read (two-layer hash function, an l2,1-norm on the layer-wise hash function, consensus learning); the
equations below are the code's.

Shallow, supervised, no noise handling; one iteration of ``HSPCH.m``'s loop per epoch. ``X_m`` (N x d) kernel
features, ``L`` (N x c) the (noisy) labels as given, ``S = L L^T`` (never formed: products go through ``L^T``),
modality codes ``B_m`` and a consensus code ``H`` (N x k), a two-layer hash function ``x -> sign(x P_m R_m)`` with
``P_m`` (d x r, ``r = hidden_dim``) and ``R_m`` (r x k); weights ``alpha`` (image) and ``beta`` (text). Objective
implied by the updates (logged each epoch)::

    J = sum_m ||B_m - X_m P_m R_m||^2 + lam sum_m ||P_m R_m||_{2,1} + alpha ||k S - B_1 H^T||^2 + beta ||k S - B_2 H^T||^2

Initialisation: ``B_1 = sgn(randn(N, k))``, ``B_2 = H = B_1``, ``P_m = randn(d, r)``, ``R_m = randn(r, k)``. Each
iteration, in the code's order:

1. B-step: ``B_1 = sgn(X_1 P_1 R_1 + alpha k S H)``, ``B_2 = sgn(X_2 P_2 R_2 + beta k S H)``.
2. H-step (``hash_const``): ``C = (alpha k S B_1 + beta k S B_2)^T``; ``H = sgn(sqrt(N) U V^T)`` with
   ``C J C^T = V Lambda V^T``, ``U = J C^T V_+ Lambda_+^{-1/2}`` over eigenvalues ``>= 1e-5``, missing columns
   filled by centred uniform random ones Gram-Schmidt-orthogonalised (:func:`.shallow.balanced_orthogonal`).
3. PR-step per modality (one IRLS step of the l2,1 term): ``M_m = diag(1 / (2 sqrt(||(P_m R_m)_i||^2 + eps)))``
   from the previous ``P_m R_m`` (``eps`` = 2.2e-16, MATLAB's), ``St = X_m^T X_m + lam M_m``,
   ``Sb = X_m^T B_m B_m^T X_m``; ``P_m`` = eigenvectors of the ``r`` largest eigenvalues of
   ``max(St^{-1} Sb, (St^{-1} Sb)^T)`` (``eig1(St \ Sb, r, 1)``: ``isSym = 1`` symmetrises by the elementwise
   max); ``R_m = (P_m^T St P_m)^{-1} P_m^T X_m^T B_m``.

Codes of new data: ``sign(phi_m(x) P_m R_m)`` (the code's ``tBX``/``tBY``).

Defaults (``HSPCH_wiki.m``, the one published setting, Wiki): 20 iterations, ``alpha = 1``, ``beta = 1e-3``,
``lam = 1e-4``, ``r = 400``, 1500 anchors per modality drawn separately (``rbf2.m``); kernel ``RBF_fast``
(unsquared distance, ``sigma`` = mean training distance, ``exp(-D / (2 sigma^2))``; see :mod:`.shallow`);
``min(1500, N)`` anchors and ``r = min(400, anchors)``.

Options: ``p_step: "eig1"`` (default, the code) or ``"generalized"``: the top-``r`` generalised eigenvectors of
``Sb p = mu St p``, the exact minimiser of ``J`` over ``(P_m, R_m)`` for fixed ``M_m`` (``R`` eliminated, the
fit term is ``const - tr((P^T St P)^{-1} P^T Sb P)``). Note: with the exact solution and ``r >= rank(Sb)``
(``<= k``) the two layers collapse to ``P R = St^{-1} X^T B`` (a reweighted ridge); the code's elementwise-max
symmetrisation is what makes its 400-dimensional first layer matter.

Departures from the code: queries *and* database are encoded by the hash functions, both retrieval directions
cross-modal (the demo's "I2T" ranks the training image codes ``B_1`` against image queries and "T2I" ``B_2``
against text queries: intra-modal pairings; it uses the training codes as the database and reports the last
iteration, evaluated on the test set every iteration); the best iteration is selected on the validation split;
test features use the training ``sigma``; torch's random streams, not MATLAB's ``rng(0)``; ``hash_const`` keeps
eigenvalues ``> 1e-5`` (the code: ``>= 1e-5``). No departure in the updates themselves.
"""

from __future__ import annotations

from typing import Any

import torch

from ..losses.similarity import scaled_gram_residual
from .base import register
from .shallow import F64, ShallowHashing, balanced_orthogonal, sgn

#: MATLAB's ``eps`` (the ``v = sqrt(sum(PR.^2, 2) + eps)`` of ``HSPCH.m``).
MATLAB_EPS = float(torch.finfo(F64).eps)


def l21_reweighting(pr: torch.Tensor) -> torch.Tensor:
    """Diagonal of ``M = diag(1 / (2 sqrt(||pr_i||^2 + eps)))`` (IRLS weights of ``||P R||_{2,1}``)."""
    return 1.0 / (2.0 * ((pr * pr).sum(dim=1) + MATLAB_EPS).sqrt())


def first_layer(st: torch.Tensor, sb: torch.Tensor, r: int, form: str) -> torch.Tensor:
    """``P`` (d x r): ``"eig1"``: top-``r`` eigenvectors of ``max(St^{-1} Sb, (St^{-1} Sb)^T)``; ``"generalized"``:
    top-``r`` solutions of ``Sb p = mu St p`` (``P^T St P = I``)."""
    if form == "eig1":
        a = torch.linalg.solve(st, sb)
        evals, evecs = torch.linalg.eigh(torch.maximum(a, a.T))
        return evecs[:, torch.argsort(evals, descending=True)[:r]]
    if form == "generalized":
        chol = torch.linalg.cholesky(st)
        half = torch.linalg.solve_triangular(chol, sb, upper=False)
        sym = torch.linalg.solve_triangular(chol, half.T, upper=False)  # C^{-1} Sb C^{-T}
        evals, evecs = torch.linalg.eigh((sym + sym.T) / 2.0)
        top = evecs[:, torch.argsort(evals, descending=True)[:r]]
        return torch.linalg.solve_triangular(chol.T, top, upper=True)
    raise ValueError(f"p_step must be 'eig1' or 'generalized', got {form!r}")


@register
class HCCH(ShallowHashing):
    impl = "hcch"
    venue = "TMM'24"
    kernel_rule = "rbf_fast"
    defaults = {
        **ShallowHashing.defaults,
        "epochs": 20,
        "n_anchors": 1500,
        "alpha": 1.0,
        "beta": 1e-3,
        "lam": 1e-4,
        "hidden_dim": 400,
        "p_step": "eig1",
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        if self.params["p_step"] not in ("eig1", "generalized"):
            raise ValueError(f"hcch: p_step must be 'eig1' or 'generalized', got {self.params['p_step']!r}")
        for name in ("codes_b1", "codes_b2", "codes_h"):
            self.register_buffer(name, torch.zeros(0, bits, dtype=F64))
        for m in range(2):
            self.register_buffer(f"layer_p{m}", torch.zeros(0, 0, dtype=F64))
            self.register_buffer(f"layer_r{m}", torch.zeros(0, bits, dtype=F64))

    def init_state(self, phis: list[torch.Tensor], labels: torch.Tensor, generator: torch.Generator) -> None:
        n, d, k, dev = phis[0].shape[0], phis[0].shape[1], self.bits, phis[0].device
        r = min(int(self.params["hidden_dim"]), d)
        b = sgn(torch.randn(n, k, generator=generator, dtype=F64)).to(dev)
        self.codes_b1, self.codes_b2, self.codes_h = b, b.clone(), b.clone()
        for m in range(2):
            setattr(self, f"layer_p{m}", torch.randn(d, r, generator=generator, dtype=F64).to(dev))
        for m in range(2):
            setattr(self, f"layer_r{m}", torch.randn(r, k, generator=generator, dtype=F64).to(dev))

    def iterate(self, phis: list[torch.Tensor], labels: torch.Tensor, epoch: int, generator: torch.Generator) -> None:
        p = self.params
        alpha, beta, lam, k = float(p["alpha"]), float(p["beta"]), float(p["lam"]), float(self.bits)
        y = labels
        weights = (alpha, beta)
        # 1. B-step
        sh = y @ (y.T @ self.codes_h)
        codes = [sgn(x @ getattr(self, f"layer_p{m}") @ getattr(self, f"layer_r{m}") + weights[m] * k * sh)
                 for m, x in enumerate(phis)]
        # 2. H-step (hash_const on C^T = alpha k S B_1 + beta k S B_2)
        ct = sum(weights[m] * k * (y @ (y.T @ codes[m])) for m in range(2))
        self.codes_h = sgn(balanced_orthogonal(ct, 1e-5, generator, fill="uniform", completion="orthogonal"))
        self.codes_b1, self.codes_b2 = codes
        # 3. PR-step, one IRLS step of the l2,1 term
        for m, x in enumerate(phis):
            pm, rm = getattr(self, f"layer_p{m}"), getattr(self, f"layer_r{m}")
            st = self.derived(f"xtx{m}", lambda x=x: x.T @ x) + lam * torch.diag(l21_reweighting(pm @ rm))
            xtb = x.T @ codes[m]
            pm = first_layer(st, xtb @ xtb.T, pm.shape[1], str(p["p_step"]))
            rm = torch.linalg.solve(pm.T @ st @ pm, pm.T @ xtb)
            setattr(self, f"layer_p{m}", pm)
            setattr(self, f"layer_r{m}", rm)
            setattr(self, f"proj{m}", pm @ rm)

    def objective_terms(self, phis: list[torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
        p, k = self.params, float(self.bits)
        codes = (self.codes_b1, self.codes_b2)
        fit = sum(float(((codes[m] - x @ getattr(self, f"proj{m}")) ** 2).sum()) for m, x in enumerate(phis))
        l21 = sum(float(getattr(self, f"proj{m}").norm(dim=1).sum()) for m in range(2))
        sim = sum(w * float(scaled_gram_residual(codes[m], self.codes_h, labels, k))
                  for m, w in enumerate((float(p["alpha"]), float(p["beta"]))))
        return {"objective": fit + float(p["lam"]) * l21 + sim, "fit": fit, "l21": l21, "similarity": sim}
