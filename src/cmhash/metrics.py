r"""Retrieval metrics on binary codes by Hamming ranking.

Definitions (the tests check them against a brute-force implementation and hand-computed cases):

* Codes are ``{-1, +1}`` (or ``{0, 1}``, converted) matrices of ``K`` bits. The Hamming distance between
  a query ``b_q`` and a database item ``b_j`` is ``d_j = (K - <b_q, b_j>) / 2``.
* **Tie order**: the database is ranked by ``(d_j, j)`` ascending — items at equal distance keep database
  index order (a stable sort). This is deterministic, unlike the unstable ``argsort`` of the published code.
* **Relevance**: ``rel_j = 1`` iff query and item share at least one label (``<l_q, l_j> > 0``).
* **AP@all**: ``AP = (1/R) * sum_{k : rel at rank k} P@k`` with ``P@k = (#relevant in the top k) / k`` and
  ``R`` the number of relevant items. Queries with ``R = 0`` are skipped (RSHNL) or count as 0 (SEHA),
  see ``empty_queries``.
* **AP@k** (``topk=k``): the same sum truncated to the top ``k`` positions and divided by the number of
  relevant items within the top ``k`` (DeepHash / CIRH / NSRMH convention); a query with none scores 0.
* **PR by Hamming radius** ``r = 0..K``: items with ``d <= r`` are retrieved; per query
  ``precision = TP / retrieved`` (queries that retrieve nothing are left out of the mean at that radius) and
  ``recall = TP / R`` (queries with ``R = 0`` are left out).
* **P@N**: fraction of relevant items among the top ``N`` ranked items, averaged over all queries.

Worked example (used in the tests): query ``[+1,+1]``, database ``[+1,+1]`` (relevant, d=0),
``[-1,-1]`` (relevant, d=2), ``[+1,-1]`` (not relevant, d=1). Ranking: 0, 2, 1; relevance 1, 0, 1;
``AP = (1/1 + 2/3) / 2 = 5/6``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

EMPTY_QUERY_MODES = ("skip", "zero")


def to_pm1(codes: np.ndarray, name: str = "codes") -> np.ndarray:
    """Return ``codes`` as an ``int8`` matrix of +/-1; accepts +/-1 or 0/1 input (sign is applied to reals)."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (items x bits) array, got shape {codes.shape}")
    if codes.dtype.kind == "b":
        return np.where(codes, 1, -1).astype(np.int8)
    values = np.unique(codes)
    if np.all(np.isin(values, (0, 1))) and not np.any(values == -1):
        return np.where(codes > 0, 1, -1).astype(np.int8)
    if np.all(np.isin(values, (-1, 1))):
        return codes.astype(np.int8)
    # Real-valued network outputs: sign with sign(0) := +1 so every bit is defined.
    return np.where(codes >= 0, 1, -1).astype(np.int8)


def hamming_distance(query_codes: np.ndarray, db_codes: np.ndarray) -> np.ndarray:
    """Hamming distances ``(n_query x n_db)`` as ``uint16`` from +/-1 codes (an exact float32 GEMM)."""
    q = to_pm1(query_codes, "query_codes").astype(np.float32)
    d = to_pm1(db_codes, "db_codes").astype(np.float32)
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"query codes have {q.shape[1]} bits but database codes have {d.shape[1]}")
    n_bits = q.shape[1]
    return np.rint((n_bits - q @ d.T) / 2).astype(np.uint16)


def _check_inputs(qc, dc, ql, dl):
    qc = to_pm1(qc, "query_codes")
    dc = to_pm1(dc, "db_codes")
    ql = np.asarray(ql)
    dl = np.asarray(dl)
    for name, lab in (("query_labels", ql), ("db_labels", dl)):
        if lab.ndim != 2:
            raise ValueError(f"{name} must be a 2-D multi-hot (items x classes) matrix, got shape {lab.shape}")
    if len(qc) != len(ql):
        raise ValueError(f"{len(qc)} query codes but {len(ql)} query label rows")
    if len(dc) != len(dl):
        raise ValueError(f"{len(dc)} database codes but {len(dl)} database label rows")
    if ql.shape[1] != dl.shape[1]:
        raise ValueError(f"query labels have {ql.shape[1]} columns but database labels {dl.shape[1]}")
    return qc, dc, ql.astype(np.float32), dl.astype(np.float32)


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _chunk_size(n_db: int, budget_bytes: int = 256 << 20) -> int:
    # a chunk holds a few n_db-wide arrays (distances, order, relevance, cumsum); keep them within budget
    return max(1, min(1024, budget_bytes // max(1, 16 * n_db)))


def _ranked_relevance(qc, dc, ql, dl, sl: slice) -> tuple[np.ndarray, np.ndarray]:
    """Relevance (bool) of the database in rank order for the queries of ``sl``, plus sorted distances."""
    dist = hamming_distance(qc[sl], dc)
    # stable sort on small unsigned integers is a radix sort in NumPy: O(n) and ties in index order
    order = np.argsort(dist, axis=1, kind="stable")
    rel = (ql[sl] @ dl.T) > 0
    return np.take_along_axis(rel, order, axis=1), np.take_along_axis(dist, order, axis=1)


def average_precisions(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    topk: int | None = None,
) -> np.ndarray:
    """Per-query AP (``NaN`` for queries without any relevant item when ``topk`` is None)."""
    qc, dc, ql, dl = _check_inputs(query_codes, db_codes, query_labels, db_labels)
    n_db = len(dc)
    k = n_db if topk is None else int(topk)
    if k <= 0:
        raise ValueError(f"topk must be a positive integer, got {topk}")
    k = min(k, n_db)
    out = np.empty(len(qc), dtype=np.float64)
    positions = np.arange(1, k + 1, dtype=np.float64)
    for sl in _chunks(len(qc), _chunk_size(n_db)):
        rel, _ = _ranked_relevance(qc, dc, ql, dl, sl)
        rel = rel[:, :k]
        hits = np.cumsum(rel, axis=1, dtype=np.float64)
        n_rel = hits[:, -1]
        ap_sum = np.sum(np.where(rel, hits / positions, 0.0), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = ap_sum / n_rel
        if topk is not None:
            ap = np.where(n_rel > 0, ap, 0.0)
        out[sl] = ap
    return out


def mean_average_precision(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    topk: int | None = None,
    empty_queries: str = "skip",
) -> float:
    """MAP@all (``topk=None``) or MAP@k of Hamming ranking; see the module docstring for exact definitions.

    ``query_codes``/``db_codes`` are ``(n x bits)`` arrays of +/-1 or 0/1; labels are ``(n x C)`` multi-hot
    matrices (one-hot for single-label data).
    ``empty_queries`` decides how queries with no relevant item count in MAP@all: ``"skip"`` or ``"zero"``.
    """
    if empty_queries not in EMPTY_QUERY_MODES:
        raise ValueError(f"empty_queries must be one of {EMPTY_QUERY_MODES}, got {empty_queries!r}")
    ap = average_precisions(query_codes, db_codes, query_labels, db_labels, topk)
    if empty_queries == "zero":
        ap = np.nan_to_num(ap, nan=0.0)
    valid = ~np.isnan(ap)
    return float(ap[valid].mean()) if valid.any() else 0.0


def precision_recall_by_radius(
    query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean precision and recall of retrieving everything within Hamming radius ``0..bits``."""
    qc, dc, ql, dl = _check_inputs(query_codes, db_codes, query_labels, db_labels)
    n_bits = qc.shape[1]
    n_q = len(qc)
    total = np.zeros((n_q, n_bits + 1))
    relevant = np.zeros((n_q, n_bits + 1))
    for sl in _chunks(n_q, _chunk_size(len(dc))):
        dist = hamming_distance(qc[sl], dc).astype(np.int64)
        rel = (ql[sl] @ dl.T) > 0
        rows = np.arange(sl.stop - sl.start)[:, None]
        flat = (rows * (n_bits + 1) + dist).ravel()
        size = (sl.stop - sl.start) * (n_bits + 1)
        total[sl] = np.bincount(flat, minlength=size).reshape(-1, n_bits + 1)
        relevant[sl] = np.bincount(flat, weights=rel.ravel().astype(np.float64), minlength=size).reshape(
            -1, n_bits + 1
        )
    retrieved = np.cumsum(total, axis=1)
    tp = np.cumsum(relevant, axis=1)
    n_rel = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(retrieved > 0, tp / retrieved, np.nan)
        recall = np.where(n_rel > 0, tp / n_rel, np.nan)
    return _nanmean0(precision), _nanmean0(recall)


def _nanmean0(a: np.ndarray) -> np.ndarray:
    count = np.sum(~np.isnan(a), axis=0)
    total = np.nansum(a, axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def precision_at_n(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    ns: Sequence[int],
) -> np.ndarray:
    """Mean precision within the top ``N`` ranked items for every ``N`` in ``ns`` (N capped at the database size)."""
    qc, dc, ql, dl = _check_inputs(query_codes, db_codes, query_labels, db_labels)
    ns_arr = np.minimum(np.asarray(list(ns), dtype=np.int64), len(dc))
    if np.any(ns_arr <= 0):
        raise ValueError(f"precision@N needs positive N values, got {list(ns)}")
    sums = np.zeros(len(ns_arr))
    for sl in _chunks(len(qc), _chunk_size(len(dc))):
        rel, _ = _ranked_relevance(qc, dc, ql, dl, sl)
        hits = np.cumsum(rel, axis=1, dtype=np.float64)
        sums += (hits[:, ns_arr - 1] / ns_arr).sum(axis=0)
    return sums / len(qc)


@dataclass
class RetrievalResult:
    """All metrics of one retrieval task (query modality -> database modality)."""

    map: float
    map_at_k: dict[int, float]
    pr_precision: np.ndarray
    pr_recall: np.ndarray
    p_at_n: np.ndarray
    p_at_n_n: np.ndarray


def evaluate_retrieval(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    topk: Sequence[int] = (),
    pn: Sequence[int] = (),
    empty_queries: str = "skip",
) -> RetrievalResult:
    """Compute MAP@all, MAP@k for each ``topk``, PR by radius and P@N for each ``pn`` in one call."""
    args = (query_codes, db_codes, query_labels, db_labels)
    precision, recall = precision_recall_by_radius(*args)
    return RetrievalResult(
        map=mean_average_precision(*args, empty_queries=empty_queries),
        map_at_k={int(k): mean_average_precision(*args, topk=int(k)) for k in topk},
        pr_precision=precision,
        pr_recall=recall,
        p_at_n=precision_at_n(*args, ns=pn) if len(pn) else np.zeros(0),
        p_at_n_n=np.minimum(np.asarray(list(pn), dtype=np.int64), len(db_codes)),
    )
