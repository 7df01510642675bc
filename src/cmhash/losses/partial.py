r"""Terms for learning from redundant (partial multi-label) annotations: every sample carries a candidate label set
``y`` that holds its true labels plus false ones, and a per-sample label confidence ``P in [0, 1]^{N x C}``
(``P = P * y``: only candidate labels can carry confidence) is disambiguated during training. Written for NACD
(Su et al., NeurIPS 2025; official code ``Rose-bud/NACD`` @ 57e090f, ``NACD/train.py``); the code's function
behind each term is named in its docstring.

* Confidence-target BCE (NACR's classification term): with class probabilities ``p^m = sigmoid(z^m W_m)``,
  ``L_cls = mean_m BCE(p^m, P_b)``, ``BCE(p, t) = -mean_{i,c} [t_ic log p_ic + (1 - t_ic) log(1 - p_ic)]`` with
  each log clamped at -100 (as ``torch.nn.functional.binary_cross_entropy``). Hand check: ``p = [[0.5, 0.8]]``,
  ``t = [[1, 0]]``: ``(log 2 + log 5) / 2 = 1.151293``.
* Confident pseudo-labels: ``yhat = y * 1[P >= t]`` with class thresholds ``t in R^C``. Hand check: ``y = [[1, 1]]``,
  ``P = [[0.7, 0.2]]``, ``t = [0.5, 0.5]`` -> ``[[1, 0]]``.
* Jaccard label similarity: ``T_ij = yhat_i . yhat_j / (|yhat_i| + |yhat_j| - yhat_i . yhat_j + 1e-8)``.
  Hand check: ``yhat = [[1,1,0],[1,0,1],[0,0,0]]`` -> ``T_00 = 1``, ``T_01 = 1/3``, ``T_02 = T_22 = 0``.
* Class-aware robust contrastive hashing (CRCH): ``S = U V^T`` (cross-modal code similarities);
  ``pos = 1[T > 0] (1 - I)``, ``neg = 1[T = 0] (1 - I)``;
  ``C^te_ij = S_ij`` if ``S_ij >= S_ii - delta`` else ``S_ij - xi`` (text side, row anchor), ``C^im_ij = S_ij`` if
  ``S_ij >= S_jj - delta`` else ``S_ij - xi`` (image side, column anchor), the masks without gradient;
  ``L_crch = mean_ij[neg_ij (exp C^te_ij + exp C^im_ij)] + mean_ij[pos_ij exp(-S_ij - T_ij)] - mean_i S_ii``
  (means over all ``B^2`` entries). Hard negatives (within ``delta`` of the positive pair) keep their full weight,
  easy ones are damped by ``exp(-xi)``. Hand checks (``delta = 0.2``, ``xi = 1``, ``U = I_2``):
  ``V = I_2``, ``T = I_2`` (two negatives, both easy): ``S = I``, ``L = (2 * 2 e^{-1}) / 4 - 1 = e^{-1} - 1``;
  ``V = I_2``, ``T = [[1, .5], [.5, 1]]`` (two positives): ``L = 2 e^{-0.5} / 4 - 1``;
  ``V = [[.6, .8], [.8, .6]]``, ``T = I_2`` (two hard negatives): ``S = V``, ``L = e^{0.8} - 0.6``.
* Confidence momentum update (every batch): ``P_b <- (omega P_b + (1 - omega) (sg p^1 + sg p^2) / 2) * y`` with
  ``omega_e = omega_0 + (omega_1 - omega_0) e / E`` (code: 0.95 -> 0.8 over E epochs, ``e`` 0-based). Hand check:
  ``P = [[1, 1, 0]]``, mean prediction ``[[.2, .9, .7]]``, ``y = [[1, 1, 0]]``, ``omega = 0.9`` -> ``[[.92, .99, 0]]``.
* Neighbour-aware confidence reconstruction (NACR, once per epoch after warm-up): ``A = (cos(Z^1, Z^1) +
  cos(Z^2, Z^2)) / 2`` over the whole training split with a zero diagonal; ``N_k(i)`` = the ``k`` largest entries
  of row ``i`` with similarities ``a``; ``q_i = (sum_{n in N_k(i)} a_n / (sum a + 1e-8) P_n) * y_i``;
  ``P <- lambda q + (1 - lambda) P``. Hand check (``k = 1``, ``lambda = 0.2``): ``Z^1 = Z^2 = [[1,0],[.8,.6],[0,1]]``
  gives neighbours 0 -> 1, 1 -> 0, 2 -> 1; with ``y = [[1,1],[1,0],[0,1]]`` and ``P = [[1,.5],[.2,0],[0,.4]]``:
  ``q = [[.2,0],[1,0],[0,0]]`` and ``P_new = [[.84,.4],[.36,0],[0,.32]]`` (up to the ``1e-8``).
* Class thresholds: ``t_c = sum_j P_jc / max(#{j: P_jc > 0}, 1)`` (mean confidence over the samples where class
  ``c`` is still a candidate). Hand check: the ``P_new`` above gives ``t = [0.6, 0.36]``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def soft_binary_cross_entropy(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-mean[t log p + (1 - t) log(1 - p)]``, logs clamped at -100, computed in float32 (autocast-safe; the
    same value as ``F.binary_cross_entropy(p, t)``)."""
    p = p.float()
    t = target.float()
    log_p = torch.clamp(torch.log(p), min=-100.0)
    log_q = torch.clamp(torch.log1p(-p), min=-100.0)
    return -(t * log_p + (1.0 - t) * log_q).mean()


def confidence_bce(probs: list[torch.Tensor], confidence: torch.Tensor) -> torch.Tensor:
    """``L_cls = mean_m BCE(p^m, P_b)`` (NACD ``classification_loss``: ``(BCE(p_u, P) + BCE(p_v, P)) / 2``)."""
    return torch.stack([soft_binary_cross_entropy(p, confidence) for p in probs]).mean()


def confident_pseudo_labels(labels: torch.Tensor, confidence: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``yhat = y * 1[P >= t]`` (NACD ``MultiLabelLoss.contrast_loss``: ``weighted_label``)."""
    keep = (confidence >= thresholds.to(confidence.dtype).unsqueeze(0)).to(torch.float32)
    return labels.to(torch.float32) * keep


def jaccard_similarity(labels: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``T_ij = |y_i and y_j| / (|y_i| + |y_j| - |y_i and y_j| + eps)`` (NACD ``compute_label_similarity``)."""
    y = labels.to(torch.float32)
    inter = y @ y.T
    size = y.sum(dim=1, keepdim=True)
    return inter / (size + size.T - inter + eps)


def class_aware_contrastive_loss(
    u: torch.Tensor, v: torch.Tensor, label_sim: torch.Tensor, margin: float, shift: float
) -> torch.Tensor:
    """``L_crch`` of the module docstring (NACD ``MultiLabelLoss.contrast_loss``). ``u``/``v``: L2-normalised codes of
    the two modalities of the same ``B`` pairs; ``label_sim``: ``T`` (``B x B``, no gradient needed)."""
    s = u @ v.T
    eye = torch.eye(s.shape[0], device=s.device, dtype=s.dtype)
    t = label_sim.to(s.dtype)
    pos = (t > 0).to(s.dtype) * (1.0 - eye)
    neg = (t == 0).to(s.dtype) * (1.0 - eye)
    diag = torch.diagonal(s).unsqueeze(1)
    keep_te = (s >= diag - margin).detach()
    keep_im = (s >= diag.T - margin).detach()
    cost_te = torch.where(keep_te, s, s - shift)
    cost_im = torch.where(keep_im, s, s - shift)
    loss_neg = (neg * (cost_te.exp() + cost_im.exp())).mean()
    loss_pos = (pos * (-s - t).exp()).mean()
    return loss_pos + loss_neg - torch.diagonal(s).mean()


def momentum_weight(epoch: int, epochs: int, start: float = 0.95, end: float = 0.8) -> float:
    """``omega_e = start + (end - start) e / E`` (NACD ``train``: ``pseudo_label_weight``, 0.95 -> 0.8)."""
    return float(start + (end - start) * epoch / max(int(epochs), 1))


def confidence_momentum_update(
    confidence: torch.Tensor, mean_prob: torch.Tensor, labels: torch.Tensor, omega: float
) -> torch.Tensor:
    """``(omega P + (1 - omega) pbar) * y``, ``pbar`` detached (NACD ``train``: ``revise_label_confidence[ind]``)."""
    return (omega * confidence + (1.0 - omega) * mean_prob.detach().to(confidence.dtype)) * labels.to(confidence.dtype)


@torch.no_grad()
def neighbour_confidence_reconstruction(
    codes: list[torch.Tensor],
    confidence: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    lam: float,
    chunk: int = 4096,
) -> torch.Tensor:
    """``P <- lambda q + (1 - lambda) P`` with ``q`` from the ``k`` nearest neighbours in the mean intra-modal cosine
    similarity (NACD ``revise_label_each_epoch``; ``k = 0`` returns ``P * y`` as the code does). Rows are processed
    in chunks of ``chunk`` so the ``N x N`` similarity is never held at once. ``k`` is capped at ``N - 1``."""
    y = labels.to(confidence.dtype)
    if k <= 0:
        return confidence * y
    normed = [F.normalize(z.detach().float(), dim=1) for z in codes]
    n = confidence.shape[0]
    k = min(int(k), n - 1) if n > 1 else 1
    q = torch.empty_like(confidence)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        rows = torch.arange(start, stop, device=confidence.device)
        sims = []
        for z in normed:
            s = z[start:stop] @ z.T
            s[torch.arange(stop - start, device=s.device), rows] = 0.0  # fill_diagonal_(0) of the full matrix
            sims.append(s)
        sim = torch.stack(sims).mean(dim=0) if len(sims) > 1 else sims[0]
        top, nearest = torch.topk(sim, k=k, dim=1)
        w = top / (top.sum(dim=1, keepdim=True) + 1e-8)
        q[start:stop] = (confidence[nearest] * w.unsqueeze(-1).to(confidence.dtype)).sum(dim=1) * y[start:stop]
    return lam * q + (1.0 - lam) * confidence


def class_thresholds(confidence: torch.Tensor) -> torch.Tensor:
    """``t_c = sum_j P_jc 1[P_jc > 0] / max(#{j: P_jc > 0}, 1)`` (NACD ``train``: ``class_threshold``)."""
    mask = confidence > 0
    sums = (confidence * mask).sum(dim=0)
    counts = mask.sum(dim=0).to(confidence.dtype)
    return sums / torch.where(counts == 0, torch.ones_like(counts), counts)
