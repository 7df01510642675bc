"""Tests for cmhash.noise: the sym/flip recipes, determinism, validation and the file round trip."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from cmhash.noise import (
    NoisyLabels,
    make_noisy_labels,
    n_noisy_rows,
    read_noisy_labels,
    write_noisy_labels,
)
from cmhash.store import SchemaError, atomic_h5, rate_str


def single_label(n: int, c: int, seed: int = 0) -> np.ndarray:
    classes = np.random.default_rng(seed).integers(0, c, size=n)
    out = np.zeros((n, c), dtype=np.uint8)
    out[np.arange(n), classes] = 1
    return out


def multi_label(n: int, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((n, c), dtype=np.uint8)
    for i in range(n):
        out[i, rng.choice(c, size=rng.integers(1, 4), replace=False)] = 1
    return out


@pytest.mark.parametrize("kind", ["sym", "flip"])
@pytest.mark.parametrize(("n", "rate"), [(1000, 0.2), (1000, 0.6), (997, 0.8), (10, 0.55), (100, 0.29)])
def test_exact_number_selected(kind: str, n: int, rate: float) -> None:
    noisy = make_noisy_labels(single_label(n, 10), rate, seed=3, kind=kind)
    expected = math.floor(round(rate * n, 9))
    assert noisy.selected.sum() == expected == noisy.n_selected


def test_n_noisy_rows_uses_decimal_rate() -> None:
    # 0.29 * 100 is 28.999999999999996 in floating point; the intended count is 29.
    assert n_noisy_rows(0.29, 100) == 29
    assert n_noisy_rows(0.2, 4000) == 800
    assert n_noisy_rows(0.0, 50) == 0


@pytest.mark.parametrize("rate", [0.2, 0.4, 0.6, 0.8])
def test_sym_change_rate_matches_rate_times_1_minus_1_over_c(rate: float) -> None:
    n, c = 20000, 10
    noisy = make_noisy_labels(single_label(n, c), rate, seed=1, kind="sym")
    expected = rate * (1 - 1 / c)
    # Binomial sd of the changed count among floor(rN) selected rows, as a fraction of N: < 0.0022.
    assert abs(noisy.realised_change_rate - expected) < 0.01
    # Some selected rows must have received their true class back (the sym recipe may keep the label).
    assert (noisy.selected & ~noisy.changed).sum() > 0
    # Redrawn labels are uniform over all C classes: each class gets ~1/C of the selected rows.
    counts = noisy.noisy[noisy.selected].sum(axis=0) / noisy.n_selected
    assert np.all(np.abs(counts - 1 / c) < 0.02)


@pytest.mark.parametrize("rate", [0.2, 0.8])
def test_flip_changes_exactly_the_selected_rows(rate: float) -> None:
    n = 20000
    noisy = make_noisy_labels(single_label(n, 10), rate, seed=1, kind="flip")
    assert noisy.realised_change_rate == noisy.n_selected / n
    assert np.array_equal(noisy.changed, noisy.selected)


def test_flip_with_two_classes_always_swaps() -> None:
    clean = single_label(500, 2)
    noisy = make_noisy_labels(clean, 0.5, seed=0, kind="flip")
    assert np.array_equal(noisy.noisy[noisy.selected], 1 - clean[noisy.selected])


@pytest.mark.parametrize("kind", ["sym", "flip"])
def test_unselected_rows_unchanged_and_flags_consistent(kind: str) -> None:
    clean = single_label(3000, 7)
    noisy = make_noisy_labels(clean, 0.4, seed=5, kind=kind)
    assert np.array_equal(noisy.noisy[~noisy.selected], clean[~noisy.selected])
    assert np.array_equal(noisy.changed, (noisy.noisy != clean).any(axis=1))
    assert not (noisy.changed & ~noisy.selected).any()
    assert np.array_equal(noisy.clean, clean)
    assert noisy.noisy.dtype == np.uint8 and noisy.noisy.shape == clean.shape


@pytest.mark.parametrize("kind", ["sym", "flip"])
def test_deterministic_bit_for_bit_and_seed_dependent(kind: str) -> None:
    clean = multi_label(2000, 12)
    a = make_noisy_labels(clean, 0.4, seed=11, kind=kind)
    b = make_noisy_labels(clean.copy(), 0.4, seed=11, kind=kind)
    assert a.noisy.tobytes() == b.noisy.tobytes()
    assert np.array_equal(a.selected, b.selected)
    c = make_noisy_labels(clean, 0.4, seed=12, kind=kind)
    assert not np.array_equal(a.selected, c.selected)
    assert not np.array_equal(a.noisy, c.noisy)


def test_input_not_modified() -> None:
    clean = single_label(200, 5)
    before = clean.copy()
    make_noisy_labels(clean, 0.6, seed=0)
    assert np.array_equal(clean, before)


@pytest.mark.parametrize("kind", ["sym", "flip"])
def test_rate_zero_gives_identical_labels(kind: str) -> None:
    clean = single_label(500, 4)
    noisy = make_noisy_labels(clean, 0.0, seed=0, kind=kind)
    assert np.array_equal(noisy.noisy, clean)
    assert noisy.n_selected == 0 and noisy.realised_change_rate == 0.0


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), "0.2", None, True])
def test_invalid_rate_raises(rate: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        make_noisy_labels(single_label(10, 3), rate, seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([0, 1, 2]), "2-D"),
        (np.ones((5, 1), dtype=np.uint8), "at least 2 classes"),
        (np.array([[1, 0], [0, 0]], dtype=np.uint8), "no positive"),
        (np.array([[2, 0], [0, 1]], dtype=np.uint8), "only 0 and 1"),
    ],
)
def test_invalid_labels_raise(labels: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_noisy_labels(labels, 0.5, seed=0)


def test_invalid_kind_and_seed_raise() -> None:
    with pytest.raises(ValueError, match="kind"):
        make_noisy_labels(single_label(10, 3), 0.5, seed=0, kind="asym")
    with pytest.raises(ValueError, match="seed"):
        make_noisy_labels(single_label(10, 3), 0.5, seed=-1)


@pytest.mark.parametrize("kind", ["sym", "flip"])
def test_multilabel_rows_keep_label_count(kind: str) -> None:
    clean = multi_label(3000, 8)
    noisy = make_noisy_labels(clean, 0.7, seed=2, kind=kind)
    assert np.array_equal(noisy.noisy.sum(axis=1), clean.sum(axis=1))
    if kind == "flip":
        assert np.array_equal(noisy.changed, noisy.selected)
    else:
        # With k >= 2 positives an exact redraw of the same set is rare, but single-label rows do repeat.
        assert 0 < (noisy.selected & ~noisy.changed).sum() < noisy.n_selected


def test_flip_impossible_when_row_has_all_classes() -> None:
    clean = np.ones((4, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="all classes"):
        make_noisy_labels(clean, 0.5, seed=0, kind="flip")


def test_rate_str() -> None:
    assert rate_str(0.2) == "0.2"
    assert rate_str(0.20) == "0.2"
    assert rate_str("0.40") == "0.4"
    assert rate_str(0.0) == "0"
    assert rate_str(0.25) == "0.25"


def test_file_round_trip(tmp_path) -> None:
    clean = multi_label(400, 6)
    noisy = make_noisy_labels(clean, 0.4, seed=9, kind="sym")
    path = write_noisy_labels(tmp_path / "noise" / "seed9.h5", noisy, {"dataset": "toy", "rate": 99})
    with h5py.File(path, "r") as f:
        assert f.attrs["schema"] == "cmhash.noise/1"
        assert f.attrs["dataset"] == "toy"
        assert f.attrs["rate"] == 0.4  # derived attributes cannot be overridden by the caller
        assert f.attrs["n_selected"] == 160
        assert f.attrs["n_classes"] == 6
        assert f.attrs["realised_change_rate"] == pytest.approx(noisy.realised_change_rate)
        assert f["noisy_labels"].dtype == np.uint8 and f["selected"].dtype == bool
    back = read_noisy_labels(path)
    assert isinstance(back, NoisyLabels)
    for key in ("noisy", "clean", "selected", "changed"):
        assert np.array_equal(getattr(back, key), getattr(noisy, key))
    assert (back.kind, back.rate, back.seed) == ("sym", 0.4, 9)
    assert back.attrs["dataset"] == "toy"
    assert not list(path.parent.glob("*.tmp.h5"))


def test_read_rejects_wrong_schema_and_corrupt_file(tmp_path) -> None:
    with atomic_h5(tmp_path / "feat.h5", "features") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(SchemaError, match="cmhash.noise/1"):
        read_noisy_labels(tmp_path / "feat.h5")
    noisy = make_noisy_labels(single_label(50, 3), 0.4, seed=0)
    path = write_noisy_labels(tmp_path / "n.h5", noisy, {"dataset": "toy"})
    with h5py.File(path, "r+") as f:
        f["changed"][...] = ~f["changed"][()]
    with pytest.raises(ValueError, match="corrupt"):
        read_noisy_labels(path)
    with pytest.raises(FileNotFoundError):
        read_noisy_labels(tmp_path / "missing.h5")
