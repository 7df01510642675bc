r"""Similarity-preserving terms and label similarities.

* Label similarity: ``S_ij = 1[y_i . y_j > 0]`` (share at least one label).
  Hand check: ``y = [[1,0],[0,1],[1,1]] -> S = [[1,0,1],[0,1,1],[1,1,1]]``.
"""

from __future__ import annotations

import torch


def label_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``S_ij = 1[a_i . b_j > 0]`` as float (share at least one label)."""
    return (a.to(torch.float32) @ b.to(torch.float32).T > 0).to(torch.float32)


# ---- appended for CIRH / HMAH (cosine-gram regression, CIRH's collaborated graph, HMAH's label affinity) ----
r"""
* Cosine gram: ``G(a, b)_ij = a_i . b_j / (|a_i| |b_j|)`` (rows L2-normalised, as ``F.normalize``).
* Cosine-gram regression: ``L = mean_{i,j} (G(a, b)_ij - S_ij)^2`` (CIRH's ``loss_ACR`` / ``loss_f2`` terms,
  HMAH's ``construct_loss`` and student similarity terms).
  Hand check: ``a = b = [[1, 0], [0, 2]]`` -> ``G = I``; ``S = [[1, 1], [1, 1]]``: ``(0 + 1 + 1 + 0) / 4 = 0.5``.
* CIRH's collaborated similarity over the whole training set (``my_opt.py`` ``cal_similarity``):
  ``S1 = a1 G(X_I, X_I) + (1 - a1) G(X_T, X_T)``; per row the ``K`` smallest entries set to 0 (row-wise, so
  ``S1`` is no longer symmetric); ``S2 = sym(2 / (1 + exp(-S1)) - 1 + I)`` with ``sym(M) = (M + M^T) / 2``;
  ``S = a2 S1 + (1 - a2) S2``.
  Hand check: ``X_I = [[1,0],[1,1],[0,1]]``, ``X_T = [[1,0],[1,0],[0,1]]``, ``a1 = a2 = 0.5``, ``K = 1``:
  with ``c = (1 + 1/sqrt 2) / 2``, ``d = 1 / (2 sqrt 2)``: ``S1 = [[1, c, 0], [c, 1, d], [0, d, 1]]`` loses (0,2),
  (1,2), (2,0) -> ``[[1, c, 0], [c, 1, 0], [0, d, 1]]``; ``S_00 = (1 + 1 + tanh(1/2)) / 2``,
  ``S_01 = S_10 = (c + tanh(c/2)) / 2``, ``S_12 = tanh(d/2) / 4``, ``S_21 = d / 2 + tanh(d/2) / 4``, ``S_02 = 0``.
* HMAH's label affinity (``utils/utils.py`` ``affinity_tag_multi``): ``A = 2 sigmoid(Y_a Y_b^T) - 1`` (0 for no
  shared label, ``2 sigmoid(k) - 1`` for ``k`` shared labels).
  Hand check: ``Y = [[1,0],[0,1],[1,1]]``: ``A = [[t, 0, t], [0, t, t], [t, t, u]]``, ``t = 2 sigmoid(1) - 1``,
  ``u = 2 sigmoid(2) - 1``.
* Row normalisation of an affinity (``utils/utils.py`` ``normalize``, its ``out_affnty``): ``A_ij / sum_j A_ij``;
  an all-zero row stays zero. Hand check: ``[[1, 3], [0, 0]] -> [[0.25, 0.75], [0, 0]]``.
"""


def cosine_gram(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``G(a, b)_ij = cos(a_i, b_j)`` (``b = a`` when omitted); rows of norm 0 give 0 (``F.normalize`` eps)."""
    na = torch.nn.functional.normalize(a, dim=1)
    nb = na if b is None else torch.nn.functional.normalize(b, dim=1)
    return na @ nb.T


def cosine_gram_regression(a: torch.Tensor, b: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
    """``mean_{i,j} (cos(a_i, b_j) - S_ij)^2`` (``b = a`` when ``None``; the target is detached)."""
    return ((cosine_gram(a, b) - target.detach()) ** 2).mean()


def collaborated_graph_similarity(
    x_img: torch.Tensor, x_txt: torch.Tensor, a1: float, a2: float, zeroed: int, chunk: int = 2048
) -> torch.Tensor:
    """CIRH's whole-training-set similarity ``S`` (see above): ``zeroed`` = ``K`` entries zeroed per row.

    Ties among the smallest entries are broken by column order (stable sort); rows are processed in chunks so
    that the sort's index matrix never exceeds ``chunk x N``."""
    n = x_img.shape[0]
    if not 0 <= zeroed < n:
        raise ValueError(f"zeroed must be in [0, {n - 1}] for {n} samples, got {zeroed}")
    s1 = a1 * cosine_gram(x_img) + (1.0 - a1) * cosine_gram(x_txt)
    if zeroed > 0:
        for start in range(0, n, chunk):
            rows = s1[start : start + chunk]
            drop = rows.argsort(dim=1, stable=True)[:, :zeroed]
            rows.scatter_(1, drop, 0.0)
    s2 = torch.tanh(s1 / 2.0) + torch.eye(n, dtype=s1.dtype, device=s1.device)
    s2 = (s2 + s2.T) / 2.0
    return a2 * s1 + (1.0 - a2) * s2


def sigmoid_label_affinity(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``2 sigmoid(a b^T) - 1`` of multi-hot labels (``b = a`` when omitted)."""
    a = a.to(torch.float32)
    b = a if b is None else b.to(torch.float32)
    return 2.0 * torch.sigmoid(a @ b.T) - 1.0


def row_normalised(affinity: torch.Tensor) -> torch.Tensor:
    """Rows divided by their sums (a zero sum is replaced by 1, so an all-zero row stays zero)."""
    sums = affinity.sum(dim=1, keepdim=True)
    return affinity / torch.where(sums == 0, torch.ones_like(sums), sums)



def graph_neighbour_target(
    x_image: torch.Tensor, x_text: torch.Tensor, text_weight: float, graph_weight: float, k: int, scale: float
) -> torch.Tensor:
    r"""DGCPN's target similarity of the whole training set (Yu et al., AAAI'21; official code
    Atmegal/DGCPN, train_div.py ``Session.cal_similarity``), ``N x N``.

    With row-L2-normalised features ``X^I``, ``X^T`` and ``a1`` = ``text_weight``, ``a2`` = ``graph_weight``::

        S_pair = a1 X^T X^T' + (1 - a1) X^I X^I'            (coexistent similarity; a1 weights the TEXT cosine)
        P_i    = S_pair_i with all but its k largest entries set to 0, and its largest (normally the
                 self-similarity) set to 0 too; then P_i <- P_i / sum_j P_ij
        G      = scale P P'                                  (graph-neighbour coherence)
        S      = 2 [(1 - a2) S_pair + a2 G] - 1              (no clipping)

    ``k`` counts the kept entries including the self entry that is then removed (the code's ``knn_number`` is
    ``N - k``: 3000 of 5000 there, i.e. k = 2000). Ties are broken by a stable sort.
    Hand check: both views ``[[1, 0], [.6, .8], [0, 1]]``, k = 2, scale = 1, a2 = 0.5: ``S_pair =
    [[1, .6, 0], [.6, 1, .8], [0, .8, 1]]``; each row keeps itself and its nearest other sample, so
    ``P = [[0, 1, 0], [0, 0, 1], [0, 1, 0]]``, ``G = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]`` and
    ``S = S_pair + G - 1 = [[1, -.4, 0], [-.4, 1, -.2], [0, -.2, 1]]``.
    """
    n = x_image.shape[0]
    if not 2 <= k <= n:
        raise ValueError(f"graph_neighbour_target: k must be in [2, {n}] (kept entries per row), got {k}")
    xi = torch.nn.functional.normalize(x_image.to(torch.float32), dim=1)
    xt = torch.nn.functional.normalize(x_text.to(torch.float32), dim=1)
    s_pair = text_weight * (xt @ xt.T) + (1.0 - text_weight) * (xi @ xi.T)
    order = torch.sort(s_pair, dim=1, stable=True).indices  # ascending
    drop = torch.cat([order[:, : n - k], order[:, -1:]], dim=1)
    p = s_pair.scatter(1, drop, 0.0)
    p = p / p.sum(dim=1, keepdim=True)
    g = scale * (p @ p.T)
    return 2.0 * ((1.0 - graph_weight) * s_pair + graph_weight * g) - 1.0


def coherence_preserving_loss(
    code_image: torch.Tensor, code_text: torch.Tensor, target: torch.Tensor,
    pair_target: float = 1.5, dis_weight: float = 1.0, cons_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""DGCPN's comprehensive similarity-preserving loss of a batch (official code Atmegal/DGCPN,
    train_div.py ``Session.loss_cal``); returns ``(loss, {"pair", "dis", "cons"})``.

    ``U^I``, ``U^T`` = row-L2-normalised codes (``B x L``, real or sign codes); ``P_II = U^I U^I'``,
    ``P_TT = U^T U^T'``, ``P_IT = U^I U^T'``; ``S`` = the batch block of :func:`graph_neighbour_target`;
    ``mse`` = mean over all entries; ``O = 1 - I`` masks the diagonal (the mean still runs over ``B^2``)::

        L_pair = mse(diag(P_IT), K 1)                                      (K = pair_target)
        L_dis  = mse(O*P_TT, O*S) + mse(O*P_IT, O*S) + mse(O*P_II, O*S)
        L_cons = mse(P_IT, P_II) + mse(P_IT, P_TT) + mse(P_II, P_TT) + mse(P_IT, P_IT')
        L      = L_pair + dis_weight L_dis + cons_weight L_cons

    Hand check (L = 1): ``code_image = [[1], [-1]]``, ``code_text = [[1], [1]]``, ``S = [[1, -1], [-1, 1]]``,
    K = 1.5: ``P_II = [[1, -1], [-1, 1]]``, ``P_TT = [[1, 1], [1, 1]]``, ``P_IT = [[1, 1], [-1, -1]]``;
    ``L_pair = (0.25 + 6.25) / 2 = 3.25``, ``L_dis = 8/4 + 4/4 + 0 = 3``, ``L_cons = 2 + 2 + 2 + 2 = 8``,
    ``L = 14.25``.
    """
    mse = torch.nn.functional.mse_loss
    u_i = torch.nn.functional.normalize(code_image, dim=1)
    u_t = torch.nn.functional.normalize(code_text, dim=1)
    p_ii, p_tt, p_it = u_i @ u_i.T, u_t @ u_t.T, u_i @ u_t.T
    off = 1.0 - torch.eye(p_it.shape[0], dtype=p_it.dtype, device=p_it.device)
    target = target.to(torch.promote_types(p_it.dtype, target.dtype))  # never round S to bfloat16
    pair = mse(p_it.diagonal(), torch.full_like(p_it.diagonal(), pair_target))
    dis = mse(p_tt * off, target * off) + mse(p_it * off, target * off) + mse(p_ii * off, target * off)
    cons = mse(p_it, p_ii) + mse(p_it, p_tt) + mse(p_ii, p_tt) + mse(p_it, p_it.T)
    loss = pair + dis_weight * dis + cons_weight * cons
    return loss, {"pair": pair.detach(), "dis": dis.detach(), "cons": cons.detach()}


def scaled_gram_residual(u: torch.Tensor, w: torch.Tensor, a: torch.Tensor, scale: float) -> torch.Tensor:
    r"""``|| scale A A^T - U W^T ||_F^2`` without forming an N x N matrix (``A``: N x c, ``U``, ``W``: N x k):
    ``scale^2 ||A^T A||^2 - 2 scale sum((A^T U) * (A^T W)) + sum((U^T U) * (W^T W))``.

    The pairwise-similarity term of the shallow methods: DSCMH ``alpha ||k Lhat Lhat^T - V^T B||^2``, HCCH
    ``alpha ||k S - B_m H^T||^2`` (``S = L L^T``), WASH ``xi ||V^T B - r Yhat^T Yhat||^2``.
    Hand check: ``A = [[1,0],[0,1],[1,0]]``, ``U = W = [[1],[-1],[1]]``, ``scale = 1``:
    ``A A^T - U W^T = [[0,1,0],[1,0,1],[0,1,0]]`` -> 4 (= 5 - 2 * 5 + 9).
    """
    ata = a.T @ a
    return scale * scale * (ata * ata).sum() - 2.0 * scale * ((a.T @ u) * (a.T @ w)).sum() + ((u.T @ u) * (w.T @ w)).sum()


def cosine_affinity_loss(codes: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    r"""NSRMH's ``L_sim = mean_{a,b} mean_{i,j} (cos(h_i^a, h_j^b) - A_ij)^2`` over every ordered pair ``(a, b)`` of the
    given codes, ``A = 2 sigmoid(Y Y^T) - 1`` (:func:`sigmoid_label_affinity`; ``A_ij = tanh(y_i . y_j / 2)``); with
    one code it is the published ``mse(H_n H_n^T, A)`` of NSRMH's ``main.py``.

    Hand check: both codes ``[[1, 0], [0, 1], [1, 0]]``, one-hot ``[c0, c1, c0]``: cosines are 1 where the classes
    agree (5 of the 9 pairs) and 0 elsewhere, where ``A`` is 0 too, so ``L_sim = 5 (1 - tanh(1/2))^2 / 9``.
    """
    a = sigmoid_label_affinity(labels)
    return torch.stack([cosine_gram_regression(x, y, a) for x in codes for y in codes]).mean()


def asymmetric_pair_nll(stored: torch.Tensor, codes: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
    r"""Asymmetric pairwise negative log-likelihood (DCMH form; MIAN's "probabilistic asymmetric learning"):
    ``1/B sum_{j,i} softplus(theta_ji) - S_ji theta_ji``, ``theta = U h^T / 2`` between the ``N`` stored codes ``U``
    and the ``B`` current codes ``h``; ``S`` is ``N x B``.

    Hand check: ``U = [[2,0],[0,2],[2,0]]``, ``h = [[1,0]]``, ``S = [[1],[0],[1]]``: ``theta = [1, 0, 1]``, so the
    loss is ``2 (log(1 + e) - 1) + log 2``.
    """
    theta = 0.5 * stored @ codes.T
    return (torch.nn.functional.softplus(theta) - sim * theta).sum() / codes.shape[0]


def asymmetric_pair_squared(stored: torch.Tensor, codes: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
    r"""MIAN's published training form of the pair term: ``1/B sum_{j,i} (S_ji theta_ji - softplus(theta_ji))^2``,
    ``theta = U h^T / 2`` (``MICH.py``: ``mse_loss(S * theta, softplus(theta), reduction='sum')``; the code sums
    over the batch too and scales ``S`` by 0.999, which the caller passes in ``sim``).

    Hand check: ``U = [[2,0],[0,2],[2,0]]``, ``h = [[1,0]]``, ``S = [[1],[0],[1]]``: ``theta = [1, 0, 1]``, so the
    loss is ``2 (1 - log(1 + e))^2 + (log 2)^2``.
    """
    theta = 0.5 * stored @ codes.T
    return ((sim * theta - torch.nn.functional.softplus(theta)) ** 2).sum() / codes.shape[0]
