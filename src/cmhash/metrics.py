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

* **Tie-aware AP** (``tie_aware_map``; He, Cakir, Bargal, Sclaroff, "Hashing as Tie-Aware Learning to
  Rank", CVPR 2018): the expectation of AP@all over all orders of the items inside each group of equal
  distance, every order equally likely. It depends on per-distance counts only, not on the database order.

Implementation (exact, no approximation): codes are bit-packed into ``uint64`` words, distances are
``popcount(q XOR d)`` summed over words (``np.bitwise_count``), stored as ``uint8`` (``uint16`` above 255
bits). Ranking is a counting sort over the ``K + 1`` possible distances: NumPy's stable sort of keys of
at most 16 bits is a radix (counting) sort, which keeps ties in database index order. AP is then computed
from the ranked positions of the relevant items only. Queries are processed in chunks so the working
memory stays bounded (about 64 MB per thread); chunks run on a few threads (the NumPy kernels release
the GIL). ``backend="torch"`` computes the same numbers with torch on the tensors' device (a GPU during
training), using an exact float32 GEMM for distances and a stable sort.

Worked example (used in the tests): query ``[+1,+1]``, database ``[+1,+1]`` (relevant, d=0),
``[-1,-1]`` (relevant, d=2), ``[+1,-1]`` (not relevant, d=1). Ranking: 0, 2, 1; relevance 1, 0, 1;
``AP = (1/1 + 2/3) / 2 = 5/6``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

EMPTY_QUERY_MODES = ("skip", "zero")
BACKENDS = ("numpy", "torch")
MAX_THREADS = 8
# working memory of one query chunk per thread (distances, ranking, relevance)
CHUNK_BUDGET_BYTES = 64 << 20


def _as_numpy(a: Any) -> np.ndarray:
    """NumPy view of an array-like; torch tensors (any device) are copied to the host."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def code_bits(codes: Any, name: str = "codes") -> np.ndarray:
    """Boolean bit matrix (True = +1) of ``(items x bits)`` codes given as +/-1, 0/1, bool or reals.

    0/1 input maps 1 -> +1; anything else is signed with ``sign(0) := +1`` so every bit is defined.
    """
    codes = _as_numpy(codes)
    if codes.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (items x bits) array, got shape {codes.shape}")
    if codes.dtype.kind == "b":
        return codes
    if np.all((codes == 0) | (codes == 1)):
        return codes > 0
    return codes >= 0


def to_pm1(codes: Any, name: str = "codes") -> np.ndarray:
    """Return ``codes`` as an ``int8`` matrix of +/-1; accepts +/-1 or 0/1 input (sign is applied to reals)."""
    return np.where(code_bits(codes, name), 1, -1).astype(np.int8)


def _pack_rows(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean ``(n x m)`` matrix into ``(n x ceil(m/64))`` ``uint64`` words (zero padded)."""
    packed = np.packbits(bits, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad or packed.shape[1] == 0:
        packed = np.pad(packed, ((0, 0), (0, pad if packed.shape[1] else 8)))
    return np.ascontiguousarray(packed).view(np.uint64)


def _pack_labels(member: np.ndarray) -> np.ndarray:
    """Pack boolean label memberships into the narrowest words: one ``uint8``/``uint16``/``uint32`` word up
    to 8/16/32 classes (NUS-WIDE's 10 -> ``uint16``), ``uint64`` words above. Narrow words make the
    relevance test (any shared bit) move a quarter to an eighth of the memory of ``uint64`` words."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        width = np.dtype(dtype).itemsize
        if member.shape[1] <= 8 * width:
            packed = np.packbits(member, axis=1)
            packed = np.pad(packed, ((0, 0), (0, width - packed.shape[1])))
            return np.ascontiguousarray(packed).view(dtype)
    return _pack_rows(member)


def pack_codes(codes: Any, name: str = "codes") -> np.ndarray:
    """Bit-packed codes: ``(items x ceil(bits/64))`` ``uint64`` words; popcount of XOR = Hamming distance."""
    return _pack_rows(code_bits(codes, name))


class _Ranker:
    """Packed codes and labels of one query set / database pair, ranking chunks of queries."""

    def __init__(self, query_codes, db_codes, query_labels, db_labels):
        qb = code_bits(query_codes, "query_codes")
        db = code_bits(db_codes, "db_codes")
        ql = _as_numpy(query_labels)
        dl = _as_numpy(db_labels)
        for name, lab in (("query_labels", ql), ("db_labels", dl)):
            if lab.ndim != 2:
                raise ValueError(f"{name} must be a 2-D multi-hot (items x classes) matrix, got shape {lab.shape}")
        if qb.shape[1] != db.shape[1]:
            raise ValueError(f"query codes have {qb.shape[1]} bits but database codes have {db.shape[1]}")
        if len(qb) != len(ql):
            raise ValueError(f"{len(qb)} query codes but {len(ql)} query label rows")
        if len(db) != len(dl):
            raise ValueError(f"{len(db)} database codes but {len(dl)} database label rows")
        if ql.shape[1] != dl.shape[1]:
            raise ValueError(f"query labels have {ql.shape[1]} columns but database labels {dl.shape[1]}")
        self.n_bits = qb.shape[1]
        self.n_query = len(qb)
        self.n_db = len(db)
        self.query_words = _pack_rows(qb)
        self.db_words = np.ascontiguousarray(_pack_rows(db).T)  # word-major: one contiguous row per word
        # relevance = at least one shared label; labels > 0 are memberships
        self.query_label_words = _pack_labels(ql > 0)
        self.db_label_words = np.ascontiguousarray(_pack_labels(dl > 0).T)
        self.dist_dtype = np.uint8 if self.n_bits <= 255 else np.uint16

    def chunk_size(self, bytes_per_item: int = 20) -> int:
        return max(1, min(1024, CHUNK_BUDGET_BYTES // max(1, bytes_per_item * self.n_db)))

    def distances(self, rows: slice) -> np.ndarray:
        """Hamming distances of the queries ``rows`` to the whole database (``uint8``/``uint16``)."""
        q = self.query_words[rows]
        out = np.empty((len(q), self.n_db), dtype=self.dist_dtype)
        if self.n_db == 0:
            return out
        xor = np.empty(self.n_db, dtype=np.uint64)
        count = np.empty(self.n_db, dtype=np.uint8)
        for i in range(len(q)):
            np.bitwise_xor(self.db_words[0], q[i, 0], out=xor)
            np.bitwise_count(xor, out=count)
            out[i] = count
            for w in range(1, q.shape[1]):
                np.bitwise_xor(self.db_words[w], q[i, w], out=xor)
                np.bitwise_count(xor, out=count)
                np.add(out[i], count, out=out[i])
        return out

    def relevance(self, rows: slice) -> np.ndarray:
        """``rel[i, j]``: query ``rows[i]`` and database item ``j`` share at least one label."""
        q = self.query_label_words[rows]
        shared = q[:, 0, None] & self.db_label_words[0][None, :]
        for w in range(1, q.shape[1]):
            shared |= q[:, w, None] & self.db_label_words[w][None, :]
        return shared != 0

    def relevant_positions(self, rows: slice) -> list[np.ndarray]:
        """0-based ranks (ascending) of the relevant items of every query in ``rows``.

        The stable sort of ``uint8``/``uint16`` keys is NumPy's radix sort: a counting sort over the
        ``K + 1`` distances that keeps equal distances in database index order.
        """
        dist = self.distances(rows)
        rel = self.relevance(rows)
        # one query at a time: a row's int64 order stays in cache, a whole chunk's would not (2x faster)
        return [np.flatnonzero(r[np.argsort(d, kind="stable")]) for d, r in zip(dist, rel)]


def _threads(threads: int | None) -> int:
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be a positive integer, got {threads}")
        return int(threads)
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        available = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, available))


def _per_chunk(n: int, size: int, fn: Callable[[slice], np.ndarray], threads: int | None) -> np.ndarray:
    """Concatenate ``fn(chunk)`` over query chunks, on a few threads (NumPy's kernels release the GIL)."""
    slices = [slice(s, min(n, s + size)) for s in range(0, n, size)]
    workers = min(_threads(threads), len(slices))
    if workers <= 1:
        parts = [fn(sl) for sl in slices]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(fn, slices))
    return np.concatenate(parts) if parts else np.zeros(0)


def hamming_distance(query_codes: Any, db_codes: Any) -> np.ndarray:
    """Hamming distances ``(n_query x n_db)`` as ``uint16`` (XOR + popcount of bit-packed codes)."""
    qb = code_bits(query_codes, "query_codes")
    db = code_bits(db_codes, "db_codes")
    if qb.shape[1] != db.shape[1]:
        raise ValueError(f"query codes have {qb.shape[1]} bits but database codes have {db.shape[1]}")
    ranker = _Ranker(qb, db, np.zeros((len(qb), 1)), np.zeros((len(db), 1)))
    return ranker.distances(slice(None)).astype(np.uint16)


def _check_topk(topk: int | None, n_db: int) -> int:
    if topk is None:
        return n_db
    if int(topk) <= 0:
        raise ValueError(f"topk must be a positive integer, got {topk}")
    return min(int(topk), n_db)


def _ranked_stats(
    ranker: _Ranker, topks: Sequence[int | None], ns: np.ndarray, threads: int | None
) -> np.ndarray:
    """One ranking pass, per query: AP for every entry of ``topks`` (``None`` = @all, ``NaN`` without a
    relevant item; @k gives 0 there) followed by precision@N for every ``N`` in ``ns``. ``n_query x (T + len(ns))``."""
    ks = [_check_topk(t, ranker.n_db) for t in topks]
    ranks = np.arange(1, max([*ks, 1]) + 1, dtype=np.float64)  # ranks[p] = p + 1
    inv_ranks = 1.0 / ranks
    n_out = len(ks) + len(ns)

    def chunk_stats(rows: slice) -> np.ndarray:
        positions = ranker.relevant_positions(rows)
        out = np.empty((len(positions), n_out), dtype=np.float64)
        for r, pos in enumerate(positions):
            for j, (topk, k) in enumerate(zip(topks, ks)):
                n_rel = int(np.searchsorted(pos, k))
                if n_rel == 0:
                    out[r, j] = np.nan if topk is None else 0.0
                else:  # sum over relevant ranks of P@rank = hits / rank, hits = 1..n_rel
                    # not np.dot: BLAS would start its own threads inside these worker threads (oversubscribed,
                    # 25x slower on a busy machine) and round differently depending on its thread count
                    out[r, j] = float(np.add.reduce(ranks[:n_rel] * inv_ranks[pos[:n_rel]])) / n_rel
            # relevant items among the top N = relevant ranks below N
            out[r, len(ks):] = np.searchsorted(pos, ns) / ns
        return out

    stats = _per_chunk(ranker.n_query, ranker.chunk_size(), chunk_stats, threads)
    return stats.reshape(ranker.n_query, n_out)


def average_precisions(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    topk: int | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Per-query AP (``NaN`` for queries without any relevant item when ``topk`` is None)."""
    ranker = _Ranker(query_codes, db_codes, query_labels, db_labels)
    return _ranked_stats(ranker, [topk], np.zeros(0, dtype=np.int64), threads)[:, 0]


def _reduce_map(ap: np.ndarray, empty_queries: str) -> float:
    if empty_queries == "zero":
        ap = np.nan_to_num(ap, nan=0.0)
    valid = ~np.isnan(ap)
    return float(ap[valid].mean()) if valid.any() else 0.0


def _check_mode(empty_queries: str, backend: str) -> None:
    if empty_queries not in EMPTY_QUERY_MODES:
        raise ValueError(f"empty_queries must be one of {EMPTY_QUERY_MODES}, got {empty_queries!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def mean_average_precision(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    topk: int | None = None,
    empty_queries: str = "skip",
    backend: str = "numpy",
    threads: int | None = None,
) -> float:
    """MAP@all (``topk=None``) or MAP@k of Hamming ranking; see the module docstring for exact definitions.

    ``query_codes``/``db_codes`` are ``(n x bits)`` arrays of +/-1 or 0/1; labels are ``(n x C)`` multi-hot
    matrices (one-hot for single-label data). Ties in distance are ranked in database index order.
    ``empty_queries`` decides how queries with no relevant item count in MAP@all: ``"skip"`` or ``"zero"``.
    ``backend="torch"`` computes on the device of the given tensors (e.g. the GPU during training) and
    gives the same value; ``threads`` caps the NumPy backend's threads (default: available cores, at most 8).
    """
    _check_mode(empty_queries, backend)
    if backend == "torch":
        ap = torch_average_precisions(query_codes, db_codes, query_labels, db_labels, topk)
    else:
        ap = average_precisions(query_codes, db_codes, query_labels, db_labels, topk, threads=threads)
    return _reduce_map(ap, empty_queries)


def tie_aware_average_precisions(
    query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, threads: int | None = None
) -> np.ndarray:
    """Per-query tie-aware AP@all (``NaN`` for queries without relevant items); see ``tie_aware_map``."""
    ranker = _Ranker(query_codes, db_codes, query_labels, db_labels)
    n_dist = ranker.n_bits + 1
    # harmonic numbers H[m] = sum_{i<=m} 1/i in extended precision: group sums are differences of them
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, ranker.n_db + 1, dtype=np.longdouble))])

    def chunk_ap(rows: slice) -> np.ndarray:
        dist = ranker.distances(rows).astype(np.int64)
        rel = ranker.relevance(rows)
        n_rows = dist.shape[0]
        flat = (np.arange(n_rows)[:, None] * n_dist + dist).ravel()
        n = np.bincount(flat, minlength=n_rows * n_dist).reshape(n_rows, n_dist).astype(np.longdouble)
        r = np.bincount(flat[rel.ravel()], minlength=n_rows * n_dist).reshape(n_rows, n_dist).astype(np.longdouble)
        n_before = np.cumsum(n, axis=1) - n
        r_before = np.cumsum(r, axis=1) - r
        n_idx = n_before.astype(np.int64)
        s1 = harmonic[n_idx + n.astype(np.int64)] - harmonic[n_idx]  # sum_{j=1..n} 1/(N0 + j)
        s2 = n - (n_before + 1) * s1  # sum_{j=1..n} (j - 1)/(N0 + j)
        # a relevant item at group position j has, in expectation, (j-1)(r-1)/(n-1) relevant items before it
        # inside the group (hypergeometric); position j is relevant with probability r/n
        with np.errstate(invalid="ignore", divide="ignore"):
            inner = np.where(n > 1, (r - 1) / (n - 1), 0.0)
            group = np.where(r > 0, (r / n) * ((r_before + 1) * s1 + inner * s2), 0.0)
            total = r.sum(axis=1)
            ap = group.sum(axis=1) / total
        return np.where(total > 0, ap, np.nan).astype(np.float64)

    return _per_chunk(ranker.n_query, ranker.chunk_size(bytes_per_item=32), chunk_ap, threads)


def tie_aware_map(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    empty_queries: str = "skip",
    threads: int | None = None,
) -> float:
    """Tie-aware MAP@all (He et al., CVPR 2018): the expected AP over random orders inside equal distances.

    Unlike ``mean_average_precision`` it does not depend on how ties are broken, so it is invariant to
    permuting the database. Example: one query, two items at the same distance, one relevant -> 3/4
    (the mean of 1 and 1/2 over the two orders).
    """
    _check_mode(empty_queries, "numpy")
    return _reduce_map(tie_aware_average_precisions(query_codes, db_codes, query_labels, db_labels, threads), empty_queries)


def _torch_pm1(codes: Any, name: str, device: Any):
    import torch

    x = codes if isinstance(codes, torch.Tensor) else torch.as_tensor(np.asarray(codes))
    x = x.to(device)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (items x bits) array, got shape {tuple(x.shape)}")
    bits = x if x.dtype == torch.bool else (x > 0 if bool(((x == 0) | (x == 1)).all()) else x >= 0)
    return bits.to(torch.float32) * 2 - 1


def torch_average_precisions(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    topk: int | None = None,
    budget_bytes: int = 512 << 20,
) -> np.ndarray:
    """Per-query AP computed with torch on the device of ``query_codes`` (CPU for NumPy input).

    Same definition and tie order as ``average_precisions``: distances from an exact float32 GEMM of
    +/-1 codes (integers below 2**24), then a stable sort, so ties stay in database index order. Not
    bit-for-bit identical in the last float digits (summation order), equal to 1e-12.
    """
    import torch

    device = query_codes.device if isinstance(query_codes, torch.Tensor) else torch.device("cpu")
    q = _torch_pm1(query_codes, "query_codes", device)
    d = _torch_pm1(db_codes, "db_codes", device)
    ql = torch.as_tensor(_as_numpy(query_labels) if not isinstance(query_labels, torch.Tensor) else query_labels)
    dl = torch.as_tensor(_as_numpy(db_labels) if not isinstance(db_labels, torch.Tensor) else db_labels)
    ql = (ql.to(device) > 0).to(torch.float32)
    dl = (dl.to(device) > 0).to(torch.float32)
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"query codes have {q.shape[1]} bits but database codes have {d.shape[1]}")
    if len(q) != len(ql) or len(d) != len(dl) or ql.shape[1] != dl.shape[1]:
        raise ValueError(
            f"codes and labels do not match: {len(q)} query codes / {len(ql)} query label rows, "
            f"{len(d)} database codes / {len(dl)} database label rows, {ql.shape[1]} vs {dl.shape[1]} classes"
        )
    n_db = len(d)
    k = _check_topk(topk, n_db)
    ranks = torch.arange(1, k + 1, device=device, dtype=torch.float64)
    chunk = max(1, min(4096, budget_bytes // max(1, 40 * n_db)))
    out = torch.empty(len(q), dtype=torch.float64, device=device)
    n_bits = q.shape[1]
    for s in range(0, len(q), chunk):
        dist = torch.round((n_bits - q[s : s + chunk] @ d.T) * 0.5).to(torch.int32)
        order = torch.sort(dist, dim=1, stable=True).indices[:, :k]
        rel = torch.gather((ql[s : s + chunk] @ dl.T) > 0, 1, order)
        # integer cumsum: exact, and allowed under torch.use_deterministic_algorithms on CUDA (float is not)
        hits = torch.cumsum(rel, dim=1, dtype=torch.int64).to(torch.float64)
        n_rel = hits[:, -1] if k > 0 else torch.zeros(len(rel), dtype=torch.float64, device=device)
        ap_sum = torch.where(rel, hits / ranks, torch.zeros((), dtype=torch.float64, device=device)).sum(dim=1)
        empty = torch.full_like(n_rel, float("nan") if topk is None else 0.0)
        out[s : s + chunk] = torch.where(n_rel > 0, ap_sum / n_rel.clamp(min=1), empty)
    return out.cpu().numpy()


def precision_recall_by_radius(
    query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean precision and recall of retrieving everything within Hamming radius ``0..bits``.

    Queries that retrieve nothing at a radius (precision 0/0) or have no relevant item (recall 0/0) are left
    out of that radius's mean; a radius at which no query retrieves anything is NaN (a plot skips it).
    """
    return _precision_recall(_Ranker(query_codes, db_codes, query_labels, db_labels), threads)


def _precision_recall(ranker: _Ranker, threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    n_dist = ranker.n_bits + 1

    def chunk_counts(rows: slice) -> np.ndarray:
        dist = ranker.distances(rows).astype(np.int64)
        rel = ranker.relevance(rows)
        n_rows = dist.shape[0]
        flat = (np.arange(n_rows)[:, None] * n_dist + dist).ravel()
        total = np.bincount(flat, minlength=n_rows * n_dist).reshape(n_rows, n_dist)
        relevant = np.bincount(flat[rel.ravel()], minlength=n_rows * n_dist).reshape(n_rows, n_dist)
        return np.stack([total, relevant], axis=1).astype(np.float64)

    counts = _per_chunk(ranker.n_query, ranker.chunk_size(bytes_per_item=24), chunk_counts, threads)
    counts = counts.reshape(ranker.n_query, 2, n_dist)
    retrieved = np.cumsum(counts[:, 0], axis=1)
    tp = np.cumsum(counts[:, 1], axis=1)
    n_rel = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(retrieved > 0, tp / retrieved, np.nan)
        recall = np.where(n_rel > 0, tp / n_rel, np.nan)
    return _mean_defined(precision), _mean_defined(recall)


def _mean_defined(a: np.ndarray) -> np.ndarray:
    """Column means over the non-NaN entries; NaN where a column has none."""
    count = np.sum(~np.isnan(a), axis=0)
    total = np.nansum(a, axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _check_ns(ns: Sequence[int], n_db: int) -> np.ndarray:
    ns_arr = np.minimum(np.asarray(list(ns), dtype=np.int64), n_db)
    if np.any(ns_arr <= 0):
        raise ValueError(f"precision@N needs positive N values, got {list(ns)}")
    return ns_arr


def precision_at_n(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    ns: Sequence[int],
    threads: int | None = None,
) -> np.ndarray:
    """Mean precision within the top ``N`` ranked items for every ``N`` in ``ns`` (N capped at the database size)."""
    ranker = _Ranker(query_codes, db_codes, query_labels, db_labels)
    return _ranked_stats(ranker, [], _check_ns(ns, ranker.n_db), threads).mean(axis=0)


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
    threads: int | None = None,
) -> RetrievalResult:
    """Compute MAP@all, MAP@k for each ``topk``, PR by radius and P@N for each ``pn`` in one call: the codes are
    packed and the database ranked once for all of them (same values as the separate functions). ``threads``:
    worker threads over query chunks (default: up to 8 of the available CPUs; the values do not depend on it)."""
    _check_mode(empty_queries, "numpy")
    ranker = _Ranker(query_codes, db_codes, query_labels, db_labels)
    ks = [int(k) for k in topk]
    ns = _check_ns(pn, ranker.n_db)
    stats = _ranked_stats(ranker, [None, *ks], ns, threads=threads)
    precision, recall = _precision_recall(ranker, threads=threads)
    return RetrievalResult(
        map=_reduce_map(stats[:, 0], empty_queries),
        map_at_k={k: _reduce_map(stats[:, 1 + i], "skip") for i, k in enumerate(ks)},
        pr_precision=precision,
        pr_recall=recall,
        p_at_n=stats[:, 1 + len(ks) :].mean(axis=0) if len(ns) else np.zeros(0),
        p_at_n_n=ns,
    )
