"""Robustness table (MAP retention vs the lowest noise rate) on hand-computed cases; several paper maps."""

import math

import pandas as pd
import pytest

from cmhash.report.published import load_paper_maps
from cmhash.report.robustness import rank_correlation, robustness_table, to_markdown


def _summary(rows):
    return pd.DataFrame([{"table": "x", "dataset": "d", "task": t, "method": m, "noise": n, "bits": 16, "map": v,
                          "n_seeds": 1, "std": 0.0} for m, t, n, v in rows])


OURS = _summary([
    ("A", "I2T", 0.2, 80.0), ("A", "T2I", 0.2, 80.0), ("A", "I2T", 0.6, 60.0), ("A", "T2I", 0.6, 60.0),
    ("B", "I2T", 0.2, 50.0), ("B", "T2I", 0.2, 40.0), ("B", "I2T", 0.6, 50.0), ("B", "T2I", 0.6, 20.0),
    ("A", "FUSED", 0.2, 10.0), ("A", "FUSED", 0.6, 90.0),  # fused codes never enter the profile
])


def test_retention_hand_case_and_paper_average():
    # paper: A keeps 50 % on P1 and 100 % on P2 (both tasks) -> 75 % over its datasets; B has no paper row
    paper = pd.DataFrame([{"table": 1, "dataset": ds, "task": t, "method": "A", "venue": "", "noise": n, "bits": 16,
                           "map": v, "paper": "p"}
                          for ds, pairs in {"P1": [(0.2, 90.0), (0.6, 45.0)], "P2": [(0.2, 80.0), (0.6, 80.0)]}.items()
                          for n, v in pairs for t in ("I2T", "T2I")])
    table = robustness_table(OURS, paper, {"d": "P1"})
    at = table.set_index(["method", "noise"])
    assert at.loc[("A", 0.2), "ours"] == 100.0 and at.loc[("A", 0.6), "ours"] == 75.0
    assert at.loc[("B", 0.6), "ours"] == 75.0  # (50/50 + 20/40) / 2
    assert at.loc[("A", 0.6), "paper_all"] == 75.0 and at.loc[("A", 0.6), "paper_same"] == 50.0
    assert math.isnan(at.loc[("B", 0.6), "paper_all"]) and at.loc[("A", 0.6), "paper"] == "p"
    md = to_markdown(table, "exp")
    assert "| A | 100.0 (100.0) | 75.0 (50.0) | p |" in md and "undefined" in md


def test_rank_correlation_hand_case():
    # ours 90/70/50 -> ranks 3/2/1; paper 60/80/40 -> ranks 2/3/1; rho = 1 - 6 * 2 / (3 * 8) = 0.5
    t = pd.DataFrame({"method": list("XYZ"), "noise": 0.6, "ours": [90.0, 70.0, 50.0],
                      "paper_all": [60.0, 80.0, 40.0]})
    rho, n = rank_correlation(t)
    assert n == 3 and rho == pytest.approx(0.5)


def test_one_noise_rate_is_refused():
    with pytest.raises(ValueError, match="two or more noise rates"):
        robustness_table(OURS[OURS["noise"] == 0.2])


def test_several_paper_maps_first_wins(tmp_path):
    head = "table,dataset,task,method,venue,noise,bits,map\n"
    (tmp_path / "one_paper_map.csv").write_text(head + "1,X,I2T,M,v,0.2,16,50.0\n")
    (tmp_path / "two_paper_map.csv").write_text(head + "2,X,I2T,M,v,0.2,16,51.0\n2,X,I2T,N,v,0.2,16,40.0\n")
    df = load_paper_maps([tmp_path / "one_paper_map.csv", tmp_path / "two_paper_map.csv"])
    got = df.set_index("method")
    assert got.loc["M", "map"] == 50.0 and got.loc["M", "paper"] == "one"
    assert got.loc["N", "paper"] == "two" and len(df) == 2
    assert load_paper_maps(None).empty and load_paper_maps([]).empty
