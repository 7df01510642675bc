r"""Shared base of the closed-form (shallow, MATLAB-born) methods DSCMH, HCCH and WASH, and their solver helpers.

Used by :mod:`.dscmh`, :mod:`.hcch` and :mod:`.wash` (no other module imports it). The base class holds what the
three official codes share and nothing of their models:

* **Kernel anchor features**, by one of the two published rules (``kernel_rule`` of the subclass):

  - ``"rbf_fast"`` (DSCMH ``demo_SPL.m`` / HCCH ``utils/rbf2.m`` + ``utils/RBF_fast.m``): anchors drawn
    **separately** for each modality (``randsample`` of training rows), the plain (unsquared) Euclidean distance
    ``D = ||x - a||`` (``EuDist2(.., 1)``), width ``sigma = mean(D)`` over the training rows x anchors and
    ``phi(x) = exp(-D / (2 sigma^2))``; no centring.
  - ``"kernelize"`` (WASH ``demo_IAP.m`` + ``Kernelize.m``): raw features centred by the training mean, **one**
    draw of anchor rows shared by both modalities (``rand('seed', 2021)`` is reset before each call, so the two
    ``randsample`` calls pick the same rows), squared distance ``D = ||x - a||^2`` (``sqdist``), width
    ``sigma = mean(D)`` over training rows x anchors, ``phi(x) = exp(-D / (2 sigma)) - mean_train(phi)``.

  The anchor count is ``min(n_anchors, N)`` (the codes' 1500 / 1000 need at least that many training rows;
  smaller training splits use every row once). Departure shared by all three: the official ``RBF_fast``
  recomputes ``sigma`` inside every call, so its test features use the mean distance of the *test* set; here
  every split uses the training ``sigma`` (an encoder must code a query independently of the other queries).
* **One alternating iteration per epoch** of the shared loop (:meth:`ShallowHashing.iterate`, run in
  :meth:`on_epoch_start`); the published fixed iteration count is the method's ``epochs``. Random draws inside
  the iterations come from a CPU generator seeded from the run's seed, kept in the buffer ``rng_state`` so a
  resumed run continues the same stream; everything is solved in float64.
* **Linear hash functions** ``sign(phi_m(x) proj_m)`` (buffers ``proj0``/``proj1``) that encode queries *and*
  database. The official codes use the learned training codes as the retrieval database; our protocol encodes
  both through the hash functions (and selects the best iteration on the validation split).
* ``training_step`` takes no gradient: it returns the method's objective after the epoch's iteration (logged).

Solver helpers (hand cases in ``tests/test_method_{dscmh,hcch,wash}.py``):

* :func:`sgn`: ``+1`` where ``x > 0``, else ``-1`` (HCCH ``utils/sgn.m``; WASH's ``sign`` with ``B(B==0) = -1``).
* :func:`ridge`: ``(A^T A + lam I)^{-1} A^T T``.
* :func:`procrustes`: ``argmax_{Q^T Q = I} tr(Q^T Z) = P R^T`` for ``Z = P Sigma R^T`` (DSCMH's ``myOrth``:
  not in the repository; the SVD polar factor is inferred from its use). Hand check: ``Z = [[2,0],[0,3],[0,0]]``
  -> ``[[1,0],[0,1],[0,0]]``.
* :func:`balanced_orthogonal`: the closed form of ``max tr(V^T Z)`` s.t. ``V^T 1 = 0``, ``V^T V = n I`` (DGH):
  eigen-decompose ``Z^T J Z = Q Lambda Q^T`` (``J = I - 11^T/n``), keep ``Lambda > tol``, ``U = J Z Q_k
  Lambda_k^{-1/2}``, fill the missing columns with random ones, ``V = sqrt(n) [U, U_fill] [Q_k, Q_rest]^T``.
  HCCH ``utils/hash_const.m`` (then ``sgn``) and WASH's V-step. Hand check: ``Z = [1,2,3,4]^T`` ->
  ``V = 2 [-1.5, -0.5, 0.5, 1.5]^T / sqrt(5)``. The tolerances are the codes' absolute ones (1e-5, 1e-6); with
  largest eigenvalues of 1e10 and more (WASH on mfeat) float64 round-off of the small ones is of the same size, as
  in MATLAB.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .base import Method, StepOutput, TrainContext

F64 = torch.float64


# ----------------------------------------------------------------------------------------------- solver helpers
def sgn(x: torch.Tensor) -> torch.Tensor:
    """``+1`` where ``x > 0``, ``-1`` elsewhere (zeros included), in ``x``'s dtype."""
    return torch.where(x > 0, 1.0, -1.0).to(x.dtype)


def ridge(a: torch.Tensor, t: torch.Tensor, lam: float, gram: torch.Tensor | None = None) -> torch.Tensor:
    """``(A^T A + lam I)^{-1} A^T T`` (``A``: N x d, ``T``: N x k; ``gram``: a precomputed ``A^T A``)."""
    gram = a.T @ a if gram is None else gram
    eye = torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
    return torch.linalg.solve(gram + lam * eye, a.T @ t)


def procrustes(z: torch.Tensor) -> torch.Tensor:
    """The matrix with orthonormal columns nearest to ``z`` (N x k): ``P R^T`` of the thin SVD ``z = P S R^T``
    (when ``k > N`` the rows are orthonormal instead)."""
    p, _, rt = torch.linalg.svd(z, full_matrices=False)
    return p @ rt


def _orthonormal_fill(n: int, count: int, kept: torch.Tensor, generator: torch.Generator, fill: str,
                      completion: str) -> torch.Tensor:
    """``count`` random columns (N x count) for :func:`balanced_orthogonal`."""
    if fill == "uniform":  # HCCH hash_const: rand(n, b_) - mean
        draw = torch.rand(n, count, generator=generator, dtype=F64)
    else:  # WASH: randn(n, r - r')
        draw = torch.randn(n, count, generator=generator, dtype=F64)
    draw = draw.to(kept.device)
    if completion == "orthogonal":  # centred, Gram-Schmidt against the kept columns (HCCH Schmidt.m; DGH)
        draw = draw - draw.mean(dim=0, keepdim=True)
        draw = draw - kept @ (kept.T @ draw)
    q, _ = torch.linalg.qr(draw)  # WASH orth(randn(..)): an orthonormal basis of the draw's span
    if q.shape[1] < count:  # only when bits exceed the training size: no orthonormal completion exists
        q = torch.cat([q, draw[:, q.shape[1]:] / draw[:, q.shape[1]:].norm(dim=0).clamp(min=1e-12)], dim=1)
    return q


def balanced_orthogonal(z: torch.Tensor, tol: float, generator: torch.Generator, fill: str = "normal",
                        completion: str = "orthogonal") -> torch.Tensor:
    r"""``sqrt(n) [U, U_fill] [Q_k, Q_rest]^T`` (N x k) maximising ``tr(V^T Z)`` under ``V^T 1 = 0``, ``V^T V = nI``.

    ``Z^T J Z = Q Lambda Q^T`` (eigenvalues descending), ``Q_k`` the eigenvectors with ``Lambda > tol``,
    ``U = J Z Q_k Lambda_k^{-1/2}``. Missing columns (rank-deficient ``Z``): random ``fill`` (``"uniform"``: HCCH,
    ``"normal"``: WASH) made orthonormal; ``completion="orthogonal"`` first centres them and removes their
    projection on ``U`` (so the constraints hold: HCCH's Gram-Schmidt, DGH), ``"independent"`` only
    orthonormalises the draw itself (WASH ``orth(randn(n, r - r'))``, not orthogonal to ``U`` or ``1``).
    """
    n, k = z.shape
    zc = z - z.mean(dim=0, keepdim=True)
    evals, evecs = torch.linalg.eigh(zc.T @ zc)
    order = torch.argsort(evals, descending=True)
    evals, evecs = evals[order], evecs[:, order]
    keep = evals > tol
    kept = int(keep.sum())
    u = zc @ evecs[:, :kept] / evals[:kept].sqrt()
    if kept < k:
        u = torch.cat([u, _orthonormal_fill(n, k - kept, u, generator, fill, completion)], dim=1)
    return (n**0.5) * u @ evecs.T


def row_l2_normalised(y: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (Deng Cai's ``NormalizeFea(fea, 1)``:
    ``fea ./ sqrt(max(1e-14, sum(fea.^2, 2)))``)."""
    return y / (y * y).sum(dim=1, keepdim=True).clamp(min=1e-14).sqrt()


# ------------------------------------------------------------------------------------------------- base class
class ShallowHashing(Method):
    """Base of the closed-form methods: anchor-kernel features, one iteration per epoch, linear hash functions.

    Subclasses set ``kernel_rule`` and implement :meth:`init_state` (on the training features, once),
    :meth:`iterate` (one published iteration; must set ``proj0``/``proj1``) and :meth:`objective_terms`.
    Features are N x d (one row per sample) float64 tensors; labels float64 N x C.
    """

    kernel_rule: ClassVar[str] = "rbf_fast"
    uses_index = True
    #: ``True``: :meth:`training_step` reports :meth:`sample_weights` (self-paced instance weights).
    reports_weights: ClassVar[bool] = False
    defaults = {"batch_size": 4096, "n_anchors": 1500}

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        if self.kernel_rule not in ("rbf_fast", "kernelize"):
            raise ValueError(f"{type(self).__name__}.kernel_rule must be 'rbf_fast' or 'kernelize'")
        for m, d in enumerate(in_dims):
            self.register_buffer(f"anchors{m}", torch.zeros(0, d, dtype=F64))
            self.register_buffer(f"raw_mean{m}", torch.zeros(d, dtype=F64))
            self.register_buffer(f"kernel_mean{m}", torch.zeros(0, dtype=F64))
            self.register_buffer(f"proj{m}", torch.zeros(0, bits, dtype=F64))
        self.register_buffer("sigmas", torch.ones(2, dtype=F64))
        self.register_buffer("rng_state", torch.zeros(0, dtype=torch.uint8))
        self._cache: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None  # (anchors used, features)
        self._derived: dict[str, Any] = {}  # fixed functions of the cached features (Gram matrices, inverses)
        self._terms: dict[str, float] = {}

    # -- subclass hooks ----------------------------------------------------------------------------------------
    def init_state(self, phis: list[torch.Tensor], labels: torch.Tensor, generator: torch.Generator) -> None:
        raise NotImplementedError

    def iterate(self, phis: list[torch.Tensor], labels: torch.Tensor, epoch: int, generator: torch.Generator) -> None:
        raise NotImplementedError

    def objective_terms(self, phis: list[torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
        """``{"objective": J, part: value, ...}`` of the current state (logged each epoch)."""
        raise NotImplementedError

    def sample_weights(self, index: torch.Tensor) -> torch.Tensor | None:
        return None

    # -- features ----------------------------------------------------------------------------------------------
    def _distances(self, x: torch.Tensor, m: int) -> torch.Tensor:
        x = x.to(F64) - getattr(self, f"raw_mean{m}")
        d = torch.cdist(x, getattr(self, f"anchors{m}"))
        return d * d if self.kernel_rule == "kernelize" else d

    def features(self, x: torch.Tensor, m: int) -> torch.Tensor:
        """Kernel features (N x anchors, float64) of modality ``m``'s raw inputs ``x``."""
        d = self._distances(x, m)
        sigma = self.sigmas[m]
        if self.kernel_rule == "kernelize":
            return torch.exp(-d / (2.0 * sigma)) - getattr(self, f"kernel_mean{m}")
        return torch.exp(-d / (2.0 * sigma * sigma))

    def train_features(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The training split's features, cached (recomputed when the anchors changed, e.g. after a restore)."""
        anchors = [getattr(self, f"anchors{m}") for m in range(2)]
        if self._cache is None or not all(torch.equal(a, b) for a, b in zip(self._cache[0], anchors)):
            self._cache = ([a.clone() for a in anchors], [self.features(x, m) for m, x in enumerate(xs)])
            self._derived = {}
        return self._cache[1]

    def derived(self, name: str, make: Any) -> Any:
        """``make()`` once per feature cache (e.g. ``Phi^T Phi``), then the stored value."""
        if name not in self._derived:
            self._derived[name] = make()
        return self._derived[name]

    def _draw_anchors(self, xs: list[torch.Tensor], generator: torch.Generator) -> None:
        n = xs[0].shape[0]
        a = min(int(self.params["n_anchors"]), n)
        if self.kernel_rule == "kernelize":
            rows = torch.randperm(n, generator=generator)[:a]
            row_sets = [rows, rows]
        else:
            row_sets = [torch.randperm(n, generator=generator)[:a] for _ in xs]
        sigmas = []
        for m, (x, rows) in enumerate(zip(xs, row_sets)):
            if self.kernel_rule == "kernelize":
                setattr(self, f"raw_mean{m}", x.to(F64).mean(dim=0))
            else:
                setattr(self, f"raw_mean{m}", torch.zeros(x.shape[1], dtype=F64, device=x.device))
            setattr(self, f"anchors{m}", x[rows.to(x.device)].to(F64) - getattr(self, f"raw_mean{m}"))
            setattr(self, f"kernel_mean{m}", torch.zeros(a, dtype=F64, device=x.device))
            sigmas.append(self._distances(x, m).mean())
        self.sigmas = torch.stack(sigmas)
        if self.kernel_rule == "kernelize":
            for m, x in enumerate(xs):
                setattr(self, f"kernel_mean{m}", torch.exp(-self._distances(x, m) / (2.0 * self.sigmas[m])).mean(dim=0))
        for m in range(2):
            setattr(self, f"proj{m}", torch.zeros(a, self.bits, dtype=F64, device=xs[0].device))

    # -- loop hooks --------------------------------------------------------------------------------------------
    def on_train_start(self, ctx: TrainContext) -> None:
        xs, labels = ctx.xs, ctx.labels
        # CPU generator seeded from the run's (global, seeded) torch stream: same seed -> same draws on any device
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        self._draw_anchors(xs, generator)
        self._cache = None
        self.init_state(self.train_features(xs), labels.to(F64), generator)
        self.rng_state = generator.get_state()
        self._terms = {}

    @torch.no_grad()
    def on_epoch_start(self, ctx: TrainContext) -> None:
        xs, labels, epoch = ctx.xs, ctx.labels, ctx.epoch
        phis = self.train_features(xs)
        y = labels.to(F64)
        generator = torch.Generator()
        generator.set_state(self.rng_state.cpu())
        self.iterate(phis, y, epoch, generator)
        self.rng_state = generator.get_state()
        self._terms = self.objective_terms(phis, y)

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [(self.features(x, m) @ getattr(self, f"proj{m}")).to(torch.float32) for m, x in enumerate(xs)]

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None
    ) -> StepOutput:
        value = self._terms.get("objective", float("nan"))
        loss = torch.tensor(value, device=labels.device)
        weights = self.sample_weights(index) if (self.reports_weights and index is not None) else None
        return StepOutput(loss=loss, terms={k: v for k, v in self._terms.items() if k != "objective"}, weights=weights)
