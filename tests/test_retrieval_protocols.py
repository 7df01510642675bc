"""Retrieval protocols through train_run / evaluate_run: the multi-label protocols' separate database split
(queries = test, retrieval set = database) and NSRMH's fused-code task (MAP@k, empty queries count 0)."""

from __future__ import annotations

import copy
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from cmhash.config import validate_config
from cmhash.data.canonical import Features, write_features
from cmhash.methods import get_method_class, resolve_params
from cmhash.metrics import mean_average_precision
from cmhash.noise import make_noisy_labels, write_noisy_labels
from cmhash.runs import evaluate_run, train_run
from cmhash.store import atomic_h5, get_attr, is_cross_modal_task, joint_task_name

FUSED_TASK = joint_task_name("fused")  # the task of NSRMH's joint code set 'fused'

REPO = Path(__file__).resolve().parents[1]
ROWS = {"train": 30, "val": 9, "test": 8, "database": 40}
BITS = 16


def toy_features(with_database: bool = True) -> Features:
    """Three Gaussian classes seen through two linear views; the database is disjoint from the test rows."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 4)) * 3
    to_text = rng.normal(size=(4, 5))
    splits = {}
    for split, n in ROWS.items():
        if split == "database" and not with_database:
            continue
        y = rng.permutation(np.arange(n) % 3)
        z = centres[y] + rng.normal(size=(n, 4))
        splits[split] = {"image": np.hstack([z, rng.normal(size=(n, 2))]).astype(np.float32),
                         "text": (z @ to_text).astype(np.float32), "labels": np.eye(3, dtype=np.uint8)[y]}
    return Features("toy", ("image", "text"), 3, splits, {"source": "test"})


@pytest.fixture
def cfg(tmp_path):
    shipped = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = copy.deepcopy(shipped)
    cfg["datasets"]["toy"] = {"format": "canonical", "path": str(tmp_path / "toy.h5")}
    cfg["methods"]["CE"]["per_dataset"]["toy"] = {"hidden": [16], "epochs": 2, "batch_size": 16, "lr": 1e-2}
    cfg["methods"]["NSRMH"]["per_dataset"]["toy"] = {"hidden": [16], "epochs": 2, "batch_size": 16,
                                                     "lr": 1e-2, "dropout": 0.0, "warmup_epochs": 1}
    cfg["methods"]["NSRMH-nofuse"] = {"base": "NSRMH", "params": {"fused_weight": 0.0}}
    cfg["device"] = "cpu"
    return validate_config(cfg)


def run(tmp_path: Path, cfg: dict, method: str, with_database: bool = True, fused_topk: int | None = None):
    """Train and evaluate one tiny run; returns (train.h5, metrics.h5, the maps evaluate_run returned)."""
    feats = write_features(tmp_path / "features.h5", toy_features(with_database))
    clean = toy_features().splits["train"]["labels"]
    noise = write_noisy_labels(tmp_path / "noise.h5", make_noisy_labels(clean, 0.2, 0))
    train_path, metrics_path = tmp_path / method / "train.h5", tmp_path / method / "metrics.h5"
    train_run(cfg, feats, noise, train_path, "toy", method, "0.2", BITS, 0)
    maps = evaluate_run(train_path, metrics_path, {**cfg["evaluation"], "fused_topk": fused_topk})
    return train_path, metrics_path, maps


def read(path: Path, key: str) -> np.ndarray:
    with h5py.File(path) as f:
        return f[key][()]


# ----------------------------------------------------------------------------------- database split
def test_queries_are_ranked_in_the_database_split(tmp_path, cfg):
    train_path, metrics_path, maps = run(tmp_path, cfg, "CE")
    for m in ("image", "text"):
        assert read(train_path, f"codes/{m}").shape == (ROWS["test"], BITS)
        assert read(train_path, f"database/{m}").shape == (ROWS["database"], BITS)
        assert set(np.unique(read(train_path, f"database/{m}"))) <= {-1, 1}
    db_truth = toy_features().splits["database"]["labels"]
    np.testing.assert_array_equal(read(train_path, "database/labels"), db_truth)
    queries = {m: read(metrics_path, f"codes/{m}") for m in ("image", "text")}
    database = {m: read(metrics_path, f"database/{m}") for m in ("image", "text")}
    q_labels, db_labels = read(metrics_path, "codes/labels"), read(metrics_path, "database/labels")
    expected = {"I2T": mean_average_precision(queries["image"], database["text"], q_labels, db_labels),
                "T2I": mean_average_precision(queries["text"], database["image"], q_labels, db_labels)}
    with h5py.File(metrics_path) as f:
        assert get_attr(f, "retrieval_set") == "database"
        stored = {task: float(f[f"metrics/{task}"].attrs["map"]) for task in ("I2T", "T2I")}
        assert list(f["metrics"]) == ["I2T", "T2I"]
        assert f["metrics/I2T/p_at_n_n"][()].max() <= ROWS["database"]
    assert stored == maps == pytest.approx(expected, abs=0)
    # the database really is another set: test vs test gives other numbers here
    assert expected["I2T"] != mean_average_precision(queries["image"], queries["text"], q_labels, q_labels)


def test_without_database_the_test_split_is_both(tmp_path, cfg):
    train_path, metrics_path, maps = run(tmp_path, cfg, "CE", with_database=False)
    with h5py.File(train_path) as f:
        assert "database" not in f and "fused" not in f
    codes = [read(metrics_path, f"codes/{m}") for m in ("image", "text")]
    labels = read(metrics_path, "codes/labels")
    assert maps == pytest.approx({"I2T": mean_average_precision(codes[0], codes[1], labels, labels),
                                  "T2I": mean_average_precision(codes[1], codes[0], labels, labels)}, abs=0)
    with h5py.File(metrics_path) as f:
        assert get_attr(f, "retrieval_set") == "test"
        assert list(f["metrics"]) == ["I2T", "T2I"]


# ----------------------------------------------------------------------------------- fused codes
def test_nsrmh_fused_code_is_one_code_per_pair():
    params = resolve_params("nsrmh", {"hidden": [16], "dropout": 0.0})
    model = get_method_class("nsrmh")((6, 5), 3, 24, params)
    xs = [torch.randn(7, 6), torch.randn(7, 5)]
    fused = model.encode_fused(xs)
    assert fused.shape == (7, 24) and fused.abs().max() < 1  # tanh output, signed by the training loop
    no_fusion = get_method_class("nsrmh")((6, 5), 3, 24, {**params, "fused_weight": 0.0})
    assert no_fusion.encode_fused(xs) is None
    assert set(model.encode_joint(xs)) == {"fused"} and no_fusion.encode_joint(xs) == {}
    torch.testing.assert_close(model.encode_joint(xs)["fused"], fused)
    ce = get_method_class("ce_baseline")((6, 5), 3, 24, resolve_params("ce_baseline", {}))
    assert ce.encode_joint(xs) == {}  # the base class declares no joint code set
    with pytest.raises(ValueError, match="fused_weight: 0"):  # branches whose outputs cannot be added
        get_method_class("nsrmh")((6, 5), 3, 24, {**params, "hidden": []})


def test_nsrmh_run_stores_fused_codes_and_scores_the_fused_task(tmp_path, cfg):
    train_path, metrics_path, maps = run(tmp_path, cfg, "NSRMH", fused_topk=5)
    fused_test, fused_db = read(train_path, "fused/test"), read(train_path, "fused/database")
    assert fused_test.shape == (ROWS["test"], BITS) and fused_db.shape == (ROWS["database"], BITS)
    assert fused_test.dtype == np.int8 and set(np.unique(np.r_[fused_test, fused_db])) == {-1, 1}
    q_labels, db_labels = read(train_path, "codes/labels"), read(train_path, "database/labels")
    expected = mean_average_precision(fused_test, fused_db, q_labels, db_labels, topk=5, empty_queries="zero")
    with h5py.File(metrics_path) as f:
        assert list(f["metrics"]) == ["FUSED", "I2T", "T2I"]
        g = f[f"metrics/{FUSED_TASK}"]
        assert g.attrs["map"] == g.attrs["map_at_5"] == maps[FUSED_TASK] == expected
        assert g.attrs["map_topk"] == 5 and get_attr(f, "fused_topk") == 5
        # the cross-modal tasks keep exactly the structure of a method without a fused code
        for task in ("I2T", "T2I"):
            assert sorted(f[f"metrics/{task}"].attrs) == ["map", "map_at_100", "map_at_50"]
            assert sorted(f[f"metrics/{task}"]) == ["p_at_n", "p_at_n_n", "pr_precision", "pr_recall"]
        assert history_loss_terms(f) == {"loss_cen", "loss_fused", "loss_sign", "loss_sim"}
    # the fused task only adds: the cross-modal numbers are those of the same run evaluated without it
    plain = evaluate_run(train_path, tmp_path / "plain.h5", cfg["evaluation"])
    assert plain == {k: v for k, v in maps.items() if k != FUSED_TASK}
    with h5py.File(tmp_path / "plain.h5") as f:
        assert list(f["metrics"]) == ["I2T", "T2I"] and get_attr(f, "fused_topk") is None


def history_loss_terms(f: h5py.File) -> set[str]:
    return {k for k in f["history"] if k.startswith("loss_")}


def test_without_a_fused_code_there_is_no_fused_task(tmp_path, cfg):
    train_path, metrics_path, maps = run(tmp_path, cfg, "NSRMH-nofuse", fused_topk=5)
    with h5py.File(train_path) as f:
        assert "fused" not in f and "loss_fused" not in f["history"]
    with h5py.File(metrics_path) as f:
        assert list(f["metrics"]) == ["I2T", "T2I"]
    assert set(maps) == {"I2T", "T2I"}


def test_fused_map_at_k_counts_queries_without_relevant_items_in_the_top_k_as_zero(tmp_path):
    """Hand case, 2-bit codes, k = 50, 60 database items (ties in database index order).

    Database: items 0-49 have code ++, items 50-59 code --; labels: items 0 and 3 class 1, items 55-59
    class 0, the rest class 2. Query A (++, class 0): its relevant items 55-59 sit at ranks 56-60, outside the top 50:
    AP@50 = 0 (its AP@all is not 0). Query B (++, class 1): relevant at ranks 1 and 4: (1/1 + 2/4) / 2.
    Query C (--, class 1): items 50-59 come first, so items 0 and 3 sit at ranks 11 and 14: (1/11 + 2/14) / 2.
    MAP@50 divides by all three queries.
    """
    db_codes = np.array([[1, 1]] * 50 + [[-1, -1]] * 10, dtype=np.int8)
    db_class = np.full(60, 2)
    db_class[[0, 3]], db_class[55:] = 1, 0
    q_codes = np.array([[1, 1], [1, 1], [-1, -1]], dtype=np.int8)
    q_labels, db_labels = np.eye(3, dtype=np.uint8)[[0, 1, 1]], np.eye(3, dtype=np.uint8)[db_class]
    attrs = {"method": "NSRMH", "dataset": "toy", "noise": 0.2, "bits": 2, "seed": 0,
             "modalities": ["image", "text"]}
    with atomic_h5(tmp_path / "train.h5", "train", {**attrs, "joint_codes": ["fused"]}) as f:
        for m in ("image", "text"):
            f[f"codes/{m}"], f[f"database/{m}"] = q_codes, db_codes
        f["codes/labels"], f["database/labels"] = q_labels, db_labels
        f["fused/test"], f["fused/database"] = q_codes, db_codes
    evaluation = {"tie_order": "index", "topk": [], "pn": [], "empty_queries": "skip", "fused_topk": 50}
    maps = evaluate_run(tmp_path / "train.h5", tmp_path / "metrics.h5", evaluation)
    assert maps[FUSED_TASK] == pytest.approx((0 + (1 + 2 / 4) / 2 + (1 / 11 + 2 / 14) / 2) / 3, abs=1e-12)
    ap_all_a = (1 / 56 + 2 / 57 + 3 / 58 + 4 / 59 + 5 / 60) / 5  # query A counts in MAP@all
    assert maps["I2T"] == pytest.approx((ap_all_a + (1 + 2 / 4) / 2 + (1 / 11 + 2 / 14) / 2) / 3, abs=1e-12)


def test_the_evaluator_scores_every_joint_code_set_the_file_declares(tmp_path):
    """Generic joint code sets: two declared sets get one task each, an undeclared group none.

    Hand case, 1-bit codes, 2 queries x 3 database items, all of one class except database item 2:
    set ``fused`` ranks query 0 (+) in (+, +, -): relevant at ranks 1, 2 -> AP 1; query 1 (-) ranks the
    tie-ordered (-) item 2 (irrelevant) first, then items 0, 1 at ranks 2, 3: AP (1/2 + 2/3) / 2 = 7/12.
    MAP@3 = (1 + 7/12) / 2 = 19/24. Set ``joint`` has all codes equal: index order, AP 1 each: 1.
    """
    q, db = np.array([[1], [-1]], np.int8), np.array([[1], [1], [-1]], np.int8)
    q_labels, db_labels = np.eye(2, dtype=np.uint8)[[0, 0]], np.eye(2, dtype=np.uint8)[[0, 0, 1]]
    attrs = {"method": "X", "dataset": "toy", "noise": 0.2, "bits": 1, "seed": 0,
             "modalities": ["image", "text"], "joint_codes": ["fused", "joint"]}
    with atomic_h5(tmp_path / "train.h5", "train", attrs) as f:
        for m in ("image", "text"):
            f[f"codes/{m}"], f[f"database/{m}"] = q, db
        f["codes/labels"], f["database/labels"] = q_labels, db_labels
        f["fused/test"], f["fused/database"] = q, db
        f["joint/test"], f["joint/database"] = np.ones((2, 1), np.int8), np.ones((3, 1), np.int8)
        f["other/test"], f["other/database"] = q, db  # not declared: not a task
    evaluation = {"tie_order": "index", "topk": [], "pn": [], "empty_queries": "skip", "fused_topk": 3}
    maps = evaluate_run(tmp_path / "train.h5", tmp_path / "metrics.h5", evaluation)
    assert set(maps) == {"I2T", "T2I", "FUSED", "JOINT"}
    assert maps["FUSED"] == pytest.approx(19 / 24, abs=1e-12) and maps["JOINT"] == pytest.approx(1.0)
    assert [t for t in maps if is_cross_modal_task(t)] == ["I2T", "T2I"]
    with h5py.File(tmp_path / "metrics.h5") as f:
        assert "fused" in f and "joint" in f and "other" not in f


@pytest.mark.parametrize("name", ["codes", "weights", "Fused", "i2t", "two words", ""])
def test_a_joint_code_set_name_that_would_clash_is_refused(name):
    with pytest.raises(ValueError, match="joint code set"):
        joint_task_name(name)
