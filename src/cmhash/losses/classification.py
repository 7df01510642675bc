r"""Per-sample classification losses.

* ``per_sample_classification_loss``: cross-entropy against the label (single-label: argmax of the row) or mean
  binary cross-entropy over classes (multi-label), one value per sample.
  Hand check: logits ``[[0, 0]]``, label ``[1, 0]``: CE ``log 2``; BCE ``log 2`` (both classes at p = 1/2).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def per_sample_classification_loss(logits: torch.Tensor, labels: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """CE against the label (single-label, argmax of the row) or mean BCE over classes (multi-label)."""
    y = labels.to(logits.dtype)
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(dim=1)
    return F.cross_entropy(logits, y.argmax(dim=1), reduction="none")


def summed_bce_with_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Per-sample binary cross-entropy with logits SUMMED over the classes (DHRL's ``LRLoss`` with
    ``pos_weight = 1``): ``l_i = sum_c [(1 - y_ic) z_ic + log(1 + exp(-z_ic))]``.
    Hand check: logits ``[[0, 0]]``, label ``[1, 0]``: ``2 log 2``.
    """
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none").sum(dim=1)


def label_ranking_error(
    logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.2, beta: float = 0.8
) -> torch.Tensor:
    r"""DHRL's per-sample label-ranking error (``Ranking`` in its utils.py), from classifier logits ``p_i``.

    For a negative class ``a`` (``y_ia = 0``) and a positive class ``b`` (``y_ib = 1``):
    ``e_ab = max(0, 1 + 2 (p_ia - p_ib))^2`` (0 for every other pair). Group norms over all ``C`` classes:
    missing ``g_a = sqrt(sum_b e_ab + 1e-10)``, extra ``g'_b = sqrt(sum_a e_ab + 1e-10)``;
    ``r_i = alpha sum_a g_a + beta sum_b g'_b``.
    Hand check (``alpha = 0.2, beta = 0.8``): ``y = [1, 0]``: ``p = [0, 0] -> 1 + 1e-5``;
    ``p = [1, 0] -> 2e-5``; ``p = [0, 1] -> 3 + 1e-5``.
    """
    y = labels.to(logits.dtype)
    pairs = y.unsqueeze(1) * (1.0 - y).unsqueeze(2)  # [i, a, b]: a negative, b positive
    errors = torch.clamp(1.0 + 2.0 * (logits.unsqueeze(2) - logits.unsqueeze(1)), min=0.0).pow(2) * pairs
    missing = torch.sqrt(errors.sum(dim=2) + 1e-10).sum(dim=1)
    extra = torch.sqrt(errors.sum(dim=1) + 1e-10).sum(dim=1)
    return alpha * missing + beta * extra


def cross_soft_label_distillation(
    probs: list[torch.Tensor], soft: list[torch.Tensor], eps: float = 1e-12
) -> torch.Tensor:
    r"""SEHA's self-distillation term: ``mean_i sum_a sum_b -sum_c S^b_ic log p^a_ic`` -- every modality's
    prediction ``p^a`` pulled toward every modality's soft-label table ``S^b`` (``losses.py::intra_modal_loss``
    after the warm-up; ``log`` clamped at ``eps``, the published code has no clamp).

    Hand check (2 classes): ``p^1 = p^2 = [[.8,.2],[.5,.5],[.25,.75]]``, ``S^1 = [[1,0],[0,1],[0,1]]``,
    ``S^2 = [.5,.5]`` every row: sample 1 gives ``2(-log .8) + 2(-(.5 log .8 + .5 log .2))``, sample 2 ``4 log 2``,
    sample 3 ``2(-log .75) + 2(-(.5 log .25 + .5 log .75))``; the loss is their mean.
    """
    total = torch.zeros((), dtype=probs[0].dtype, device=probs[0].device)
    for p in probs:
        log_p = torch.log(p.clamp(min=eps))
        for s in soft:
            total = total - (s * log_p).sum(dim=1).mean()
    return total
