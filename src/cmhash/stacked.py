"""Several runs trained together in one process: the noise rates of one (method, dataset, bits, seed).

Runs that differ only in their noisy labels share everything else: the network shape, the hyperparameters, the
initial weights (each run seeds torch with its seed before building the model) and the shuffling order (drawn
from the same seed). :func:`train_models_stacked` therefore trains ``G`` of them as one *stacked* network: the
parameters of the ``G`` copies are stacked along a new leading dimension (``torch.func.stack_module_state``)
and the method's own :meth:`~cmhash.methods.Method.training_step` runs under ``torch.func.vmap`` over that
dimension and over the ``G`` label matrices; one backward pass of the summed losses gives every copy its own
gradient (the copies share no parameter), and one Adam over the stacked tensors is ``G`` independent Adams
(Adam is elementwise). A GPU then sees one kernel per layer for all ``G`` runs instead of ``G`` small ones.

What stays per run: the loss sums, the per-sample weights, validation (each copy's weights are loaded into a
plain model and scored exactly as :func:`cmhash.train.train_model` does), the best epoch and its weights, the
history, and the final test/database encoding. On the CPU every member's codes and history are bit-identical
to its separate :func:`~cmhash.train.train_model` run (tests/test_stacked.py checks it for every stackable
method). Whether stacking is faster depends on the device and the network size: ``python benchmarks/run.py
--only train_stacked`` measures it against the same runs trained one after another.

Only methods whose training step is a pure function of (parameters, batch, labels, epoch) can be stacked: no
per-sample state (``uses_index``), no training hooks, no clean labels, no randomness inside the step. They opt
in with ``stackable = True``; :func:`stacking_problem` says why another cannot.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from .methods import Method, get_method_class
from .train import (
    RunRecord,
    SplitData,
    TrainResult,
    _accumulate,
    _final_result,
    batch_indices,
    cross_modal_maps,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    seed_everything,
    set_deterministic,
    sign_codes,
    task_names,
)

log = logging.getLogger(__name__)

# a method overriding any of these trains with more than one Adam over a pure step: it is not stackable
_HOOKS = ("on_train_start", "on_epoch_start", "on_validation", "on_stage_start", "stages")


def stacking_problem(impl: str) -> str | None:
    """``None`` if runs of method implementation ``impl`` can be trained stacked, else the reason why not."""
    cls = get_method_class(impl)
    if cls.uses_index:
        return f"method implementation {impl!r} keeps per-sample state (uses_index)"
    overridden = [h for h in _HOOKS if getattr(cls, h) is not getattr(Method, h)]
    if overridden:
        return f"method implementation {impl!r} overrides the training hooks {overridden}"
    if cls.manual_optimization:
        return f"method implementation {impl!r} takes its own optimiser steps (manual_optimization)"
    if not cls.stackable:
        return f"method implementation {impl!r} does not declare stackable = True"
    return None


class _Step(torch.nn.Module):
    """``forward`` = the method's training step, returning tensors only (what ``vmap`` can batch)."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int):
        out = self.method.training_step(xs, labels, epoch)
        terms = {k: v if isinstance(v, torch.Tensor) else torch.tensor(float(v), device=labels.device)
                 for k, v in out.terms.items()}
        weights = out.weights if out.weights is not None else labels.new_zeros(0)
        return out.loss, terms, weights


def train_models_stacked(
    impl: str,
    params: dict[str, Any],
    bits: int,
    train_xs: Sequence[np.ndarray],
    train_labels: Sequence[np.ndarray],
    val: SplitData,
    test: SplitData,
    noisy_flags: Sequence[np.ndarray],
    seed: int,
    device: str = "auto",
    modalities: tuple[str, str] = ("image", "text"),
    run_names: Sequence[str] | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int = 0,
    checkpoint_key: str = "",
    amp: bool = False,
    deterministic: bool = False,
    database: SplitData | None = None,
) -> list[TrainResult]:
    """Train one run per entry of ``train_labels`` (same features ``train_xs``, same ``params``, ``bits`` and
    ``seed``) as one stacked network; returns one :class:`~cmhash.train.TrainResult` per run, in order.

    The arguments mean what they mean for :func:`cmhash.train.train_model`; ``noisy_flags`` and ``run_names``
    have one entry per run. The checkpoint holds all runs together (``checkpoint_key`` should name them all).
    """
    problem = stacking_problem(impl)
    if problem:
        raise ValueError(f"cannot train runs of {impl!r} stacked: {problem}; train them one by one "
                         "(stack_noise_rates: false)")
    n_runs = len(train_labels)
    run_names = list(run_names) if run_names is not None else [f"run{g}" for g in range(n_runs)]
    if n_runs < 1 or len(noisy_flags) != n_runs or len(run_names) != n_runs:
        raise ValueError(f"train_labels ({n_runs}), noisy_flags ({len(noisy_flags)}) and run_names "
                         f"({len(run_names)}) must have one entry per run, at least one")
    shapes = {np.shape(y) for y in train_labels}
    if len(shapes) != 1:
        raise ValueError(f"runs stacked together need label matrices of one shape, got {sorted(shapes)}")
    multilabel = {bool((np.asarray(y).sum(axis=1) > 1).any()) for y in train_labels}
    if len(multilabel) != 1:
        raise ValueError("runs stacked together must be all single-label or all multi-label "
                         f"({', '.join(run_names)})")

    dev = resolve_device(device)
    if deterministic:
        set_deterministic(True)
    use_amp = amp and dev.type == "cuda"
    eval_backend = "torch" if dev.type == "cuda" else "numpy"
    seed_everything(seed)  # as train_model: every member starts from the weights a separate run would draw
    n_train = np.shape(train_labels[0])[0]
    if n_train < 2:
        raise ValueError(f"{run_names[0]}: the training split has {n_train} samples; at least 2 are needed")
    batch_size = int(params["batch_size"])
    method_cls = get_method_class(impl)
    model = method_cls(tuple(x.shape[1] for x in train_xs), np.shape(train_labels[0])[1], bits, params,
                       multilabel.pop()).to(dev)
    if model.needs_clean_labels:
        raise ValueError(f"cannot train runs of {impl!r} stacked: this mode needs the clean labels")

    def to_dev(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=dev)

    xs = [to_dev(x) for x in train_xs]
    ys = torch.stack([to_dev(y) for y in train_labels])  # G x N x K
    stacked, buffers = stack_module_state([model] * n_runs)
    for name, p in model.named_parameters():
        stacked[name].requires_grad_(p.requires_grad)
    trainable = [p for p in stacked.values() if p.requires_grad]
    if not trainable:
        raise ValueError(f"cannot train runs of {impl!r} stacked: the method has no trainable parameters")
    optimizer = torch.optim.Adam(trainable, lr=params["lr"], weight_decay=params["weight_decay"])
    step = _Step(copy.deepcopy(model).to("meta"))

    def one_run(p: dict, b: dict, batch_xs: list[torch.Tensor], labels: torch.Tensor, epoch: int):
        return functional_call(step, ({f"method.{k}": v for k, v in p.items()},
                                      {f"method.{k}": v for k, v in b.items()}), (batch_xs, labels, epoch))

    stacked_step = vmap(one_run, in_dims=(0, 0, None, 0, None))

    state_keys = list(model.state_dict())  # parameters and persistent buffers

    def member_state(g: int) -> dict[str, torch.Tensor]:
        both = {**stacked, **buffers}
        return {k: both[k][g].detach().clone() for k in state_keys}

    val_xs = [to_dev(x) for x in val.xs]
    val_labels = to_dev(val.labels) if eval_backend == "torch" else val.labels
    test_xs = [to_dev(x) for x in test.xs]
    tasks = task_names(modalities)
    records = [RunRecord(name, tasks, flags) for name, flags in zip(run_names, noisy_flags)]
    best_models: list[Any] = [None] * n_runs
    perm_gen = torch.Generator().manual_seed(seed)
    epochs = int(params["epochs"])
    first_epoch = 0
    interactive = sys.stderr.isatty()
    start_time = time.perf_counter()
    state = load_checkpoint(checkpoint_path, checkpoint_key) if checkpoint_path else None
    if state is not None:
        with torch.no_grad():
            for name, value in state["stacked"].items():
                stacked[name].copy_(value)
            for name, value in state["buffers"].items():
                buffers[name].copy_(value)
        optimizer.load_state_dict(state["optimizer"])
        perm_gen.set_state(state["perm_gen"])
        for record, saved in zip(records, state["records"]):
            record.load_state(saved)
        best_models = state["best_models"]
        first_epoch = state["epoch"] + 1
        log.info("%d stacked runs: resuming from %s after epoch %d", n_runs, checkpoint_path, first_epoch)
    log.info("training %d runs stacked on %s: %s", n_runs, dev, ", ".join(run_names))
    for epoch in range(first_epoch, epochs):
        order = torch.randperm(n_train, generator=perm_gen).to(dev)
        sums: dict[str, Any] = {"loss": torch.zeros(n_runs, dtype=torch.float64, device=dev)}
        weights = torch.full((n_runs, n_train), float("nan"), device=dev)
        n_batches = 0
        for idx in batch_indices(order, batch_size):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, terms, batch_weights = stacked_step(stacked, buffers, [x[idx] for x in xs], ys[:, idx], epoch)
            if loss.requires_grad:
                optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()  # the copies share no parameter: each gets the gradient of its own loss
                optimizer.step()
            _accumulate(sums, loss, terms)
            if batch_weights.shape[-1]:
                weights[:, idx] = batch_weights.detach().to(weights.dtype)
            n_batches += 1

        means = {key: (value / n_batches).cpu().numpy() for key, value in sums.items()}
        host_weights = weights.cpu().numpy()
        for g, record in enumerate(records):
            row = {key: float(value[g]) for key, value in means.items()}
            record.check_finite(row, epoch, epochs)
            model.load_state_dict(member_state(g))
            val_maps = cross_modal_maps(sign_codes(model, val_xs), val_labels, backend=eval_backend)
            improved, _ = record.end_epoch(epoch, epochs, row, val_maps, host_weights[g])
            if improved:
                best_models[g] = member_state(g)
        if interactive:
            line = f"{n_runs} stacked runs epoch {epoch + 1}/{epochs}: " + ", ".join(
                f"val {r.history['val_map_mean'][-1]:.3f}" for r in records)
            print(f"\r{line}", end="" if epoch + 1 < epochs else "\n", file=sys.stderr, flush=True)
        if checkpoint_path and checkpoint_every > 0 and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < epochs:
            save_checkpoint(checkpoint_path, {
                "key": checkpoint_key, "epoch": epoch,
                "stacked": {k: v.detach() for k, v in stacked.items()}, "buffers": dict(buffers),
                "optimizer": optimizer.state_dict(), "perm_gen": perm_gen.get_state(),
                "records": [r.state() for r in records], "best_models": best_models,
            })

    results = []
    seconds = time.perf_counter() - start_time
    for g, record in enumerate(records):
        model.load_state_dict(best_models[g])
        result = _final_result(model, record, test_xs, database, dev, start_time, use_amp, deterministic,
                               extra={"stacked_runs": n_runs})
        result.seconds = seconds  # the stack's wall time: its runs are not separable
        results.append(result)
    return results
