"""One training run and one evaluation, from files to files (what the workflow's scripts call)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .config import run_config_hash, run_noise_stack, run_spec
from .data.canonical import read_features
from .evaluate import evaluate_run  # noqa: F401  (re-exported: cmhash.runs.evaluate_run)
from .methods import get_method_class
from .noise import read_noisy_labels
from .stacked import train_models_stacked
from .store import (
    atomic_h5,
    config_hash,
    environment_attrs,
)
from .train import WEIGHT_BINS, SplitData, TrainResult, train_model

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


