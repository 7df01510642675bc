r"""Cross-modal contrastive terms (InfoNCE family).

Notation: a batch of ``N`` pairs, ``M = 2`` modalities, continuous codes ``b_i^m`` (unit L2 norm), temperature
``tau``, robustness factor ``r``.

* RSHNL's contrastive hashing probability (Eq. 2), **paper form** (self-similarity inside the positives):
  ``q(i|x_i^m) = sum_j exp(b_i^m.b_i^j / tau) / sum_j sum_z exp(b_i^m.b_z^j / tau)``.
  **Reference form** (perquisite/RSHNL @ 34de146, losses.py, ``cross_modal_contrastive_ctriterion_q``): the
  anchor's own ``exp`` is removed from numerator and denominator (``sim - sim.diag().diag()``), so
  ``q = exp(b_i^m.b_i^m' / tau) / sum_{(z,j) != (i,m)} exp(b_i^m.b_z^j / tau)``.
  Hand check (1-bit codes, tau = 1): ``b_1 = [+1]`` in both modalities, ``b_2 = [-1]`` in both:
  paper ``q = 2e / (2e + 2/e) = e^2 / (e^2 + 1)``; reference ``q = e / (e + 2/e) = e^2 / (e^2 + 2)``.
* RSHNL's ``L_C`` (Eq. 3): ``L_C = (1/N) sum_i sum_m l_r(q(i|x_i^m))`` (sum over modalities, mean over pairs).
  The published code returns ``loss1.mean() + loss2.mean()``: two directions (row and column sums of the
  symmetric similarity matrix, hence identical), each a mean over the ``2N`` stacked anchors, i.e.
  ``2 * mean_{2N anchors} l_r(q) = (1/N) sum_i sum_m l_r(q)`` -- the same scale as Eq. 3, so both forms
  share one reduction and differ only in ``q``.
  Hand check (reference form, r = 1, the case above): ``2 * mean(1 - q) = 2 (1 - e^2/(e^2 + 2))``.
* Cross-modal InfoNCE (SEHA's DCL, UCCH): stack ``Z = [z^1; z^2]`` (``2N`` rows); for anchor ``a`` with
  cross-modal partner ``a'``: ``P_a = exp(z_a.z_a'/tau) / sum_{b != a} exp(z_a.z_b/tau)``,
  ``L = mean_a -log(P_a + eps)``.
  Hand check (1-d codes, tau = 1): ``z^1 = z^2 = [1, 1, -1]``. Anchors with ``z = 1`` (four of them):
  ``P = e / (3e + 2/e) = e^2 / (3e^2 + 2)``; anchors with ``z = -1`` (two): ``P = e / (e + 4/e) = e^2 / (e^2 + 4)``;
  ``L = [4 (-log(e^2/(3e^2+2))) + 2 (-log(e^2/(e^2+4)))] / 6``.
"""

from __future__ import annotations

import torch

from .robust import robust_loss


def contrastive_hash_probability(codes: list[torch.Tensor], tau: float, form: str = "paper") -> torch.Tensor:
    """``q(i|x_i^m)`` of RSHNL Eq. 2 for every pair ``i`` and modality ``m``; returns an ``N x M`` tensor.

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
    """RSHNL's ``L_C`` (Eq. 3): ``(1/N) sum_i sum_m l_r(q)``; equal to the published ``loss1.mean() +
    loss2.mean()`` for ``form="reference"`` (module docstring)."""
    q = contrastive_hash_probability(codes, tau, form)
    return robust_loss(q, r).sum(dim=1).mean()


def cross_modal_info_nce(codes: list[torch.Tensor], tau: float = 1.0, eps: float = 1e-8) -> torch.Tensor:
    """Mean over the ``2N`` anchors of ``-log P_a`` (anchor excluded from the denominator)."""
    n = codes[0].shape[0]
    z = torch.cat(codes, dim=0)
    logits = (z @ z.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    log_p = logits[torch.arange(2 * n, device=z.device), partner] - torch.logsumexp(logits, dim=1)
    return -torch.log(torch.exp(log_p) + eps).mean()
