"""One training run and one evaluation, from files to files (what the workflow's scripts call)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import metrics
from .config import run_config_hash, run_noise_stack, run_spec
from .data.canonical import read_features
from .methods import get_method_class
from .noise import read_noisy_labels
from .stacked import train_models_stacked
from .store import FUSED_TASK, atomic_h5, config_hash, environment_attrs, get_attr, open_h5, set_attr
from .train import WEIGHT_BINS, SplitData, TrainResult, task_names, train_model

log = logging.getLogger(__name__)


def _read_inputs(features_path: str | Path, noise_paths: list[str | Path]):
    """Features and the noisy labels of each noise file, checked against the training split."""
    feats = read_features(features_path)
    noisies = [read_noisy_labels(p) for p in noise_paths]
    expected = feats.splits["train"]["labels"].shape
    for path, noisy in zip(noise_paths, noisies):
        if noisy.noisy.shape != expected:
            raise ValueError(
                f"{path}: noisy labels have shape {noisy.noisy.shape} but the training split of {features_path} "
                f"has labels of shape {expected}; delete the noise file and rerun"
            )
    mods = list(feats.modalities)

    def split(name: str) -> SplitData | None:
        if name not in feats.splits:
            return None
        s = feats.splits[name]
        return SplitData([s[m] for m in mods], s["labels"])

    return feats, noisies, mods, split


def _train_options(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"device": cfg["device"], "checkpoint_every": int(cfg["checkpoint_every"]),
            "amp": bool(cfg.get("amp", False)), "deterministic": bool(cfg.get("deterministic", False))}


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
    feats, (noisy,), mods, split = _read_inputs(features_path, [noise_path])
    run_name = f"{method}/{dataset}/noise{noise}/{bits}bits/seed{seed}"
    log.info("training %s: %s", run_name, spec["params"])
    if run_noise_stack(cfg, dataset, method, bits, seed) is not None:
        raise ValueError(f"{run_name}: stack_noise_rates is on, so this run is trained in its noise stack "
                         "(rule train_noise_stack, cmhash.runs.train_stack_run), not alone")
    run_hash = run_config_hash(cfg, dataset, method, noise, bits, seed, stack=None)
    # not a Snakemake output, so it survives a killed job and the rerun resumes from it
    checkpoint = Path(out_path).with_name("checkpoint.pt")
    train = split("train")
    train.labels = noisy.noisy
    result = train_model(
        spec["impl"], spec["params"], int(bits), train, split("val"), split("test"),
        noisy_flags=noisy.changed, seed=int(seed), modalities=tuple(mods), run_name=run_name,
        checkpoint_path=checkpoint, checkpoint_key=run_hash, clean_labels=noisy.clean,
        database=split("database"), noise_rate=float(noise), **_train_options(cfg),
    )
    write_train_file(out_path, result, feats, mods, spec, run_hash, noisy.changed)
    checkpoint.unlink(missing_ok=True)


def train_stack_run(
    cfg: dict[str, Any],
    features_path: str | Path,
    noise_paths: list[str | Path],
    out_dir: str | Path,
    dataset: str,
    method: str,
    noises: list[str],
    bits: int,
    seed: int,
) -> list[Path]:
    """Train the runs of ``method`` on ``dataset`` at every noise rate of ``noises`` (one noise file each, same
    order) as one stacked network (:mod:`cmhash.stacked`); write ``<out_dir>/<noise>.h5`` per run, each with
    the layout and attributes of a ``train.h5``. Returns the written paths."""
    stack = run_noise_stack(cfg, dataset, method, bits, seed)
    if stack != list(noises):
        raise ValueError(f"{out_dir}: the config stacks the noise rates {stack} of {method}/{dataset}/{bits} bits/"
                         f"seed {seed}, not {list(noises)}; rerun snakemake so that the stack's path is rebuilt")
    specs = [run_spec(cfg, dataset, method, noise, bits, seed, stack) for noise in noises]
    feats, noisies, mods, split = _read_inputs(features_path, noise_paths)
    run_names = [f"{method}/{dataset}/noise{noise}/{bits}bits/seed{seed}" for noise in noises]
    hashes = [config_hash(spec) for spec in specs]
    out_dir = Path(out_dir)
    checkpoint = out_dir.with_name(out_dir.name + ".checkpoint.pt")  # beside the output: survives a killed job
    train = split("train")
    results = train_models_stacked(
        specs[0]["impl"], specs[0]["params"], int(bits), train.xs, [n.noisy for n in noisies], split("val"),
        split("test"), noisy_flags=[n.changed for n in noisies], seed=int(seed), modalities=tuple(mods),
        run_names=run_names, checkpoint_path=checkpoint, checkpoint_key=config_hash(hashes),
        database=split("database"), **_train_options(cfg),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for noise, spec, run_hash, noisy, result in zip(noises, specs, hashes, noisies, results):
        paths.append(out_dir / f"{noise}.h5")
        write_train_file(paths[-1], result, feats, mods, spec, run_hash, noisy.changed)
    checkpoint.unlink(missing_ok=True)
    return paths


def write_train_file(
    out_path: str | Path, result: TrainResult, feats: Any, mods: list[str], spec: dict[str, Any], run_hash: str,
    changed: np.ndarray,
) -> None:
    """Write one run's ``train.h5`` atomically (layout: docs/file_formats.md)."""
    has_database = "database" in feats.splits
    attrs = {
        "method": spec["method"],
        "impl": spec["impl"],
        "venue": get_method_class(spec["impl"]).venue,
        "dataset": spec["dataset"],
        "noise_kind": spec["noise_kind"],
        "noise": float(spec["noise"]),
        "bits": int(spec["bits"]),
        "seed": int(spec["seed"]),
        "config_hash": run_hash,
        "params": spec["params"],
        "device": result.device,
        "amp": result.extra["amp"],
        "deterministic": result.extra["deterministic"],
        "best_epoch": result.best_epoch,
        "train_seconds": result.seconds,
        "modalities": mods,
        "realised_change_rate": float(np.mean(changed)),
        **({"noise_stack": spec["noise_stack"]} if "noise_stack" in spec else {}),
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
