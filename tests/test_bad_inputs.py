"""The catalogue of bad inputs and faults (issue 5), one parametrised test per case.

Every case ends in an error that names the file or config key and says what to do (or, where the input
is legitimate, in a documented correct result), and leaves no output a later run would accept.
docs/reliability.md lists the cases with the messages users see; regenerate its messages with
``CMHASH_CATALOGUE_OUT=/tmp/msgs.jsonl pytest tests/test_bad_inputs.py`` (one JSON line per case).
Workflow-level checks (config errors before any job) live in tests/test_workflow.py.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from matlab_fixtures import save_h5, save_v5, save_v73

import cmhash
from cmhash.config import ConfigError, run_config_hash, validate_config
from cmhash.data import prepare_dataset
from cmhash.data.canonical import Features, read_features, write_features
from cmhash.data.matfiles import DatasetFileError
from cmhash.methods import REGISTRY, get_method_class, resolve_params
from cmhash.noise import import_noisy_labels, make_noisy_labels, read_noisy_labels, write_noisy_labels
from cmhash.report import figures, tables
from cmhash.report import results as report_results
from cmhash.runs import evaluate_run, train_run
from cmhash.store import SchemaError, atomic_h5, get_attr, git_commit
from cmhash.train import SplitData, load_checkpoint, resolve_device, train_model

REPO = Path(__file__).resolve().parents[1]
CATALOGUE_OUT = os.environ.get("CMHASH_CATALOGUE_OUT")


@pytest.fixture
def seen(request):
    """Check that an error message holds every expected fragment; optionally record it for the docs."""

    def check(exc: BaseException, *fragments: str) -> str:
        message = str(exc)
        for fragment in fragments:
            assert fragment in message, f"{fragment!r} not in {message!r}"
        if CATALOGUE_OUT:
            with open(CATALOGUE_OUT, "a") as fh:
                fh.write(json.dumps({"test": request.node.name, "type": type(exc).__name__, "message": message}))
                fh.write("\n")
        return message

    return check


# ============================================================================================== config
@pytest.fixture(scope="module")
def shipped():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def _exp(c):
    return c["experiments"]["tiny"]


CONFIG_CASES = {
    "unknown_method": (lambda c: _exp(c).update(methods=["RSHNL", "NOPE"]),
                       ["experiments.tiny.methods[1] = 'NOPE' is not defined; known methods: ["]),
    "unknown_dataset": (lambda c: _exp(c).update(datasets=["nowhere"]),
                        ["experiments.tiny.datasets[0] = 'nowhere' is not defined; known datasets: ["]),
    "unknown_method_impl": (lambda c: c["methods"]["CE"].update(impl="ce_basline"),
                            ["methods.CE.impl = 'ce_basline' is not registered; known: ["]),
    "unknown_base_method": (lambda c: c["methods"]["RSHNL-1"].update(base="RSHLN"),
                            ["methods.RSHNL-1.base = 'RSHLN' is not a defined method"]),
    "unknown_per_dataset_name": (lambda c: c["methods"]["CE"]["per_dataset"].update(synthtic={"lr": 0.1}),
                                 ["methods.CE.per_dataset.synthtic: no dataset of that name; known: ["]),
    "misspelt_key": (lambda c: _exp(c).update(nosie=[0.2]),
                     ["experiments.tiny: Additional properties are not allowed ('nosie' was unexpected)",
                      "(allowed keys: ablation_bits, bits, datasets, figures, methods, noise, "]),
    "noise_equal_to_1": (lambda c: _exp(c).update(noise=[0.2, 1.0]),
                         ["experiments.tiny.noise[1] = 1.0 is outside [0, 1)",
                          "only noise.kind redundant (labels added per true label) takes rates >= 1"]),
    "noise_negative": (lambda c: _exp(c).update(noise=[-0.1]),
                       ["experiments.tiny.noise[0]: -0.1 is less than the minimum of 0"]),
    "noise_as_string": (lambda c: _exp(c).update(noise=["0.2"]),
                        ["experiments.tiny.noise[0]: '0.2' is not of type 'number'"]),
    "bits_zero": (lambda c: _exp(c).update(bits=[16, 0]),
                  ["experiments.tiny.bits[1]: 0 is less than the minimum of 1", "positive integers"]),
    "bits_fraction": (lambda c: _exp(c).update(bits=[16.5]),
                      ["experiments.tiny.bits[0]: 16.5 is not of type 'integer'"]),
    "bits_not_a_list": (lambda c: _exp(c).update(bits=16),
                        ["experiments.tiny.bits: 16 is not of type 'array'"]),
    "seed_negative": (lambda c: _exp(c).update(seeds=[-1]),
                      ["experiments.tiny.seeds[0]: -1 is less than the minimum of 0"]),
    "empty_methods": (lambda c: _exp(c).update(methods=[]),
                      ["experiments.tiny.methods: [] should be non-empty"]),
    "empty_seeds": (lambda c: _exp(c).update(seeds=[]), ["experiments.tiny.seeds: [] should be non-empty"]),
    "empty_datasets": (lambda c: c.update(datasets={}), ["datasets: {} should be non-empty"]),
    "duplicate_noise_spelling": (lambda c: _exp(c).update(noise=[0.2, 0.20, 0.6]),
                                 ["experiments.tiny.noise lists ['0.2'] more than once; remove the duplicates"]),
    "duplicate_bits": (lambda c: _exp(c).update(bits=[16, 32, 16]),
                       ["experiments.tiny.bits lists [16] more than once"]),
    "duplicate_method": (lambda c: _exp(c).update(methods=["CE", "RSHNL", "CE"]),
                         ["experiments.tiny.methods lists ['CE'] more than once"]),
    "hyperparameter_wrong_type": (lambda c: c["methods"]["CE"]["per_dataset"]["synthetic"].update(lr="fast"),
                                  ["methods.CE.per_dataset.synthetic.lr: expected a number, got 'fast'"]),
    "hyperparameter_list_wrong_type": (lambda c: c["methods"]["RSHNL"]["params"].update(hidden=4096),
                                       ["methods.RSHNL.params.hidden: expected a list of integers, got 4096"]),
    "hyperparameter_bool_for_int": (lambda c: c["methods"]["RSHNL"]["params"].update(epochs=True),
                                    ["methods.RSHNL.params.epochs: expected an integer, got True"]),
    "hyperparameter_nan": (lambda c: c["methods"]["RSHNL"]["params"].update(gamma=math.nan),
                           ["methods.RSHNL.params.gamma: expected a number, got nan"]),
    "unknown_hyperparameter": (lambda c: c["methods"]["RSHNL-1"]["params"].update(warmup_epoch=0),
                               ["methods.RSHNL-1.params.warmup_epoch: unknown hyperparameter for method 'rshnl'"]),
    "epochs_zero": (lambda c: c["methods"]["CE"]["params"].update(epochs=0),
                    ["methods.CE.params.epochs: must be >= 1, got 0"]),
    "batch_size_one": (lambda c: c["methods"]["CE"]["per_dataset"]["synthetic"].update(batch_size=1),
                       ["methods.CE.per_dataset.synthetic.batch_size: must be >= 2"]),
    "learning_rate_zero": (lambda c: c["methods"]["CE"]["params"].update(lr=0.0),
                           ["methods.CE.params.lr: must be > 0, got 0.0"]),
    "unknown_device": (lambda c: c.update(device="gpu"),
                       ["device: 'gpu' is not one of ['auto', 'cuda', 'cpu']"]),
    "noise_file_for_unknown_dataset": (lambda c: c["noise"].update(files={"xmedai": "n_{noise}.mat"}),
                                       ["noise.files.xmedai: no dataset of that name"]),
    "noise_file_without_rate": (lambda c: c["noise"].update(files={"xmedia": "noisy.mat"}),
                                ["noise.files.xmedia = 'noisy.mat' must contain '{noise}'"]),
    "noise_file_pattern_attribute": (
        lambda c: c["noise"].update(files={"xmedia": "n_{noise}_{dataset.__class__.__name__}.mat"}),
        ["noise.files.xmedia = 'n_{noise}_{dataset.__class__.__name__}.mat': only the placeholders"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_error(shipped, seen, case):
    mutate, fragments = CONFIG_CASES[case]
    cfg = copy.deepcopy(shipped)
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    seen(err.value, *fragments)


def test_shipped_config_passes_every_check(shipped):
    validate_config(shipped)  # the cases above fail for their mutation, not for the shipped values


# ================================================================================================ data
RNG = np.random.default_rng(0)


def xmedia(n_tr=12, n_te=8, base=1, classes=3):
    """Arrays of the xmedia layout: class-index labels ``base .. base + classes - 1``."""
    return {
        "I_tr_CNN": RNG.normal(size=(n_tr, 6)), "T_tr_BOW": RNG.normal(size=(n_tr, 5)),
        "trImgCat": (np.arange(n_tr) % classes + base).astype(float).reshape(-1, 1),
        "I_te_CNN": RNG.normal(size=(n_te, 6)), "T_te_BOW": RNG.normal(size=(n_te, 5)),
        "teImgCat": (np.arange(n_te) % classes + base).astype(float).reshape(-1, 1),
    }


XM = {"format": "xmedia", "path": "x.mat", "split": {"val_rows": 2}}


def truncated(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _with(arrays, **changes):
    out = dict(arrays)
    for key, value in changes.items():
        if value is None:
            out.pop(key)
        else:
            out[key] = value
    return out


def _nan_rows(a, rows=(3,), value=np.nan):
    a = np.array(a, dtype=float)
    a[list(rows), 0] = value
    return a


def nsrmh(n=(10, 6, 14), classes=4):
    out = {}
    for stem, rows in zip(("tr", "te", "db"), n):
        y = np.zeros((rows, classes))
        y[np.arange(rows), np.arange(rows) % classes] = 1
        y[::3, (np.arange(rows)[::3] + 1) % classes] = 1
        out.update({f"I_{stem}": RNG.normal(size=(rows, 6)), f"T_{stem}": RNG.normal(size=(rows, 4)), f"L_{stem}": y})
    return out


NSRMH = {"format": "nsrmh", "path": "m.mat", "split": {"val_rows": 2}}


def _zero_label_row(a):
    a = np.array(a)
    a[4] = 0
    return a


# case -> (files to write {name: (writer, arrays)}, post-processing, dataset config, exception, fragments)
DATA_CASES = {
    "missing_file": ({}, None, XM, FileNotFoundError,
                     ["x.mat: file not found (expected the xmedia", "Download it from the source named",
                      "config/README.md"]),
    "truncated_mat_v5": ({"x.mat": (save_v5, xmedia(n_tr=200))}, truncated, XM, DatasetFileError,
                         ["x.mat: truncated or damaged MATLAB file", "Download it again"]),
    "truncated_mat_v73": ({"x.mat": (save_v73, xmedia(n_tr=200))}, truncated, XM, DatasetFileError,
                          ["x.mat: cannot be opened as HDF5", "truncated file"]),
    "truncated_h5": ({"m.h5": (save_h5, nsrmh())}, truncated, {**NSRMH, "path": "m.h5"}, DatasetFileError,
                     ["m.h5: cannot be opened as HDF5", "download it again"]),
    "not_a_mat_file": ({"x.mat": (None, b"<html>404 Not Found</html>" * 20)}, None, XM, DatasetFileError,
                       ["x.mat: not a readable MATLAB .mat or HDF5 file", "expected the xmedia"]),
    "missing_keys": ({"x.mat": (save_v5, _with(xmedia(), teImgCat=None))}, None, XM, DatasetFileError,
                     ["x.mat: missing ['teImgCat'] for the xmedia", "found: I_te_CNN (8, 6)",
                      "datasets.<name>.format matches it"]),
    "row_counts_disagree": ({"x.mat": (save_v5, _with(xmedia(), T_tr_BOW=RNG.normal(size=(11, 5))))}, None, XM,
                            DatasetFileError, ["x.mat: 'T_tr_BOW' has 11 rows but 'trImgCat' has 12 labels",
                                               "a d x N array needs transpose: true"]),
    "features_transposed": ({"x.mat": (save_v5, _with(xmedia(), I_tr_CNN=RNG.normal(size=(6, 12))))}, None, XM,
                            DatasetFileError, ["'I_tr_CNN' has 6 rows but 'trImgCat' has 12 labels"]),
    "nan_features": ({"x.mat": (save_v5, _with(xmedia(), I_tr_CNN=_nan_rows(xmedia()["I_tr_CNN"], (3, 7))))},
                     None, XM, DatasetFileError,
                     ["x.mat: 'I_tr_CNN' (train split): NaN or inf", "in 2 row(s), first: row 3", "impute or drop"]),
    "inf_features": ({"x.mat": (save_v5, _with(xmedia(), T_te_BOW=_nan_rows(xmedia()["T_te_BOW"], (5,), np.inf)))},
                     None, XM, DatasetFileError, ["x.mat: 'T_te_BOW' (test split): NaN or inf", "first: row 3"]),
    "all_zero_label_row": ({"m.mat": (save_v5, _with(nsrmh(), L_tr=_zero_label_row(nsrmh()["L_tr"])))}, None, NSRMH,
                           DatasetFileError, ["m.mat: 'L_tr' has 1 row(s) without any positive label (first: row 4)",
                                              "set datasets.m.drop_unlabelled: true"]),
    "negative_class_label": ({"x.mat": (save_v5, _with(xmedia(), trImgCat=-np.ones((12, 1))))}, None, XM,
                             DatasetFileError, ["negative class label -1; expected 0- or 1-based class indices"]),
    "fractional_class_label": ({"x.mat": (save_v5, _with(xmedia(), trImgCat=np.full((12, 1), 1.5)))}, None, XM,
                               DatasetFileError, ["(train): class labels must be whole numbers"]),
    "multi_hot_value_out_of_range": ({"m.mat": (save_v5, _with(nsrmh(), L_te=2 * nsrmh()["L_te"]))}, None, NSRMH,
                                     DatasetFileError, ["(test): a multi-hot label matrix must hold only 0 and 1"]),
    "label_width_disagrees": ({"m.mat": (save_v5, _with(nsrmh(), L_db=nsrmh(classes=5)["L_db"]))}, None, NSRMH,
                              DatasetFileError, ["label matrices have different widths (4 vs 5 in database)",
                                                 "one column per class"]),
    "matlab_object_instead_of_features": ({"x.mat": (save_v5, "object")}, None, XM, DatasetFileError,
                                          ["x.mat: 'I_tr_CNN' (train split): expected a 2-D numeric samples x features matrix"]),
    "validation_split_too_large": ({"x.mat": (save_v5, xmedia())}, None, {**XM, "split": {"val_rows": 8}},
                                   ValueError, ["datasets.x.split.val_rows = 8 must be >= 1",
                                                "smaller than the 8 rows of 'teImgCat'"]),
    "mfeat_split_larger_than_classes": ({}, None, "mfeat_too_big", ValueError,
                                        ["datasets.mfeat.split: stratified_split: class 0 has 200 samples",
                                         "fewer than requested train=150 + val=40 + test=80", "ask for fewer samples"]),
}


def _write_case_files(tmp_path, files):
    for name, (writer, arrays) in files.items():
        if writer is None:
            (tmp_path / name).write_bytes(arrays)
        elif arrays == "object":  # a MATLAB object (class 'os.system') where the image features belong
            from scipy.io.matlab import MatlabObject

            struct = np.zeros((1, 1), dtype=[("cmd", "O")])
            struct[0, 0]["cmd"] = np.array(["touch pwned"])
            writer(tmp_path / name, _with(xmedia(), I_tr_CNN=MatlabObject(struct, "os.system")))
        else:
            writer(tmp_path / name, arrays)


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_file(tmp_path, seen, case):
    files, post, cfg, exc_type, fragments = DATA_CASES[case]
    _write_case_files(tmp_path, files)
    if post is not None:
        for name in files:
            post(tmp_path / name)
    if cfg == "mfeat_too_big":
        cfg = {"format": "mfeat", "path": str(REPO / "resources/mfeat/mfeat.h5"), "modalities": {"image": "pix",
               "text": "fou"}, "split": {"train_per_class": 150, "val_per_class": 40, "test_per_class": 80}}
    with pytest.raises(exc_type) as err:
        prepare_dataset(Path(cfg["path"]).stem, cfg, tmp_path)
    seen(err.value, *fragments)


def test_matlab_objects_and_cells_are_never_unpickled(tmp_path, monkeypatch):
    """Reading MATLAB objects (v5) and cell arrays (v7.3 object references) never goes through pickle."""
    import pickle

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while reading a data file")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    _write_case_files(tmp_path, {"x.mat": (save_v5, "object")})
    with pytest.raises(DatasetFileError, match="numeric samples x features"):
        prepare_dataset("x", XM, tmp_path)
    cells = {"train": [RNG.normal(size=(12, 4)), RNG.normal(size=(12, 3))], "train_labels": [np.arange(12) % 3 + 1],
             "valid": [RNG.normal(size=(4, 4)), RNG.normal(size=(4, 3))], "valid_labels": [np.arange(4) % 3 + 1],
             "test": [RNG.normal(size=(6, 4)), RNG.normal(size=(6, 3))], "test_labels": [np.arange(6) % 3 + 1]}
    save_v73(tmp_path / "net.mat", cells)
    f = prepare_dataset("net", {"format": "xmedianet", "path": "net.mat"}, tmp_path)
    assert f.n_classes == 3 and f.n_rows("train") == 12
    assert not (tmp_path / "pwned").exists()


def toy(n=(30, 10, 10), n_classes=3, seed=0) -> Features:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, 4)) * 3
    splits = {}
    for split, rows in zip(("train", "val", "test"), n):
        y = np.arange(rows) % n_classes
        z = centres[y] + rng.normal(size=(rows, 4))
        splits[split] = {"image": np.hstack([z, rng.normal(size=(rows, 2))]).astype(np.float32),
                         "text": (z @ rng.normal(size=(4, 5))).astype(np.float32),
                         "labels": np.eye(n_classes, dtype=np.uint8)[y]}
    return Features("toy", ("image", "text"), n_classes, splits, {"source": "test"})


def _raw_features(path: Path, features: Features, mutate) -> Path:
    """A features file written without validation, ``mutate(splits)`` applied first."""
    splits = copy.deepcopy(features.splits)
    mutate(splits)
    with atomic_h5(path, "features", {"name": "toy", "modalities": ["image", "text"], "n_classes": 3}) as f:
        for split, arrays in splits.items():
            for key, value in arrays.items():
                f[f"{split}/{key}"] = value
    return path


def _set(split, key, fn):
    def mutate(splits):
        splits[split][key] = fn(splits[split][key])

    return mutate


CANONICAL_CASES = {
    "canonical_missing_file": (None, FileNotFoundError,
                               ["datasets.toy:", "toy.h5 not found", "Write your data with cmhash.data.canonical.write_features"]),
    "canonical_truncated": ("truncate", SchemaError,
                            ["toy.h5: cannot be read as a 'cmhash.features/1' HDF5 file", "truncated or damaged",
                             "Delete it and rerun snakemake"]),
    "canonical_missing_key": (lambda s: s["val"].pop("text"), ValueError,
                              ["toy.h5: missing dataset '/val/text'", "docs/file_formats.md"]),
    "canonical_row_counts_disagree": (_set("train", "text", lambda a: a[:-1]), ValueError,
                                      ["'/train/text' has 29 rows but '/train/labels' has 30",
                                       "row i of every array in a split must describe the same sample"]),
    "canonical_nan_features": (_set("test", "image", lambda a: np.where(np.arange(len(a))[:, None] == 2, np.nan, a)),
                               ValueError, ["'/test/image' contains NaN/inf in 1 row(s); impute or drop them"]),
    "canonical_all_zero_label_row": (_set("val", "labels", lambda a: np.vstack([a[:-1], np.zeros((1, 3))])),
                                     ValueError, ["'/val/labels' has 1 row(s) without any positive label",
                                                  "(first: row 9); drop these samples or give them a class"]),
    "canonical_label_out_of_range": (_set("train", "labels", lambda a: a * 2), ValueError,
                                     ["'/train/labels' must contain only 0 and 1 (multi-hot)"]),
    "canonical_wrong_label_width": (_set("test", "labels", lambda a: np.hstack([a, a[:, :1]])), ValueError,
                                    ["'/test/labels' has 4 columns but n_classes is 3"]),
    "canonical_empty_split": (lambda s: s.update(val={k: v[:0] for k, v in s["val"].items()}), ValueError,
                              ["split '/val' is empty"]),
}


@pytest.mark.parametrize("case", list(CANONICAL_CASES))
def test_bad_canonical_file(tmp_path, seen, case):
    mutate, exc_type, fragments = CANONICAL_CASES[case]
    path = tmp_path / "toy.h5"
    if mutate == "truncate":
        truncated(write_features(path, toy(n=(300, 10, 10))))
    elif mutate is not None:
        _raw_features(path, toy(), mutate)
    with pytest.raises(exc_type) as err:
        prepare_dataset("toy", {"format": "canonical", "path": "toy.h5"}, tmp_path)
    seen(err.value, *fragments)


@pytest.mark.parametrize(
    "base,dummy,n_classes,unused",
    [(1, False, 3, []), (1, True, 4, [0]), (0, False, 3, []), (0, True, 3, [])],
    ids=["one_based", "one_based_dummy_column", "zero_based", "zero_based_dummy_column"],
)
def test_label_base_as_configured(tmp_path, base, dummy, n_classes, unused):
    """1-based class indices map to class 0 unless ``dummy_class_column`` (RSHNL: an unused column 0)."""
    save_v5(tmp_path / "x.mat", xmedia(base=base))
    f = prepare_dataset("x", {**XM, "dummy_class_column": dummy}, tmp_path)
    assert f.n_classes == n_classes and f.attrs["unused_classes"] == unused
    first = f.splits["train"]["labels"].argmax(axis=1)
    np.testing.assert_array_equal(first, np.arange(12) % 3 + (1 if dummy and base == 1 else 0))


# ====================================================================================== noisy labels
CLEAN = np.eye(4, dtype=np.uint8)[np.arange(20) % 4]


def _published(tmp_path, key, array, extra=None):
    return save_v5(tmp_path / "noisy_0.2.mat", {key: array, **(extra or {})})


NOISE_CASES = {
    "noise_file_other_dataset": (lambda: CLEAN[:15], None, ["'noisy_label' has shape (15, 4)",
                                                            "but the training labels are (20, 4)",
                                                            "The number of rows differs"]),
    "noise_file_one_based_classes": (lambda: np.hstack([np.zeros((20, 1), np.uint8), CLEAN]), None,
                                     ["has one class more: set dummy_class_column: true"]),
    "noise_file_one_class_fewer": (lambda: CLEAN[:, 1:], None,
                                   ["has one class fewer: remove dummy_class_column: true"]),
    "noise_file_not_multi_hot": (lambda: 3 * CLEAN, None, ["'noisy_label' labels must contain only 0 and 1"]),
    "noise_file_other_clean_labels": (lambda: CLEAN, "True", ["'True' (the clean labels of the file) does not match",
                                                              "training labels (5 rows differ)"]),
}


@pytest.mark.parametrize("case", list(NOISE_CASES))
def test_published_noise_file_mismatch(tmp_path, seen, case):
    make, true_key, fragments = NOISE_CASES[case]
    if true_key:
        other = CLEAN.copy()
        other[:5] = np.roll(other[:5], 1, axis=1)
        path = save_h5(tmp_path / "noisy_0.2.h5", {"result": make(), "True": other})
    else:
        path = _published(tmp_path, "noisy_label", make())
    with pytest.raises(ValueError) as err:  # DatasetFileError is a ValueError
        import_noisy_labels(path, CLEAN, 0.2, 0)
    seen(err.value, str(path), *fragments)


@pytest.fixture
def run_cfg(shipped, tmp_path):
    """The shipped config plus a canonical dataset 'toy' and short CE/RSHNL settings for it."""
    cfg = copy.deepcopy(shipped)
    cfg["datasets"]["toy"] = {"format": "canonical", "path": str(tmp_path / "toy_source.h5")}
    cfg["methods"]["CE"]["per_dataset"]["toy"] = {"hidden": [16], "epochs": 3, "batch_size": 16, "lr": 1e-2}
    cfg["methods"]["RSHNL"]["per_dataset"]["toy"] = {"hidden": [16], "center_hidden": [16], "epochs": 3,
                                                      "batch_size": 16, "lr": 1e-2, "warmup_epochs": 1}
    cfg["checkpoint_every"] = 1
    cfg["device"] = "cpu"
    return validate_config(cfg)


def _inputs(tmp_path, features=None, noise_rows=None, seed=0):
    feats_path = write_features(tmp_path / "features.h5", features or toy())
    clean = read_features(feats_path).splits["train"]["labels"]
    if noise_rows is not None:
        clean = np.eye(clean.shape[1], dtype=np.uint8)[np.arange(noise_rows) % clean.shape[1]]
    noise_path = write_noisy_labels(tmp_path / f"noise{seed}.h5", make_noisy_labels(clean, 0.2, seed))
    return feats_path, noise_path


def test_noise_file_of_another_split(tmp_path, run_cfg, seen):
    feats_path, noise_path = _inputs(tmp_path, noise_rows=25)
    out = tmp_path / "run" / "train.h5"
    with pytest.raises(ValueError) as err:
        train_run(run_cfg, feats_path, noise_path, out, "toy", "CE", "0.2", 8, 0)
    seen(err.value, "noisy labels have shape (25, 3) but the training split of", "labels of shape (30, 3)",
         "delete the noise file and rerun")
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_truncated_noise_file(tmp_path, seen):
    path = write_noisy_labels(tmp_path / "seed0.h5", make_noisy_labels(np.eye(3, dtype=np.uint8)[np.arange(3000) % 3],
                                                                     0.2, 0))
    truncated(path)
    with pytest.raises(SchemaError) as err:
        read_noisy_labels(path)
    seen(err.value, "seed0.h5: cannot be read as a 'cmhash.noise/1' HDF5 file", "Delete it and rerun snakemake")


# ========================================================================================== training
def test_nan_loss_stops_naming_run_and_epoch(tmp_path, run_cfg, seen, monkeypatch):
    cls = get_method_class("ce_baseline")
    original = cls.training_step

    def blow_up_in_second_epoch(self, xs, labels, epoch, **kw):
        out = original(self, xs, labels, epoch, **kw)
        if epoch == 1:
            out.loss = out.loss * math.nan
        return out

    monkeypatch.setattr(cls, "training_step", blow_up_in_second_epoch)
    feats_path, noise_path = _inputs(tmp_path)
    out = tmp_path / "run" / "train.h5"
    with pytest.raises(FloatingPointError) as err:
        train_run(run_cfg, feats_path, noise_path, out, "toy", "CE", "0.2", 8, 0)
    seen(err.value, "CE/toy/noise0.2/8bits/seed0: the loss became nan", "epoch 2/3",
         "lower the learning rate or check the input features")
    assert not out.exists() and not list(out.parent.glob("*.h5"))


def test_gpu_requested_but_absent(monkeypatch, seen):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError) as err:
        resolve_device("cuda")
    seen(err.value, "device: cuda was requested but no CUDA GPU is visible", "set `device: auto` or `device: cpu`")
    assert resolve_device("auto") == torch.device("cpu")  # the documented fallback


def _tiny_splits(n_train, n_eval=6, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.arange(n) % n_classes
        return SplitData([rng.normal(size=(n, 10)).astype(np.float32) + y[:, None],
                          rng.normal(size=(n, 8)).astype(np.float32) - y[:, None]],
                         np.eye(n_classes, dtype=np.uint8)[y])

    return split(n_train), split(n_eval), split(n_eval)


def _short_params(impl, **extra):
    defaults = get_method_class(impl).defaults
    params = {"epochs": 2, **extra}
    for key, value in (("hidden", [16]), ("text_hidden", [16]), ("center_hidden", [16]), ("label_hidden", [16]),
                       ("n_anchors", 20), ("warmup_epochs", 1), ("bottleneck", 8), ("n_concepts", 4),
                       ("teacher_epochs", 1), ("forget_rate", 0.5)):
        # only where the method has the key with a value of that type (MIAN's bottleneck is a mode name)
        if key in defaults and type(defaults[key]) is type(value):
            params[key] = value
    return resolve_params(impl, params)


@pytest.mark.parametrize("impl", sorted(REGISTRY))
def test_training_split_smaller_than_batch_and_code_length(impl):
    """6 training samples, batch_size 256, 32 bits: every method trains on one full batch per epoch."""
    tr, va, te = _tiny_splits(6)
    result = train_model(impl, _short_params(impl, batch_size=256), 32, tr, va, te, np.zeros(6, bool), seed=0,
                         device="cpu")
    for codes in result.codes:
        assert codes.shape == (6, 32) and set(np.unique(codes)) <= {-1, 1}
    assert all(math.isfinite(v) for v in result.history["loss"])


def test_batch_larger_than_split_equals_one_full_batch():
    tr, va, te = _tiny_splits(20)
    runs = [train_model("rshnl", _short_params("rshnl", batch_size=b), 16, tr, va, te, np.zeros(20, bool), seed=3,
                        device="cpu") for b in (20, 256)]
    for a, b in zip(runs[0].codes, runs[1].codes):
        np.testing.assert_array_equal(a, b)
    assert runs[0].history["loss"] == runs[1].history["loss"]


# ============================================================================================ faults
def _metrics_file(path: Path, method: str, schema: str | None = None) -> Path:
    attrs = {"dataset": "toy", "method": method, "noise": 0.2, "bits": 16, "seed": 0, "config_hash": "h1",
             "modalities": ["image", "text"]}
    with atomic_h5(path, "metrics", attrs) as f:
        f.create_group("metrics/I2T").attrs["map"] = 0.5
        f.create_group("metrics/T2I").attrs["map"] = 0.5
        if schema is not None:
            f.attrs["schema"] = schema
    return path


def test_aggregation_lists_every_run_of_a_stale_schema(tmp_path, seen):
    ok = _metrics_file(tmp_path / "CE" / "metrics.h5", "CE")
    old = [_metrics_file(tmp_path / m / "metrics.h5", m, "cmhash.metrics/0") for m in ("RSHNL", "SEHA")]
    with pytest.raises(SchemaError) as err:
        report_results.collect_results([ok, *old])
    msg = seen(err.value, "2 result file(s) were not written as 'cmhash.metrics/1'", "so they are stale",
               f"{old[0]} (schema 'cmhash.metrics/0')", f"{old[1]} (schema 'cmhash.metrics/0')",
               "Delete them (or their run folders) and rerun snakemake")
    assert str(ok) not in msg


@pytest.mark.parametrize("report", ["table", "figures"])
def test_aggregation_refuses_runs_of_another_config(tmp_path, seen, report):
    paths = [_metrics_file(tmp_path / m / "metrics.h5", m) for m in ("CE", "RSHNL")]
    expected = {str(paths[0]): "h1", str(paths[1]): "h2"}
    out = tmp_path / "out"
    with pytest.raises(ValueError) as err:
        if report == "table":
            tables.report_table(paths, "x", {"csv": out / "x.csv"}, expected_hashes=expected)
        else:
            figures.report_figures(paths, "x", {"map_vs_noise_png": out / "m.png"}, expected_hashes=expected)
    seen(err.value, "1 result file(s) were computed with a different configuration",
         f"{paths[1]} (config hash h1, current config h2)", "rerun snakemake")
    assert not out.exists()


def test_pickled_checkpoint_is_not_executed(tmp_path, caplog):
    """A checkpoint holding arbitrary objects is refused by weights_only=True (training starts over)."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "checkpoint.pt"
    torch.save({"key": "k", "payload": Evil()}, path)
    assert load_checkpoint(path, "k") is None
    assert not marker.exists()
    assert "ignoring unreadable checkpoint" in caplog.text


# =================================================================================== reproducibility
@pytest.mark.parametrize("kind", ["sym", "flip", "multilabel_flip"])
def test_noisy_labels_depend_on_the_seed_only(kind):
    clean = np.eye(5, dtype=np.uint8)[np.arange(200) % 5]
    if kind == "multilabel_flip":
        clean[::2, 0] = 1
    a, b = make_noisy_labels(clean, 0.4, 7, kind), make_noisy_labels(clean.copy(), 0.4, 7, kind)
    c = make_noisy_labels(clean, 0.4, 8, kind)
    np.testing.assert_array_equal(a.noisy, b.noisy)
    assert not np.array_equal(a.noisy, c.noisy)


def test_same_seed_same_codes_and_map_other_seed_differs(tmp_path, run_cfg):
    evaluation = run_cfg["evaluation"]
    results = {}
    for tag, seed in (("a", 0), ("b", 0), ("c", 1)):
        feats_path, noise_path = _inputs(tmp_path / tag, seed=seed)
        train_run(run_cfg, feats_path, noise_path, tmp_path / tag / "train.h5", "toy", "RSHNL", "0.2", 16, seed)
        maps = evaluate_run(tmp_path / tag / "train.h5", tmp_path / tag / "metrics.h5", evaluation)
        with h5py.File(tmp_path / tag / "metrics.h5") as f:
            results[tag] = (f["codes/image"][()], f["codes/text"][()], maps)
    np.testing.assert_array_equal(results["a"][0], results["b"][0])
    np.testing.assert_array_equal(results["a"][1], results["b"][1])
    assert results["a"][2] == results["b"][2]
    assert not np.array_equal(results["a"][0], results["c"][0])


def test_result_files_record_provenance(tmp_path, run_cfg):
    feats_path, noise_path = _inputs(tmp_path)
    train_run(run_cfg, feats_path, noise_path, tmp_path / "train.h5", "toy", "CE", "0.2", 8, 0)
    evaluate_run(tmp_path / "train.h5", tmp_path / "metrics.h5", run_cfg["evaluation"])
    expected = {"config_hash": run_config_hash(run_cfg, "toy", "CE", "0.2", 8, 0),
                "package_version": cmhash.__version__, "git_commit": git_commit(),
                "torch_version": torch.__version__, "device": "cpu"}
    assert expected["git_commit"] not in ("", None)
    for name in ("train.h5", "metrics.h5"):
        with h5py.File(tmp_path / name) as f:
            assert {key: get_attr(f, key) for key in expected} == expected, name
    for path in (feats_path, noise_path):  # inputs of the runs carry the code version too
        with h5py.File(path) as f:
            assert (get_attr(f, "package_version"), get_attr(f, "git_commit")) == (cmhash.__version__, git_commit())


# ============================================================================================== safety
FORBIDDEN = {
    "yaml.load without SafeLoader": re.compile(r"\byaml\.(?:load|unsafe_load|full_load)\("),
    "pickle loading": re.compile(r"\b(?:pickle\.(?:load|loads|Unpickler)\b|cPickle|dill\.load|joblib\.load|read_pickle)"),
    "eval/exec": re.compile(r"(?<![\w.])(?:eval|exec)\("),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only=True)[^)]*\)"),
    "numpy allow_pickle": re.compile(r"allow_pickle\s*=\s*True"),
    "shell execution": re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\("),
}


def _code_files():
    roots = [REPO / "src", REPO / "workflow" / "scripts", REPO / "rules"]
    files = [p for root in roots for p in root.rglob("*") if p.suffix in (".py", ".smk")]
    return [*files, REPO / "Snakefile"]


@pytest.mark.parametrize("rule", list(FORBIDDEN))
def test_no_unsafe_loading_or_execution_in_code(rule):
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in _code_files()
                 for i, line in enumerate(p.read_text().splitlines(), 1) if FORBIDDEN[rule].search(line)]
    assert offenders == []


@pytest.mark.parametrize("snippet,rule", [
    ("cfg = yaml.load(fh)", "yaml.load without SafeLoader"),
    ("obj = pickle.load(fh)", "pickle loading"),
    ("df = pd.read_pickle(path)", "pickle loading"),
    ("value = eval(text)", "eval/exec"),
    ("state = torch.load(path, map_location='cpu')", "torch.load without weights_only=True"),
    ("np.load(p, allow_pickle=True)", "numpy allow_pickle"),
])
def test_safety_patterns_catch_what_they_forbid(snippet, rule):
    assert FORBIDDEN[rule].search(snippet)
    harmless = "model.eval(); yaml.safe_load(fh); torch.load(p, weights_only=True); except pickle.UnpicklingError"
    assert not FORBIDDEN[rule].search(harmless)
