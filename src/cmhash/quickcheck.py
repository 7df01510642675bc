"""Train one method on one configured dataset at a few noise rates, without Snakemake, and print test MAP.

For developing and checking a method (the workflow is the way to produce results)::

    python -m cmhash.quickcheck --method RSHNL --dataset mfeat --noise 0.2 0.6 --bits 32
    python -m cmhash.quickcheck --impl rfcmh --noise 0.2 --bits 32 --params '{"epochs": 20}'

``--method`` takes a name from ``config/config.yaml`` (its params and ``per_dataset`` entry are used);
``--impl`` a registry name with its defaults; ``--params`` (JSON) overrides either. Noise is drawn as the
workflow draws it (same recipe and seed), so figures agree with the workflow's runs of the same config.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from . import metrics
from .config import load_config, resolve_method
from .data import prepare_dataset
from .methods import resolve_params
from .noise import make_noisy_labels
from .train import SplitData, train_model

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--method", help="a method name of the config (e.g. RSHNL)")
    who.add_argument("--impl", help="a registry name (e.g. rshnl), with its defaults")
    ap.add_argument("--dataset", default="mfeat")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.2, 0.6])
    ap.add_argument("--kind", default=None, help="noise kind (default: the config's noise.kind)")
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--params", default="{}", help="JSON object of hyperparameter overrides")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    cfg = load_config(args.config)
    overrides = json.loads(args.params)
    if args.method:
        impl, params = resolve_method(cfg, args.method, args.dataset)
        params = resolve_params(impl, {**params, **overrides})
    else:
        impl, params = args.impl, resolve_params(args.impl, overrides)
    root = Path(cfg["data_root"])
    if not root.is_absolute():
        root = REPO / root
    feats = prepare_dataset(args.dataset, cfg["datasets"][args.dataset], root)
    mods = list(feats.modalities)

    def split(name: str) -> SplitData | None:
        s = feats.splits.get(name)
        return None if s is None else SplitData([s[m] for m in mods], s["labels"])

    rows = []
    for rate in args.noise:
        noisy = make_noisy_labels(feats.splits["train"]["labels"], rate, args.seed, args.kind or cfg["noise"]["kind"])
        train = split("train")
        train.labels = noisy.noisy
        t0 = time.perf_counter()
        res = train_model(impl, params, args.bits, train, split("val"), split("test"), noisy.changed, args.seed,
                          device=args.device, modalities=tuple(mods), run_name=f"{impl}@{rate}",
                          clean_labels=noisy.clean, database=split("database"), noise_rate=rate)
        test, db = split("test"), split("database") or split("test")
        dbc = res.database_codes or res.codes
        i2t = metrics.mean_average_precision(res.codes[0], dbc[1], test.labels, db.labels)
        t2i = metrics.mean_average_precision(res.codes[1], dbc[0], test.labels, db.labels)
        row = {"impl": impl, "noise": rate, "bits": args.bits, "i2t": round(100 * i2t, 2), "t2i": round(100 * t2i, 2),
               "mean": round(50 * (i2t + t2i), 2), "best_epoch": res.best_epoch,
               "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
