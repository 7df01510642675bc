"""The features stage: backbones, image preprocessing, text vectorisers, own-corpus datasets, the workflow rule."""

from __future__ import annotations

import io
import logging
import math
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from workflow_helpers import REPO, SNAKEMAKE, one_torch_thread, planned_jobs  # noqa: F401 (fixture)

from cmhash.config import ConfigError, load_schema, validate_config
from cmhash.data import prepare_dataset
from cmhash.data.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Progress,
    WeightsError,
    build_architecture,
    extract_image_features,
    load_backbone,
    preprocess_image,
)
from cmhash.data.canonical import read_features, write_features
from cmhash.data.folder import (
    FOLDER_DEFAULTS,
    extract_corpus,
    prepare_folder,
    read_extracted,
    write_extracted,
)
from cmhash.data.texts import embed_sentences, vectorize

# Small crops keep the random backbones fast; the 224 default is exercised once (VGG-19 test).
FAST = {"backbone": "resnet50", "weights": "random", "image_size": 32, "batch_size": 5}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_png(path: Path, rgb: tuple[int, int, int], size=(40, 30), stripe: int = 0) -> None:
    a = np.empty((size[1], size[0], 3), np.uint8)
    a[...] = rgb
    a[:, :stripe] = 255 - np.asarray(rgb, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """data_root with images/ (12 PNGs) and corpus.csv: single labels, multi labels, indicator columns."""
    root = tmp_path_factory.mktemp("corpus")
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    lines = ["image,text,labels,tags,cat,dog"]
    for i in range(12):
        c = i % 3
        write_png(root / "images" / f"sub/im{i:02d}.png", colours[c], stripe=i)
        tags = ["a|b", "b", "c|a"][c]
        lines.append(f"sub/im{i:02d}.png,word{c} shared extra{i % 2},class{c},{tags},{int(c == 0)},{int(c > 0)}")
    (root / "corpus.csv").write_text("\n".join(lines) + "\n")
    return root


def folder_cfg(**folder) -> dict:
    return {
        "format": "folder",
        "path": "corpus.csv",
        "folder": {"images": "images", **FAST, **folder},
        "split": {"train_fraction": 0.5, "val_fraction": 0.25, "seed": 0},
    }


@pytest.fixture(scope="module")
def extracted(corpus) -> Path:
    path = corpus / "extracted.h5"
    write_extracted(path, extract_corpus("own", folder_cfg(), corpus))
    return path


@pytest.fixture(scope="module")
def in_memory(corpus):
    """The folder dataset prepared without the workflow (features extracted in memory)."""
    return prepare_dataset("own", folder_cfg(), corpus)


# ------------------------------------------------------------------------------------------ backbones
def test_architectures_have_torchvisions_parameters_and_key_names():
    vgg, _ = build_architecture("vgg19", prefer_torchvision=False)
    resnet, _ = build_architecture("resnet50", prefer_torchvision=False)
    # torchvision's documented sizes: VGG19_Weights 143,667,240 and ResNet50_Weights 25,557,032 parameters.
    assert sum(p.numel() for p in vgg.parameters()) == 143_667_240
    assert sum(p.numel() for p in resnet.parameters()) == 25_557_032
    convs = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    expected = [f"features.{i}.{p}" for i in convs for p in ("weight", "bias")]
    expected += [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]
    assert list(vgg.state_dict()) == expected
    keys = list(resnet.state_dict())
    assert len(keys) == 320  # 53 convs + 53 batch norms x 5 entries + fc weight/bias
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.0.downsample.0.weight",
                "layer2.0.downsample.1.num_batches_tracked", "layer3.5.bn3.running_var", "layer4.2.conv3.weight",
                "fc.weight", "fc.bias"):
        assert key in keys, key
    assert tuple(resnet.state_dict()["layer4.2.conv3.weight"].shape) == (2048, 512, 1, 1)
    # torchvision's ResNet "V1.5": the stride of a down-sampling block is on its 3x3 convolution.
    assert resnet.layer2[0].conv1.stride == (1, 1) and resnet.layer2[0].conv2.stride == (2, 2)


def test_state_dict_file_and_cache_load_into_our_architecture(tmp_path, monkeypatch):
    model, _ = build_architecture("resnet50", seed=3, prefer_torchvision=False)
    saved = model.state_dict()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch/hub/checkpoints/resnet50-0676ba61.pth"
    cached.parent.mkdir(parents=True)
    torch.save(saved, cached)
    prefixed = tmp_path / "dp.pth"  # nn.DataParallel checkpoints prefix every key with "module."
    torch.save({"module." + k: v for k, v in saved.items()}, prefixed)
    for weights in (str(cached), "imagenet", str(prefixed)):
        loaded, info = load_backbone("resnet50", weights, seed=0)
        assert not loaded.training
        for key, value in loaded.state_dict().items():
            assert torch.equal(value, saved[key]), (weights, key)
    assert info["weights"] == str(prefixed) and len(info["weights_sha256"]) == 64
    assert load_backbone("resnet50", "imagenet")[1]["weights"] == str(cached)
    broken = dict(saved)
    broken["fc.kernel"] = broken.pop("fc.weight")
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match=r"broken\.pth.*1 missing key\(s\) \['fc\.weight'\].*'fc\.kernel'"):
        load_backbone("resnet50", str(tmp_path / "broken.pth"))
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"garbage\.pth: not a readable torch state_dict file"):
        load_backbone("resnet50", str(tmp_path / "garbage.pth"))
    with pytest.raises(WeightsError, match="vgg19-dcbb9e9d.pth not found"):
        load_backbone("vgg19", "imagenet")
    with pytest.raises(WeightsError, match="nowhere.pth not found"):
        load_backbone("resnet50", str(tmp_path / "nowhere.pth"))


def test_resnet50_features_are_2048_d_and_seeded(corpus):
    images = [corpus / "images/sub/im00.png", corpus / "images/sub/im01.png"]
    first = extract_image_features(images, "resnet50", "random", image_size=32, seed=3)
    again = extract_image_features(images, "resnet50", "random", image_size=32, seed=3)
    other = extract_image_features(images, "resnet50", "random", image_size=32, seed=4)
    assert first.features.shape == (2, 2048) and (first.features >= 0).all()
    np.testing.assert_array_equal(first.features, again.features)
    assert not np.allclose(first.features, other.features)
    assert first.info["weights"] == "random initialisation (seed 3)"


def test_preprocessing_is_resize_center_crop_normalise(tmp_path):
    def normalised(rgb):
        return (np.asarray(rgb) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD

    # 512 x 256: the shorter side is already 256, the centre crop takes columns 144..367.
    a = np.zeros((256, 512, 3), np.uint8)
    a[:, :256] = (255, 0, 0)
    a[:, 256:] = (0, 0, 255)
    Image.fromarray(a).save(tmp_path / "halves.png")
    x = preprocess_image(tmp_path / "halves.png")
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, :, :112], normalised((255, 0, 0))[:, None, None] * np.ones((1, 224, 112)),
                               atol=1e-6)
    np.testing.assert_allclose(x[:, :, 112:], normalised((0, 0, 255))[:, None, None] * np.ones((1, 224, 112)),
                               atol=1e-6)
    # A small grey image is upscaled (shorter side 256 -> crop 224); a constant stays constant.
    write_png(tmp_path / "grey.png", (128, 128, 128), size=(50, 20))
    x = preprocess_image(tmp_path / "grey.png")
    assert x.shape == (3, 224, 224)
    np.testing.assert_allclose(x, normalised((128, 128, 128))[:, None, None] * np.ones((1, 224, 224)), atol=1e-6)
    assert preprocess_image(tmp_path / "grey.png", crop=64).shape == (3, 64, 64)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"bad\.png: cannot read the image"):
        preprocess_image(tmp_path / "bad.png")


def test_vgg19_fc7_features_are_4096_d(corpus):
    a, b = corpus / "images/sub/im00.png", corpus / "images/sub/im01.png"
    out = extract_image_features([a, b, a], "vgg19", "random", image_size=224, batch_size=2, seed=0)
    assert out.features.shape == (3, 4096) and out.features.dtype == np.float32
    assert (out.features >= 0).all() and out.features.any()  # fc7 is taken after its ReLU
    np.testing.assert_array_equal(out.features[0], out.features[2])  # same file, same row
    assert not np.array_equal(out.features[0], out.features[1])
    assert "fc7" in out.info["layer"] and out.info["image_size"] == 224


def test_progress_bar_on_a_terminal_log_lines_otherwise(caplog):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    bar = Progress(4, "vgg19 features", stream=screen)
    for _ in range(4):
        bar.update(1)
    assert screen.getvalue().count("\r") == 4 and "4/4" in screen.getvalue() and screen.getvalue().endswith("\n")
    with caplog.at_level(logging.INFO, logger="cmhash.data.backbones"):
        quiet = Progress(20, "resnet50 features", stream=io.StringIO())
        for _ in range(20):
            quiet.update(1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10 and lines[0].startswith("resnet50 features: 2/20 (10%") and "20/20" in lines[-1]


# ----------------------------------------------------------------------------------------------- texts
def test_bag_of_words_vocabulary_threshold_by_hand():
    texts = ["Sky sea", "sky sun", "SKY", "tree sea"]
    bow = vectorize(texts, "bow", min_count=2)  # df: sky 3, sea 2, sun 1, tree 1
    assert bow.vocabulary == ["sea", "sky"]
    np.testing.assert_array_equal(bow.features, [[1, 1], [0, 1], [0, 1], [1, 0]])
    assert vectorize(texts, "bow", min_count=1).vocabulary == ["sea", "sky", "sun", "tree"]
    assert vectorize(texts, "bow", min_count=1, max_features=1).vocabulary == ["sky"]
    tags = vectorize(["new york;sky", "New York", "sky;sky;beach"], "bow", min_count=2, token_separator=";")
    assert tags.vocabulary == ["new york", "sky"]
    np.testing.assert_array_equal(tags.features, [[1, 1], [1, 0], [0, 1]])  # binary: "sky" twice -> 1
    assert tags.info["vocabulary_size"] == 2 and tags.info["empty_texts"] == 0


def test_tfidf_is_smoothed_idf_with_l2_rows():
    out = vectorize(["a b", "a c", "a"], "tfidf", min_count=1)
    assert out.vocabulary == ["a", "b", "c"]
    idf_b = math.log((1 + 3) / (1 + 1)) + 1  # idf(a) = log(4/4) + 1 = 1
    row0 = np.array([1.0, idf_b, 0.0]) / math.hypot(1.0, idf_b)
    np.testing.assert_allclose(out.features[0], row0, rtol=1e-6)
    np.testing.assert_allclose(out.features[2], [1, 0, 0], rtol=1e-6)


def test_empty_vocabulary_names_the_source_and_the_fix():
    with pytest.raises(ValueError, match=r"t\.csv column 'text': empty vocabulary.*min_count = 5.*occurs in 2"):
        vectorize(["x y", "x", "z"], "bow", min_count=5, where="t.csv column 'text'")


def test_sentence_transformers_needs_a_local_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="text_model.*nothing is downloaded"):
        embed_sentences(["a"], tmp_path / "no-model")


def test_sentence_transformers_local_model(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.modules import BoW  # version >= 6
    except ImportError:
        from sentence_transformers.models import BoW
    # A bag-of-words "model" built and saved locally: no download, exercises loading from a path.
    st.SentenceTransformer(modules=[BoW(vocab=["sky", "sea", "sun"])]).save(str(tmp_path / "bow"))
    out = embed_sentences(["sky sea", "sun", "sea"], tmp_path / "bow")
    assert out.features.shape == (3, 3) and out.features.dtype == np.float32
    assert out.features[0].sum() == 2 and out.features[1].sum() == 1


# ------------------------------------------------------------------------------------ own corpus datasets
def test_folder_dataset_in_memory_to_canonical_file(in_memory, tmp_path):
    features = in_memory
    assert features.modalities == ("image", "text") and features.attrs["format"] == "folder"
    assert features.dims == (2048, 6)  # shared, word0-2, extra0-1
    assert {s: features.n_rows(s) for s in features.splits} == {"train": 6, "val": 3, "test": 3}
    assert features.attrs["class_names"] == ["class0", "class1", "class2"]
    for split in features.splits.values():
        assert (split["labels"].sum(axis=1) == 1).all()
        np.testing.assert_array_equal(split["labels"].sum(axis=0), [len(split["labels"]) // 3] * 3)
    path = write_features(tmp_path / "own.h5", features)
    back = read_features(path)
    np.testing.assert_array_equal(back.splits["test"]["image"], features.splits["test"]["image"])
    assert "corpus.csv" in back.attrs["sha256"] and back.attrs["features"]["image"]["backbone"] == "resnet50"


def test_extracted_file_round_trip_and_split_reuse(corpus, extracted, in_memory):
    corpus_file = read_extracted(extracted)
    assert corpus_file.image.shape == (12, 2048) and corpus_file.text.shape == (12, 6)
    assert corpus_file.image_files[0] == "sub/im00.png" and "shared" in corpus_file.vocabulary
    with h5py.File(extracted) as f:
        assert f.attrs["schema"] == "cmhash.extracted/1"
    from_file = prepare_folder("own", folder_cfg(), corpus, extracted)
    for split in ("train", "val", "test"):
        for key in ("image", "text", "labels"):
            np.testing.assert_array_equal(from_file.splits[split][key], in_memory.splits[split][key])
    per_class = {**folder_cfg(), "split": {"train_per_class": 2, "val_per_class": 1, "test_per_class": 1, "seed": 1}}
    assert {s: v["labels"].shape[0] for s, v in prepare_folder("own", per_class, corpus, extracted).splits.items()} \
        == {"train": 6, "val": 3, "test": 3}


def test_multi_label_column_and_query_protocol(corpus, extracted):
    cfg = {
        **folder_cfg(label_column="tags", label_separator="|"),
        "split": {"query": 3, "train": 6, "val": 2, "order": "seeded", "seed": 1},
    }
    features = prepare_folder("own", cfg, corpus, extracted)
    assert features.attrs["class_names"] == ["a", "b", "c"]
    assert {s: features.n_rows(s) for s in features.splits} == {"train": 6, "val": 2, "test": 3, "database": 9}
    rows = {tuple(r) for s in features.splits.values() for r in s["labels"].tolist()}
    assert rows == {(1, 1, 0), (0, 1, 0), (1, 0, 1)}  # "a|b", "b", "c|a"
    indicator = prepare_folder("own", folder_cfg(label_column=["cat", "dog"]), corpus, extracted)
    assert indicator.attrs["class_names"] == ["cat", "dog"] and indicator.n_classes == 2


def test_tsv_table_and_tfidf_tags(tmp_path, corpus):
    lines = ["file\ttags\tclass"] + [f"sub/im{i:02d}.png\tsky;new york;t{i % 3}\t{i % 2}" for i in range(12)]
    (tmp_path / "t.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "images").symlink_to(corpus / "images")
    cfg = {**folder_cfg(image_column="file", text_column="tags", label_column="class", text_features="tfidf",
                        token_separator=";", min_count=4), "path": "t.tsv"}
    features = prepare_dataset("own", cfg, tmp_path)
    assert features.dims[1] == 5  # sky, new york, t0, t1, t2 (each in >= 4 rows)
    assert features.attrs["class_names"] == ["0", "1"]
    norms = np.linalg.norm(features.splits["train"]["text"], axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)


def test_errors_name_the_file_the_key_and_the_fix(tmp_path, corpus, extracted):
    (tmp_path / "images").symlink_to(corpus / "images")
    table = tmp_path / "corpus.csv"
    table.write_text("image,text,labels\nsub/im00.png,a,x\nsub/missing.png,b,y\n")
    with pytest.raises(FileNotFoundError, match=r"corpus\.csv: 1 file name\(s\) in column 'image'.*missing\.png"):
        prepare_dataset("own", folder_cfg(), tmp_path)
    with pytest.raises(ValueError, match=r"column\(s\) \['caption'\] not found; the table has \['image', 'text'"):
        prepare_dataset("own", folder_cfg(text_column="caption"), tmp_path)
    with pytest.raises(FileNotFoundError, match="folder.images: image folder .*nowhere not found"):
        prepare_dataset("own", folder_cfg(images="nowhere"), tmp_path)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['backbon'\]"):
        prepare_dataset("own", folder_cfg(backbon="vgg19"), tmp_path)
    # Labels come from the table: an empty label cell is reported, or dropped on request.
    unlabelled = corpus / "unlabelled.csv"
    text = (corpus / "corpus.csv").read_text().splitlines()
    text[5] = text[5].replace(",class1,", ",,")
    unlabelled.write_text("\n".join(text) + "\n")
    cfg = {**folder_cfg(), "path": "unlabelled.csv"}
    with pytest.raises(ValueError, match=r"1 row\(s\) have no label.*line 6.*drop_unlabelled: true"):
        prepare_folder("own", cfg, corpus, extracted)
    cfg = {**cfg, "drop_unlabelled": True, "split": {"query": 2, "train": 7, "val": 2}}
    dropped = prepare_folder("own", cfg, corpus, extracted)
    assert dropped.n_rows("database") == 9 and dropped.attrs["split"]["dropped_unlabelled_rows"] == 1
    changed = corpus / "changed.csv"
    changed.write_text((corpus / "corpus.csv").read_text().replace("im03.png", "im04.png"))
    with pytest.raises(ValueError, match=r"another version of .*changed\.csv.*extract_features"):
        prepare_folder("own", {**folder_cfg(), "path": "changed.csv"}, corpus, extracted)
    with pytest.raises(ValueError, match=r"label column 'cat' must hold 0 or 1, found '2' on line 3"):
        bad = corpus / "bad_indicator.csv"
        bad.write_text((corpus / "corpus.csv").read_text().replace(",class1,b,0,1", ",class1,b,2,1", 1))
        prepare_folder("own", {**folder_cfg(label_column=["cat", "dog"]), "path": "bad_indicator.csv"}, corpus,
                       extracted)


def test_schema_describes_the_folder_keys_with_the_library_defaults():
    folder = load_schema()["properties"]["datasets"]["additionalProperties"]["properties"]["folder"]
    assert {k: v["x-default"] for k, v in folder["properties"].items()} == FOLDER_DEFAULTS
    assert all(v.get("description") for v in folder["properties"].values())
    base = {"methods": {"CE": {"impl": "ce_baseline"}},
            "experiments": {"e": {"datasets": ["own"], "methods": ["CE"], "noise": [0.2], "bits": [8], "seeds": [0]}}}
    with pytest.raises(ConfigError, match="datasets.own.path is required for format folder"):
        validate_config({**base, "datasets": {"own": {"format": "folder"}}})
    with pytest.raises(ConfigError, match="backbone"):
        validate_config({**base, "datasets": {"own": {"format": "folder", "path": "t.csv",
                                                      "folder": {"backbone": "vgg16"}}}})


# ---------------------------------------------------------------------------------------------- workflow
def _snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    (workdir / "own.yaml").write_text(yaml.safe_dump(config))
    cmd = [SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--set-threads", "extract_features=1", "--configfile", str(workdir / "own.yaml")]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"},
                          timeout=600)


@pytest.mark.workflow
def test_features_rule_runs_in_the_workflow(corpus, tmp_path):
    config = {
        "data_root": str(corpus),
        "datasets": {"own": folder_cfg()},
        "experiments": {"own": {"datasets": ["own"], "methods": ["CE"], "noise": [0.2], "bits": [8], "seeds": [0]}},
    }
    proc = _snakemake(tmp_path, config, "results/data/own.h5")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with h5py.File(tmp_path / "results/features/own.h5") as f:
        assert f.attrs["schema"] == "cmhash.extracted/1" and f["image"].shape == (12, 2048)
    features = read_features(tmp_path / "results/data/own.h5")
    assert features.dims == (2048, 6) and features.n_rows("train") == 6
    assert "resnet50 features: 12/12" in (tmp_path / "logs/extract_features/own.log").read_text()
    # A new split re-runs only prepare_dataset; a new backbone setting re-extracts.
    config["datasets"]["own"]["split"]["seed"] = 1
    assert planned_jobs(_snakemake(tmp_path, config, "results/data/own.h5", "-n")) == {"prepare_dataset": 1, "total": 1}
    config["datasets"]["own"]["folder"]["image_size"] = 64
    assert planned_jobs(_snakemake(tmp_path, config, "results/data/own.h5", "-n")) == {
        "extract_features": 1, "prepare_dataset": 1, "total": 2}
    config["datasets"]["own"]["folder"]["images"] = "no_such_folder"
    proc = _snakemake(tmp_path, config, "results/data/own.h5", "-n")
    assert proc.returncode != 0
    assert "datasets.own.folder.images" in proc.stdout + proc.stderr and "no_such_folder" in proc.stdout + proc.stderr
