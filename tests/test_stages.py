"""The training loop's doors for faithful methods: stages, optimiser kinds, LR schedules, clipping, manual
(alternating) steps, best-epoch selection per stage, resumption across a stage boundary, collapse warning."""

import logging
import math

import numpy as np
import pytest
import torch
from toy_data import toy_splits

from cmhash.methods import REGISTRY, Method, OptimizerSpec, Stage, StepOutput, resolve_params
from cmhash.nets import HashEncoder
from cmhash.stacked import stacking_problem
from cmhash.train import build_schedulers, locate_epoch, stage_plan, train_model

CALLS: list[tuple] = []


class TwoStage(Method):
    """Stage 'teacher' (2 epochs, SGD on encoder 0 only, not selectable), stage 'student' (Adam on everything,
    cosine LR over the stage, clipping)."""

    impl = "_test_two_stage"
    defaults = {"teacher_epochs": 2}

    def __init__(self, in_dims, n_classes, bits, params, multilabel=False):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        self.encoders = torch.nn.ModuleList(HashEncoder(d, [16], bits) for d in in_dims)

    def stages(self):
        return [
            Stage("teacher", epochs=self.params["teacher_epochs"], select_best=False,
                  optimizers={"main": OptimizerSpec("sgd", lr=0.1, options={"momentum": 0.9},
                                                    parameters=lambda m: m.encoders[0].parameters())}),
            Stage("student", lr_schedule="cosine", clip_grad_norm=1.0),
        ]

    def on_stage_start(self, stage, ctx):
        CALLS.append(("stage", stage.name, [enc.net[0].weight.detach().clone() for enc in self.encoders]))

    def training_step(self, xs, labels, epoch):
        codes = self.encode(xs)
        loss = ((codes[0] - codes[1]) ** 2).sum(dim=1).mean()
        return StepOutput(loss=loss)


class Alternating(Method):
    """Two optimisers, one per encoder, stepped one after the other inside each batch."""

    impl = "_test_alternating"
    manual_optimization = True

    def __init__(self, in_dims, n_classes, bits, params, multilabel=False):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        self.encoders = torch.nn.ModuleList(HashEncoder(d, [16], bits) for d in in_dims)

    def stages(self):
        return [Stage(optimizers={
            "img": OptimizerSpec("rmsprop", parameters=lambda m: m.encoders[0].parameters()),
            "txt": OptimizerSpec("adamw", parameters=lambda m: m.encoders[1].parameters()),
        })]

    def training_step(self, xs, labels, epoch, step):
        a = self.encode(xs)
        loss_img = ((a[0] - a[1].detach()) ** 2).sum(dim=1).mean()
        step(loss_img, "img")
        b = self.encode(xs)
        loss_txt = ((b[1] - b[0].detach()) ** 2).sum(dim=1).mean()
        step(loss_txt, "txt")
        CALLS.append(("step", epoch))
        return StepOutput(loss=(loss_img + loss_txt).detach(), terms={"img": loss_img.detach()})


class AllZeroWeights(Method):
    impl = "_test_zero_weights"

    def __init__(self, in_dims, n_classes, bits, params, multilabel=False):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        self.encoders = torch.nn.ModuleList(HashEncoder(d, [8], bits) for d in in_dims)

    def training_step(self, xs, labels, epoch):
        codes = self.encode(xs)
        w = torch.zeros(codes[0].shape[0]) if epoch == 1 else torch.ones(codes[0].shape[0])
        return StepOutput(loss=((codes[0] - codes[1]) ** 2).mean(), weights=w)


class Dropping(Method):
    """Draws from torch's global generator inside the step (dropout, like DGCPN; sampled negatives, like UCCH)."""

    impl = "_test_dropout"

    def __init__(self, in_dims, n_classes, bits, params, multilabel=False):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        self.encoders = torch.nn.ModuleList(HashEncoder(d, [16], bits) for d in in_dims)

    def training_step(self, xs, labels, epoch):
        codes = self.encode([torch.nn.functional.dropout(x, 0.5, training=True) for x in xs])
        noise = torch.randn(codes[0].shape)
        return StepOutput(loss=((codes[0] - codes[1] + 0.01 * noise) ** 2).mean())


TEST_METHODS = (TwoStage, Alternating, AllZeroWeights, Dropping)


@pytest.fixture(autouse=True)
def _registered():
    for cls in TEST_METHODS:
        REGISTRY[cls.impl] = cls
    CALLS.clear()
    yield
    for cls in TEST_METHODS:
        REGISTRY.pop(cls.impl)


def _train(impl, epochs=4, **kw):
    tr, va, te = toy_splits()
    params = resolve_params(impl, {"epochs": epochs, "batch_size": 30, "lr": 1e-2})
    return train_model(impl, params, 8, tr, va, te, np.zeros(90, bool), seed=3, device="cpu", **kw)


def test_stage_plan_and_locate_epoch():
    plan = stage_plan([Stage("a", epochs=2, select_best=False), Stage("b")], {"epochs": 3})
    assert [(s.name, n) for s, n in plan] == [("a", 2), ("b", 3)]
    assert [locate_epoch(plan, e)[::2] for e in range(5)] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    with pytest.raises(ValueError, match="select_best"):
        stage_plan([Stage("a", select_best=False)], {"epochs": 3})
    with pytest.raises(ValueError, match="unique"):
        stage_plan([Stage("a"), Stage("a")], {"epochs": 3})
    with pytest.raises(ValueError, match="epochs"):
        stage_plan([Stage("a", epochs=-1)], {"epochs": 3})
    with pytest.raises(ValueError, match="optimizer kind"):
        OptimizerSpec("lbfgs")


def test_cosine_schedule_hand_values():
    # CosineAnnealingLR over a 4-epoch stage from lr 1.0: lr_e = 0.5 (1 + cos(pi e / 4)) = 1, 0.8536, 0.5, 0.1464
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_schedulers(Stage(lr_schedule="cosine"), {"main": opt}, epochs=4, batches_per_epoch=7)["main"]
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])


def test_weighted_cosine_restarts_hand_values():
    # periods [2, 2], weights [1, 0.5], eta_min 0, lr 1: e = 0..5 -> 1, 0.5, 0, 0.25, 0, 0 (cmhash.train docstring);
    # the same schedule as XinchengSun/RFCMH lr_scheduler.py CosineAnnealingRestartLR (e <= cumulative end)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    stage = Stage(lr_schedule="cosine_restarts_weighted", schedule_options={"periods": [2, 2], "restart_weights": [1, 0.5]})
    sched = build_schedulers(stage, {"main": opt}, epochs=6, batches_per_epoch=1)["main"]
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([1.0, 0.5, 0.0, 0.25, 0.0, 0.0], abs=1e-12)


def test_two_stages_train_the_declared_parameters_and_select_in_the_student_stage(monkeypatch):
    seen_opts = []
    original = torch.optim.SGD.step

    def spy(self, *a, **k):
        seen_opts.append(type(self).__name__)
        return original(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    res = _train("_test_two_stage", epochs=3)
    assert [c[1] for c in CALLS if c[0] == "stage"] == ["teacher", "student"]
    assert res.best_epoch >= 2, "a teacher-stage epoch (select_best=False) was selected"
    assert len(res.history["val_map_mean"]) == 5  # 2 teacher + 3 student epochs, all logged
    assert seen_opts and set(seen_opts) == {"SGD"}  # SGD in the teacher stage only (3 batches x 2 epochs)
    assert len(seen_opts) == 6


def test_teacher_stage_leaves_the_other_encoder_untouched():
    _train("_test_two_stage", epochs=1)
    snaps = [c[2] for c in CALLS if c[0] == "stage"]
    teacher_start, student_start = snaps
    assert not torch.equal(teacher_start[0], student_start[0])  # encoder 0: trained by the teacher's SGD
    assert torch.equal(teacher_start[1], student_start[1])  # encoder 1: not in the teacher's optimizer


def test_manual_alternating_steps_and_optimizer_kinds():
    res = _train("_test_alternating", epochs=2)
    assert [c for c in CALLS if c[0] == "step"] == [("step", 0)] * 3 + [("step", 1)] * 3
    assert "loss_img" in res.history
    assert stacking_problem("_test_alternating") is not None
    assert stacking_problem("_test_two_stage") is not None


def test_resume_across_a_stage_boundary_is_bit_identical(tmp_path, monkeypatch):
    ref = _train("_test_two_stage", epochs=3)
    ckpt = tmp_path / "ck.pt"
    original = TwoStage.training_step

    def crash(self, xs, labels, epoch):
        if epoch == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(self, xs, labels, epoch)

    monkeypatch.setattr(TwoStage, "training_step", crash)
    with pytest.raises(KeyboardInterrupt):
        _train("_test_two_stage", epochs=3, checkpoint_path=ckpt, checkpoint_every=1, checkpoint_key="k")
    monkeypatch.setattr(TwoStage, "training_step", original)
    resumed = _train("_test_two_stage", epochs=3, checkpoint_path=ckpt, checkpoint_every=1, checkpoint_key="k")
    for a, b in zip(ref.codes, resumed.codes):
        np.testing.assert_array_equal(a, b)
    assert ref.history["val_map_mean"] == resumed.history["val_map_mean"]


def test_resume_restores_torchs_global_generator(tmp_path, monkeypatch):
    ref = _train("_test_dropout", epochs=4)
    ckpt = tmp_path / "ck.pt"
    original = Dropping.training_step

    def crash(self, xs, labels, epoch):
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")
        return original(self, xs, labels, epoch)

    monkeypatch.setattr(Dropping, "training_step", crash)
    with pytest.raises(KeyboardInterrupt):
        _train("_test_dropout", epochs=4, checkpoint_path=ckpt, checkpoint_every=1, checkpoint_key="k")
    monkeypatch.setattr(Dropping, "training_step", original)
    torch.manual_seed(12345)  # whatever the global generator holds now, the checkpoint's state must win
    resumed = _train("_test_dropout", epochs=4, checkpoint_path=ckpt, checkpoint_every=1, checkpoint_key="k")
    assert ref.history["loss"] == resumed.history["loss"]
    for a, b in zip(ref.codes, resumed.codes):
        np.testing.assert_array_equal(a, b)


def test_all_zero_weights_warn_with_run_and_epoch(caplog):
    with caplog.at_level(logging.WARNING, logger="cmhash.train"):
        _train("_test_zero_weights", epochs=3, run_name="RUN-X")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "RUN-X" in warnings[0] and "epoch 2/3" in warnings[0]
