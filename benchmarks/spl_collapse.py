"""Does RSHNL's self-paced weighting collapse (every weight 0: training label-free), and does the form of L_C
matter? Issue 10, item 7. Trains RSHNL on the shipped mfeat data (its config entry) with
``contrastive_form`` = ``paper`` and ``reference`` over a few seeds and noise rates, and prints per run: the number
of epochs whose self-paced weights were all 0, the last epoch's mean weight of clean and of noisy pairs, and
test MAP (mean of I2T and T2I, percent).

    python benchmarks/spl_collapse.py                       # seeds 0-4, noise 0.6 0.8, 128 bits
    python benchmarks/spl_collapse.py --seeds 0 1 --noise 0.8 --bits 32

Writes benchmarks/results/spl_collapse.csv (ignored by git) and prints a summary per (form, noise).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cmhash import metrics  # noqa: E402
from cmhash.config import load_config, resolve_method  # noqa: E402
from cmhash.data import prepare_dataset  # noqa: E402
from cmhash.methods import resolve_params  # noqa: E402
from cmhash.noise import make_noisy_labels  # noqa: E402
from cmhash.train import SplitData, train_model  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--noise", type=float, nargs="+", default=[0.6, 0.8])
    ap.add_argument("--bits", type=int, default=128)
    ap.add_argument("--forms", nargs="+", default=["paper", "reference"])
    ap.add_argument("--method", default="RSHNL")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "spl_collapse.csv"))
    args = ap.parse_args(argv)
    cfg = load_config(REPO / "config" / "config.yaml")
    feats = prepare_dataset("mfeat", cfg["datasets"]["mfeat"], REPO / cfg["data_root"])
    mods = list(feats.modalities)
    impl, base = resolve_method(cfg, args.method, "mfeat")

    def split(name: str) -> SplitData:
        return SplitData([feats.splits[name][m] for m in mods], feats.splits[name]["labels"])

    rows = []
    for form in args.forms:
        params = resolve_params(impl, {**base, "contrastive_form": form})
        for rate in args.noise:
            for seed in args.seeds:
                noisy = make_noisy_labels(feats.splits["train"]["labels"], rate, seed, cfg["noise"]["kind"])
                train = split("train")
                train.labels = noisy.noisy
                test = split("test")
                res = train_model(impl, params, args.bits, train, split("val"), test, noisy.changed, seed,
                                  device="cpu", modalities=tuple(mods), run_name=f"{form}/{rate}/seed{seed}")
                h = res.history
                zero = np.asarray(h["w_zero_frac"], dtype=float)
                collapsed = int(np.sum(zero == 1.0))
                i2t = metrics.mean_average_precision(res.codes[0], res.codes[1], test.labels, test.labels)
                t2i = metrics.mean_average_precision(res.codes[1], res.codes[0], test.labels, test.labels)
                row = {"form": form, "noise": rate, "seed": seed, "bits": args.bits,
                       "collapsed_epochs": collapsed, "epochs": len(zero),
                       "first_collapsed_epoch": int(np.argmax(zero == 1.0)) + 1 if collapsed else "",
                       "last_w_clean": round(h["w_clean_mean"][-1], 4), "last_w_noisy": round(h["w_noisy_mean"][-1], 4),
                       "map": round(50 * (i2t + t2i), 2)}
                print(row, flush=True)
                rows.append(row)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print("\nform       noise  runs collapsed(any epoch)  collapsed at last epoch  mean MAP")
    for form in args.forms:
        for rate in args.noise:
            sel = [r for r in rows if r["form"] == form and r["noise"] == rate]
            any_c = sum(r["collapsed_epochs"] > 0 for r in sel)
            last_c = sum(r["last_w_clean"] == 0 and r["last_w_noisy"] == 0 for r in sel)
            mean_map = sum(r["map"] for r in sel) / len(sel)
            print(f"{form:10s} {rate:5.1f} {len(sel):5d} {any_c:12d} {last_c:24d} {mean_map:10.2f}")
    if not math.isfinite(sum(r["map"] for r in rows)):
        return rows
    return rows


if __name__ == "__main__":
    main()
