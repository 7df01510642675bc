"""Readers of the published benchmark layouts: tiny fixture files with the exact key names -> canonical Features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matlab_fixtures import feats, multihot, save_h5, save_v5, save_v73

from cmhash.data import input_files, prepare_dataset
from cmhash.data.canonical import read_features, write_features
from cmhash.data.matfiles import ArrayFile, DatasetFileError, container_kind
from cmhash.data.readers import label_matrices, query_train_split
from cmhash.store import sha256_file

RNG = np.random.default_rng(0)


def single_label(n: int, classes: int, base: int) -> np.ndarray:
    return (np.arange(n) % classes + base).astype(np.float64)


# ------------------------------------------------------------------------------------------ containers
def test_v73_arrays_come_back_in_matlab_orientation(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    cells = [np.ones((2, 5)), np.zeros((2, 3))]
    path = save_v73(tmp_path / "a.mat", {"X": x, "C": cells})
    assert container_kind(path) == "mat73"
    src = ArrayFile(path, "test")
    assert src.shapes()["X"] == (3, 4)
    np.testing.assert_array_equal(src.read("X"), x)
    assert src.cell("C", 1).shape == (2, 3)
    plain = save_h5(tmp_path / "b.h5", {"X": x})
    assert container_kind(plain) == "hdf5"
    np.testing.assert_array_equal(ArrayFile(plain, "test").read("X"), x)
    v5 = save_v5(tmp_path / "c.mat", {"X": x, "C": cells})
    assert container_kind(v5) == "mat"
    np.testing.assert_array_equal(ArrayFile(v5, "test").read("X"), x)
    assert ArrayFile(v5, "test").cell("C", 0).shape == (2, 5)


def test_label_matrices_offset_and_dummy_column() -> None:
    raw = {"train": np.array([[1], [2], [3]]), "test": np.array([[3, 1]])}
    out, info = label_matrices(raw)
    assert (
        out["train"].shape == (3, 3) and info["label_offset"] == 1 and info["class_names"] == ["1", "2", "3"]
    )
    np.testing.assert_array_equal(out["test"], [[0, 0, 1], [1, 0, 0]])
    out, info = label_matrices(raw, dummy_class_column=True)
    assert out["train"].shape == (3, 4) and info["unused_classes"] == [0]
    with pytest.raises(DatasetFileError, match="whole numbers"):
        label_matrices({"train": np.array([0.5, 1.0])})
    with pytest.raises(DatasetFileError, match="only 0 and 1"):
        label_matrices({"train": np.array([[0, 2], [1, 0]])})


# ------------------------------------------------------------------------------------ single-label formats
def xmedia_arrays(n_tr=12, n_te=8) -> dict:
    return {
        "I_tr_CNN": feats(RNG, n_tr, 6),
        "T_tr_BOW": feats(RNG, n_tr, 5),
        "trImgCat": single_label(n_tr, 4, 1).astype(np.float16).reshape(-1, 1),
        "I_te_CNN": feats(RNG, n_te, 6),
        "T_te_BOW": feats(RNG, n_te, 5),
        "teImgCat": single_label(n_te, 4, 1).reshape(1, -1),  # flattened, as re-saved by RSHNL
        "A_tr": feats(RNG, n_tr, 2),  # other media are ignored
    }


@pytest.mark.parametrize("writer", [save_v5, save_v73])
def test_xmedia(tmp_path: Path, writer) -> None:
    arrays = xmedia_arrays()
    path = writer(tmp_path / "XMediaFeatures.mat", arrays)
    cfg = {"format": "xmedia", "path": "XMediaFeatures.mat", "split": {"val_rows": 3}}
    f = prepare_dataset("xmedia", cfg, tmp_path)
    assert f.modalities == ("image", "text") and f.n_classes == 4
    assert [f.n_rows(s) for s in ("train", "val", "test")] == [12, 3, 5]
    assert "database" not in f.splits
    np.testing.assert_allclose(f.splits["val"]["image"], arrays["I_te_CNN"][:3])
    np.testing.assert_allclose(f.splits["test"]["text"], arrays["T_te_BOW"][3:])
    np.testing.assert_array_equal(f.splits["train"]["labels"].argmax(1), np.arange(12) % 4)
    assert f.attrs["sha256"] == {"XMediaFeatures.mat": sha256_file(path)}
    assert f.attrs["split"]["val_rows"] == 3 and f.attrs["label_offset"] == 1
    assert f.attrs["source_keys"]["train"] == ["I_tr_CNN", "T_tr_BOW", "trImgCat"]
    dummy = prepare_dataset("xmedia", {**cfg, "dummy_class_column": True}, tmp_path)
    assert dummy.n_classes == 5 and not dummy.splits["train"]["labels"][:, 0].any()
    out = write_features(tmp_path / "x.h5", f)
    back = read_features(out)
    assert back.attrs["split"]["n_test"] == 5 and back.attrs["layout"] == "xmedia"


def test_xmedia_default_val_rows_is_500(tmp_path: Path) -> None:
    save_v5(tmp_path / "XMediaFeatures.mat", xmedia_arrays(n_te=504))
    f = prepare_dataset("x", {"format": "xmedia", "path": "XMediaFeatures.mat"}, tmp_path)
    assert (f.n_rows("val"), f.n_rows("test")) == (500, 4)


def test_rshnl_wiki(tmp_path: Path) -> None:
    save_v5(
        tmp_path / "wiki.mat",
        {
            "train_imgs_deep": feats(RNG, 10, 7),
            "train_texts_doc": feats(RNG, 10, 3),
            "train_imgs_labels": single_label(10, 3, 0).astype(np.int16).reshape(-1, 1),
            "test_imgs_deep": feats(RNG, 6, 7),
            "test_texts_doc": feats(RNG, 6, 3),
            "test_imgs_labels": single_label(6, 3, 0).astype(np.int16).reshape(-1, 1),
        },
    )
    f = prepare_dataset(
        "wiki", {"format": "rshnl_wiki", "path": "wiki.mat", "split": {"val_rows": 2}}, tmp_path
    )
    assert f.dims == (7, 3) and f.n_classes == 3 and (f.n_rows("val"), f.n_rows("test")) == (2, 4)
    # the dummy column changes nothing for 0-based labels
    g = prepare_dataset(
        "wiki",
        {"format": "rshnl_wiki", "path": "wiki.mat", "split": {"val_rows": 2}, "dummy_class_column": True},
        tmp_path,
    )
    assert g.n_classes == 3


def test_seha_v73_and_val_rows_required(tmp_path: Path) -> None:
    save_v73(
        tmp_path / "xmedia.mat",
        {
            "img_train": feats(RNG, 9, 4),
            "text_train": feats(RNG, 9, 3),
            "label_train": single_label(9, 3, 1).reshape(-1, 1),
            "img_test": feats(RNG, 6, 4),
            "text_test": feats(RNG, 6, 3),
            "label_test": single_label(6, 3, 1).reshape(-1, 1),
        },
    )
    cfg = {"format": "seha", "path": "xmedia.mat", "modalities": {"img": "x", "txt": "y"}}
    with pytest.raises(ValueError, match=r"split.val_rows is required"):
        prepare_dataset("s", cfg, tmp_path)
    f = prepare_dataset("s", {**cfg, "split": {"val_rows": 2}}, tmp_path)
    assert f.modalities == ("img", "txt") and f.dims == (4, 3) and f.n_rows("test") == 4


def mrl_arrays(valid: bool, text_key="train_texts") -> dict:
    out = {
        "train_imgs_deep": feats(RNG, 10, 5),
        text_key: feats(RNG, 10, 4),
        "train_imgs_labels": single_label(10, 3, 1).astype(np.int64),
        "train_texts_labels": single_label(10, 3, 1),
        "test_imgs_deep": feats(RNG, 7, 5),
        text_key.replace("train", "test"): feats(RNG, 7, 4),
        "test_imgs_labels": single_label(7, 3, 1).astype(np.int64),
    }
    if valid:
        out.update(
            {
                "valid_imgs_deep": feats(RNG, 3, 5),
                text_key.replace("train", "valid"): feats(RNG, 3, 4),
                "valid_imgs_labels": single_label(3, 3, 1).astype(np.int64),
            }
        )
    return out


def test_mrl_h5_with_and_without_valid(tmp_path: Path) -> None:
    save_h5(tmp_path / "a.h5py", mrl_arrays(True))
    f = prepare_dataset("m", {"format": "mrl_h5", "path": "a.h5py"}, tmp_path)
    assert [f.n_rows(s) for s in ("train", "val", "test")] == [10, 3, 7]
    assert f.attrs["source_keys"]["val"][1] == "valid_texts"
    save_h5(tmp_path / "b.h5py", mrl_arrays(False, "train_text"))
    with pytest.raises(ValueError, match="val_rows is required"):
        prepare_dataset("m", {"format": "mrl_h5", "path": "b.h5py"}, tmp_path)
    g = prepare_dataset("m", {"format": "mrl_h5", "path": "b.h5py", "split": {"val_rows": 2}}, tmp_path)
    assert [g.n_rows(s) for s in ("train", "val", "test")] == [10, 2, 5] and g.n_classes == 3


def test_inria_explicit_splits(tmp_path: Path) -> None:
    arrays = {}
    for stem, n in (("tr", 12), ("val", 4), ("te", 5)):
        arrays.update(
            {
                f"{stem}_img": feats(RNG, n, 6),
                f"{stem}_txt": feats(RNG, n, 2),
                f"{stem}_img_lab": single_label(n, 4, 0).reshape(-1, 1),
                f"{stem}_txt_lab": single_label(n, 4, 0).reshape(-1, 1),
            }
        )
    save_v5(tmp_path / "INRIA-Websearch.mat", arrays)
    f = prepare_dataset("inria", {"format": "inria", "path": "INRIA-Websearch.mat"}, tmp_path)
    assert [f.n_rows(s) for s in ("train", "val", "test")] == [12, 4, 5] and f.n_classes == 4
    np.testing.assert_allclose(f.splits["val"]["text"], arrays["val_txt"])


@pytest.mark.parametrize("writer", [save_v5, save_v73])
def test_xmedianet_cells(tmp_path: Path, writer) -> None:
    arrays = {}
    for stem, n in (("train", 10), ("valid", 4), ("test", 5)):
        arrays[stem] = [
            feats(RNG, n, 6),
            feats(RNG, n, 3),
            feats(RNG, n, 2),
            feats(RNG, n, 2),
            feats(RNG, n, 2),
        ]
        arrays[f"{stem}_labels"] = [single_label(n, 5, 1).reshape(-1, 1)] * 5
    writer(tmp_path / "XMediaNet5View_Doc2Vec.mat", arrays)
    cfg = {"format": "xmedianet", "path": "XMediaNet5View_Doc2Vec.mat"}
    f = prepare_dataset("xmedianet", cfg, tmp_path)
    assert (
        f.dims == (6, 3)
        and [f.n_rows(s) for s in ("train", "val", "test")] == [10, 4, 5]
        and f.n_classes == 5
    )
    np.testing.assert_allclose(f.splits["test"]["image"], arrays["test"][0])
    assert prepare_dataset("xmedianet", {**cfg, "dummy_class_column": True}, tmp_path).n_classes == 6


# ------------------------------------------------------------------------------------- multi-label formats
def test_query_train_split_positional_and_seeded() -> None:
    idx = query_train_split(20, {"query": 4, "train": 10, "val": 3}, "s")
    assert idx["test"].tolist() == [0, 1, 2, 3] and idx["train"].tolist() == list(range(4, 14))
    assert idx["val"].tolist() == [14, 15, 16] and idx["database"].tolist() == list(range(4, 20))
    last = query_train_split(20, {"query": 4, "train": 10, "val": 3, "query_at": "last"}, "s")
    assert last["test"].tolist() == [16, 17, 18, 19] and last["database"].tolist() == list(range(16))
    a = query_train_split(20, {"query": 4, "train": 10, "val": 3, "order": "seeded", "seed": 5}, "s")
    b = query_train_split(20, {"query": 4, "train": 10, "val": 3, "order": "seeded", "seed": 5}, "s")
    assert all(np.array_equal(a[k], b[k]) for k in a) and a["test"].tolist() != [0, 1, 2, 3]
    assert not set(a["test"]) & set(a["database"]) and set(a["train"]) | set(a["val"]) <= set(a["database"])
    with pytest.raises(ValueError, match="val is required"):
        query_train_split(20, {"query": 4}, "datasets.x.split")
    with pytest.raises(ValueError, match="fit into the 20 rows"):
        query_train_split(20, {"query": 4, "train": 15, "val": 3}, "s")


def test_ucch_three_v73_files(tmp_path: Path) -> None:
    n = 30
    x, y, lab = feats(RNG, n, 8), (RNG.random((n, 6)) < 0.5).astype(np.float64), multihot(RNG, n, 4)
    save_v73(tmp_path / "mirflickr25k-iall-vgg.mat", {"XAll": x})
    save_v73(tmp_path / "mirflickr25k-yall.mat", {"YAll": y})
    save_v73(tmp_path / "mirflickr25k-lall.mat", {"LAll": lab})
    cfg = {
        "format": "ucch",
        "files": {
            "XAll": "mirflickr25k-iall-vgg.mat",
            "YAll": "mirflickr25k-yall.mat",
            "LAll": "mirflickr25k-lall.mat",
        },
        "split": {"query": 5, "train": 15, "val": 4, "query_at": "last"},
    }
    f = prepare_dataset("mir", cfg, tmp_path)
    assert [f.n_rows(s) for s in ("train", "val", "test", "database")] == [15, 4, 5, 25]
    np.testing.assert_allclose(f.splits["test"]["image"], x[25:])
    np.testing.assert_array_equal(f.splits["database"]["labels"], lab[:25])
    assert (
        f.n_classes == 4 and f.attrs["label_encoding"] == "multi_hot" and f.attrs["split"]["database"] == 25
    )
    assert [p.name for p in input_files("mir", cfg, tmp_path)] == [
        "mirflickr25k-iall-vgg.mat",
        "mirflickr25k-yall.mat",
        "mirflickr25k-lall.mat",
    ]
    back = read_features(write_features(tmp_path / "mir.h5", f))
    assert back.n_rows("database") == 25


def test_dcmh_v73_images(tmp_path: Path) -> None:
    n, h, w = 12, 3, 2
    images = RNG.integers(0, 255, size=(h, w, 3, n)).astype(np.uint8)  # MATLAB H x W x C x N
    save_v73(
        tmp_path / "FLICKR-25K.mat",
        {"images": images, "YAll": (RNG.random((n, 5)) < 0.5) * 1.0, "LAll": multihot(RNG, n, 3)},
    )
    f = prepare_dataset(
        "flickr",
        {"format": "dcmh", "path": "FLICKR-25K.mat", "split": {"query": 2, "train": 6, "val": 2}},
        tmp_path,
    )
    assert f.dims == (h * w * 3, 5)
    np.testing.assert_array_equal(f.splits["test"]["image"][1], images[..., 1].reshape(-1).astype(np.float32))


def nsrmh_arrays(prefix=("I", "T", "L"), stems=("tr", "te", "db"), sizes=(10, 6, 14)) -> dict:
    out = {}
    for stem, n in zip(stems, sizes, strict=True):
        out.update(
            {
                f"{prefix[0]}_{stem}": feats(RNG, n, 5),
                f"{prefix[1]}_{stem}": feats(RNG, n, 4),
                f"{prefix[2]}_{stem}": multihot(RNG, n, 3),
            }
        )
    return out


def test_nsrmh_single_file_and_cirh_files(tmp_path: Path) -> None:
    arrays = nsrmh_arrays()
    save_v5(tmp_path / "mir_clip_all.mat", arrays)
    f = prepare_dataset(
        "mir", {"format": "nsrmh", "path": "mir_clip_all.mat", "split": {"val_rows": 2}}, tmp_path
    )
    assert [f.n_rows(s) for s in ("train", "val", "test", "database")] == [10, 2, 4, 14]
    np.testing.assert_array_equal(f.splits["val"]["labels"], arrays["L_te"][:2])
    for role, stem in (("train", "tr"), ("query", "te")):
        save_v5(tmp_path / f"mir_{role}.mat", {k: v for k, v in arrays.items() if k.endswith(stem)})
    db = {k: v for k, v in arrays.items() if k.endswith("db")}
    save_v73(tmp_path / "mir_database.mat", db)  # CIRH's large database file is v7.3
    cfg = {
        "format": "nsrmh",
        "files": {r: f"mir_{r}.mat" for r in ("train", "query", "database")},
        "split": {"val_rows": 2},
    }
    g = prepare_dataset("mir", cfg, tmp_path)
    np.testing.assert_allclose(g.splits["database"]["image"], arrays["I_db"])
    assert set(g.attrs["sha256"]) == {"mir_train.mat", "mir_query.mat", "mir_database.mat"}


def test_rch_h5(tmp_path: Path) -> None:
    arrays = nsrmh_arrays(("Img", "Tag", "Lab"), ("Train", "Query", "DataBase"))
    save_h5(tmp_path / "MIRFlickr.h5", {k.replace("_", ""): v for k, v in arrays.items()})
    f = prepare_dataset("mir", {"format": "rch", "path": "MIRFlickr.h5", "split": {"val_rows": 1}}, tmp_path)
    assert [f.n_rows(s) for s in ("train", "val", "test", "database")] == [10, 1, 5, 14]


# ------------------------------------------------------------------------------------------------ errors
def test_missing_file_names_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"XMediaFeatures\.mat: file not found \(expected the xmedia"):
        prepare_dataset("xmedia", {"format": "xmedia", "path": "XMediaFeatures.mat"}, tmp_path)


def test_wrong_keys_list_expected_and_found(tmp_path: Path) -> None:
    save_v5(tmp_path / "XMediaFeatures.mat", {"I_tr_CNN": feats(RNG, 3, 2), "foo": np.ones((2, 2))})
    with pytest.raises(DatasetFileError) as err:
        prepare_dataset("xmedia", {"format": "xmedia", "path": "XMediaFeatures.mat"}, tmp_path)
    msg = str(err.value)
    assert "missing ['T_tr_BOW', 'trImgCat']" in msg and "I_tr_CNN (3, 2)" in msg and "foo (2, 2)" in msg


def test_not_a_mat_file(tmp_path: Path) -> None:
    (tmp_path / "wiki.mat").write_text("hello")
    with pytest.raises(DatasetFileError, match="not a readable MATLAB"):
        prepare_dataset("wiki", {"format": "rshnl_wiki", "path": "wiki.mat"}, tmp_path)


def test_row_mismatch_and_unlabelled_rows(tmp_path: Path) -> None:
    arrays = xmedia_arrays()
    arrays["T_tr_BOW"] = arrays["T_tr_BOW"][:5]
    save_v5(tmp_path / "XMediaFeatures.mat", arrays)
    cfg = {"format": "xmedia", "path": "XMediaFeatures.mat", "split": {"val_rows": 2}}
    with pytest.raises(DatasetFileError, match=r"'T_tr_BOW' has 5 rows but 'trImgCat' has 12 labels"):
        prepare_dataset("xmedia", cfg, tmp_path)
    arrays = nsrmh_arrays()
    arrays["L_db"][3] = 0
    save_v5(tmp_path / "m.mat", arrays)
    cfg = {"format": "nsrmh", "path": "m.mat", "split": {"val_rows": 2}}
    with pytest.raises(DatasetFileError, match="drop_unlabelled: true"):
        prepare_dataset("m", cfg, tmp_path)
    f = prepare_dataset("m", {**cfg, "drop_unlabelled": True}, tmp_path)
    assert f.n_rows("database") == 13 and f.attrs["split"]["dropped_unlabelled_rows"] == {"database": 1}
