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



def hash_key_contrast_loss(
    queries: torch.Tensor, keys: torch.Tensor, key_index: torch.Tensor, tau: float
) -> torch.Tensor:
    r"""UCCH's contrastive hashing loss of one modality (Hu et al., TPAMI'23, Eqs. 3-4), a mean over anchors.

    ``queries`` ``h_i`` (``B x L``, continuous, unit L2 norm); ``keys`` (``N x L``, entries +/-1: the binary
    keys ``sgn(v)`` of a memory bank, or of the batch); ``key_index`` (``B x (K+1)``): the keys of anchor ``i``,
    column 0 its positive ``k^+_i``, columns 1..K its negatives. Keys are L2-normalised (``sgn(v) / sqrt(L)``)
    and carry no gradient::

        P(i | h_i) = exp(<h_i, k^+_i> / (tau sqrt(L))) / sum_{c=0..K} exp(<h_i, k_{i,c}> / (tau sqrt(L)))
        loss = (1/B) sum_i -log P(i | h_i)

    (Eq. 3 writes a sum over samples; the official code, NCE/NCECriterion.py, averages: see methods/ucch.py.)
    Hand check (L = 4, K = 1, tau = 1): ``h = [.5, .5, .5, .5]``, ``k^+ = [1, 1, 1, 1]``, ``k^- = [1, 1, -1, -1]``:
    logits ``[2/2, 0/2] = [1, 0]``, loss ``= -log(e / (e + 1)) = log(1 + 1/e)``.
    """
    bits = queries.shape[1]
    logits = (queries @ keys.detach().to(queries.dtype).T / (tau * bits**0.5)).gather(1, key_index)
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def cross_modal_ranking_loss(
    h_x: torch.Tensor, h_y: torch.Tensor, margin: float, shift: float, kappa: float = 1.0
) -> torch.Tensor:
    r"""UCCH's cross-modal ranking loss ``L_r`` (CRL; Hu et al., TPAMI'23, Eqs. 8 and 14), in-batch.

    ``M_ij = <h^x_i, h^y_j>`` (image ``i``, text ``j``). Image queries (rows) and text queries (columns)::

        S^xy_ij = M_ij        if M_ii - M_ij <= m,   else M_ij - xi      (mask without gradient)
        S^yx_ji = M_ij        if M_jj - M_ij <= m,   else M_ij - xi      (text query j against image i)
        L_r = (1/B) sum_i [m + kappa log sum_j exp(S^xy_ij / kappa) - S^xy_ii]
            + (1/B) sum_j [m + kappa log sum_i exp(S^yx_ji / kappa) - S^yx_jj]

    The positive is inside the log-sum-exp and is never shifted; ``m`` = ``margin``, ``xi`` = ``shift``.
    Hand check (``h^x = h^y = I_2``, m = 0.2, xi = 1, kappa = 1): ``M = I``, both off-diagonal entries are
    more than m below the positive, so ``S = [[1, -1], [-1, 1]]`` and
    ``L_r = 2 (0.2 + log(e + 1/e) - 1) = 2 (0.2 + log(1 + e^-2))``.
    """
    sim = h_x @ h_y.T
    diag = sim.diagonal()
    keep_rows = (sim >= diag[:, None] - margin).detach()  # image query i: M_ii - M_ij <= m
    keep_cols = (sim >= diag[None, :] - margin).detach()  # text query j: M_jj - M_ij <= m
    s_rows = torch.where(keep_rows, sim, sim - shift)
    s_cols = torch.where(keep_cols, sim, sim - shift)
    i2t = margin + kappa * torch.logsumexp(s_rows / kappa, dim=1) - s_rows.diagonal()
    t2i = margin + kappa * torch.logsumexp(s_cols / kappa, dim=0) - s_cols.diagonal()
    return i2t.mean() + t2i.mean()


def column_info_nce_per_sample(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""Per-sample one-direction cross-modal InfoNCE at temperature 1 (CMMQ's coded ``MQ_loss``): softmax over
    the IMAGE index of ``u v^T``, ``l_j = -log( exp(u_j.v_j) / sum_i exp(u_i.v_j) )`` (text anchor ``j``).
    Hand check (1-d): ``u = [1, -1]``, ``v = [1, 1]``: ``l = [-log(e / (e + 1/e)), -log((1/e) / (e + 1/e))]``.
    """
    return -torch.log_softmax(u @ v.T, dim=0).diagonal()


def code_symmetric_kl_per_sample(u: torch.Tensor, v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    r"""Per-sample mean over bits of CMMQ's (unused) ``KLLoss`` form between two modalities' codes in (-1, 1):
    ``p = (u+1)/2``, ``q = (v+1)/2``, ``l_i = mean_k [p log(p/q) + q log(q/p)] = mean_k (p - q)(log p - log q)``
    (``p, q`` clamped at ``eps`` against saturated tanh). Hand check: ``u = [[0.5, 0]]``, ``v = [[-0.5, 0]]``:
    ``p = [0.75, 0.5]``, ``q = [0.25, 0.5]``: ``[(0.5 log 3 + 0) / 2] = [0.25 log 3]``.
    """
    p = (0.5 * (u + 1.0)).clamp(min=eps)
    q = (0.5 * (v + 1.0)).clamp(min=eps)
    return ((p - q) * (torch.log(p) - torch.log(q))).mean(dim=1)



def q_contrastive_cross_modal(z1: torch.Tensor, z2: torch.Tensor, tau: float, q: float) -> torch.Tensor:
    r"""RFCMH's intra-instance q-contrast, paper form (Sun et al., ICML'26, Eq. 6-7), summed over both directions:
    ``S = z^1 z^2^T`` (cosine of unit codes), ``p^I2T_ii = exp(S_ii/tau) / sum_j exp(S_ij/tau)``,
    ``p^T2I_ii = exp(S_ii/tau) / sum_j exp(S_ji/tau)``, ``L = sum_v (1/B) sum_i l_q(p^v_ii)`` with RSHNL's
    ``l_q(p) = (1 - q)(1 - p^q)/q + q(1 - p)`` (:func:`cmhash.losses.robust.robust_loss`). Only cross-modal
    negatives (the published code's ``intra_loss`` is RSHNL's reference form instead:
    :func:`contrastive_hash_loss` with ``form="reference"``).

    Hand check (1-bit codes ``z^1 = z^2 = [1, -1]``, ``tau = 1``, ``q = 1`` so ``l = 1 - p``): every
    ``p = e / (e + 1/e) = e^2/(e^2 + 1)``, ``L = 2 (1 - p) = 2/(e^2 + 1) = 0.238406``.
    """
    logits = z1 @ z2.T / tau
    diag = torch.diagonal(logits)
    p_i2t = torch.exp(diag - torch.logsumexp(logits, dim=1))
    p_t2i = torch.exp(diag - torch.logsumexp(logits, dim=0))
    return robust_loss(p_i2t, q).mean() + robust_loss(p_t2i, q).mean()


def penalized_lse_margin_loss(s: torch.Tensor, margin: float, shift: float, tau: float) -> torch.Tensor:
    r"""RFCMH's inter-instance contrast for one direction, paper form (Eq. 8-9); rows are the anchors
    (I2T: ``S``; T2I: ``S^T``): ``C_ij = S_ij`` if ``S_ij > S_ii - gamma`` else ``S_ij - Delta``;
    ``L = (1/B) sum_i [ -S_ii + tau log sum_{j != i} exp(C_ij/tau) + gamma ]`` (``gamma`` = ``margin``). The mask
    is a comparison (no gradient); ``B = 1`` has no negative and gives 0.

    Hand check (``gamma = 0.2, Delta = 1, tau = 0.5``), ``S = [[0.9, 0.8, 0.1], [0.2, 0.5, 0.4], [0.0, 0.6, 0.7]]``:
    row 0 keeps 0.8 and shifts 0.1: ``-0.9 + 0.5 log(e^1.6 + e^-1.8) + 0.2 = 0.116414``; row 1:
    ``-0.5 + 0.5 log(e^-1.6 + e^0.8) + 0.2 = 0.143418``; row 2: ``-0.7 + 0.5 log(e^-2 + e^1.2) + 0.2 = 0.119977``;
    mean 0.126603. The same ``S`` transposed (T2I): rows ``-1.243492, 0.756508, -0.881256``, mean -0.456080.
    """
    b = s.shape[0]
    if b <= 1:
        return s.sum() * 0.0
    diag = torch.diagonal(s)
    cost = torch.where(s > (diag[:, None] - margin), s, s - shift)
    eye = torch.eye(b, dtype=torch.bool, device=s.device)
    lse = torch.logsumexp((cost / tau).masked_fill(eye, float("-inf")), dim=1)
    return (-diag + tau * lse + margin).mean()


def rfcmh_inter_loss_reference(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, margin: float = 0.2,
                               shift: float = 1.0, tau: float = 1.0) -> torch.Tensor:
    r"""RFCMH's inter-instance contrast as published (XinchengSun/RFCMH @ 6e79a90, losses.py,
    ``FARLoss._inter_loss``): ``u = tanh(z^1)``, ``v = tanh(z^2)`` (a second tanh on the unit codes),
    ``S = u v^T``, ``T_ij = 1[y_i.y_j > 0]`` with ``T_ii = 0``; two cost matrices with detached masks,
    ``C^te_ij = S_ij`` if ``S_ij >= S_ii - mu`` else ``S_ij - Delta`` and ``C^im_ij = S_ij`` if ``S_ij >= S_jj - mu``
    else ``S_ij - Delta``; ``C~`` = ``C`` with the diagonal replaced by ``max(C_ii, 0)``; for both, a ROW sum::

        l^v_i = -C^v_ii + tau log max(sum_j exp(C~^v_ij (1 - T_ij) / tau), 1e-6) + mu,   L = mean_i (l^te_i + l^im_i).

    Same-class pairs therefore add ``exp(0) = 1`` each, and "im" is not the transpose of "te" (its threshold is
    the column's positive, its sum still over the row).

    Hand check (``mu = 0.2, Delta = tau = 1``), 1-bit codes ``z^1 = z^2 = [1, -1]``, ``t = tanh(1)``, so
    ``S = [[t^2, -t^2], [-t^2, t^2]]`` and the off-diagonal entries are shifted: different classes
    ``L = 2 [log(1 + e^(-2t^2 - 1)) + 0.2] = 0.618281``; one class ``L = 2 [log(1 + e^(-t^2)) + 0.2] = 1.289223``.
    """
    u, v = torch.tanh(z1), torch.tanh(z2)
    y = labels.to(u.dtype)
    b = u.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=u.device)
    same = ((y @ y.T) > 0) & ~eye
    keep = (~same).to(u.dtype)
    s = u @ v.T
    diag = torch.diagonal(s)
    total = torch.zeros_like(diag)
    for threshold in (diag[:, None] - margin, diag[None, :] - margin):
        cost = torch.where((s >= threshold).detach(), s, s - shift)
        c_diag = torch.diagonal(cost)
        filled = torch.where(eye, c_diag.clamp(min=0.0).diag_embed(), cost)
        sums = torch.exp(filled * keep / tau).sum(dim=1).clamp_min(1e-6)
        total = total + (-c_diag + tau * torch.log(sums) + margin)
    return total.mean()
