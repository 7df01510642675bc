"""One training run and one evaluation, from files to files (what the workflow's scripts call)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .config import run_config_hash, run_spec
from .data.canonical import read_features
from .methods import get_method_class
from .noise import read_noisy_labels
from .store import atomic_h5, environment_attrs, get_attr, open_h5, set_attr
from .train import WEIGHT_BINS, SplitData, task_names, train_model

log = logging.getLogger(__name__)


def train_run(
    cfg: dict[str, Any],
    features_path: str | Path,
    noise_path: str | Path,
    out_path: str | Path,
    dataset: str,
    method: str,
    noise: str,
    bits: int,
    seed: int,
) -> None:
    """Train ``method`` on ``dataset`` with the noisy labels of ``noise_path`` and write ``train.h5``."""
    spec = run_spec(cfg, dataset, method, noise, bits, seed)
    feats = read_features(features_path)
    noisy = read_noisy_labels(noise_path)
    train_split = feats.splits["train"]
    if noisy.noisy.shape != train_split["labels"].shape:
        raise ValueError(
            f"{noise_path}: noisy labels have shape {noisy.noisy.shape} but the training split of {features_path} "
            f"has labels of shape {train_split['labels'].shape}; delete the noise file and rerun"
        )
    mods = list(feats.modalities)

    def split(name: str, labels: np.ndarray | None = None) -> SplitData:
        s = feats.splits[name]
        return SplitData([s[m] for m in mods], s["labels"] if labels is None else labels)

    run_name = f"{method}/{dataset}/noise{noise}/{bits}bits/seed{seed}"
    log.info("training %s: %s", run_name, spec["params"])
    run_hash = run_config_hash(cfg, dataset, method, noise, bits, seed)
    # not a Snakemake output, so it survives a killed job and the rerun resumes from it
    checkpoint = Path(out_path).with_name("checkpoint.pt")
    result = train_model(
        spec["impl"], spec["params"], int(bits), split("train", noisy.noisy), split("val"), split("test"),
        noisy_flags=noisy.changed, seed=int(seed), device=cfg["device"], modalities=tuple(mods), run_name=run_name,
        checkpoint_path=checkpoint, checkpoint_every=int(cfg["checkpoint_every"]), checkpoint_key=run_hash, clean_labels=noisy.clean,
        amp=bool(cfg.get("amp", False)), deterministic=bool(cfg.get("deterministic", False)),
    )
    attrs = {
        "method": method,
        "impl": spec["impl"],
        "venue": get_method_class(spec["impl"]).venue,
        "dataset": dataset,
        "noise_kind": spec["noise_kind"],
        "noise": float(noise),
        "bits": int(bits),
        "seed": int(seed),
        "config_hash": run_hash,
        "params": spec["params"],
        "device": result.device,
        "amp": result.extra["amp"],
        "deterministic": result.extra["deterministic"],
        "best_epoch": result.best_epoch,
        "train_seconds": result.seconds,
        "modalities": mods,
        "realised_change_rate": float(noisy.changed.mean()),
        **environment_attrs(),
    }
    with atomic_h5(out_path, "train", attrs) as f:
        for m, codes in zip(mods, result.codes):
            f.create_dataset(f"codes/{m}", data=codes)
        f.create_dataset("codes/labels", data=feats.splits["test"]["labels"].astype(np.uint8))
        for key, values in result.history.items():
            f.create_dataset(f"history/{key}", data=np.asarray(values, dtype=np.float64))
        f.create_dataset("weights/hist_clean", data=result.weight_hist_clean)
        f.create_dataset("weights/hist_noisy", data=result.weight_hist_noisy)
        f.create_dataset("weights/bin_edges", data=WEIGHT_BINS)
    checkpoint.unlink(missing_ok=True)
    log.info("wrote %s (best epoch %d, %.1f s on %s)", out_path, result.best_epoch, result.seconds, result.device)


def evaluate_run(train_path: str | Path, out_path: str | Path, evaluation: dict[str, Any]) -> dict[str, float]:
    """Compute all retrieval metrics of a ``train.h5`` and write ``metrics.h5`` (codes and history copied)."""
    with open_h5(train_path, "train") as src:
        attrs = {key: get_attr(src, key) for key in src.attrs if key not in ("schema", "package_version", "created")}
        mods = attrs["modalities"]
        codes = [src[f"codes/{m}"][()] for m in mods]
        labels = src["codes/labels"][()]
        maps: dict[str, float] = {}
        with atomic_h5(out_path, "metrics", attrs) as dst:
            for key in ("tie_order", "topk", "pn", "empty_queries"):
                set_attr(dst, key, evaluation[key])
            for group in ("codes", "history", "weights"):
                if group in src:
                    src.copy(src[group], dst, name=group)
            for task, (q, d) in zip(task_names(mods), ((0, 1), (1, 0))):
                res = metrics.evaluate_retrieval(
                    codes[q], codes[d], labels, labels, topk=evaluation["topk"], pn=evaluation["pn"],
                    empty_queries=evaluation["empty_queries"],
                )
                g = dst.create_group(f"metrics/{task}")
                g.attrs["map"] = res.map
                for k, value in res.map_at_k.items():
                    g.attrs[f"map_at_{k}"] = value
                g.create_dataset("pr_precision", data=res.pr_precision)
                g.create_dataset("pr_recall", data=res.pr_recall)
                g.create_dataset("p_at_n", data=res.p_at_n)
                g.create_dataset("p_at_n_n", data=res.p_at_n_n)
                maps[task] = res.map
    log.info("evaluated %s: %s", train_path, {k: round(v, 4) for k, v in maps.items()})
    return maps
