"""Published noisy-label files, the multi-label flip recipe, and the paper-vs-ours join."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matlab_fixtures import multihot, save_h5, save_v5, save_v73

from cmhash.config import ConfigError, run_config_hash, validate_config
from cmhash.data.matfiles import DatasetFileError
from cmhash.noise import import_noisy_labels, make_noisy_labels, read_noisy_labels, write_noisy_labels
from cmhash.report.paper import plot_scatter, to_markdown
from cmhash.report.published import join_paper, load_paper_map
from cmhash.report.results import SUMMARY_COLUMNS

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = REPO.parent / "shared" / "reference" / "official_noisy_labels"
PAPER_CSV = REPO / "resources" / "paper" / "rshnl_paper_map.csv"


def one_hot(classes: np.ndarray, c: int) -> np.ndarray:
    out = np.zeros((classes.size, c), dtype=np.uint8)
    out[np.arange(classes.size), classes] = 1
    return out


# ------------------------------------------------------------------------------------ multilabel_flip
def test_multilabel_flip_moves_exactly_one_label_in_floor_rn_rows() -> None:
    clean = multihot(np.random.default_rng(1), 500, 6).astype(np.uint8)
    noisy = make_noisy_labels(clean, 0.37, seed=4, kind="multilabel_flip")
    assert noisy.n_selected == 185 and noisy.changed.sum() == 185  # floor(0.37 * 500), every one changes
    diff = noisy.noisy.astype(int) - clean
    sel = noisy.selected
    assert ((diff[sel] == -1).sum(axis=1) == 1).all() and ((diff[sel] == 1).sum(axis=1) == 1).all()
    assert not diff[~sel].any()
    np.testing.assert_array_equal(noisy.noisy.sum(axis=1), clean.sum(axis=1))
    again = make_noisy_labels(clean, 0.37, seed=4, kind="multilabel_flip")
    np.testing.assert_array_equal(again.noisy, noisy.noisy)
    # the switched-off positive is uniform among the row's positives
    two = np.zeros((4000, 4), dtype=np.uint8)
    two[:, :2] = 1
    off = make_noisy_labels(two, 0.5, seed=0, kind="multilabel_flip").noisy[: 2000 * 2]
    rows = (off != two[: off.shape[0]]).any(axis=1)
    frac_first_off = (off[rows, 0] == 0).mean()
    assert abs(frac_first_off - 0.5) < 0.05
    with pytest.raises(ValueError, match="all classes positive"):
        make_noisy_labels(np.ones((4, 3), dtype=np.uint8), 0.5, 0, "multilabel_flip")


# ------------------------------------------------------------------------------------ imported noise
def test_import_mat_noisy_label(tmp_path: Path) -> None:
    clean = one_hot(np.arange(40) % 5, 5)
    noisy = clean.copy()
    noisy[:6] = one_hot((np.arange(6) + 1) % 5, 5)
    for writer in (save_v5, save_v73):
        path = writer(
            tmp_path / f"toy_noise_labels_0.2_sym_{writer.__name__}.mat",
            {"noisy_label": noisy.astype(np.int32)},
        )
        got = import_noisy_labels(path, clean, 0.2, 0)
        np.testing.assert_array_equal(got.noisy, noisy)
        assert got.changed.sum() == 6 and got.attrs["source_key"] == "noisy_label" and got.attrs["imported"]
    out = write_noisy_labels(tmp_path / "n.h5", got, {"dataset": "toy"})
    back = read_noisy_labels(out)
    assert back.attrs["source_file"] == path.name and back.realised_change_rate == pytest.approx(6 / 40)


def test_import_hdf5_result_true_and_mismatches(tmp_path: Path) -> None:
    clean = multihot(np.random.default_rng(2), 30, 4).astype(np.uint8)
    noisy = make_noisy_labels(clean, 0.5, 0, "multilabel_flip").noisy
    path = save_h5(tmp_path / "mir-lall-noise_0.5.h5", {"result": noisy, "True": clean})
    got = import_noisy_labels(path, clean, 0.5, 0, "multilabel_flip")
    assert got.changed.sum() == 15 and got.kind == "multilabel_flip"
    other = clean.copy()
    other[[0, 3]] = 1 - other[[0, 3]]
    other[other.sum(axis=1) == 0, 0] = 1
    with pytest.raises(DatasetFileError, match="'True'.*does not match.*2 rows differ"):
        import_noisy_labels(path, other, 0.5, 0)
    with pytest.raises(DatasetFileError, match=r"shape \(30, 4\) but the training labels are \(30, 3\)"):
        import_noisy_labels(path, one_hot(np.arange(30) % 3, 3), 0.5, 0)
    bad = save_v5(tmp_path / "x.mat", {"labels": noisy})
    with pytest.raises(DatasetFileError, match=r"missing \['noisy_label'\].*found: labels \(30, 4\)"):
        import_noisy_labels(bad, clean, 0.5, 0)
    with pytest.raises(FileNotFoundError, match="nope.mat"):
        import_noisy_labels(tmp_path / "nope.mat", clean, 0.5, 0)


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="../shared/reference/official_noisy_labels not available")
def test_official_wiki_and_xmedia_files() -> None:
    clean = _wiki_clean()  # SEHA ships the clean training labels as the rate-0 file
    assert clean.shape == (2173, 10) and (clean.sum(axis=1) == 1).all()
    rates = {}
    for r in ("0.2", "0.4", "0.6", "0.8"):
        got = import_noisy_labels(OFFICIAL / f"wiki_noise_labels_{r}_sym.mat", clean, float(r), 0)
        rates[r] = got.realised_change_rate
        assert abs(got.realised_change_rate - float(r) * 0.9) < 0.02  # r (1 - 1/C), C = 10
    assert rates["0.2"] < rates["0.4"] < rates["0.6"] < rates["0.8"]
    # XMedia: 4000 x 21 (RSHNL's unused class 0): needs dummy_class_column, and the error says so
    classes20 = one_hot(np.arange(4000) % 20, 20)
    with pytest.raises(DatasetFileError, match="dummy_class_column: true"):
        import_noisy_labels(OFFICIAL / "xmedia_noise_labels_0.2_sym.mat", classes20, 0.2, 0)
    classes21 = np.hstack([np.zeros((4000, 1), np.uint8), classes20])
    got = import_noisy_labels(OFFICIAL / "xmedia_noise_labels_0.2_sym.mat", classes21, 0.2, 0)
    assert got.noisy.shape == (4000, 21) and got.noisy[:, 0].sum() == 41


def _wiki_clean() -> np.ndarray:
    import scipy.io

    return scipy.io.loadmat(OFFICIAL / "wiki_noise_labels_0_sym.mat")["noisy_label"].astype(np.uint8)


def test_noise_files_config_checks() -> None:
    base = {
        "datasets": {"d": {"format": "xmedia", "path": "x.mat"}},
        "methods": {"CE": {"impl": "ce_baseline"}},
        "experiments": {
            "e": {"datasets": ["d"], "methods": ["CE"], "noise": [0.2], "bits": [8], "seeds": [0]}
        },
    }
    with pytest.raises(ConfigError, match=r"noise.files.d .* must contain '\{noise\}'"):
        validate_config({**base, "noise": {"files": {"d": "noise.mat"}}})
    with pytest.raises(ConfigError, match="noise.files.zz: no dataset"):
        validate_config({**base, "noise": {"files": {"zz": "n_{noise}.mat"}}})
    with pytest.raises(ConfigError, match="needs 'path' or 'files'"):
        validate_config({**base, "datasets": {"d": {"format": "xmedia"}}})
    plain = validate_config(base)
    imported = validate_config({**base, "noise": {"files": {"d": "n_{noise}.mat"}}})
    assert run_config_hash(plain, "d", "CE", "0.2", 8, 0) != run_config_hash(imported, "d", "CE", "0.2", 8, 0)


# ------------------------------------------------------------------------------------ paper vs ours
def summary_rows(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["dataset", "task", "method", "noise", "bits", "map"])
    df["table"], df["venue"], df["n_seeds"], df["std"] = "t", "", 1, 0.0
    return df[SUMMARY_COLUMNS]


def test_paper_map_resource_and_join(tmp_path: Path) -> None:
    paper = load_paper_map(PAPER_CSV)
    assert len(paper) == 1184 and paper["map"].isna().sum() == 97  # 96 out-of-memory '/' + 1 lost cell
    ours = summary_rows(
        [
            ("xmedia", "I2T", "RSHNL", 0.2, 16, 90.0),  # paper 89.5
            ("xmedia", "T2I", "RSHNL", 0.8, 128, 80.0),  # paper 85.3
            ("xmedia", "I2T", "CE", 0.2, 16, 50.0),  # no paper row
            ("xmedianet", "I2T", "DGCPN", 0.2, 16, 1.0),  # paper '/' (out of memory)
            ("xmedia", "avg", "RSHNL-1", 0.4, 128, 80.0),  # Table 4: 84.3
            ("mfeat", "I2T", "RSHNL", 0.2, 16, 70.0),  # not a paper dataset
        ]
    )
    names = {"xmedia": "XMedia", "xmedianet": "XMediaNet"}
    joined = join_paper(ours, paper, names)
    assert len(joined) == 6 and list(joined["map"]) == list(ours["map"])
    assert joined["paper_map"].tolist()[:2] == [89.5, 85.3] and joined["diff"].tolist()[:2] == [0.5, -5.3]
    assert joined["paper_map"].iloc[2:4].isna().all() and joined["paper_table"].iloc[3] == 3
    assert joined["paper_map"].iloc[4] == 84.3 and joined["paper_table"].iloc[4] == 4
    assert pd.isna(joined["paper_map"].iloc[5])
    md = to_markdown(joined, "t1")
    assert "| 1 | xmedia | I2T | RSHNL | 0.2 | 16 | 90.0 | 89.5 | +0.5 |" in md
    assert "| 3 | xmedianet | I2T | DGCPN | 0.2 | 16 | 1.0 | – | – |" in md
    assert "3 cells compared" in md
    png = plot_scatter(joined, tmp_path / "fig" / "ours_vs_paper.png", "t1")
    assert png[0].stat().st_size > 1000 and (tmp_path / "fig" / "ours_vs_paper.pdf").is_file()
    empty = join_paper(summary_rows([("mfeat", "I2T", "CE", 0.2, 16, 1.0)]), paper, names)
    assert "No cell" in to_markdown(empty, "x") and empty["paper_map"].isna().all()
    plot_scatter(empty, tmp_path / "empty.png", "x")


def test_paper_map_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="paper_map"):
        load_paper_map(tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("table,dataset,task\n1,a,b\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['method'"):
        load_paper_map(tmp_path / "bad.csv")
