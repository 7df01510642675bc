"""Training groups and one evaluation, from files to files (what the workflow's scripts call)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .config import RunSpec, group_noises, single_run, training_options
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


def training_units(runs: Sequence[RunSpec]) -> list[list[RunSpec]]:
    """What is trained at once, in order: a noise stack (all its members) or one run."""
    units: dict[Any, list[RunSpec]] = {}
    for run in runs:
        key = (run.bits, "stack") if run.stack is not None else (run.bits, run.noise)
        units.setdefault(key, []).append(run)
    for unit in units.values():
        if unit[0].stack is not None and [r.noise for r in unit] != list(unit[0].stack):
            raise ValueError(f"{unit[0].name}: its noise stack {unit[0].stack} is not complete in this group "
                             f"({[r.noise for r in unit]}); rerun snakemake so that the group is rebuilt")
    return list(units.values())


def _train_unit(unit: list[RunSpec], inputs: Any, options: dict[str, Any], out_paths: list[Path],
                checkpoint: Path) -> None:
    """Train one unit (one run, or one noise stack as a vmapped network) and write each member's train file."""
    feats, noisies, mods, split = inputs
    first = unit[0]
    for run in unit:
        log.info("training %s: %s", run.name, run.params)
    train = split("train")
    common = dict(seed=int(first.seed), modalities=tuple(mods), checkpoint_path=checkpoint,
                  database=split("database"), **options)
    if first.stack is None:
        noisy = noisies[first.noise]
        train.labels = noisy.noisy
        results = [train_model(
            first.impl, first.params, first.bits, train, split("val"), split("test"), noisy_flags=noisy.changed,
            run_name=first.name, checkpoint_key=first.config_hash, clean_labels=noisy.clean,
            noise_rate=float(first.noise), **common,
        )]
    else:
        results = train_models_stacked(
            first.impl, first.params, first.bits, train.xs, [noisies[r.noise].noisy for r in unit], split("val"),
            split("test"), noisy_flags=[noisies[r.noise].changed for r in unit], run_names=[r.name for r in unit],
            checkpoint_key=config_hash([r.config_hash for r in unit]), **common,
        )
    for run, path, result in zip(unit, out_paths, results):
        write_train_file(path, result, feats, mods, run.spec, run.config_hash, noisies[run.noise].changed)
    checkpoint.unlink(missing_ok=True)


def _finished(path: Path, run_hash: str) -> bool:
    """A member file a killed job left complete (files are written atomically) under the same config hash."""
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("config_hash") == run_hash
    except OSError:
        return False


def train_group(
    runs: Sequence[RunSpec],
    options: dict[str, Any],
    features_path: str | Path,
    noise_paths: Mapping[str, str | Path],
    out_dir: str | Path,
) -> list[Path]:
    """Train the runs of one training group in this process, one unit after another (a unit is one run, or
    one noise stack trained as a vmapped network: :mod:`cmhash.stacked`), and write ``<out_dir>/<member>``
    per run (:func:`cmhash.config.member_name`; layout and attributes: docs/file_formats.md).

    ``runs``: the group's :class:`~cmhash.config.RunSpec` (:func:`cmhash.config.training_plan`);
    ``options``: :func:`cmhash.config.training_options`; ``noise_paths``: noise rate -> noisy-label file.
    Every run is seeded on its own, so a run's codes do not depend on the group it is trained in (on the CPU
    bit for bit: tests/test_runs.py). Finished members and the running unit's checkpoint are kept in
    ``<out_dir>.partial`` (not a Snakemake output, so a killed job's rerun skips finished members and resumes
    the running one); the folder becomes ``out_dir`` when every run is done. Returns the written paths."""
    runs = list(runs)
    if not runs:
        raise ValueError(f"{out_dir}: a training group needs at least one run")
    missing = sorted({r.noise for r in runs} - set(noise_paths), key=float)
    if missing:
        raise ValueError(f"{out_dir}: no noisy-label file given for the noise rates {missing}")
    out_dir = Path(out_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    noises = group_noises(runs)
    inputs = _read_inputs(features_path, [noise_paths[n] for n in noises])
    feats, noisy_list, mods, split = inputs
    inputs = (feats, dict(zip(noises, noisy_list)), mods, split)
    for i, unit in enumerate(training_units(runs), 1):
        paths = [partial / r.member for r in unit]
        if all(_finished(p, r.config_hash) for p, r in zip(paths, unit)):
            log.info("unit %d: %s already trained (%s), kept", i, ", ".join(r.name for r in unit), partial)
            continue
        log.info("unit %d of the group: %s", i, ", ".join(r.name for r in unit))
        _train_unit(unit, inputs, options, paths, partial / (Path(unit[0].member).stem + ".checkpoint.pt"))
    if out_dir.exists():  # Snakemake may have made the (empty) output folder; a direct caller replaces it
        shutil.rmtree(out_dir)
    partial.rename(out_dir)
    return [out_dir / r.member for r in runs]


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
    """Train one run alone (no noise stack) with the config ``cfg`` and write its train file to ``out_path``
    (the checkpoint ``checkpoint.pt`` beside it): the engine of :func:`train_group` for a single run outside
    the workflow."""
    (run,) = single_run(cfg, dataset, method, noise, bits, seed).runs
    inputs = _read_inputs(features_path, [noise_path])
    feats, (noisy,), mods, split = inputs
    out_path = Path(out_path)
    _train_unit([run], (feats, {run.noise: noisy}, mods, split), training_options(cfg), [out_path],
                out_path.with_name("checkpoint.pt"))


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
        "joint_codes": list(result.joint_codes),
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
        for name, codes in result.joint_codes.items():  # the method's joint code sets (e.g. fused), as declared
            f.create_dataset(f"{name}/test", data=codes)
            if has_database:
                f.create_dataset(f"{name}/database", data=result.database_joint_codes[name])
        for key, values in result.history.items():
            f.create_dataset(f"history/{key}", data=np.asarray(values, dtype=np.float64))
        f.create_dataset("weights/hist_clean", data=result.weight_hist_clean)
        f.create_dataset("weights/hist_noisy", data=result.weight_hist_noisy)
        f.create_dataset("weights/bin_edges", data=WEIGHT_BINS)
    log.info("wrote %s (best epoch %d, %.1f s on %s)", out_path, result.best_epoch, result.seconds, result.device)


