"""Retrieval metrics against hand-computed cases and a brute-force definition."""

import numpy as np
import pytest

from cmhash import metrics


def brute_force_ap(q, db, ql, dl, topk=None):
    """Straight from the definition: rank by (Hamming distance, database index)."""
    aps = []
    for i in range(len(q)):
        dist = [int(np.sum(q[i] != db[j])) for j in range(len(db))]
        order = sorted(range(len(db)), key=lambda j: (dist[j], j))
        if topk is not None:
            order = order[:topk]
        hits, total = 0, 0.0
        for rank, j in enumerate(order, start=1):
            if np.dot(ql[i], dl[j]) > 0:
                hits += 1
                total += hits / rank
        aps.append(total / hits if hits else (0.0 if topk is not None else np.nan))
    return np.array(aps)


def test_hand_computed_map():
    q = np.array([[1, 1]])
    db = np.array([[1, 1], [-1, -1], [1, -1]])
    ql = np.array([[1, 0]])
    dl = np.array([[1, 0], [1, 0], [0, 1]])
    assert metrics.mean_average_precision(q, db, ql, dl) == pytest.approx(5 / 6)


def test_ties_follow_database_index_order():
    q = np.array([[1, 1]])
    ql = np.array([[1, 0]])
    # both items at distance 1; the irrelevant one has the lower index -> AP = 1/2
    db = np.array([[1, -1], [-1, 1]])
    assert metrics.mean_average_precision(q, db, ql, np.array([[0, 1], [1, 0]])) == pytest.approx(0.5)
    assert metrics.mean_average_precision(q, db, ql, np.array([[1, 0], [0, 1]])) == pytest.approx(1.0)


def test_zero_one_codes_equal_pm1_codes():
    rng = np.random.default_rng(1)
    q = rng.integers(0, 2, (7, 16))
    db = rng.integers(0, 2, (30, 16))
    ql = np.eye(3)[rng.integers(0, 3, 7)]
    dl = np.eye(3)[rng.integers(0, 3, 30)]
    assert metrics.mean_average_precision(q, db, ql, dl) == pytest.approx(
        metrics.mean_average_precision(2 * q - 1, 2 * db - 1, ql, dl)
    )


@pytest.mark.parametrize("bits,multilabel,topk", [(4, False, None), (8, True, None), (16, True, 10), (6, False, 5)])
def test_map_equals_brute_force(bits, multilabel, topk):
    rng = np.random.default_rng(bits)
    nq, ndb, c = 25, 60, 5
    q = rng.choice([-1, 1], (nq, bits))
    db = rng.choice([-1, 1], (ndb, bits))  # few bits -> many ties
    if multilabel:
        ql = (rng.random((nq, c)) < 0.3).astype(np.uint8)
        dl = (rng.random((ndb, c)) < 0.3).astype(np.uint8)
    else:
        ql = np.eye(c, dtype=np.uint8)[rng.integers(0, c, nq)]
        dl = np.eye(c, dtype=np.uint8)[rng.integers(0, c, ndb)]
    fast = metrics.average_precisions(q, db, ql, dl, topk=topk)
    slow = brute_force_ap(q, db, ql, dl, topk=topk)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    expected = np.nanmean(slow) if topk is None else slow.mean()
    assert metrics.mean_average_precision(q, db, ql, dl, topk=topk) == pytest.approx(expected)


def test_empty_queries_skip_or_zero():
    q = np.array([[1, 1], [1, -1]])
    db = np.array([[1, 1], [-1, -1]])
    ql = np.array([[1, 0], [0, 1]])  # second query has no relevant item
    dl = np.array([[1, 0], [1, 0]])
    assert metrics.mean_average_precision(q, db, ql, dl, empty_queries="skip") == pytest.approx(1.0)
    assert metrics.mean_average_precision(q, db, ql, dl, empty_queries="zero") == pytest.approx(0.5)


def test_perfect_codes_give_map_one():
    labels = np.eye(4, dtype=np.uint8)[np.repeat(np.arange(4), 5)]
    codes = np.repeat(np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]), 5, axis=0)
    assert metrics.mean_average_precision(codes, codes, labels, labels) == pytest.approx(1.0)


def test_precision_recall_by_radius_hand_case():
    q = np.array([[1, 1]])
    db = np.array([[1, 1], [-1, -1], [1, -1]])
    ql = np.array([[1, 0]])
    dl = np.array([[1, 0], [1, 0], [0, 1]])
    precision, recall = metrics.precision_recall_by_radius(q, db, ql, dl)
    # radius 0: {0} -> P 1, R 1/2; radius 1: {0, 2} -> P 1/2, R 1/2; radius 2: all -> P 2/3, R 1
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])


def test_precision_at_n_hand_case():
    q = np.array([[1, 1]])
    db = np.array([[1, 1], [-1, -1], [1, -1]])
    ql = np.array([[1, 0]])
    dl = np.array([[1, 0], [1, 0], [0, 1]])
    np.testing.assert_allclose(metrics.precision_at_n(q, db, ql, dl, [1, 2, 3, 10]), [1.0, 0.5, 2 / 3, 2 / 3])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="bits"):
        metrics.mean_average_precision(np.ones((2, 4)), np.ones((3, 8)), np.ones((2, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="label rows"):
        metrics.mean_average_precision(np.ones((2, 4)), np.ones((3, 4)), np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="2-D multi-hot"):
        metrics.mean_average_precision(np.ones((2, 4)), np.ones((3, 4)), np.ones(2), np.ones((3, 2)))
