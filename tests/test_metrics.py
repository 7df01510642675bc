"""Retrieval metrics against hand-computed cases and a brute-force definition."""

import numpy as np
import pytest

from cmhash import metrics


def brute_force_ap(q, db, ql, dl, topk=None, tie_key=None):
    """Straight from the definition: rank by (Hamming distance, database index) or (distance, tie_key)."""
    tie_key = range(len(db)) if tie_key is None else tie_key
    aps = []
    for i in range(len(q)):
        dist = [int(np.sum(q[i] != db[j])) for j in range(len(db))]
        order = sorted(range(len(db)), key=lambda j: (dist[j], tie_key[j]))
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


def test_precision_at_radius_where_nothing_is_retrieved_is_undefined():
    q = np.array([[1, 1]])
    db = np.array([[-1, -1], [1, -1]])  # distances 2 and 1: nothing within radius 0
    precision, recall = metrics.precision_recall_by_radius(q, db, np.array([[1, 0]]), np.array([[1, 0], [0, 1]]))
    assert np.isnan(precision[0]) and recall[0] == 0.0
    np.testing.assert_allclose(precision[1:], [0.0, 0.5])
    np.testing.assert_allclose(recall[1:], [0.0, 1.0])


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


# --- fast implementation: properties, tie-aware variant, torch backend --------------------------------------

import itertools  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def retrieval_case(draw):
    """Small query/database sets with few bits (many ties) and possibly multi-label, possibly empty queries."""
    seed = draw(st.integers(0, 2**32 - 1))
    bits = draw(st.sampled_from([1, 3, 8, 64, 65, 130]))
    nq, ndb, c = draw(st.integers(1, 6)), draw(st.integers(1, 25)), draw(st.integers(1, 4))
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array([-1, 1], dtype=np.int8), (nq, bits))
    db = rng.choice(np.array([-1, 1], dtype=np.int8), (ndb, bits))
    density = draw(st.sampled_from([0.2, 0.5]))
    ql = (rng.random((nq, c)) < density).astype(np.uint8)
    dl = (rng.random((ndb, c)) < density).astype(np.uint8)
    return q, db, ql, dl


@settings(max_examples=60, deadline=None)
@given(retrieval_case(), st.sampled_from([None, 1, 5, 1000]))
def test_property_map_equals_definition_and_is_a_fraction(case, topk):
    q, db, ql, dl = case
    fast = metrics.average_precisions(q, db, ql, dl, topk=topk)
    slow = brute_force_ap(q, db, ql, dl, topk=topk)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    value = metrics.mean_average_precision(q, db, ql, dl, topk=topk)
    assert 0.0 <= value <= 1.0


@settings(max_examples=40, deadline=None)
@given(retrieval_case(), st.integers(0, 2**32 - 1))
def test_property_database_permutation_with_consistent_ties(case, seed):
    """A permuted database scores like the original ranked with ties broken by the new positions."""
    q, db, ql, dl = case
    perm = np.random.default_rng(seed).permutation(len(db))
    new_position = np.argsort(perm)  # item j of the original database sits at new_position[j]
    np.testing.assert_allclose(metrics.average_precisions(q, db[perm], ql, dl[perm]),
                               brute_force_ap(q, db, ql, dl, tie_key=new_position), rtol=0, atol=1e-12)
    # the tie-aware MAP does not depend on the database order at all
    assert metrics.tie_aware_map(q, db[perm], ql, dl[perm]) == pytest.approx(
        metrics.tie_aware_map(q, db, ql, dl), abs=1e-12
    )


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.sampled_from([4, 16, 100]))
def test_property_perfect_codes_score_one(n_classes, per_class, bits):
    codes = np.where(np.random.default_rng(bits).random((n_classes, bits)) < 0.5, 1, -1)
    codes[:, 0] = 1  # distinct rows: force at least one differing bit per class pair
    codes[np.arange(n_classes), np.arange(n_classes) % bits] *= -1
    if len({tuple(r) for r in codes}) < n_classes:
        return
    labels = np.eye(n_classes, dtype=np.uint8)[np.repeat(np.arange(n_classes), per_class)]
    items = np.repeat(codes, per_class, axis=0)
    assert metrics.mean_average_precision(items, items, labels, labels) == pytest.approx(1.0)
    assert metrics.tie_aware_map(items, items, labels, labels) == pytest.approx(1.0)


def brute_force_tie_aware_ap(q, db, ql, dl):
    """Mean AP over every order of the items inside each equal-distance group (tiny inputs only)."""
    aps = []
    for i in range(len(q)):
        dist = np.sum(q[i] != db, axis=1)
        groups = [list(np.flatnonzero(dist == t)) for t in sorted(set(dist.tolist()))]
        values = []
        for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
            ranking = [j for g in orders for j in g]
            rel = [np.dot(ql[i], dl[j]) > 0 for j in ranking]
            hits = np.cumsum(rel)
            if hits[-1] == 0:
                break
            values.append(sum(h / (k + 1) for k, (h, r) in enumerate(zip(hits, rel)) if r) / hits[-1])
        aps.append(np.mean(values) if values else np.nan)
    return np.array(aps)


def test_tie_aware_hand_computed():
    q = np.array([[1, 1]])
    ql = np.array([[1, 0]])
    # two items tied at distance 1, one relevant: orders give AP 1 and 1/2 -> 3/4, whatever the index order
    db = np.array([[1, -1], [-1, 1]])
    assert metrics.tie_aware_map(q, db, ql, np.array([[0, 1], [1, 0]])) == pytest.approx(0.75)
    assert metrics.tie_aware_map(q, db, ql, np.array([[1, 0], [0, 1]])) == pytest.approx(0.75)
    # three tied items, two relevant: orders RRI, RIR, IRR give 1, 5/6, 7/12 -> 29/36
    db3 = np.array([[1, -1], [-1, 1], [1, -1]])
    assert metrics.tie_aware_map(q, db3, ql, np.array([[1, 0], [0, 1], [1, 0]])) == pytest.approx(29 / 36)
    # no ties: equal to the ordinary AP (the worked example, 5/6)
    db_ex = np.array([[1, 1], [-1, -1], [1, -1]])
    dl_ex = np.array([[1, 0], [1, 0], [0, 1]])
    assert metrics.tie_aware_map(q, db_ex, ql, dl_ex) == pytest.approx(5 / 6)


@pytest.mark.parametrize("seed", range(4))
def test_tie_aware_equals_enumeration_of_orders(seed):
    rng = np.random.default_rng(seed)
    q = rng.choice([-1, 1], (3, 3))
    db = rng.choice([-1, 1], (7, 3))
    ql = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, 3)]
    dl = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, 7)]
    np.testing.assert_allclose(metrics.tie_aware_average_precisions(q, db, ql, dl),
                               brute_force_tie_aware_ap(q, db, ql, dl), rtol=0, atol=1e-12)


@pytest.mark.parametrize("topk", [None, 7])
def test_torch_backend_equals_numpy(topk):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    q = rng.choice([-1, 1], (20, 6))
    db = rng.choice([-1, 1], (50, 6))
    ql = (rng.random((20, 4)) < 0.3).astype(np.uint8)
    dl = (rng.random((50, 4)) < 0.3).astype(np.uint8)
    np.testing.assert_allclose(metrics.torch_average_precisions(q, db, ql, dl, topk=topk),
                               brute_force_ap(q, db, ql, dl, topk=topk), rtol=0, atol=1e-12)
    as_tensors = [torch.as_tensor(a) for a in (q, db, ql, dl)]
    assert metrics.mean_average_precision(*as_tensors, topk=topk, backend="torch") == pytest.approx(
        metrics.mean_average_precision(q, db, ql, dl, topk=topk), abs=1e-12
    )


def test_threads_and_chunks_do_not_change_results(monkeypatch):
    rng = np.random.default_rng(5)
    q = rng.choice([-1, 1], (33, 12))
    db = rng.choice([-1, 1], (80, 12))
    ql = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, 33)]
    dl = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, 80)]
    one = metrics.average_precisions(q, db, ql, dl, threads=1)
    monkeypatch.setattr(metrics, "CHUNK_BUDGET_BYTES", 1)  # one query per chunk
    np.testing.assert_array_equal(metrics.average_precisions(q, db, ql, dl, threads=3), one)


def test_hamming_distance_packed_matches_definition():
    rng = np.random.default_rng(7)
    q = rng.choice([-1, 1], (5, 130))  # three 64-bit words, the last one padded
    db = rng.choice([-1, 1], (9, 130))
    expected = (q[:, None, :] != db[None, :, :]).sum(axis=2)
    np.testing.assert_array_equal(metrics.hamming_distance(q, db), expected)
