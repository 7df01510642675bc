"""The shared training loop: any registered method, noisy labels in, test (and database) codes + history out.

Readable top to bottom: build the method, put all data on the device once, then for each of the method's
stages (:meth:`Method.stages`; one Adam stage unless the method declares others) build its optimisers and LR
schedule, and per epoch (1) one pass of optimiser steps over a seeded permutation of the training set (the
method may take its own alternating steps: ``manual_optimization``), (2) validation MAP of both retrieval
directions on sign codes, (3) keep the weights with the best mean validation MAP among the epochs of stages
that ``select_best``. After the last epoch the best weights encode the test split and, when the dataset has
one, the retrieval database split; methods with joint code sets (:meth:`Method.encode_joint`, e.g. a fused code)
encode those splits once more, one code per pair.

The epoch loop itself is :func:`run_epochs`, the one every training goes through: it drives a *trainer*,
:class:`SingleRun` here (a method's stages, hooks and batches; every hook gets one :class:`TrainContext`) or
:class:`cmhash.stacked.StackedRuns` (G runs as one vmapped network), and keeps per run the history, the best
weights and the checkpoint state.
Everything the loop logs is generic: loss terms reported by the method, and (for methods that weight samples)
weight statistics split by the ground-truth noise flag, which is used for logging only.

On a GPU nothing crosses to the host inside an epoch: batches are index views of device-resident tensors,
loss sums accumulate on the device (a method's ``terms`` may be 0-d tensors for the same reason), and the
validation MAP uses the torch path of :mod:`cmhash.metrics` on the device. The host sees one small
transfer per epoch (the shuffling order, the summed losses, per-sample weights, per-query APs).
``amp`` runs the training steps under bfloat16 autocast (CUDA only); ``deterministic`` switches torch to
deterministic kernels (see :func:`set_deterministic`). On the CPU the loop is bit-for-bit reproducible.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import metrics
from .methods import Method, OptimizerSpec, Stage, TrainContext, get_method_class
from .store import atomic_path, check_joint_code_name, task_names

log = logging.getLogger(__name__)

WEIGHT_BINS = np.linspace(0.0, 1.0, 51)
#: Layout version of training checkpoints; a checkpoint of another layout is ignored (training starts over).
CHECKPOINT_FORMAT = 4  # 4: run_epochs' layout (trainer state, per-run records and best weights)

_OPTIMIZER_CLASSES = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
}


@dataclass
class SplitData:
    """Features of the two modalities and multi-hot labels of one split."""

    xs: list[np.ndarray]
    labels: np.ndarray


@dataclass
class TrainResult:
    """Codes are int8 +/-1 matrices ``N x bits`` from the weights of the best validation epoch."""

    codes: list[np.ndarray]  # test split (queries), one per modality
    history: dict[str, list[float]]
    weight_hist_clean: np.ndarray
    weight_hist_noisy: np.ndarray
    best_epoch: int
    seconds: float
    device: str
    extra: dict[str, Any] = field(default_factory=dict)
    database_codes: list[np.ndarray] | None = None  # database split, one per modality (None: no such split)
    # the method's joint code sets (Method.encode_joint), name -> one code per pair: test / database split
    joint_codes: dict[str, np.ndarray] = field(default_factory=dict)
    database_joint_codes: dict[str, np.ndarray] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU is an error naming the fix."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but no CUDA GPU is visible to torch; "
                           "set `device: auto` or `device: cpu` in the config (or --config device=cpu)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cuda or cpu, got {name!r}")
    return torch.device(name)


def set_deterministic(enabled: bool) -> None:
    """Make CUDA runs repeatable: deterministic kernels only (an op without one raises, naming itself).

    cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` for repeatable GEMMs; it is read when cuBLAS starts,
    so it is set here before the first GPU matmul of the process (each training job is its own process).
    On the CPU results are repeatable anyway.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@torch.no_grad()
def sign_codes(model: Method, xs: list[torch.Tensor], batch: int = 4096) -> list[torch.Tensor]:
    """Sign codes (int8 tensors of +/-1 on the data's device) of a whole split, encoded in chunks in eval mode."""
    model.eval()
    outs: list[list[torch.Tensor]] = [[] for _ in xs]
    for start in range(0, xs[0].shape[0], batch):
        for m, h in enumerate(model.encode([x[start : start + batch] for x in xs])):
            outs[m].append(h)
    model.train()
    return [torch.where(torch.cat(o) >= 0, 1, -1).to(torch.int8) for o in outs]


def encode_split(model: Method, xs: list[torch.Tensor], batch: int = 4096) -> list[np.ndarray]:
    """Sign codes (int8 NumPy arrays of +/-1) of a whole split."""
    return [c.cpu().numpy() for c in sign_codes(model, xs, batch)]


@torch.no_grad()
def encode_joint_split(model: Method, xs: list[torch.Tensor], batch: int = 4096) -> dict[str, np.ndarray]:
    """Sign codes (int8 NumPy arrays of +/-1, one row per pair) of every joint code set the method declares
    (:meth:`Method.encode_joint`) over a whole split; ``{}`` for a method without any."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, xs[0].shape[0], batch):
        for name, h in model.encode_joint([x[start : start + batch] for x in xs]).items():
            parts.setdefault(check_joint_code_name(name), []).append(torch.where(h >= 0, 1, -1).to(torch.int8).cpu())
    model.train()
    return {name: torch.cat(p).numpy() for name, p in parts.items()}


def cross_modal_maps(
    codes: list[Any], labels: Any, empty_queries: str = "skip", backend: str = "numpy"
) -> list[float]:
    """MAP@all of modality 0 -> 1 and 1 -> 0 where the split is both query set and database.

    ``backend="torch"`` keeps the work on the device of the (tensor) codes and labels.
    """
    return [
        metrics.mean_average_precision(codes[0], codes[1], labels, labels, empty_queries=empty_queries, backend=backend),
        metrics.mean_average_precision(codes[1], codes[0], labels, labels, empty_queries=empty_queries, backend=backend),
    ]


def train_model(
    impl: str,
    params: dict[str, Any],
    bits: int,
    train: SplitData,
    val: SplitData,
    test: SplitData,
    noisy_flags: np.ndarray,
    seed: int,
    device: str = "auto",
    modalities: tuple[str, str] = ("image", "text"),
    run_name: str = "run",
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int = 0,
    checkpoint_key: str = "",
    clean_labels: np.ndarray | None = None,
    amp: bool = False,
    deterministic: bool = False,
    database: SplitData | None = None,
    noise_rate: float | None = None,
) -> TrainResult:
    """Train ``impl`` with resolved ``params`` on ``train`` (noisy labels) and return test codes + history.

    ``database``: the retrieval set of protocols whose queries (``test``) are searched in a separate split;
    it is encoded with the same best-validation weights (``TrainResult.database_codes``).

    ``noisy_flags`` marks the training rows whose label differs from the truth (logging only).
    With ``checkpoint_path`` and ``checkpoint_every > 0`` the complete training state (model, optimiser,
    shuffling generator, history, best weights) is saved every ``checkpoint_every`` epochs and a later
    call resumes from it; on the CPU a resumed run gives bit-identical codes to an uninterrupted one.
    A checkpoint whose ``checkpoint_key`` (the run's config hash) differs is ignored.
    ``clean_labels`` reach the method only if it asks for them (``needs_clean_labels``: a reference-compatible
    mode that reproduces a published code's label leakage).
    ``amp``: bfloat16 autocast of the training steps on CUDA (ignored on the CPU, with a log line).
    ``deterministic``: deterministic torch kernels (:func:`set_deterministic`; process-wide).
    ``noise_rate``: the run's nominal noise rate, given to methods that declare ``uses_noise_rate`` (CMMQ).
    """
    dev = resolve_device(device)
    if deterministic:
        set_deterministic(True)
    if amp and dev.type != "cuda":
        log.info("%s: amp (mixed precision) applies to CUDA only; training in float32 on %s", run_name, dev)
    use_amp = amp and dev.type == "cuda"
    # CUDA: validation MAP on the device (torch path); CPU: the exact NumPy path (bit-identical history)
    eval_backend = "torch" if dev.type == "cuda" else "numpy"
    seed_everything(seed)
    n_train = train.labels.shape[0]
    if n_train < 2:
        raise ValueError(f"{run_name}: the training split has {n_train} samples; at least 2 are needed")
    multilabel = bool((train.labels.sum(axis=1) > 1).any())
    method_cls = get_method_class(impl)
    model = method_cls(tuple(x.shape[1] for x in train.xs), train.labels.shape[1], bits, params, multilabel).to(dev)

    def to_dev(a: np.ndarray, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=dev)

    xs = [to_dev(x) for x in train.xs]
    ys = to_dev(train.labels)
    if model.needs_clean_labels and clean_labels is None:
        raise ValueError(f"{run_name}: method {impl} (reference-compatible mode) needs the clean training labels")
    model.noise_rate = None if noise_rate is None else float(noise_rate)
    val_xs = [to_dev(x) for x in val.xs]
    # every hook gets this one context; the clean labels only when the method asks (needs_clean_labels)
    context = TrainContext(xs, ys, to_dev(clean_labels) if model.needs_clean_labels else None, val_xs)
    model.on_train_start(context)
    plan = stage_plan(model.stages(), params, run_name)
    epochs = sum(n for _, n in plan)
    val_labels = to_dev(val.labels) if eval_backend == "torch" else val.labels
    test_xs = [to_dev(x) for x in test.xs]
    record = RunRecord(run_name, task_names(modalities), np.asarray(noisy_flags, dtype=bool))
    trainer = SingleRun(model, plan, params, xs, ys, context, n_train, use_amp)
    (result,) = run_epochs(
        trainer, [record], epochs, seed=seed, dev=dev, val=(val_xs, val_labels, eval_backend),
        test_xs=test_xs, database=database, checkpoint=(checkpoint_path, checkpoint_every, checkpoint_key),
        use_amp=use_amp, deterministic=deterministic,
    )
    return result


class SingleRun:
    """One run of :func:`run_epochs`: the method's model, its stages (optimisers, schedules), hooks and batches.

    The stacked trainer (:class:`cmhash.stacked.StackedRuns`) is the other implementation of the same
    interface: ``n_runs``, ``model`` (the plain model validation and encoding read), ``start_epoch``,
    ``train_epoch``, ``load_member``, ``member_state``, ``after_validation``, ``state``, ``load_state``.
    """

    n_runs = 1

    def __init__(self, model: Method, plan: list[tuple[Stage, int]], params: dict[str, Any], xs: list[torch.Tensor],
                 ys: torch.Tensor, context: TrainContext, n_train: int, use_amp: bool):
        self.model, self.plan, self.params, self.xs, self.ys = model, plan, params, xs, ys
        self.context, self.n_train, self.use_amp = context, n_train, use_amp
        self.batch_size = int(params["batch_size"])
        self.batches_per_epoch = len(list(batch_indices(torch.arange(n_train), self.batch_size)))
        self.current: StageRunner | None = None
        self._pending: dict[str, Any] | None = None  # a checkpoint's stage state, applied when its stage starts

    def start_epoch(self, epoch: int) -> Stage:
        """Stage housekeeping (a new stage's optimisers, ``on_stage_start``), then ``on_epoch_start``."""
        model = self.model
        stage_index, stage, _ = locate_epoch(self.plan, epoch)
        if self.current is None or self.current.index != stage_index:
            model.on_stage_start(stage, dataclasses.replace(self.context, epoch=epoch))
            self.current = StageRunner(model, stage, stage_index, self.plan[stage_index][1], self.params,
                                       self.batches_per_epoch)
            if self._pending is not None and self._pending["stage"] == stage_index:
                self.current.load_state(self._pending["optimization"])
            self._pending = None
        model.train()
        self.context = dataclasses.replace(self.context, epoch=epoch)
        model.on_epoch_start(self.context)
        return stage

    def train_epoch(self, order: torch.Tensor, epoch: int) -> tuple[dict[str, Any], torch.Tensor, int]:
        """The epoch's mini-batches in ``order``: (loss sums on the device, per-sample weights 1 x N, batches)."""
        model, current, dev = self.model, self.current, self.ys.device
        # sums stay on the device (float64, added one batch at a time like Python floats): no per-batch sync
        sums: dict[str, Any] = {"loss": torch.zeros((), dtype=torch.float64, device=dev)}
        weights = torch.full((1, self.n_train), float("nan"), device=dev)
        n_batches = 0
        for idx in batch_indices(order, self.batch_size):
            extra: dict[str, Any] = {"index": idx} if model.uses_index else {}
            if model.manual_optimization:
                extra["step"] = current.manual_step
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.use_amp):
                out = model.training_step([x[idx] for x in self.xs], self.ys[idx], epoch, **extra)
            if not model.manual_optimization:
                current.step(out.loss)
            accumulate_terms(sums, out.loss, out.terms)
            if out.weights is not None:
                weights[0, idx] = out.weights.detach().to(weights.dtype)
            n_batches += 1
        current.end_epoch()
        return sums, weights, n_batches

    def load_member(self, g: int) -> None:
        """The model already holds the run's weights."""

    def member_state(self, g: int) -> dict[str, Any]:
        return copy.deepcopy(self.model.state_dict())

    def after_validation(self, epoch: int) -> None:
        self.model.on_validation(self.context)

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "stage": self.current.index, "optimization": self.current.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self._pending = state


def run_epochs(
    trainer: Any, records: list[RunRecord], epochs: int, *, seed: int, dev: torch.device,
    val: tuple[list[torch.Tensor], Any, str], test_xs: list[torch.Tensor], database: SplitData | None,
    checkpoint: tuple[str | Path | None, int, str], use_amp: bool, deterministic: bool,
    extra: dict[str, Any] | None = None,
) -> list[TrainResult]:
    """The epoch loop of every training, one run (:class:`SingleRun`) or ``G`` stacked runs
    (:class:`cmhash.stacked.StackedRuns`): shuffle, train an epoch, score each run's validation MAP and keep its
    best weights, checkpoint, and finally encode each run's test (and database) split with its best weights.

    ``records``: one :class:`RunRecord` per run of ``trainer``. ``val``: (features, labels, MAP backend).
    ``checkpoint``: (path or None, every n epochs, key); a checkpoint of another key is ignored, and a resumed
    training gives, on the CPU, the codes of an uninterrupted one. Returns one :class:`TrainResult` per run;
    ``seconds`` is the whole call's time (for stacked runs: the stack's, as its runs are not separable).
    """
    val_xs, val_labels, eval_backend = val
    checkpoint_path, checkpoint_every, checkpoint_key = checkpoint
    n_train = trainer.n_train
    perm_gen = torch.Generator().manual_seed(seed)
    best: list[Any] = [None] * trainer.n_runs
    interactive = sys.stderr.isatty()
    start_time = time.perf_counter()
    first_epoch = 0
    state = load_checkpoint(checkpoint_path, checkpoint_key) if checkpoint_path else None
    if state is not None:
        trainer.load_state(state["trainer"])
        perm_gen.set_state(state["perm_gen"])
        # methods may draw from torch's global generator (dropout, sampled negatives): restore it too
        torch.set_rng_state(state["torch_rng"])
        if dev.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], dev)
        for record, saved in zip(records, state["records"]):
            record.load_state(saved)
        best = state["best"]
        first_epoch = state["epoch"] + 1
        log.info("%s: resuming from %s after epoch %d", ", ".join(r.run_name for r in records), checkpoint_path,
                 first_epoch)
    for epoch in range(first_epoch, epochs):
        stage = trainer.start_epoch(epoch)
        order = torch.randperm(n_train, generator=perm_gen).to(dev)
        sums, weights, n_batches = trainer.train_epoch(order, epoch)
        # per-run means on the host: float64 sums / batches (a single run's sums are 0-d)
        means = {key: np.broadcast_to(np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64),
                                      (trainer.n_runs,)) for key, v in sums.items()}
        host_weights = weights.cpu().numpy()
        message = ""
        for g, record in enumerate(records):
            row = {key: float(value[g]) / n_batches for key, value in means.items()}
            record.check_finite(row, epoch, epochs)
            trainer.load_member(g)
            val_maps = cross_modal_maps(sign_codes(trainer.model, val_xs), val_labels, backend=eval_backend)
            with torch.no_grad():
                trainer.after_validation(epoch)
            improved, message = record.end_epoch(epoch, epochs, row, val_maps, host_weights[g],
                                                 select=stage.select_best)
            if improved:
                best[g] = trainer.member_state(g)
        if interactive:
            if trainer.n_runs > 1:
                message = f"{trainer.n_runs} stacked runs epoch {epoch + 1}/{epochs}: " + ", ".join(
                    f"val {r.history['val_map_mean'][-1]:.3f}" for r in records)
            print(f"\r{message}", end="" if epoch + 1 < epochs else "\n", file=sys.stderr, flush=True)
        if checkpoint_path and checkpoint_every > 0 and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < epochs:
            save_checkpoint(checkpoint_path, {
                "key": checkpoint_key, "epoch": epoch, "trainer": trainer.state(), "perm_gen": perm_gen.get_state(),
                "records": [r.state() for r in records], "best": best, "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
            })
    # the database split goes to the device once, not once per run
    database_xs = None if database is None else [
        torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=dev) for x in database.xs]
    results = []
    for g, record in enumerate(records):
        trainer.model.load_state_dict(best[g])
        results.append(final_result(trainer.model, record, test_xs, database_xs, dev, use_amp, deterministic, extra))
    seconds = time.perf_counter() - start_time
    for result in results:
        result.seconds = seconds
    return results


def stage_plan(stages: list[Stage], params: dict[str, Any], run_name: str = "run") -> list[tuple[Stage, int]]:
    """``[(stage, epochs)]`` of a method's declared stages (``epochs=None`` -> ``params["epochs"]``), checked: names
    unique, epochs >= 0, at least one epoch in a stage that selects the best validation epoch."""
    if not stages:
        raise ValueError(f"{run_name}: the method declares no training stage")
    plan = []
    for stage in stages:
        n = int(params["epochs"]) if stage.epochs is None else stage.epochs
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{run_name}: stage {stage.name!r} has epochs={n!r}; it must be an integer >= 0")
        plan.append((stage, n))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"{run_name}: stage names must be unique, got {names}")
    if not any(s.select_best and n > 0 for s, n in plan):
        raise ValueError(f"{run_name}: no stage with epochs > 0 selects the best validation epoch (select_best)")
    return plan


def locate_epoch(plan: list[tuple[Stage, int]], epoch: int) -> tuple[int, Stage, int]:
    """``(stage index, stage, epoch within the stage)`` of the run's 0-based ``epoch``."""
    start = 0
    for index, (stage, n) in enumerate(plan):
        if epoch < start + n:
            return index, stage, epoch - start
        start += n
    raise IndexError(f"epoch {epoch} is past the last stage ({start} epochs in all)")


def build_optimizers(model: Method, stage: Stage, params: dict[str, Any]) -> dict[str, torch.optim.Optimizer]:
    """The stage's named optimisers; an optimiser over no trainable parameter is left out (closed-form
    methods train none)."""
    out: dict[str, torch.optim.Optimizer] = {}
    for name, spec in stage.optimizers.items():
        groups = _parameter_groups(model, spec)
        if not groups:
            continue
        lr = params["lr"] if spec.lr is None else spec.lr
        wd = params["weight_decay"] if spec.weight_decay is None else spec.weight_decay
        out[name] = _OPTIMIZER_CLASSES[spec.kind](groups, lr=lr, weight_decay=wd, **spec.options)
    return out


def _parameter_groups(model: Method, spec: OptimizerSpec) -> list[Any]:
    if spec.parameters is None:
        return [p for p in model.parameters() if p.requires_grad]
    items = list(spec.parameters(model))
    if items and isinstance(items[0], dict):
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in items]
        return [g for g in groups if g["params"]]
    return [p for p in items if p.requires_grad]


def build_schedulers(
    stage: Stage, optimizers: dict[str, torch.optim.Optimizer], epochs: int, batches_per_epoch: int
) -> dict[str, Any]:
    """One torch LR scheduler per optimiser for the stage's ``lr_schedule`` (none for ``constant``).
    ``cosine`` without ``T_max`` anneals over the whole stage (epochs, or steps when stepped per step)."""
    if stage.lr_schedule == "constant":
        return {}
    opts = dict(stage.schedule_options)
    sched = torch.optim.lr_scheduler
    if stage.lr_schedule == "cosine":
        opts.setdefault("T_max", max(1, epochs * (batches_per_epoch if stage.schedule_interval == "step" else 1)))
    cls = {"cosine": sched.CosineAnnealingLR, "cosine_restarts": sched.CosineAnnealingWarmRestarts,
           "cosine_restarts_weighted": CosineRestartsWeighted,
           "step": sched.StepLR, "multistep": sched.MultiStepLR, "exponential": sched.ExponentialLR}[stage.lr_schedule]
    return {name: cls(opt, **opts) for name, opt in optimizers.items()}


class CosineRestartsWeighted(torch.optim.lr_scheduler.LRScheduler):
    r"""Cosine annealing with restarts of given lengths and peak weights (BasicSR's CosineAnnealingRestartLR).

    With periods ``P_0, P_1, ...`` (cumulative ends ``E_r``), weights ``w_r`` and ``eta_min``: at step ``e``, ``r`` is
    the first period with ``e <= E_r`` (so each period is closed: ``e = E_r`` reaches ``eta_min``) and
    ``lr = eta_min + w_r (lr_0 - eta_min) (1 + cos(pi (e - E_{r-1}) / P_r)) / 2`` (``E_{-1} = 0``); past the last
    period the lr stays at ``eta_min``. Hand check (periods [2, 2], weights [1, 0.5], eta_min 0, lr_0 1):
    e = 0..4 -> 1, 0.5, 0, 0.25, 0.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, periods: list[int], restart_weights: list[float] | None = None,
                 eta_min: float = 0.0, last_epoch: int = -1):
        if not periods or any(int(p) < 1 for p in periods):
            raise ValueError(f"periods must be positive integers, got {periods}")
        self.periods = [int(p) for p in periods]
        self.restart_weights = [1.0] * len(periods) if restart_weights is None else [float(w) for w in restart_weights]
        if len(self.restart_weights) != len(self.periods):
            raise ValueError("periods and restart_weights must have the same length")
        self.eta_min = float(eta_min)
        self.cumulative = list(np.cumsum(self.periods))
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        e = self.last_epoch
        for r, end in enumerate(self.cumulative):
            if e <= end:
                start = 0 if r == 0 else self.cumulative[r - 1]
                w = self.restart_weights[r]
                return [self.eta_min + w * 0.5 * (base - self.eta_min) * (1 + math.cos(math.pi * (e - start) / self.periods[r]))
                        for base in self.base_lrs]
        return [self.eta_min for _ in self.base_lrs]


class StageRunner:
    """The optimisers, LR schedules and gradient clipping of one stage of a run."""

    def __init__(self, model: Method, stage: Stage, index: int, epochs: int, params: dict[str, Any],
                 batches_per_epoch: int):
        self.index = index
        self.stage = stage
        self.optimizers = build_optimizers(model, stage, params)
        self.schedulers = build_schedulers(stage, self.optimizers, epochs, batches_per_epoch)

    def _apply(self, name: str) -> None:
        opt = self.optimizers[name]
        if self.stage.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(
                [p for g in opt.param_groups for p in g["params"]], self.stage.clip_grad_norm)
        opt.step()
        if self.stage.schedule_interval == "step" and name in self.schedulers:
            self.schedulers[name].step()

    def step(self, loss: torch.Tensor) -> None:
        """Every optimiser of the stage steps on ``loss`` (the automatic path); a loss without gradient is
        only logged."""
        if not self.optimizers or not loss.requires_grad:
            return
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for name in self.optimizers:
            self._apply(name)

    def manual_step(self, loss: torch.Tensor, name: str = "main") -> None:
        """``step=`` of manually optimised methods: zero-grad, backward, clip and step the optimiser ``name``."""
        if name not in self.optimizers:
            raise KeyError(f"stage {self.stage.name!r} has no optimizer {name!r} with trainable parameters; "
                           f"it has {sorted(self.optimizers)}")
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self._apply(name)

    def end_epoch(self) -> None:
        if self.stage.schedule_interval == "epoch":
            for scheduler in self.schedulers.values():
                scheduler.step()

    def state(self) -> dict[str, Any]:
        return {"optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])


def final_result(
    model: Method, record: RunRecord, test_xs: list[torch.Tensor], database_xs: list[torch.Tensor] | None,
    dev: torch.device, use_amp: bool, deterministic: bool, extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Encode the test (and database) split with ``model`` (already holding the best weights); ``seconds`` is
    left at 0 for :func:`run_epochs` to set."""
    codes = encode_split(model, test_xs)
    joint_codes = encode_joint_split(model, test_xs)
    database_codes, database_joint_codes = None, {}
    if database_xs is not None:
        database_codes = encode_split(model, database_xs)
        database_joint_codes = encode_joint_split(model, database_xs)
    return TrainResult(
        codes=codes,
        history=record.history,
        weight_hist_clean=np.asarray(record.hist_clean, dtype=np.float64),
        weight_hist_noisy=np.asarray(record.hist_noisy, dtype=np.float64),
        best_epoch=record.best_epoch,
        seconds=0.0,
        device=device_name(dev),
        extra={"amp": use_amp, "deterministic": bool(deterministic), **(extra or {})},
        database_codes=database_codes,
        joint_codes=joint_codes,
        database_joint_codes=database_joint_codes,
    )


def device_name(dev: torch.device) -> str:
    """``cpu`` or ``cuda:<GPU name>`` (recorded in every train.h5)."""
    return str(dev) if dev.type == "cpu" else f"cuda:{torch.cuda.get_device_name(dev)}"


def batch_indices(order: torch.Tensor, batch_size: int):
    """Mini-batches of row numbers in ``order``; a 1-sample tail batch is dropped (it carries no contrastive
    signal), unless it is the only batch."""
    n = order.numel()
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if idx.numel() < 2 and start > 0:
            continue
        yield idx


def accumulate_terms(sums: dict[str, Any], loss: torch.Tensor, terms: dict[str, Any]) -> None:
    """Add one batch's loss and loss terms to the epoch sums (device tensors: no host sync)."""
    sums["loss"] += loss.detach().to(torch.float64)
    for key, value in terms.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().to(torch.float64)
        sums[f"loss_{key}"] = sums.get(f"loss_{key}", 0.0) + value


class RunRecord:
    """What the loop keeps about one run between epochs: the history rows, the weight histograms split by the
    noise flag, and the best validation epoch. One per run; the stacked loop keeps one per member."""

    def __init__(self, run_name: str, tasks: list[str], noisy_flags: np.ndarray):
        self.run_name = run_name
        self.tasks = list(tasks)
        self.noisy_flags = np.asarray(noisy_flags, dtype=bool)
        self.history: dict[str, list[float]] = {}
        self.hist_clean: list[np.ndarray] = []
        self.hist_noisy: list[np.ndarray] = []
        self.best_value = -math.inf
        self.best_epoch = -1

    def check_finite(self, row: dict[str, float], epoch: int, epochs: int) -> None:
        """Stop with the run and epoch named when the epoch's mean loss is not finite (checked once per epoch:
        a per-batch check would sync the GPU)."""
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(
                f"{self.run_name}: the loss became {row['loss']} in epoch {epoch + 1}/{epochs}; "
                "lower the learning rate or check the input features for extreme values"
            )

    def end_epoch(
        self, epoch: int, epochs: int, row: dict[str, float], val_maps: list[float], weights: np.ndarray,
        select: bool = True,
    ) -> tuple[bool, str]:
        """Append the epoch's row (mean losses, validation MAPs, weight statistics) to the history and log it.
        Returns (whether the mean validation MAP is the best so far among selectable epochs, the progress line).

        When a method reports per-sample weights and every one of them is 0 in this epoch, a warning names the
        run and epoch: the method then ignores the labels (e.g. RSHNL's self-paced collapse)."""
        for task, value in zip(self.tasks, val_maps):
            row[f"val_map_{task}"] = value
        row["val_map_mean"] = float(np.mean(val_maps))
        row.update(_weight_stats(weights, self.noisy_flags))
        clean_counts, noisy_counts = _weight_histograms(weights, self.noisy_flags)
        self.hist_clean.append(clean_counts)
        self.hist_noisy.append(noisy_counts)
        row["epoch"] = epoch
        for key, value in row.items():
            self.history.setdefault(key, [math.nan] * epoch).append(float(value))
        for key in self.history:
            if len(self.history[key]) < epoch + 1:
                self.history[key].append(math.nan)
        if row["w_zero_frac"] == 1.0:
            log.warning("%s: every per-sample weight is 0 in epoch %d/%d: the method ignores the labels in this "
                        "epoch (self-paced collapse; see config/README.md, RSHNL)", self.run_name, epoch + 1, epochs)
        improved = select and row["val_map_mean"] > self.best_value
        if improved:
            self.best_value, self.best_epoch = row["val_map_mean"], epoch
        message = (
            f"{self.run_name} epoch {epoch + 1}/{epochs} loss {row['loss']:.4f} "
            + " ".join(f"val {t} {v:.4f}" for t, v in zip(self.tasks, val_maps))
            + ("" if math.isnan(row["w_mean"]) else f" w_clean {row['w_clean_mean']:.3f} w_noisy {row['w_noisy_mean']:.3f}")
        )
        log.info(message)
        return improved, message

    def state(self) -> dict[str, Any]:
        """Checkpointable state (tensors and plain values only: checkpoints load with ``weights_only``)."""
        return {
            "history": self.history, "best_value": self.best_value, "best_epoch": self.best_epoch,
            "hist_clean": [torch.from_numpy(h) for h in self.hist_clean],
            "hist_noisy": [torch.from_numpy(h) for h in self.hist_noisy],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.history = state["history"]
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
        self.hist_clean = [h.numpy() for h in state["hist_clean"]]
        self.hist_noisy = [h.numpy() for h in state["hist_noisy"]]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a training checkpoint atomically (temporary name, then rename)."""
    with atomic_path(path, suffix=".tmp.pt") as tmp:
        torch.save({**state, "format": CHECKPOINT_FORMAT}, tmp)


def load_checkpoint(path: str | Path | None, key: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists and belongs to ``key``; loaded with ``weights_only=True``."""
    if path is None or not Path(path).exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        log.warning("ignoring unreadable checkpoint %s (%s); training from scratch", path, exc)
        return None
    if state.get("format") != CHECKPOINT_FORMAT:
        log.warning("ignoring checkpoint %s: written by another version of the training loop", path)
        return None
    if state.get("key") != key:
        log.warning("ignoring checkpoint %s: it belongs to another configuration", path)
        return None
    return state


def _weight_stats(w: np.ndarray, noisy: np.ndarray) -> dict[str, float]:
    if np.all(np.isnan(w)):
        return {"w_mean": math.nan, "w_zero_frac": math.nan, "w_clean_mean": math.nan, "w_noisy_mean": math.nan}
    return {
        "w_mean": float(np.nanmean(w)),
        "w_zero_frac": float(np.nanmean(w == 0)),
        "w_clean_mean": float(np.nanmean(w[~noisy])) if (~noisy).any() else math.nan,
        "w_noisy_mean": float(np.nanmean(w[noisy])) if noisy.any() else math.nan,
    }


def _weight_histograms(w: np.ndarray, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = ~np.isnan(w)
    clean, _ = np.histogram(np.clip(w[ok & ~noisy], 0, 1), bins=WEIGHT_BINS)
    dirty, _ = np.histogram(np.clip(w[ok & noisy], 0, 1), bins=WEIGHT_BINS)
    return clean.astype(np.float64), dirty.astype(np.float64)
