"""The interface every method implements, and the registry that maps names to implementations.

A method is a ``torch.nn.Module`` with two encoders (one per modality) that turns a mini-batch into a
loss. The shared training loop (:mod:`cmhash.train`) knows nothing else about it.

Doors for faithful methods that need more than "one Adam over every parameter, one loss per batch":

* **Stages** (:meth:`Method.stages`): a list of :class:`Stage` -- each with its epochs, its optimisers
  (:class:`OptimizerSpec`: Adam, AdamW, SGD or RMSprop, over all or some parameters), an LR schedule, gradient
  clipping, and whether its epochs take part in best-epoch selection (a teacher stage does not). A one-stage
  method declares nothing and gets ``[Stage()]`` = one Adam at ``params["lr"]`` for ``params["epochs"]``.
  :meth:`Method.on_stage_start` runs when a stage begins (e.g. freeze the teacher, build its targets).
* **Manual optimisation** (``manual_optimization = True``): alternating updates inside one step (DGCPN's three
  updates per batch, an adversarial discriminator step). The loop then passes ``step=`` to
  :meth:`Method.training_step`; ``step(loss, "name")`` zero-grads, back-propagates, clips and steps the named
  optimiser of the current stage. The returned ``StepOutput.loss`` is then only logged.
* **Per-sample state** (``uses_index = True``): buffers indexed by the batch's row numbers (memory banks, soft
  labels, per-sample confidences); **whole-split hooks** (:meth:`Method.on_train_start`,
  :meth:`Method.on_epoch_start`) get the whole training split (graphs, banks, per-epoch selection).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..hparams import BASE_DEFAULTS, check_params


@dataclass
class StepOutput:
    """What a method returns for one mini-batch.

    ``loss`` is minimised; ``terms`` are detached 0-d tensors (or floats) logged per epoch (e.g. ``cal``, ``chl``;
    tensors, so that logging never forces a GPU sync per batch);
    ``weights`` are optional per-sample weights in [0, 1] (self-paced methods), logged against the
    ground-truth noise flags.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor | float] = field(default_factory=dict)
    weights: torch.Tensor | None = None


@dataclass(frozen=True)
class TrainContext:
    """What the training loop hands every hook of a method: one object, so that a hook that needs more than
    the training split asks for it here instead of the loop branching per method.

    ``xs``: the whole training split, one tensor per modality (on the run's device); ``labels``: its noisy
    labels; ``clean_labels``: the clean training labels, only for a method whose :attr:`Method.needs_clean_labels`
    is true (published-code reproductions with label leakage), else ``None``; ``val_xs``: the validation
    features; ``epoch``: the epoch (0-based) the hook is called for (``0`` before the first epoch).
    """

    xs: list[torch.Tensor]
    labels: torch.Tensor
    clean_labels: torch.Tensor | None = None
    val_xs: list[torch.Tensor] = field(default_factory=list)
    epoch: int = 0


#: Optimisers a stage may ask for (torch.optim class names by spec name).
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
#: LR schedules a stage may ask for, with the options each takes (torch.optim.lr_scheduler semantics):
#: ``cosine`` (CosineAnnealingLR: T_max [default: the stage's epochs or steps], eta_min),
#: ``cosine_restarts`` (CosineAnnealingWarmRestarts: T_0, T_mult, eta_min), ``step`` (StepLR: step_size, gamma),
#: ``multistep`` (MultiStepLR: milestones, gamma), ``exponential`` (ExponentialLR: gamma),
#: ``cosine_restarts_weighted`` (:class:`cmhash.train.CosineRestartsWeighted`: periods, restart_weights, eta_min;
#: the BasicSR-style schedule RFCMH's code uses).
LR_SCHEDULES = ("constant", "cosine", "cosine_restarts", "cosine_restarts_weighted", "step", "multistep",
                "exponential")


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimiser of a stage.

    ``lr``/``weight_decay`` ``None``: the run's ``params["lr"]`` / ``params["weight_decay"]``. ``options`` go to the
    torch optimiser as keyword arguments (e.g. ``{"momentum": 0.9}`` for SGD, ``{"alpha": 0.99}`` for RMSprop).
    ``parameters``: a function of the method returning the parameters this optimiser updates (``None``: every
    parameter with ``requires_grad``). Parameters may also be given as a list of torch param-group dicts.
    """

    kind: str = "adam"
    lr: float | None = None
    weight_decay: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    parameters: Callable[[Any], Iterable[Any]] | None = None

    def __post_init__(self) -> None:
        if self.kind not in OPTIMIZERS:
            raise ValueError(f"optimizer kind must be one of {OPTIMIZERS}, got {self.kind!r}")


@dataclass(frozen=True)
class Stage:
    """One training stage: ``epochs`` (``None``: ``params["epochs"]``), named optimisers, an LR schedule stepped
    per ``schedule_interval`` (``"epoch"`` or ``"step"`` = per optimiser step of the first optimiser),
    ``clip_grad_norm`` (max L2 norm of each optimiser's gradients before its step; ``None``: off), and
    ``select_best``: whether this stage's epochs compete for the best validation epoch (``False`` for a teacher
    stage whose encoders are not the final ones; validation MAP is still logged)."""

    name: str = "train"
    epochs: int | None = None
    optimizers: dict[str, OptimizerSpec] = field(default_factory=lambda: {"main": OptimizerSpec()})
    lr_schedule: str = "constant"
    schedule_options: dict[str, Any] = field(default_factory=dict)
    schedule_interval: str = "epoch"
    clip_grad_norm: float | None = None
    select_best: bool = True

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"stage {self.name!r}: lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.schedule_interval not in ("epoch", "step"):
            raise ValueError(f"stage {self.name!r}: schedule_interval must be 'epoch' or 'step'")
        if not self.optimizers:
            raise ValueError(f"stage {self.name!r} declares no optimizer")


class Method(nn.Module):
    """Base class. Subclasses set ``impl`` (registry key), ``venue``, ``defaults`` and implement
    :meth:`encode` and :meth:`training_step`.

    ``defaults`` lists every hyperparameter with its default value; its types are enforced on config
    values (an ``int`` is accepted where a ``float`` is expected). Plain values only (numbers, strings, booleans,
    lists of integers), never computed from the machine: the Snakefile reads them from a cache of the classes
    (:mod:`cmhash.registry_cache`), possibly written on another machine sharing the home folder.
    """

    impl: ClassVar[str] = ""
    venue: ClassVar[str] = ""
    uses_labels: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = dict(BASE_DEFAULTS)  # epochs, batch_size, lr, weight_decay

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__()
        self.multilabel = bool(multilabel)
        self.in_dims = tuple(in_dims)
        self.n_classes = int(n_classes)
        self.bits = int(bits)
        self.params = dict(params)

    #: ``True``: :meth:`training_step` also receives ``index=`` (the batch's row numbers in the training split),
    #: for methods that keep per-sample state (SEHA's soft labels, NSRMH's pseudo-labels).
    uses_index: ClassVar[bool] = False

    #: ``True``: :meth:`training_step` is a pure function of (parameters, batch, labels, epoch), so runs that
    #: differ only in their noisy labels can be trained as one stacked network (:mod:`cmhash.stacked`).
    #: Only for methods without per-sample state, training hooks or randomness inside the step.
    stackable: ClassVar[bool] = False

    #: ``True``: the method reads :attr:`noise_rate`, the run's nominal noise rate, which the loop sets before
    #: :meth:`on_train_start` (only for methods whose published code is given the true rate, e.g. CMMQ's forget
    #: rate). ``None`` when the caller did not pass one.
    uses_noise_rate: ClassVar[bool] = False
    noise_rate: float | None = None

    #: ``True``: the method updates its parameters itself inside :meth:`training_step` through the ``step=``
    #: callable the loop passes (alternating updates); the loop takes no optimiser step of its own.
    manual_optimization: ClassVar[bool] = False

    def stages(self) -> list[Stage]:
        """The training stages in order (see :class:`Stage`). Default: one stage, one Adam over every trainable
        parameter at ``params["lr"]`` / ``params["weight_decay"]`` for ``params["epochs"]`` epochs."""
        return [Stage()]

    def on_stage_start(self, stage: Stage, ctx: TrainContext) -> None:
        """Called when ``stage`` begins (before its first epoch's :meth:`on_epoch_start`; on resume, again for the
        stage being resumed, so it must only derive state, e.g. freeze a teacher or build its targets)."""

    @property
    def needs_clean_labels(self) -> bool:
        """``True`` only for reference-compatible modes that reproduce a published code's use of the CLEAN
        training labels (label leakage); only then does the loop's :class:`TrainContext` carry them."""
        return False

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Continuous codes (before ``sign``) of each modality's inputs. The default runs one encoder per
        modality from ``self.encoders`` (an ``nn.ModuleList``), which most methods build; others override."""
        encoders = getattr(self, "encoders", None)
        if encoders is None:
            raise NotImplementedError(f"{type(self).__name__} must set self.encoders or override encode()")
        return [enc(x) for enc, x in zip(encoders, xs)]

    def encode_joint(self, xs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The code sets a method produces beyond one per modality: name -> continuous codes (before ``sign``),
        one row per (modality 0, modality 1) pair, e.g. ``{"fused": ...}`` for a multi-modal (fusion) hashing
        method. Default: none. The training loop stores every set it returns beside the per-modality codes
        (``/<name>/test``, ``/<name>/database``, attribute ``joint_codes``); the evaluator ranks each set's
        test codes in its database codes (task ``NAME``, docs/file_formats.md). Names are lower-case
        identifiers (:func:`cmhash.store.check_joint_code_name`); joint codes never enter model selection."""
        return {}

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        """Loss of one mini-batch at ``epoch`` (0-based). A loss without gradient (closed-form methods that
        fit in the hooks below) is only logged; the loop then takes no optimiser step."""
        raise NotImplementedError

    def on_train_start(self, ctx: TrainContext) -> None:
        """Called once before the first epoch (and before a checkpoint is restored) with the whole training
        split and its noisy labels (``ctx.xs``, ``ctx.labels``). Create per-sample state here as buffers so checkpoints carry it."""

    def on_validation(self, ctx: TrainContext) -> None:
        """Called (under ``torch.no_grad``) after epoch ``ctx.epoch``'s validation MAP (features ``ctx.val_xs``).
        Methods leave it alone; it exists so a reference-compatible mode can reproduce a published code whose
        validation pass changes training state (SEHA)."""

    def on_epoch_start(self, ctx: TrainContext) -> None:
        """Called at the start of epoch ``ctx.epoch`` with the whole training split (e.g. sample selection, or one
        iteration of an alternating closed-form optimisation)."""


REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method implementation to :data:`REGISTRY` under ``cls.impl``."""
    if not cls.impl:
        raise ValueError(f"{cls.__name__} must set the class attribute 'impl'")
    REGISTRY[cls.impl] = cls
    return cls


def get_method_class(impl: str) -> type[Method]:
    """Look up an implementation by name; the error lists the known ones."""
    try:
        return REGISTRY[impl]
    except KeyError:
        raise KeyError(f"unknown method implementation {impl!r}; known: {sorted(REGISTRY)}") from None


def resolve_params(impl: str, params: dict[str, Any], where: str = "params") -> dict[str, Any]:
    """Defaults of ``impl`` updated with ``params``; unknown keys and wrong types raise ``ValueError``
    (:func:`cmhash.hparams.check_params`; the config checks through :mod:`cmhash.registry_cache`, without torch)."""
    cls = get_method_class(impl)
    return check_params(impl, {**Method.defaults, **cls.defaults}, params, where)
