r"""Loss terms of RSHNL (Pu et al., AAAI'25), each a small function with its equation.

Notation: a batch of ``N`` pairs, ``M = 2`` modalities, continuous codes ``b_i^m`` (unit L2 norm),
class centres ``c_k`` (unit L2 norm), multi-hot (noisy) labels ``y_i``, temperature ``tau``, robustness
factor ``r in (0, 1]``.

* Robust loss of a probability (the GCE/MAE blend of Eq. 3 and 6):
  ``l_r(p) = (1 - r) (1 - p^r) / r + r (1 - p)``;  ``l_r(1) = 0``, ``l_r(0) = (r^2 - r + 1) / r``.
  Hand check: ``r = 0.5, p = 0.25 -> 0.5 * 0.5 / 0.5 + 0.5 * 0.75 = 0.875``; ``r = 1 -> 1 - p``.
* Contrastive hashing probability (Eq. 2), paper form:
  ``q(i|x_i^m) = sum_j exp(b_i^m.b_i^j / tau) / sum_j sum_z exp(b_i^m.b_z^j / tau)`` (self-similarity
  included). The published code instead drops the anchor itself from numerator and denominator and sums
  the (identical) two directions, doubling the term: ``form="reference"``.
  Hand check (1-bit codes, tau = 1): ``b_1 = [+1]`` in both modalities, ``b_2 = [-1]`` in both:
  ``q = 2e / (2e + 2/e) = e^2 / (e^2 + 1) = 0.8808`` for every anchor.
* CHL loss (Eq. 3): ``L_C = (1/N) sum_i sum_m l_r(q(i|x_i^m))``.
* Centre probability (Eq. 4) and semantic aggregation probability (Eq. 5):
  ``p(k|x_i^m) = softmax_k(b_i^m.c_k / tau)``, ``v_i^m = sum_k y_ik p(k|x_i^m)``.
* Per-pair centre aggregation loss: ``l_i = sum_m l_r(v_i^m)``; ``L_p = mean_i l_i`` (Eq. 6).
* Self-paced weights (Eq. 10-12, closed form of ``argmin_w w l + gamma (w^2/2 - w)`` on [0, 1]):
  ``w_i = max(0, 1 - l_i / gamma)``; regulariser ``R(w, gamma) = gamma (w^2/2 - w)`` (Eq. 8).
  ``L_S = mean_i [w_i l_i + R(w_i, gamma)]`` (Eq. 7) with ``w`` held fixed (alternating optimisation).
"""

from __future__ import annotations

import torch


def robust_loss(p: torch.Tensor, r: float) -> torch.Tensor:
    """Elementwise ``l_r(p) = (1 - r)(1 - p^r)/r + r(1 - p)`` for probabilities ``p``."""
    if not 0.0 < r <= 1.0:
        raise ValueError(f"r must be in (0, 1], got {r}")
    p = p.clamp(min=1e-12, max=1.0)
    return (1.0 - r) * (1.0 - p.pow(r)) / r + r * (1.0 - p)


def robust_loss_max(r: float, n_modalities: int = 2) -> float:
    """Upper bound of the per-pair loss ``l_i`` (Eq. 14): ``M (r^2 - r + 1) / r``."""
    return n_modalities * (r * r - r + 1.0) / r


def contrastive_hash_probability(codes: list[torch.Tensor], tau: float, form: str = "paper") -> torch.Tensor:
    """``q(i|x_i^m)`` of Eq. 2 for every pair ``i`` and modality ``m``; returns an ``N x M`` tensor.

    ``form="paper"`` includes the anchor's self-similarity as in Eq. 2; ``form="reference"`` excludes it
    (published code).
    """
    n = codes[0].shape[0]
    m = len(codes)
    z = torch.cat(codes, dim=0)  # (M N) x L, modality-major
    logits = z @ z.T / tau
    if form == "reference":
        logits = logits.masked_fill(torch.eye(m * n, dtype=torch.bool, device=z.device), float("-inf"))
    elif form != "paper":
        raise ValueError(f"contrastive form must be 'paper' or 'reference', got {form!r}")
    # positives of anchor (m, i): all (j, i) for j in modalities (including itself unless masked)
    same_instance = torch.arange(m * n, device=z.device) % n
    positive = same_instance[:, None] == same_instance[None, :]
    log_den = torch.logsumexp(logits, dim=1)
    log_num = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    q = torch.exp(log_num - log_den)
    return q.view(m, n).T


def contrastive_hash_loss(codes: list[torch.Tensor], tau: float, r: float, form: str = "paper") -> torch.Tensor:
    """CHL loss ``L_C`` of Eq. 3 (mean over pairs, summed over modalities)."""
    q = contrastive_hash_probability(codes, tau, form)
    loss = robust_loss(q, r).sum(dim=1).mean()
    # the reference code computes two identical directions and adds them
    return 2.0 * loss if form == "reference" else loss


def center_probabilities(code: torch.Tensor, centers: torch.Tensor, tau: float) -> torch.Tensor:
    """``p(k|x_i^m)`` of Eq. 4: softmax over classes of ``b_i^m . c_k / tau`` (``N x K``)."""
    return torch.softmax(code @ centers.T / tau, dim=1)


def center_aggregation_per_pair(
    codes: list[torch.Tensor], centers: torch.Tensor, labels: torch.Tensor, tau: float, r: float
) -> torch.Tensor:
    """Per-pair loss ``l_i = sum_m l_r(v_i^m)`` with ``v_i^m = sum_k y_ik p(k|x_i^m)`` (Eq. 5-7)."""
    y = labels.to(codes[0].dtype)
    total = torch.zeros(codes[0].shape[0], dtype=codes[0].dtype, device=codes[0].device)
    for code in codes:
        v = (y * center_probabilities(code, centers, tau)).sum(dim=1)
        total = total + robust_loss(v, r)
    return total


def self_paced_weights(pair_losses: torch.Tensor, gamma: float, mode: str = "linear") -> torch.Tensor:
    """Closed-form SPL weights (Eq. 12), detached from the graph.

    ``linear``: ``w = max(0, 1 - l/gamma)``; ``binary``: ``w = 1[l < gamma]`` (RSHNL-S: every weight > 0
    set to 1); ``off``: ``w = 1``.
    """
    l = pair_losses.detach()
    if mode == "linear":
        return torch.clamp(1.0 - l / gamma, min=0.0)
    if mode == "binary":
        return (l < gamma).to(l.dtype)
    if mode == "off":
        return torch.ones_like(l)
    raise ValueError(f"self_paced must be 'linear', 'binary' or 'off', got {mode!r}")


def self_paced_regulariser(weights: torch.Tensor, gamma: float) -> torch.Tensor:
    """``R(w, gamma) = gamma (w^2/2 - w)`` (Eq. 8), elementwise."""
    return gamma * (0.5 * weights * weights - weights)
