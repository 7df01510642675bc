"""Several runs trained together in one process: the noise rates of one (method, dataset, bits, seed).

Runs that differ only in their noisy labels share everything else: the network shape, the hyperparameters, the
initial weights (each run seeds torch with its seed before building the model) and the shuffling order (drawn
from the same seed). :func:`train_models_stacked` therefore trains ``G`` of them as one *stacked* network: the
parameters of the ``G`` copies are stacked along a new leading dimension (``torch.func.stack_module_state``)
and the method's own :meth:`~cmhash.methods.Method.training_step` runs under ``torch.func.vmap`` over that
dimension and over the ``G`` label matrices; one backward pass of the summed losses gives every copy its own
gradient (the copies share no parameter), and one Adam over the stacked tensors is ``G`` independent Adams
(Adam is elementwise). A GPU then sees one kernel per layer for all ``G`` runs instead of ``G`` small ones.

The epoch loop is :func:`cmhash.train.run_epochs`, the one every training goes through: this module only adds
the stacked trainer (:class:`StackedRuns`, beside :class:`cmhash.train.SingleRun`). What stays per run: the loss
sums, the per-sample weights, validation (each copy's weights are loaded into a plain model and scored exactly
as :func:`cmhash.train.train_model` does), the best epoch and its weights, the history, and the final
test/database encoding. On the CPU every member's codes and history are bit-identical
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from .methods import Method, Stage, get_method_class
from .train import (
    RunRecord,
    SplitData,
    TrainResult,
    accumulate_terms,
    batch_indices,
    resolve_device,
    run_epochs,
    seed_everything,
    set_deterministic,
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
    method_cls = get_method_class(impl)
    model = method_cls(tuple(x.shape[1] for x in train_xs), np.shape(train_labels[0])[1], bits, params,
                       multilabel.pop()).to(dev)
    if model.needs_clean_labels:
        raise ValueError(f"cannot train runs of {impl!r} stacked: this mode needs the clean labels")

    def to_dev(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=dev)

    xs = [to_dev(x) for x in train_xs]
    ys = torch.stack([to_dev(y) for y in train_labels])  # G x N x K
    trainer = StackedRuns(impl, model, params, xs, ys, use_amp)
    val_xs = [to_dev(x) for x in val.xs]
    val_labels = to_dev(val.labels) if eval_backend == "torch" else val.labels
    test_xs = [to_dev(x) for x in test.xs]
    tasks = task_names(modalities)
    records = [RunRecord(name, tasks, flags) for name, flags in zip(run_names, noisy_flags)]
    log.info("training %d runs stacked on %s: %s", n_runs, dev, ", ".join(run_names))
    return run_epochs(
        trainer, records, int(params["epochs"]), seed=seed, dev=dev, val=(val_xs, val_labels, eval_backend),
        test_xs=test_xs, database=database, checkpoint=(checkpoint_path, checkpoint_every, checkpoint_key),
        use_amp=use_amp, deterministic=deterministic, extra={"stacked_runs": n_runs},
    )


class StackedRuns:
    """``G`` runs of one stackable method as one stacked network, the other trainer of
    :func:`cmhash.train.run_epochs` (the first is :class:`cmhash.train.SingleRun`): parameters stacked along a
    leading dimension, the method's training step vmapped over it and over the ``G`` label matrices, one Adam
    over the stacked tensors. ``model`` is a plain copy into which :meth:`load_member` puts one member's weights.
    """

    def __init__(self, impl: str, model: Method, params: dict[str, Any], xs: list[torch.Tensor], ys: torch.Tensor,
                 use_amp: bool):
        self.model, self.xs, self.ys, self.use_amp = model, xs, ys, use_amp
        self.n_runs, self.n_train = ys.shape[0], ys.shape[1]
        self.batch_size = int(params["batch_size"])
        self.stacked, self.buffers = stack_module_state([model] * self.n_runs)
        for name, p in model.named_parameters():
            self.stacked[name].requires_grad_(p.requires_grad)
        trainable = [p for p in self.stacked.values() if p.requires_grad]
        if not trainable:
            raise ValueError(f"cannot train runs of {impl!r} stacked: the method has no trainable parameters")
        self.optimizer = torch.optim.Adam(trainable, lr=params["lr"], weight_decay=params["weight_decay"])
        step = _Step(copy.deepcopy(model).to("meta"))

        def one_run(p: dict, b: dict, batch_xs: list[torch.Tensor], labels: torch.Tensor, epoch: int):
            return functional_call(step, ({f"method.{k}": v for k, v in p.items()},
                                          {f"method.{k}": v for k, v in b.items()}), (batch_xs, labels, epoch))

        self.step = vmap(one_run, in_dims=(0, 0, None, 0, None))
        self.state_keys = list(model.state_dict())  # parameters and persistent buffers

    def start_epoch(self, epoch: int) -> Stage:
        return Stage()  # stackable methods train one default stage (stacking_problem)

    def train_epoch(self, order: torch.Tensor, epoch: int) -> tuple[dict[str, Any], torch.Tensor, int]:
        dev = self.ys.device
        sums: dict[str, Any] = {"loss": torch.zeros(self.n_runs, dtype=torch.float64, device=dev)}
        weights = torch.full((self.n_runs, self.n_train), float("nan"), device=dev)
        n_batches = 0
        for idx in batch_indices(order, self.batch_size):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.use_amp):
                loss, terms, batch_weights = self.step(self.stacked, self.buffers, [x[idx] for x in self.xs],
                                                       self.ys[:, idx], epoch)
            if loss.requires_grad:
                self.optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()  # the copies share no parameter: each gets the gradient of its own loss
                self.optimizer.step()
            accumulate_terms(sums, loss, terms)
            if batch_weights.shape[-1]:
                weights[:, idx] = batch_weights.detach().to(weights.dtype)
            n_batches += 1
        return sums, weights, n_batches

    def member_state(self, g: int) -> dict[str, torch.Tensor]:
        both = {**self.stacked, **self.buffers}
        return {k: both[k][g].detach().clone() for k in self.state_keys}

    def load_member(self, g: int) -> None:
        self.model.load_state_dict(self.member_state(g))

    def after_validation(self, epoch: int) -> None:
        """Stackable methods have no hooks."""

    def state(self) -> dict[str, Any]:
        return {"stacked": {k: v.detach() for k, v in self.stacked.items()}, "buffers": dict(self.buffers),
                "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for name, value in state["stacked"].items():
                self.stacked[name].copy_(value)
            for name, value in state["buffers"].items():
                self.buffers[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
