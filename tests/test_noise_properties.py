"""Property-based tests of the noise generator (hypothesis)."""

from decimal import Decimal

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cmhash.noise import make_noisy_labels

label_sets = st.tuples(st.integers(2, 12), st.integers(1, 200), st.integers(0, 2**31 - 1)).map(
    lambda t: np.eye(t[0], dtype=np.uint8)[np.random.default_rng(t[2]).integers(0, t[0], t[1])]
)
rates = st.floats(0.0, 0.99, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(labels=label_sets, rate=rates, seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["sym", "flip"]))
@example(labels=np.eye(2, dtype=np.uint8)[[1, 1, 1]], rate=1 / 3, seed=0, kind="sym")  # 1/3 * 3: 0 rows, not 1
def test_noise_invariants(labels, rate, seed, kind):
    out = make_noisy_labels(labels, rate, seed, kind)
    n = len(labels)
    # floor(rate * N) of the rate's decimal value (cmhash.noise.n_noisy_rows), computed here with Decimal: the
    # float product can round across an integer (hypothesis found 0.3333333333333333 * 3 == 1.0, decimally < 1)
    assert out.selected.sum() == int((Decimal(repr(float(rate))) * n) // 1)
    # rows that were not selected are untouched; every row stays one-hot
    np.testing.assert_array_equal(out.noisy[~out.selected], labels[~out.selected])
    assert np.all(out.noisy.sum(axis=1) == 1)
    assert np.array_equal(out.changed, (out.noisy != labels).any(axis=1))
    assert not np.any(out.changed & ~out.selected)
    if kind == "flip":
        assert np.array_equal(out.changed, out.selected)
    again = make_noisy_labels(labels, rate, seed, kind)
    np.testing.assert_array_equal(out.noisy, again.noisy)
