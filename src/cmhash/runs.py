"""One training run and one evaluation, from files to files (what the workflow's scripts call)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import metrics
from .config import run_config_hash, run_spec
from .data.canonical import read_features
from .methods import get_method_class
from .noise import read_noisy_labels
from .store import FUSED_TASK, atomic_h5, environment_attrs, get_attr, open_h5, set_attr
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
    has_database = "database" in feats.splits
    result = train_model(
        spec["impl"], spec["params"], int(bits), split("train", noisy.noisy), split("val"), split("test"),
        noisy_flags=noisy.changed, seed=int(seed), device=cfg["device"], modalities=tuple(mods), run_name=run_name,
        checkpoint_path=checkpoint, checkpoint_every=int(cfg["checkpoint_every"]), checkpoint_key=run_hash, clean_labels=noisy.clean,
        amp=bool(cfg.get("amp", False)), deterministic=bool(cfg.get("deterministic", False)),
        database=split("database") if has_database else None,
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
        if has_database:
            for m, codes in zip(mods, result.database_codes):
                f.create_dataset(f"database/{m}", data=codes)
            f.create_dataset("database/labels", data=feats.splits["database"]["labels"].astype(np.uint8))
        if result.fused_codes is not None:
            f.create_dataset("fused/test", data=result.fused_codes)
            if has_database:
                f.create_dataset("fused/database", data=result.database_fused_codes)
        for key, values in result.history.items():
            f.create_dataset(f"history/{key}", data=np.asarray(values, dtype=np.float64))
        f.create_dataset("weights/hist_clean", data=result.weight_hist_clean)
        f.create_dataset("weights/hist_noisy", data=result.weight_hist_noisy)
        f.create_dataset("weights/bin_edges", data=WEIGHT_BINS)
    checkpoint.unlink(missing_ok=True)
    log.info("wrote %s (best epoch %d, %.1f s on %s)", out_path, result.best_epoch, result.seconds, result.device)


def evaluate_run(train_path: str | Path, out_path: str | Path, evaluation: dict[str, Any]) -> dict[str, float]:
    """Compute all retrieval metrics of a ``train.h5`` and write ``metrics.h5`` (codes and history copied).

    Queries are the test codes; the database is the run's ``/database`` codes when its dataset has a
    database split, else the test codes again. Task ``I2T`` ranks image queries in the text database, ``T2I``
    the reverse. With ``evaluation["fused_topk"] = k`` and fused codes in the file, task ``FUSED`` ranks the
    fused queries in the fused database; its ``map`` is MAP@k with queries without a relevant item in the
    top k counted as 0 (NSRMH's protocol). Returns ``map`` per task.
    """
    fused_topk = evaluation.get("fused_topk")
    with open_h5(train_path, "train") as src:
        attrs = {key: get_attr(src, key) for key in src.attrs if key not in ("schema", "package_version", "created")}
        mods = attrs["modalities"]
        retrieval_set = "database" if "database" in src else "test"
        db_group = "database" if retrieval_set == "database" else "codes"
        queries = [src[f"codes/{m}"][()] for m in mods]
        query_labels = src["codes/labels"][()]
        database = [src[f"{db_group}/{m}"][()] for m in mods]
        db_labels = src[f"{db_group}/labels"][()]
        maps: dict[str, float] = {}
        with atomic_h5(out_path, "metrics", attrs) as dst:
            for key in ("tie_order", "topk", "pn", "empty_queries"):
                set_attr(dst, key, evaluation[key])
            set_attr(dst, "fused_topk", fused_topk)
            set_attr(dst, "retrieval_set", retrieval_set)
            for group in ("codes", "database", "fused", "history", "weights"):
                if group in src:
                    src.copy(src[group], dst, name=group)
            for task, (q, d) in zip(task_names(mods), ((0, 1), (1, 0))):
                res = metrics.evaluate_retrieval(
                    queries[q], database[d], query_labels, db_labels, topk=evaluation["topk"],
                    pn=evaluation["pn"], empty_queries=evaluation["empty_queries"],
                )
                _write_task(dst, task, res)
                maps[task] = res.map
            if fused_topk and "fused" in src:
                fused = (src["fused/test"][()], src[f"fused/{retrieval_set}"][()], query_labels, db_labels)
                res = metrics.evaluate_retrieval(
                    *fused, topk=evaluation["topk"], pn=evaluation["pn"],
                    empty_queries=evaluation["empty_queries"],
                )
                # MAP@k always counts queries without a relevant item in the top k as 0; "zero" says so
                value = metrics.mean_average_precision(*fused, topk=int(fused_topk), empty_queries="zero")
                res = dataclasses.replace(res, map=value, map_at_k={**res.map_at_k, int(fused_topk): value})
                _write_task(dst, FUSED_TASK, res).attrs["map_topk"] = int(fused_topk)
                maps[FUSED_TASK] = res.map
    log.info("evaluated %s: %s", train_path, {k: round(v, 4) for k, v in maps.items()})
    return maps


def _write_task(dst: h5py.File, task: str, res: metrics.RetrievalResult) -> h5py.Group:
    """``/metrics/<task>`` of a metrics file (layout: docs/file_formats.md)."""
    g = dst.create_group(f"metrics/{task}")
    g.attrs["map"] = res.map
    for k, value in res.map_at_k.items():
        g.attrs[f"map_at_{k}"] = value
    g.create_dataset("pr_precision", data=res.pr_precision)
    g.create_dataset("pr_recall", data=res.pr_recall)
    g.create_dataset("p_at_n", data=res.p_at_n)
    g.create_dataset("p_at_n_n", data=res.p_at_n_n)
    return g
