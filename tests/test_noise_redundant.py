"""The ``redundant`` noise kind (NACD, NeurIPS'25): every row keeps its true labels and gets round(r n_i) false ones."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from cmhash.noise import (
    import_noisy_labels,
    make_noisy_labels,
    n_redundant_labels,
    read_noisy_labels,
    write_noisy_labels,
)


def _official_generate(noisy_labels: np.ndarray, noise_level: float) -> np.ndarray:
    """Rose-bud/NACD @ 57e090f, noise_label/generate.py, ``_generate_noisy_labels``, transcribed literally
    (prints dropped); ``torch.rand`` is unseeded there, seeded by the caller here."""
    noisy_labels_tensor = torch.tensor(noisy_labels, dtype=torch.float32)
    num_labels = torch.sum(noisy_labels_tensor == 1, dim=1)
    num_noisy_labels = torch.round(noise_level * num_labels).type(torch.int)
    num_noisy_labels[num_noisy_labels > noisy_labels_tensor.size(1)] = noisy_labels_tensor.size(1)
    rand_mat = torch.rand(noisy_labels_tensor.size())
    rand_mat[noisy_labels_tensor == 1] = 0
    for i in range(noisy_labels_tensor.size(0)):
        _, inds = torch.topk(rand_mat[i], k=num_noisy_labels[i].item())
        noisy_labels_tensor[i].index_fill_(0, inds, 1)
    return noisy_labels_tensor.numpy()


def _official_counts(labels: np.ndarray, noise_level: float) -> np.ndarray:
    """The count part of the same function, literally: ``round(noise_level * num_labels)`` capped at C."""
    t = torch.tensor(labels, dtype=torch.float32)
    num = torch.round(noise_level * torch.sum(t == 1, dim=1)).type(torch.int)
    num[num > t.size(1)] = t.size(1)
    return num.numpy().astype(np.int64)


def _multi_label(n: int, c: int, seed: int = 0, max_pos: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((n, c), dtype=np.uint8)
    for i in range(n):
        out[i, rng.choice(c, size=rng.integers(1, max_pos + 1), replace=False)] = 1
    return out


def test_hand_case_counts_half_to_even_and_cap() -> None:
    # C = 6; rows with 1, 1, 3, 2, 6 true labels
    clean = np.zeros((5, 6), dtype=np.uint8)
    clean[0, 0] = 1
    clean[1, 5] = 1
    clean[2, :3] = 1
    clean[3, [1, 4]] = 1
    clean[4, :] = 1
    # rate 2.5: 2.5 -> 2 (half to even), 2.5, 7.5 -> 8 (capped at C - n = 3 placed), 5, 15 -> 6 (nothing to place)
    assert n_redundant_labels(clean, 2.5).tolist() == [2, 2, 6, 5, 6]
    out = make_noisy_labels(clean, 2.5, seed=0, kind="redundant")
    assert out.noisy.sum(axis=1).tolist() == [3, 3, 6, 6, 6]
    assert out.selected.tolist() == [True] * 5
    assert out.changed.tolist() == [True, True, True, True, False]
    # rate 1.5: 1.5 -> 2, 1.5 -> 2, 4.5 -> 4 (3 placed), 3, 9 -> capped at 6
    assert n_redundant_labels(clean, 1.5).tolist() == [2, 2, 4, 3, 6]
    # rate 0.5 on single-label rows adds nothing (round(0.5) = 0); rate 0.6 adds one
    assert n_redundant_labels(clean[:2], 0.5).tolist() == [0, 0]
    assert n_redundant_labels(clean[:2], 0.6).tolist() == [1, 1]
    none = make_noisy_labels(clean[:2], 0.4, seed=1, kind="redundant")
    np.testing.assert_array_equal(none.noisy, clean[:2])
    assert not none.selected.any() and not none.changed.any()


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 1.0, 1.5, 2.0, 2.5, 1.1, 2.3, 0.7, 4.9])
def test_counts_equal_the_official_float32_rounding(rate: float) -> None:
    clean = _multi_label(400, 80, seed=2, max_pos=10)
    np.testing.assert_array_equal(n_redundant_labels(clean, rate), _official_counts(clean, rate))


@pytest.mark.parametrize("rate", [1.0, 1.5, 2.0, 2.5])
def test_true_labels_kept_and_exactly_the_official_number_added(rate: float) -> None:
    clean = _multi_label(500, 24, seed=3)
    out = make_noisy_labels(clean, rate, seed=7, kind="redundant")
    assert np.all(out.noisy >= clean)  # nothing removed
    added = (out.noisy.astype(int) - clean).sum(axis=1)
    expected = np.minimum(_official_counts(clean, rate), 24 - clean.sum(axis=1))
    np.testing.assert_array_equal(added, expected)
    # the official generator (any torch seed) adds the same number per row: the count part is deterministic
    torch.manual_seed(0)
    official = _official_generate(clean, rate)
    np.testing.assert_array_equal(official.sum(axis=1), out.noisy.sum(axis=1))
    assert np.all(official >= clean)


def test_added_labels_uniform_over_the_negatives() -> None:
    # 20,000 rows with class 0 only, C = 5, rate 1.0: one of the 4 negatives each; same law as the official topk
    n, c = 20000, 5
    clean = np.zeros((n, c), dtype=np.uint8)
    clean[:, 0] = 1
    ours = make_noisy_labels(clean, 1.0, seed=11, kind="redundant").noisy[:, 1:].mean(axis=0)
    torch.manual_seed(11)
    official = _official_generate(clean, 1.0)[:, 1:].mean(axis=0)
    # binomial sd of each frequency: sqrt(.25 * .75 / 20000) = 0.0031
    np.testing.assert_allclose(ours, 0.25, atol=0.015)
    np.testing.assert_allclose(official, 0.25, atol=0.015)
    # pairs: rate 2.0 picks one of the 6 negative pairs uniformly
    pairs = make_noisy_labels(clean, 2.0, seed=12, kind="redundant").noisy[:, 1:]
    codes = pairs @ (2 ** np.arange(4))
    _, counts = np.unique(codes, return_counts=True)
    assert len(counts) == 6
    np.testing.assert_allclose(counts / n, 1 / 6, atol=0.015)


def test_deterministic_and_seed_dependent() -> None:
    clean = _multi_label(300, 24, seed=4)
    a = make_noisy_labels(clean, 1.5, seed=5, kind="redundant")
    b = make_noisy_labels(clean.copy(), 1.5, seed=5, kind="redundant")
    c = make_noisy_labels(clean, 1.5, seed=6, kind="redundant")
    np.testing.assert_array_equal(a.noisy, b.noisy)
    assert not np.array_equal(a.noisy, c.noisy)
    assert (a.kind, a.rate, a.seed) == ("redundant", 1.5, 5)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "1.0", None])
def test_bad_redundant_rates_raise(bad) -> None:
    with pytest.raises(ValueError, match="redundant noise: rate"):
        make_noisy_labels(_multi_label(10, 5), bad, seed=0, kind="redundant")


def test_rates_above_one_only_for_redundant_and_seed_checked() -> None:
    clean = _multi_label(10, 5)
    with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
        make_noisy_labels(clean, 1.5, seed=0, kind="sym")
    with pytest.raises(ValueError, match="seed"):
        make_noisy_labels(clean, 1.5, seed=-1, kind="redundant")
    with pytest.raises(ValueError, match="no positive label"):
        make_noisy_labels(np.zeros((3, 4), dtype=np.uint8), 1.0, seed=0, kind="redundant")


def test_single_label_rows_become_two_label_rows() -> None:
    clean = np.eye(10, dtype=np.uint8)[np.random.default_rng(0).integers(0, 10, 1000)]
    out = make_noisy_labels(clean, 1.0, seed=0, kind="redundant")
    assert np.all(out.noisy.sum(axis=1) == 2) and np.all(out.noisy >= clean)
    assert out.changed.all() and out.realised_change_rate == 1.0


def test_file_round_trip_and_import_of_an_nacd_file(tmp_path) -> None:
    clean = _multi_label(50, 24, seed=8)
    out = make_noisy_labels(clean, 2.5, seed=3, kind="redundant")
    back = read_noisy_labels(write_noisy_labels(tmp_path / "noise.h5", out, {"dataset": "toy"}))
    np.testing.assert_array_equal(back.noisy, out.noisy)
    np.testing.assert_array_equal(back.selected, out.selected)
    assert (back.kind, back.rate, back.seed) == ("redundant", 2.5, 3)
    # NACD's own layout: <name>-lall-noise_<r>.h5 with result (noisy) and True (clean)
    torch.manual_seed(0)
    path = tmp_path / "mirflickr25k-lall-noise_2.5.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("result", data=_official_generate(clean, 2.5))
        f.create_dataset("True", data=clean.astype(np.float64))
    got = import_noisy_labels(path, clean, 2.5, 0, "redundant")
    assert got.kind == "redundant" and got.rate == 2.5 and np.all(got.noisy >= clean)
    with pytest.raises(ValueError, match="rate"):
        import_noisy_labels(path, clean, 2.5, 0, "multilabel_flip")
