"""Benchmarks of issue 4: each case times our code and a baseline in the same run and prints the ratio.

    python benchmarks/run.py                      # every case but default_wall
    python benchmarks/run.py --quick              # smaller sizes / fewer epochs, same code paths
    python benchmarks/run.py --only map_nuswide   # one case (repeatable); default_wall runs only when named

Cases (benchmarks/README.md says what each one measures and why the baseline is what it is):

* ``map_nuswide``: MAP@all, 2,100 queries x 184,577 database items x 128 bits, 10 labels.
  Ours: ``cmhash.metrics.mean_average_precision`` (bit-packed XOR + popcount, counting-sort ranking).
  Baseline: the published evaluator's approach (SciPy ``cdist(..., 'hamming')`` + per-query ``argsort``),
  written out below. Equality is checked per query (to 1e-9) against the same baseline with a stable sort,
  i.e. our documented tie order; the published default sort breaks ties differently, its MAP is printed too.
* ``map_nuswide_torch``: the same with ``backend="torch"`` on CUDA (skipped without a GPU).
* ``train_xmedia``: RSHNL at XMedia shape with the paper's network size, epochs per second of
  ``cmhash.train.train_model`` vs a reference-style loop (DataLoader over CPU arrays, per-batch transfers,
  per-epoch evaluation with the baseline evaluator) on the same device.
* ``train_stacked``: the 4 noise rates of RSHNL trained as one stacked network (``cmhash.stacked``) vs the same
  4 runs one after another, at the shipped dataset's shape and at XMedia shape.
* ``workflow_dry_run``: ``snakemake -n`` of a >= 5,000-job grid vs the ``tiny`` experiment.
* ``default_wall``: ``snakemake --cores all default`` in a temporary directory (long; only with --only).

Results go to benchmarks/results/ (run-<time>.json/.csv/.txt and latest.*), which git ignores.
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime as dt
import functools
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Single-threaded BLAS for NumPy (before it loads): the baseline's label products would otherwise start
# OpenBLAS threads that spin against the other processes of a shared machine and slow it unfairly.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
import yaml  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402

from cmhash import metrics  # noqa: E402
from cmhash.config import resolve_method, validate_config  # noqa: E402
from cmhash.methods import get_method_class  # noqa: E402
from cmhash.train import SplitData, resolve_device, train_model  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
LINES: list[str] = []  # everything printed, written to results/*.txt


def say(text: str = "") -> None:
    print(text, flush=True)
    LINES.append(text)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of ``fn()`` and its value; the process CPU seconds go to ``CPU_SECONDS[-1]``."""
    start, cpu = time.perf_counter(), time.process_time()
    value = fn()
    CPU_SECONDS.append(time.process_time() - cpu)
    return time.perf_counter() - start, value


CPU_SECONDS: list[float] = []  # CPU time (all threads of this process) of the latest timed() calls


def row(case: str, ours_s: float | None, baseline_s: float | None, target: str, note: str, **extra: Any) -> dict:
    """One result line; ratio = baseline / ours (how many times faster we are) unless ``ratio`` is given."""
    ratio = extra.pop("ratio", None)
    if ratio is None and ours_s and baseline_s:
        ratio = baseline_s / ours_s
    return {"case": case, "ours_s": ours_s, "baseline_s": baseline_s, "ratio": ratio, "target": target,
            "note": note, **extra}


# ---------------------------------------------------------------------------------------------------------
# a. MAP@all at NUS-WIDE scale


def multilabel_data(n: int, n_labels: int, bits: int, rng: np.random.Generator, prototypes: np.ndarray):
    """Random multi-hot labels (>= 1 label per item) and +/-1 codes correlated with them, as float32.

    A code is the sign of the summed +/-1 prototypes of the item's labels plus Gaussian noise, so that
    rankings look like those of a trained hashing model (many relevant items near the top, many ties).
    """
    labels = rng.random((n, n_labels)) < 0.2
    labels[np.arange(n), rng.integers(0, n_labels, n)] = True
    codes = np.empty((n, bits), dtype=np.float32)
    for s in range(0, n, 50_000):
        lab = labels[s : s + 50_000].astype(np.float32)
        signal = lab @ prototypes / np.sqrt(lab.sum(axis=1, keepdims=True))
        codes[s : s + 50_000] = np.where(signal + rng.normal(0.0, 1.0, signal.shape) >= 0, 1.0, -1.0)
    return codes, labels.astype(np.float32)


def published_style_average_precisions(
    query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray,
    kind: str = "quicksort", block: int = 64,
) -> np.ndarray:
    """Per-query AP@all the way the published RSHNL/SEHA evaluator computes it (our own straightforward code).

    Fractional Hamming distances from SciPy ``cdist(..., 'hamming')``, one ``argsort`` per query (NumPy's
    default, unstable, unless ``kind`` says otherwise), relevance = the query shares a label with the item,
    precision at every rank by a cumulative sum, AP = mean precision at the relevant ranks. The published
    code builds the whole distance matrix at once; here it is built ``block`` queries at a time, because
    the whole matrix would be 3 GB at this scale (the arithmetic is the same).
    """
    aps = np.full(len(query_codes), np.nan)
    ranks = np.arange(1, len(db_codes) + 1, dtype=np.float64)
    for start in range(0, len(query_codes), block):
        dist = cdist(query_codes[start : start + block], db_codes, "hamming")
        for i in range(dist.shape[0]):
            order = dist[i].argsort(kind=kind)
            relevant = (db_labels[order] @ query_labels[start + i]) > 0
            n_relevant = relevant.sum()
            if n_relevant > 0:
                precision = np.cumsum(relevant) / ranks
                aps[start + i] = float(np.dot(relevant, precision)) / n_relevant
    return aps


def case_map_nuswide(args: argparse.Namespace, state: dict) -> list[dict]:
    n_query, n_db, bits, n_labels = (2100, 184_577, 128, 10) if not args.quick else (210, 18_458, 128, 10)
    rng = np.random.default_rng(0)
    prototypes = np.where(rng.random((n_labels, bits)) < 0.5, 1.0, -1.0).astype(np.float32)
    qb, ql = multilabel_data(n_query, n_labels, bits, rng, prototypes)
    db, dl = multilabel_data(n_db, n_labels, bits, rng, prototypes)
    say(f"  data: {n_query} queries x {n_db} database x {bits} bits, {n_labels} labels (seeded, multi-label)")

    ours_s, ours_map = timed(lambda: metrics.mean_average_precision(qb, db, ql, dl))
    ours_cpu = CPU_SECONDS[-1]
    say(f"  ours     cmhash.metrics.mean_average_precision: {ours_s:8.2f} s wall, {ours_cpu:8.2f} s CPU  "
        f"MAP {ours_map:.6f} ({metrics._threads(None)} threads)")
    one_s, _ = timed(lambda: metrics.mean_average_precision(qb, db, ql, dl, threads=1))
    say(f"  ours     the same on 1 thread:                  {one_s:8.2f} s wall, {CPU_SECONDS[-1]:8.2f} s CPU")

    n_timed = min(args.baseline_queries or n_query, n_query)
    base_s, base_ap = timed(lambda: published_style_average_precisions(qb[:n_timed], db, ql[:n_timed], dl))
    base_cpu = CPU_SECONDS[-1] * n_query / n_timed
    extrapolated = n_timed < n_query
    if extrapolated:
        base_total = base_s * n_query / n_timed
        say(f"  baseline cdist('hamming') + argsort: {base_s:8.2f} s on the first {n_timed} of {n_query} queries, "
            f"EXTRAPOLATED to {base_total:.2f} s for all {n_query}")
    else:
        base_total = base_s
        say(f"  baseline cdist('hamming') + argsort: {base_s:8.2f} s wall, {base_cpu:8.2f} s CPU  "
            f"MAP {np.nanmean(base_ap):.6f} (default unstable argsort: ties in another order)")

    # equality: same baseline with a stable sort (= our documented tie order) against our per-query APs
    n_check = min(args.check_queries or n_timed, n_query)
    ours_ap = metrics.average_precisions(qb, db, ql, dl)
    check_ap = published_style_average_precisions(qb[:n_check], db, ql[:n_check], dl, kind="stable")
    max_diff = float(np.nanmax(np.abs(ours_ap[:n_check] - check_ap)))
    equal = bool(np.array_equal(np.isnan(ours_ap[:n_check]), np.isnan(check_ap)) and max_diff <= 1e-9)
    equal = equal and (n_check < n_query or abs(float(np.nanmean(check_ap)) - ours_map) <= 1e-9)
    tie_effect = float(abs(np.nanmean(base_ap) - np.nanmean(ours_ap[:n_timed])))
    say(f"  check: per-query AP equal to the stable-sort baseline on {n_check} queries: {equal} "
        f"(max |diff| {max_diff:.1e}); |MAP(default argsort) - MAP(ours)| = {tie_effect:.1e} (tie order only)")
    if not equal:
        raise SystemExit("map_nuswide: our MAP differs from the baseline's; this is a bug, not a benchmark result")
    ratio = base_total / ours_s
    state["map_baseline_s"] = base_total
    state["map_data"] = (qb, db, ql, dl, ours_map)
    note = (f"{n_query}x{n_db}x{bits}b; equal to 1e-9 on {n_check} queries"
            + (f"; baseline EXTRAPOLATED from {n_timed} queries" if extrapolated else "; baseline on all queries"))
    say(f"  ratio (wall) {ratio:.1f}x; on 1 thread {base_total / one_s:.1f}x; CPU seconds {base_cpu / ours_cpu:.1f}x")
    return [row("map_nuswide", ours_s, base_total, ">= 20x", note, ratio=ratio, map=ours_map, ours_1thread_s=one_s,
                ratio_1thread=base_total / one_s, ours_cpu_s=ours_cpu, baseline_cpu_s=base_cpu,
                baseline_extrapolated=extrapolated, baseline_queries=n_timed, checked_queries=n_check,
                max_abs_ap_diff=max_diff)]


def case_map_nuswide_torch(args: argparse.Namespace, state: dict) -> list[dict]:
    if not torch.cuda.is_available():
        say("  not measured: no GPU lent (torch.cuda.is_available() is False)")
        return [row("map_nuswide_torch", None, None, "-", "not measured: no GPU lent")]
    if "map_data" not in state:
        case_map_nuswide(args, state)
    qb, db, ql, dl, ours_map = state["map_data"]
    dev = torch.device("cuda")
    tensors = [torch.as_tensor(a, device=dev) for a in (qb, db, ql, dl)]
    metrics.mean_average_precision(*[t[:64] for t in tensors], backend="torch")  # CUDA context and kernels
    torch.cuda.synchronize()
    gpu_s, gpu_map = timed(lambda: metrics.mean_average_precision(*tensors, backend="torch"))
    equal = abs(gpu_map - ours_map) <= 1e-9
    say(f"  ours torch backend on {torch.cuda.get_device_name(dev)}: {gpu_s:.3f} s  MAP {gpu_map:.6f} "
        f"(equal to the NumPy path to 1e-9: {equal})")
    if not equal:
        raise SystemExit("map_nuswide_torch: the torch path's MAP differs from the NumPy path's")
    return [row("map_nuswide_torch", gpu_s, state["map_baseline_s"], ">= 20x",
                f"GPU {torch.cuda.get_device_name(dev)}; baseline = CPU cdist+argsort of map_nuswide", map=gpu_map)]


# ---------------------------------------------------------------------------------------------------------
# b. RSHNL training at XMedia shape


def xmedia_shaped_splits(rng: np.random.Generator) -> tuple[SplitData, SplitData, SplitData]:
    """4,000 / 500 / 500 pairs of 4096-d and 3000-d features, 20 classes in 21 label columns (as RSHNL's)."""
    means = [rng.normal(0.0, 1.0, (21, d)).astype(np.float32) for d in (4096, 3000)]

    def split(n: int) -> SplitData:
        y = rng.integers(1, 21, n)
        xs = [m[y] + rng.normal(0.0, 2.0, (n, m.shape[1])).astype(np.float32) for m in means]
        return SplitData(xs, np.eye(21, dtype=np.float32)[y])

    return split(4000), split(500), split(500)


class _PairDataset(torch.utils.data.Dataset):
    """The reference code's dataset: per-item NumPy rows, collated into batches by the DataLoader."""

    def __init__(self, xs: list[np.ndarray], labels: np.ndarray):
        self.xs, self.labels = xs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.xs[0][i], self.xs[1][i], self.labels[i], i


def reference_style_training(params: dict, bits: int, train: SplitData, val: SplitData, test: SplitData,
                             dev: torch.device, seed: int) -> list[np.ndarray]:
    """The published training loop's mechanics around the same RSHNL network and loss.

    DataLoader over CPU arrays (shuffled, default collate), every batch copied to the device, ``loss.item()``
    per batch, per epoch the validation split encoded through a DataLoader, moved to the host and scored
    with the baseline cdist/argsort evaluator in both directions, best weights deep-copied; finally the test
    split encoded with the best weights. (The published loop also computes a validation loss per epoch;
    left out here, which favours the baseline.)
    """
    torch.manual_seed(seed)
    model = get_method_class("rshnl")(tuple(x.shape[1] for x in train.xs), train.labels.shape[1], bits, params).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
    loader = torch.utils.data.DataLoader(_PairDataset(train.xs, train.labels), batch_size=params["batch_size"],
                                         shuffle=True)

    def encode(split: SplitData) -> list[np.ndarray]:
        model.eval()
        outs: list[list[np.ndarray]] = [[], []]
        with torch.no_grad():
            for x0, x1, _, _ in torch.utils.data.DataLoader(_PairDataset(split.xs, split.labels), batch_size=256):
                for m, h in enumerate(model.encode([x0.to(dev), x1.to(dev)])):
                    outs[m].append(torch.sign(h).cpu().numpy())
        model.train()
        return [np.concatenate(o) for o in outs]

    best_value, best_state = -math.inf, None
    for epoch in range(params["epochs"]):
        total = 0.0
        for x0, x1, y, _ in loader:
            out = model.training_step([x0.to(dev), x1.to(dev)], y.to(dev), epoch)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            total += out.loss.item()
        codes = encode(val)
        maps = [np.nanmean(published_style_average_precisions(codes[a], codes[b], val.labels, val.labels))
                for a, b in ((0, 1), (1, 0))]
        if np.mean(maps) > best_value:
            best_value, best_state = float(np.mean(maps)), copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return encode(test)


def case_train_xmedia(args: argparse.Namespace, state: dict) -> list[dict]:
    dev = resolve_device("auto")
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({cpu_model()}, {torch.get_num_threads()} torch threads)"
    epochs = (3 if args.quick else 10) if dev.type == "cuda" else (1 if args.quick else 2)
    with open(REPO / "config" / "config.yaml") as fh:
        cfg = validate_config(yaml.safe_load(fh), "config/config.yaml")
    impl, params = resolve_method(cfg, "RSHNL", "xmedia")
    params = {**params, "epochs": epochs}
    say(f"  device: {device_name}; RSHNL params from config/config.yaml (xmedia): hidden {params['hidden']}, "
        f"center_hidden {params['center_hidden']}, batch {params['batch_size']}; 128 bits; {epochs} epochs each")
    train, val, test = xmedia_shaped_splits(np.random.default_rng(0))
    flags = np.zeros(len(train.labels), dtype=bool)

    def ours(amp: bool = False):
        return train_model(impl, params, 128, train, val, test, flags, seed=0, device=str(dev), amp=amp)

    if dev.type == "cuda":  # CUDA context, cuBLAS handles, allocator: not part of either loop
        train_model(impl, {**params, "epochs": 1}, 128, train, val, test, flags, seed=0, device=str(dev))
        torch.cuda.synchronize()
    ours_s, _ = timed(ours)
    ours_cpu = CPU_SECONDS[-1]
    say(f"  ours      cmhash.train.train_model: {ours_s:8.2f} s = {epochs / ours_s:.4f} epochs/s ({ours_cpu:.1f} s CPU)")
    ref_s, _ = timed(lambda: reference_style_training(params, 128, train, val, test, dev, seed=0))
    ref_cpu = CPU_SECONDS[-1]
    say(f"  baseline  reference-style loop:     {ref_s:8.2f} s = {epochs / ref_s:.4f} epochs/s ({ref_cpu:.1f} s CPU)")
    rows = [row("train_xmedia", ours_s / epochs, ref_s / epochs, ">= 5x on GPU",
                f"seconds per epoch (whole call incl. setup / {epochs} epochs) on {device_name}",
                epochs=epochs, device=device_name, ours_epochs_per_s=epochs / ours_s,
                baseline_epochs_per_s=epochs / ref_s, ours_cpu_s=ours_cpu, baseline_cpu_s=ref_cpu)]
    if dev.type == "cuda":
        amp_s, _ = timed(lambda: ours(amp=True))
        say(f"  ours amp  (bf16 autocast):          {amp_s:8.2f} s = {epochs / amp_s:.4f} epochs/s")
        rows.append(row("train_xmedia_amp", amp_s / epochs, ref_s / epochs, ">= 5x on GPU",
                        f"as train_xmedia with amp: true on {device_name}", epochs=epochs, device=device_name))
    else:
        say("  GPU: not measured: no GPU lent")
        rows.append(row("train_xmedia_gpu", None, None, ">= 5x", "not measured: no GPU lent"))
    return rows


def _noisy_copies(labels: np.ndarray, rates: list[float], rng: np.random.Generator) -> list[np.ndarray]:
    """Symmetric label noise at each rate (benchmark data only; the workflow uses cmhash.noise)."""
    y = labels.argmax(1)
    classes = np.unique(y)
    out = []
    for rate in rates:
        flip = rng.random(len(y)) < rate
        out.append(np.eye(labels.shape[1], dtype=np.float32)[np.where(flip, rng.choice(classes, len(y)), y)])
    return out


def case_train_stacked(args: argparse.Namespace, state: dict) -> list[dict]:
    """The 4 noise rates of RSHNL trained as one stacked network vs the same 4 runs one after another."""
    from cmhash.stacked import train_models_stacked

    dev = resolve_device("auto")
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({cpu_model()}, {torch.get_num_threads()} torch threads)"
    with open(REPO / "config" / "config.yaml") as fh:
        cfg = validate_config(yaml.safe_load(fh), "config/config.yaml")
    rates = [0.2, 0.4, 0.6, 0.8]
    rng = np.random.default_rng(0)
    shapes = {  # (config dataset whose RSHNL params are used, bits, data)
        "synthetic": ("synthetic", 64, _shaped_splits(rng, (360, 60, 180), (32, 24), 5)),  # overhead-bound
        "mfeat": ("mfeat", 64, _shaped_splits(rng, (1000, 200, 800), (240, 76), 10)),  # the shipped data's shape
        "xmedia": ("xmedia", 128, xmedia_shaped_splits(rng)),  # the paper's network: compute-bound
    }
    rows = []
    for shape, (dataset, bits, (train, val, test)) in shapes.items():
        impl, params = resolve_method(cfg, "RSHNL", dataset)
        if dev.type == "cuda":
            epochs = 3 if args.quick else (5 if shape == "xmedia" else 20)
        else:
            epochs = 1 if args.quick or shape == "xmedia" else (20 if shape == "synthetic" else 5)
        params = {**params, "epochs": epochs}
        labels = _noisy_copies(train.labels, rates, rng)
        flags = [np.zeros(len(train.labels), dtype=bool)] * len(rates)
        say(f"  {shape} shape: {len(train.labels)} train, inputs {[x.shape[1] for x in train.xs]}, hidden "
            f"{params['hidden']}, batch {params['batch_size']}, {bits} bits, {epochs} epochs, {len(rates)} noise rates")

        # one-time costs (vmap's first trace, CUDA context and kernels) outside both timings: one epoch on
        # two batches' worth of rows
        n_warm = 2 * int(params["batch_size"])
        warm = {**params, "epochs": 1}
        train_models_stacked(impl, warm, bits, [x[:n_warm] for x in train.xs], [y[:n_warm] for y in labels], val,
                             test, [f[:n_warm] for f in flags], seed=0, device=str(dev))
        train_model(impl, warm, bits, SplitData([x[:n_warm] for x in train.xs], labels[0][:n_warm]), val, test,
                    flags[0][:n_warm], seed=0, device=str(dev))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        ours_s, ours_res = timed(functools.partial(
            train_models_stacked, impl, params, bits, train.xs, labels, val, test, flags, seed=0, device=str(dev)))
        ref_s, ref_res = timed(functools.partial(
            _one_by_one, impl, params, bits, train.xs, labels, val, test, flags, str(dev)))
        agree = float(np.mean([np.mean(a.codes[0] == b.codes[0]) for a, b in zip(ours_res, ref_res)]))
        say(f"    ours      stacked (vmap, one process): {ours_s:8.2f} s")
        say(f"    baseline  4 runs one after another:     {ref_s:8.2f} s   ratio {ref_s / ours_s:.2f}x; "
            f"image codes equal in {agree:.1%} of bits")
        rows.append(row(f"train_stacked_{shape}", ours_s, ref_s, "> 1x where it pays",
                        f"4 RSHNL noise rates, {epochs} epochs, {shape} shape on {device_name}",
                        epochs=epochs, device=device_name, code_agreement=agree))
    if dev.type != "cuda":
        say("  GPU: not measured: no GPU lent")
    return rows


def _one_by_one(impl, params, bits, xs, labels, val, test, flags, device) -> list:
    """The baseline of train_stacked: the same runs, one train_model call each."""
    return [train_model(impl, params, bits, SplitData(xs, y), val, test, f, seed=0, device=device)
            for y, f in zip(labels, flags)]


def _shaped_splits(rng: np.random.Generator, sizes: tuple[int, int, int], dims: tuple[int, int],
                   n_classes: int) -> tuple[SplitData, SplitData, SplitData]:
    """Train / validation / test splits of Gaussian classes with the given sizes, input widths and classes."""
    means = [rng.normal(0.0, 1.0, (n_classes, d)).astype(np.float32) for d in dims]

    def split(n: int) -> SplitData:
        y = rng.integers(0, n_classes, n)
        xs = [m[y] + rng.normal(0.0, 2.0, (n, m.shape[1])).astype(np.float32) for m in means]
        return SplitData(xs, np.eye(n_classes, dtype=np.float32)[y])

    return split(sizes[0]), split(sizes[1]), split(sizes[2])


# ---------------------------------------------------------------------------------------------------------
# c. workflow overhead, d. default experiment wall time

GRID_METHODS = ["RSHNL", "RSHNL-1", "RSHNL-2", "RSHNL-3", "RSHNL-S", "RSHNL-D", "CE", "SEHA", "NSRMH",
                "DGCPN", "CIRH", "UCCH", "HMAH", "DHaPH"]


def snakemake(workdir: Path, target: str, *extra: str, configfile: Path | None = None, timeout: int = 600,
              env: dict[str, str] | None = None):
    cmd = [SNAKEMAKE, target, *extra, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def job_count(proc: subprocess.CompletedProcess) -> int:
    found = re.findall(r"^total\s+(\d+)", proc.stdout + proc.stderr, flags=re.MULTILINE)
    return int(found[-1]) if found else 0


def case_workflow_dry_run(args: argparse.Namespace, state: dict) -> list[dict]:
    seeds = list(range(44))  # 9,856 runs in 2,464 groups: 2,464 trainings + 2,464 evaluations + noise/reports > 5,000
    grid = {"experiments": {"bench_grid": {"datasets": ["synthetic"], "methods": GRID_METHODS,
                                           "noise": [0.2, 0.4, 0.6, 0.8], "bits": [16, 32, 64, 128],
                                           "seeds": seeds}}}
    with tempfile.TemporaryDirectory(prefix="cmhash-bench-") as tmp:
        workdir = Path(tmp)
        cfg = workdir / "bench_grid.yaml"
        cfg.write_text(yaml.safe_dump(grid))
        # the methods' defaults come from a cache (cmhash.registry_cache): tiny fills a fresh one, the grid reads it;
        # the cold grid run (no cache: torch imported to read the classes) is what the first call after an edit pays
        cache = {"CMHASH_CACHE_DIR": str(workdir / "cache")}
        tiny_s, tiny = timed(lambda: snakemake(workdir, "tiny", "-n", "--cores", "2", env=cache))
        grid_s, big = timed(lambda: snakemake(workdir, "bench_grid", "-n", "--cores", "2", configfile=cfg, env=cache))
        cold_s, _ = timed(lambda: snakemake(workdir, "bench_grid", "-n", "--cores", "2", configfile=cfg,
                                            env={"CMHASH_CACHE_DIR": "off"}))
    n_tiny, n_grid = job_count(tiny), job_count(big)
    say(f"  grid: synthetic x {len(GRID_METHODS)} methods x 4 noise x 4 bits x {len(seeds)} seeds")
    say(f"  ours      snakemake -n bench_grid: {grid_s:6.2f} s for {n_grid} jobs ({cold_s:.2f} s without the "
        "defaults cache)")
    say(f"  baseline  snakemake -n tiny:       {tiny_s:6.2f} s for {n_tiny} jobs")
    return [row("workflow_dry_run", grid_s, tiny_s, "< 10 s (>= 5,000 jobs)", f"{n_grid} jobs vs tiny {n_tiny} jobs; "
                f"ratio = grid / tiny (growth of the dry run, not a speed-up); {cold_s:.2f} s with no defaults "
                "cache (cmhash.registry_cache)", ratio=grid_s / tiny_s, jobs=n_grid, baseline_jobs=n_tiny,
                cold_s=cold_s)]


def train_share(results: Path, wall: float, cores: int) -> tuple[float, int, float]:
    """Sum of the runs' ``train_seconds`` (time inside ``train_model``), their count, and the share of the
    core-seconds the workflow used: sum / (wall x cores)."""
    import h5py

    seconds, runs = 0.0, 0
    for path in sorted(results.glob("train/*/*/*/*/*/*.h5")):  # one file per run in its training group
        with h5py.File(path, "r") as f:
            seconds += float(f.attrs["train_seconds"])
            runs += 1
    return seconds, runs, seconds / (wall * cores) if wall > 0 else float("nan")


def case_default_wall(args: argparse.Namespace, state: dict) -> list[dict]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="cmhash-default-") as tmp:
        wall, proc = timed(lambda: snakemake(Path(tmp), "default", "--cores", "all", timeout=24 * 3600))
        seconds, runs, share = train_share(Path(tmp) / "results", wall, cores)
    say(f"  ours      snakemake --cores all default: {wall:.1f} s ({job_count(proc)} jobs, {cores} CPUs)")
    say(f"  train     {runs} runs' train_seconds sum to {seconds:.1f} s = {100 * share:.1f} % of the "
        f"{wall * cores:.0f} core-seconds (target >= 85 %)")
    return [row("default_wall", wall, None, "-", f"{job_count(proc)} jobs; train share {100 * share:.1f} %",
                jobs=job_count(proc), train_seconds=seconds, train_share=share)]


CASES: dict[str, Callable[[argparse.Namespace, dict], list[dict]]] = {
    "map_nuswide": case_map_nuswide,
    "map_nuswide_torch": case_map_nuswide_torch,
    "train_xmedia": case_train_xmedia,
    "train_stacked": case_train_stacked,
    "workflow_dry_run": case_workflow_dry_run,
    "default_wall": case_default_wall,
}
ON_REQUEST_ONLY = {"default_wall"}


# ---------------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> dict[str, Any]:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=False,
                            capture_output=True, text=True)
    return {
        "cpu": cpu_model(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "git_commit": commit.stdout.strip() or None,
    }


def fmt(value: float | None, unit: str = "s") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f} {unit}" if unit else f"{value:.1f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer epochs (same code paths)")
    parser.add_argument("--only", action="append", choices=sorted(CASES), help="run only this case (repeatable)")
    parser.add_argument("--baseline-queries", type=int, default=None,
                        help="map_nuswide: time the baseline on the first N queries and extrapolate (printed as such)")
    parser.add_argument("--check-queries", type=int, default=None,
                        help="map_nuswide: queries checked for equality with the stable-sort baseline (default: "
                             "those the baseline was timed on)")
    args = parser.parse_args(argv)
    names = args.only or [name for name in CASES if name not in ON_REQUEST_ONLY]

    info = machine()
    started = dt.datetime.now(dt.timezone.utc)
    say(f"cmhash benchmarks {started.isoformat(timespec='seconds')}{' (quick)' if args.quick else ''}")
    say(f"machine: {info['cpus']} CPUs ({info['cpu']}), load average at start {info['load_average_at_start']}, "
        f"GPU: {info['gpu'] or 'none'}; numpy {info['numpy']}, torch {info['torch']}, commit {info['git_commit']}")
    rows: list[dict] = []
    state: dict[str, Any] = {}
    for name in names:
        say(f"\n[{name}]")
        case_s, case_rows = timed(lambda case=CASES[name]: case(args, state))
        say(f"  ({case_s:.1f} s for the case)")
        rows.extend(case_rows)

    say("\n" + f"{'case':<20} {'ours':>12} {'baseline':>12} {'ratio':>8}  {'target':<13} note")
    for r in rows:
        say(f"{r['case']:<20} {fmt(r['ours_s']):>12} {fmt(r['baseline_s']):>12} {fmt(r['ratio'], ''):>8}  "
            f"{r['target']:<13} {r['note']}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    payload = {"started": started.isoformat(timespec="seconds"), "quick": args.quick, "machine": info, "cases": rows,
               "printout": LINES}
    columns = ["case", "ours_s", "baseline_s", "ratio", "target", "note"]
    for stem in (f"run-{stamp}", "latest"):
        (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
        with open(RESULTS / f"{stem}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        (RESULTS / f"{stem}.txt").write_text("\n".join(LINES) + "\n")
    print(f"\nwritten: {RESULTS.relative_to(REPO)}/run-{stamp}.{{json,csv,txt}} (and latest.*)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
