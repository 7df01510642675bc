r"""Hyperbolic (Poincare-ball) maps and DHaPH's hierarchy-aware proxy loss.

The loss is the hierarchical-proxy triplet loss of HIER (Kim et al., CVPR 2023) as DHaPH's code uses it
(QinLab-WFU/DHaPH @ 44c3c9c, ``utils/HPloss.py``, ``model/hp_model.py``, ``utils/pmath.py``). Curvature ``c``:

* Exponential map at 0: ``exp0(u) = tanh(sqrt(c) |u|) u / (sqrt(c) |u|)`` (``|u|`` clamped at 1e-5, the tanh
  argument at 15); projection into the ball: rows with ``|x| > (1 - 1e-3)/sqrt(c)`` are rescaled to that norm.
* ``to_poincare(x)``: clip ``|x|`` to ``clip_r`` (factor ``min(1, clip_r / (|x| + 1e-5))``), ``exp0``, project,
  then the Riemannian gradient fix (identity forward; backward multiplies the gradient by
  ``(1 - c |x|^2)^2 / 4``).
* Mobius addition ``x (+)_c y = [(1 + 2c<x,y> + c|y|^2) x + (1 - c|x|^2) y] / (1 + 2c<x,y> + c^2|x|^2|y|^2 + 1e-5)``;
  distance ``d(x, y) = (2/sqrt(c)) artanh(sqrt(c) |(-x) (+)_c y|)``, artanh's argument clamped to
  ``[-1 + 1e-5, 1 - 1e-5]`` with the published backward ``g / (1 - x^2)`` on the clamped value.
  Hand check: ``d(0, y) = (2/sqrt(c)) artanh(sqrt(c) |y|)``; ``c = 1``, ``y = [0.5]``: ``2 artanh(0.5) = log 3``.
* Reciprocal triplets (``get_reciprocal_triplets``): ``N = kNN_topk(S)`` (each row's ``topk`` largest ``S``,
  itself included), ``R = (N + N^T)/2`` with the diagonal set to -1; for each anchor with more than one
  ``R = 1`` entry, ``t`` positives drawn uniformly with replacement among them and ``t`` negatives among the
  ``R < 1`` entries (the anchor itself included, as published).
* LCA triplet loss (``compute_gHHC``) over candidate ancestors (proxies) with distances ``D`` (rows: points):
  ``lca_ij = onehot(argmax gumbel(-max(D_i, D_j) / tau))``, ``lca_ijk`` the same with ``max(D_i, D_j, D_k)``
  (hard Gumbel-softmax, straight-through);
  ``l = [D_i,lca_ij - D_i,lca_ijk + m]_+ + [D_j,lca_ij - D_j,lca_ijk + m]_+ + [D_k,lca_ijk - D_k,lca_ij + m]_+``
  kept where the two ancestors differ, averaged over all triplets.
  Hand check (no Gumbel noise, ``m = 0.1``): ``D_i = D_j = [1, 1.05]``, ``D_k = [4, 2]``: ``lca_ij = 0``,
  ``lca_ijk = 1``, ``l = 2 (1 - 1.05 + 0.1) + [2 - 4 + 0.1]_+ = 0.1``.
* Hierarchy-aware proxy loss of one modality's ball points ``z`` (``B x K``) and the proxies ``P``:
  ``S = exp(-d(z, z)) + 1[y y^T > 0]`` (detached) -> triplets over the batch, LCA loss with ``D = d(z, P)``;
  ``S' = exp(-d(P, P))`` (detached) -> triplets over the proxies, LCA loss with ``D = d(P, P)``;
  the loss is the sum of both, summed over the modalities.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


class _Artanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.clamp(-1 + 1e-5, 1 - 1e-5)
        ctx.save_for_backward(x)
        return 0.5 * (torch.log1p(x) - torch.log1p(-x))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad / (1 - x**2)


class _RiemannianGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, c: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.c = c
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (1 - ctx.c * x.pow(2).sum(-1, keepdim=True)).pow(2) / 4, None


def artanh(x: torch.Tensor) -> torch.Tensor:
    """``artanh`` with the argument clamped to ``[-1 + 1e-5, 1 - 1e-5]`` (gradient ``g / (1 - x^2)``)."""
    return _Artanh.apply(x)


def expmap0(u: torch.Tensor, c: float) -> torch.Tensor:
    """Exponential map at the origin of the Poincare ball of curvature ``c`` (row-wise)."""
    sqrt_c = c**0.5
    norm = u.norm(dim=-1, p=2, keepdim=True).clamp_min(1e-5)
    return torch.tanh((sqrt_c * norm).clamp(-15, 15)) * u / (sqrt_c * norm)


def project(x: torch.Tensor, c: float) -> torch.Tensor:
    """Rows with norm above ``(1 - 1e-3)/sqrt(c)`` rescaled to that norm (inside the ball)."""
    norm = x.norm(dim=-1, p=2, keepdim=True).clamp_min(1e-5)
    maxnorm = (1 - 1e-3) / c**0.5
    return torch.where(norm > maxnorm, x / norm * maxnorm, x)


def to_poincare(x: torch.Tensor, c: float, clip_r: float | None = None, riemannian: bool = True) -> torch.Tensor:
    """Feature clipping to ``clip_r``, ``exp0``, projection and the Riemannian gradient fix (``ToPoincare``)."""
    if clip_r is not None:
        norm = x.norm(dim=-1, keepdim=True) + 1e-5
        x = x * torch.minimum(torch.ones_like(norm), clip_r / norm)
    out = project(expmap0(x, c), c)
    return _RiemannianGradient.apply(out, c) if riemannian else out


def mobius_add_batch(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """``x_i (+)_c y_j`` for every pair (``B x C x K``), with the published ``1e-5`` in the denominator."""
    xy = x @ y.T
    x2 = x.pow(2).sum(-1, keepdim=True)
    y2 = y.pow(2).sum(-1, keepdim=True).T
    num = (1 + 2 * c * xy + c * y2).unsqueeze(2) * x.unsqueeze(1) + (1 - c * x2).unsqueeze(2) * y.unsqueeze(0)
    denom = 1 + 2 * c * xy + c**2 * x2 * y2
    return num / (denom.unsqueeze(2) + 1e-5)


def poincare_distance_matrix(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """``d(x_i, y_j) = (2/sqrt(c)) artanh(sqrt(c) |(-x_i) (+)_c y_j|)`` (``B x C``)."""
    sqrt_c = c**0.5
    return 2 / sqrt_c * artanh(sqrt_c * mobius_add_batch(-x, y, c).norm(dim=-1))


def reciprocal_triplets(
    sim: torch.Tensor, topk: int, per_anchor: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(anchor, positive, negative)`` index tensors from reciprocal ``topk`` neighbours of ``sim`` (module
    docstring); ``None`` when no anchor has more than one reciprocal neighbour. ``topk`` is capped at the
    number of rows (the published code fails on batches smaller than ``topk``)."""
    n = sim.shape[0]
    idx = torch.topk(sim, min(topk, n), dim=1).indices
    nn_mat = torch.zeros_like(sim).scatter_(1, idx, 1.0)
    recip = (nn_mat + nn_mat.T) / 2
    recip.fill_diagonal_(-1)
    pos_mask = recip == 1
    anchors = torch.nonzero(pos_mask.sum(dim=1) > 1).squeeze(1)
    if anchors.numel() == 0:
        return None
    pos = torch.multinomial(pos_mask[anchors].to(torch.float32), per_anchor, replacement=True, generator=generator)
    neg = torch.multinomial((recip[anchors] < 1).to(torch.float32), per_anchor, replacement=True,
                            generator=generator)
    return anchors.repeat_interleave(per_anchor), pos.reshape(-1), neg.reshape(-1)


def _hard_ancestor(logits: torch.Tensor, tau: float, noise: bool) -> torch.Tensor:
    if noise:
        return F.gumbel_softmax(logits / tau, dim=1, hard=True)
    soft = torch.softmax(logits / tau, dim=1)
    hard = torch.zeros_like(soft).scatter_(1, soft.argmax(dim=1, keepdim=True), 1.0)
    return hard - soft.detach() + soft


def lca_triplet_loss(
    dist: torch.Tensor, triplets: tuple[torch.Tensor, torch.Tensor, torch.Tensor], tau: float = 0.1,
    margin: float = 0.1, noise: bool = True,
) -> torch.Tensor:
    """HIER's lowest-common-ancestor triplet loss (module docstring); ``dist`` rows are the points, columns the
    candidate ancestors. ``noise=False`` replaces the Gumbel draw by the plain arg-max (tests)."""
    i, j, k = triplets
    max_ij = torch.maximum(dist[i], dist[j])
    lca_ij = _hard_ancestor(-max_ij, tau, noise)
    lca_ijk = _hard_ancestor(-torch.maximum(dist[k], max_ij), tau, noise)
    d = {name: ((dist[r] * lca_ij).sum(1), (dist[r] * lca_ijk).sum(1)) for name, r in (("i", i), ("j", j), ("k", k))}
    loss = (torch.relu(d["i"][0] - d["i"][1] + margin) + torch.relu(d["j"][0] - d["j"][1] + margin)
            + torch.relu(d["k"][1] - d["k"][0] + margin))
    return (loss * (lca_ij.argmax(-1) != lca_ijk.argmax(-1)).to(loss.dtype)).mean()


def hierarchical_proxy_loss(
    points: list[torch.Tensor], proxies: torch.Tensor, labels: torch.Tensor, c: float = 0.1, topk: int = 15,
    per_anchor: int = 50, tau: float = 0.1, margin: float = 0.1,
) -> torch.Tensor:
    """DHaPH's ``HPLoss``: for each modality's ball points, the batch triplet term plus the proxy triplet term
    (module docstring), summed. ``proxies`` are already on the ball. The proxy-proxy distances are the same
    for every modality, so they are computed once (the published code recomputes them per modality); the
    triplet draws and Gumbel draws stay separate per term."""
    y = labels.to(torch.float32)
    same = (y @ y.T) > 0
    d_pp = poincare_distance_matrix(proxies, proxies, c)
    sim_pp = torch.exp(-d_pp).detach()
    total = d_pp.sum() * 0.0
    for z in points:
        with torch.no_grad():
            sim = torch.exp(-poincare_distance_matrix(z, z, c))
            sim[same] += 1
        trip = reciprocal_triplets(sim, topk, per_anchor)
        if trip is not None:
            total = total + lca_triplet_loss(poincare_distance_matrix(z, proxies, c), trip, tau, margin)
        trip_p = reciprocal_triplets(sim_pp, topk, per_anchor)
        if trip_p is not None:
            total = total + lca_triplet_loss(d_pp, trip_p, tau, margin)
    return total
