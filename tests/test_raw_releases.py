"""The raw public releases (cmhash.data.raw): readers on fixtures in the published layouts, the papers' recipes,
clear errors naming the missing file, doc2vec determinism, and the workflow from the raw layout to the table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from raw_fixtures import (
    FIXTURE_CONFIG,
    MIR_CONCEPTS,
    MIR_UNLABELLED,
    PASCAL_CATEGORIES,
    RAW_EXPERIMENTS,
    WIKI_CATEGORIES,
    write_pascal_sentence,
    write_raw_releases,
)
from workflow_helpers import REPO, SNAKEMAKE, one_torch_thread, planned_jobs  # noqa: F401 (fixture)

from cmhash.data import prepare_dataset, read_features
from cmhash.data.folder import read_corpus
from cmhash.data.raw import RawReleaseError
from cmhash.data.texts import doc2vec

FAST = FIXTURE_CONFIG["datasets"]["wikipedia_raw"]["folder"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> Path:
    return write_raw_releases(tmp_path_factory.mktemp("raw"))


def wiki_cfg(**extra) -> dict:
    return {"format": "wikipedia", "path": "wikipedia", "split": {"val_rows": 4}, "folder": dict(FAST), **extra}


# ------------------------------------------------------------------------------------------- Wikipedia
def test_wikipedia_reader_follows_the_lists(releases):
    corpus = read_corpus("w", wiki_cfg(), releases)
    assert len(corpus.texts) == 28 and corpus.split["train"].size == 16 and corpus.split["test"].size == 12
    assert corpus.class_names == list(WIKI_CATEGORIES)  # category numbers 1..4 -> their image folders
    lines = (releases / "wikipedia/trainset_txt_img_cat.list").read_text().split("\n")
    text_id, image_id, cat = lines[5].split()
    assert corpus.image_ids[5] == f"images/{WIKI_CATEGORIES[int(cat) - 1]}/{image_id}.jpg"
    assert corpus.labels[5].tolist() == [int(j == int(cat) - 1) for j in range(4)]
    assert "<" not in corpus.texts[5] and corpus.texts[5].split()[0] in " ".join(corpus.texts)
    assert corpus.texts[2].endswith("Arts & crafts.")  # the non-well-formed file is read by pattern
    check = corpus.attrs["release_check"]
    assert check["complete"] is False and check["found"] == {"pairs": 28, "train": 16, "test": 12, "classes": 4}
    assert set(corpus.attrs["sha256"]) == {"trainset_txt_img_cat.list", "testset_txt_img_cat.list"}


def test_wikipedia_features_doc2vec_and_the_release_split(releases):
    features = prepare_dataset("w", wiki_cfg(), releases)
    assert features.dims == (2048, 16) and features.n_classes == 4
    assert {s: features.n_rows(s) for s in ("train", "val", "test")} == {"train": 16, "val": 4, "test": 8}
    assert features.attrs["split"] == {"method": "release_lists", "val_rows": 4, "n_train": 16, "n_val": 4,
                                       "n_test": 8}
    text = features.attrs["features"]["text"]
    assert text["text_features"] == "doc2vec" and text["dm"] == 0 and text["inferred"] is False
    # validation = the first 4 pairs of the test list, in list order
    corpus = read_corpus("w", wiki_cfg(), releases)
    np.testing.assert_array_equal(features.splits["val"]["labels"], corpus.labels[corpus.split["test"][:4]])
    # seeded: the same corpus and settings give the same vectors (sample=1e-5 subsamples nearly every word of a
    # 28-text corpus, so the fixture's vectors carry little class information; a real release has 2,866 texts)
    again = prepare_dataset("w", wiki_cfg(), releases)
    np.testing.assert_array_equal(again.splits["train"]["text"], features.splits["train"]["text"])
    assert np.isfinite(features.splits["train"]["text"]).all()
    assert np.unique(features.splits["train"]["text"], axis=0).shape[0] == 16


def test_wikipedia_bag_of_words_and_the_default_split_needs_the_full_release(releases):
    features = prepare_dataset("w", wiki_cfg(folder={**FAST, "text_features": "bow", "max_features": 5}), releases)
    assert features.dims == (2048, 5) and set(np.unique(features.splits["train"]["text"])) <= {0.0, 1.0}
    with pytest.raises(ValueError, match=r"datasets\.w\.split\.val_rows = 231 .*test list has 12"):
        prepare_dataset("w", {k: v for k, v in wiki_cfg().items() if k != "split"}, releases)


def test_wikipedia_svcl_feature_release(releases):
    cfg = {"format": "wikipedia_svcl", "path": "wikipedia", "split": {"val_rows": 4}}
    features = prepare_dataset("s", cfg, releases)
    assert features.dims == (128, 10) and features.n_classes == 4
    assert {s: features.n_rows(s) for s in ("train", "val", "test")} == {"train": 16, "val": 4, "test": 8}
    # the fixture puts class c's mass on visual word 10 c and LDA topic c: the rows follow the lists
    for s in ("train", "val", "test"):
        part = features.splits[s]
        c = part["labels"].argmax(1)
        assert (part["image"].argmax(1) == 10 * c).all() and (part["text"].argmax(1) == c).all()
    assert features.attrs["release_check"]["complete"] is False


# ------------------------------------------------------------------------------------------- MIRFlickr
def mir_cfg(**folder) -> dict:
    return {"format": "mirflickr", "path": "mirflickr", "folder": {**{k: v for k, v in FAST.items() if k != "min_count"},
                                                                     **folder},
            "split": {"query": 6, "train": 14, "val": 3, "order": "seeded", "seed": 0}}


def test_mirflickr_dcmh_protocol(releases):
    corpus = read_corpus("m", mir_cfg(), releases)
    kept = [i for i in range(1, 31) if i not in MIR_UNLABELLED]
    assert corpus.image_ids == [f"im{i}.jpg" for i in kept] and corpus.class_names == sorted(MIR_CONCEPTS)
    assert corpus.attrs["dropped_without_concept"] == 4
    # image kept[0] has concept 0 in animals.txt and concept 1 only in clouds_r1.txt: both count
    assert corpus.labels[0].tolist() == [1, 1, 0, 0] and corpus.labels[1].tolist() == [0, 1, 0, 0]
    features = prepare_dataset("m", mir_cfg(), releases)
    # tags in >= 20 of the KEPT images: photo (26) and nikon (20); canon is in 19 kept + 4 dropped ones
    assert features.dims == (2048, 2)
    # 6 queries (= test), the other 20 pairs the retrieval set, training and validation drawn from it
    assert {s: features.n_rows(s) for s in ("train", "val", "test", "database")} == {
        "train": 14, "val": 3, "test": 6, "database": 20}
    assert features.attrs["features"]["text"]["vocabulary_size"] == 2


def test_mirflickr_threshold_is_configurable(releases):
    features = prepare_dataset("m", mir_cfg(min_count=19), releases)
    assert features.dims[1] == 3  # + canon


# ------------------------------------------------------------------------------------- Pascal Sentence
def test_pascal_sentence_reader_and_per_class_split(releases):
    cfg = {"format": "pascal_sentence", "path": "pascal_sentence", "folder": dict(FAST),
           "split": {"train_per_class": 4, "val_per_class": 1, "test_per_class": 1, "seed": 0}}
    corpus = read_corpus("p", cfg, releases)
    assert len(corpus.texts) == 24 and corpus.class_names == sorted(PASCAL_CATEGORIES)
    assert corpus.texts[0].count(".") == 5 and corpus.attrs["sentences_per_image"] == [5, 5]
    features = prepare_dataset("p", cfg, releases)
    assert features.dims == (2048, 16)
    for s, per in (("train", 4), ("val", 1), ("test", 1)):
        assert features.splits[s]["labels"].sum(0).tolist() == [per] * 4


def test_pascal_sentence_accepts_the_crawl_folder_names(tmp_path):
    write_pascal_sentence(tmp_path, images="dataset", sentences="sentence")
    corpus = read_corpus("p", {"format": "pascal_sentence", "path": "pascal_sentence"}, tmp_path)
    assert len(corpus.texts) == 24 and corpus.image_ids[0].startswith("dataset/")


# --------------------------------------------------------------------------------------------- errors
def _broken(tmp_path: Path, releases: Path, release: str, remove: str) -> Path:
    shutil.copytree(releases / release, tmp_path / release)
    target = tmp_path / release / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    return tmp_path


@pytest.mark.parametrize(
    ("release", "fmt", "remove", "message"),
    [
        ("wikipedia", "wikipedia", "testset_txt_img_cat.list", r"testset_txt_img_cat\.list not found"),
        ("wikipedia", "wikipedia", "texts", r"no texts folder in .*wikipedia"),
        ("wikipedia", "wikipedia_svcl", "raw_features.mat", r"raw_features\.mat not found.*I_tr"),
        ("mirflickr", "mirflickr", "annotations", r"no annotations folder .*mirflickr25k_annotations_v080"),
        ("mirflickr", "mirflickr", "meta/tags/tags2.txt", r"tag file\(s\) missing .*tags2\.txt"),
        ("pascal_sentence", "pascal_sentence", "sentences/bird/2008_020003.txt",
         r"no sentence file .*sentences/bird/2008_020003\.txt"),
    ],
)
def test_missing_files_are_named(tmp_path, releases, release, fmt, remove, message):
    root = _broken(tmp_path, releases, release, remove)
    with pytest.raises((RawReleaseError, ValueError), match=message):
        prepare_dataset("x", {"format": fmt, "path": release, "folder": dict(FAST)} if fmt != "wikipedia_svcl"
                        else {"format": fmt, "path": release}, root)


def test_malformed_release_files_name_file_and_line(tmp_path, releases):
    root = _broken(tmp_path, releases, "wikipedia", "images/art")
    with pytest.raises(RawReleaseError, match=r"name 7 image\(s\) not found as .*images/<category>/<id>\.jpg"):
        read_corpus("x", {"format": "wikipedia", "path": "wikipedia"}, root)
    shutil.copytree(releases / "wikipedia/images/art", root / "wikipedia/images/art")
    with (root / "wikipedia/trainset_txt_img_cat.list").open("a") as f:
        f.write("abc def\n")
    with pytest.raises(RawReleaseError, match=r"trainset_txt_img_cat\.list, line 17: expected 'text_id image_id"):
        read_corpus("x", {"format": "wikipedia", "path": "wikipedia"}, root)
    with pytest.raises(ValueError, match=r"datasets\.x\.path is required for format wikipedia"):
        read_corpus("x", {"format": "wikipedia"}, root)
    with pytest.raises(RawReleaseError, match=r"datasets\.x\.path: .*nowhere is not a folder"):
        read_corpus("x", {"format": "wikipedia", "path": "nowhere"}, root)
    with pytest.raises(ValueError, match=r"image_column"):
        prepare_dataset("x", {"format": "wikipedia", "path": "wikipedia", "folder": {"image_column": "x"}}, releases)


# -------------------------------------------------------------------------------------------- doc2vec
_DOC2VEC = """
import hashlib, sys
sys.path.insert(0, {tests!r})
import numpy as np
from cmhash.data.texts import doc2vec
from cmhash.data.folder import read_corpus
corpus = read_corpus("w", {{"format": "wikipedia", "path": "wikipedia"}}, {root!r})
x = doc2vec(corpus.texts, dim=16, epochs=3, model_path={model!r} or None).features
print(hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest())
"""


def test_doc2vec_is_the_same_in_every_process(releases, tmp_path):
    """gensim seeds with Python's hash(); ours must not depend on PYTHONHASHSEED (trained and inferred)."""
    from gensim.models.doc2vec import Doc2Vec, TaggedDocument

    model = tmp_path / "d2v.model"
    texts = read_corpus("w", {"format": "wikipedia", "path": "wikipedia"}, releases).texts
    Doc2Vec([TaggedDocument(t.lower().split(), [i]) for i, t in enumerate(texts)], vector_size=8, epochs=2,
            min_count=1, workers=1, seed=0).save(str(model))
    for model_path in ("", str(model)):
        digests = set()
        for hash_seed in ("1", "2"):
            code = _DOC2VEC.format(tests=str(Path(__file__).parent), root=str(releases), model=model_path)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                                 env={**os.environ, "PYTHONHASHSEED": hash_seed})
            assert out.returncode == 0, out.stderr[-2000:]
            digests.add(out.stdout.strip())
        assert len(digests) == 1, (model_path, digests)
    inferred = doc2vec(texts[:3], model_path=model)
    assert inferred.features.shape == (3, 8) and inferred.info["inferred"] is True


# ------------------------------------------------------------------------------------------- workflow
def _snakemake(workdir: Path, data_root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--configfile", str(workdir / "fixture_config.yaml"), "--config", f"data_root={data_root}"]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)


@pytest.mark.workflow
def test_raw_layouts_to_the_tables(releases, tmp_path):
    """`snakemake raw_wikipedia raw_mirflickr raw_pascal --config data_root=<fixtures>` (+ the fixture config)."""
    (tmp_path / "fixture_config.yaml").write_text(yaml.safe_dump(FIXTURE_CONFIG))
    proc = _snakemake(tmp_path, releases, *RAW_EXPERIMENTS)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    shapes = {}
    for name in ("wikipedia_raw", "wikipedia_bow", "wikipedia_svcl", "mirflickr_raw", "pascal_sentence"):
        shapes[name] = read_features(tmp_path / f"results/data/{name}.h5").dims
    assert shapes == {"wikipedia_raw": (2048, 16), "wikipedia_bow": (2048, 22), "wikipedia_svcl": (128, 10),
                      "mirflickr_raw": (2048, 2), "pascal_sentence": (2048, 16)}
    for experiment in RAW_EXPERIMENTS:
        table = (tmp_path / f"results/tables/{experiment}.md").read_text()
        assert "RSHNL" in table and "CE" in table
    (metrics,) = (tmp_path / "results/runs/wikipedia_svcl/sym/RSHNL/seed0").glob("noise0.4_bits*/noise0.4_bits16.h5")
    with h5py.File(metrics) as f:
        assert 0.0 < float(f["metrics/I2T"].attrs["map"]) <= 1.0
    # A new split re-runs the data stage and what follows, never the image network.
    config = yaml.safe_load((tmp_path / "fixture_config.yaml").read_text())
    config["datasets"]["pascal_sentence"]["split"]["seed"] = 1
    (tmp_path / "fixture_config.yaml").write_text(yaml.safe_dump(config))
    planned = planned_jobs(_snakemake(tmp_path, releases, "raw_pascal", "-n"))
    assert planned.get("prepare_dataset") == 1 and "extract_features" not in planned, planned
