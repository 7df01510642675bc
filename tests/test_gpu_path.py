"""The GPU path of the training loop: device-resident validation, mixed precision, deterministic mode.

Tests marked ``cuda`` need a CUDA GPU and are skipped without one (``pytest -m cuda`` selects them).
The unmarked ones check on the CPU that the GPU-only options leave CPU results untouched.
"""

import logging

import numpy as np
import pytest
import torch
from toy_data import toy_splits

from cmhash import metrics
from cmhash import train as train_module
from cmhash.methods import get_method_class, resolve_params
from cmhash.train import train_model

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
PARAMS = {"hidden": [64], "center_hidden": [64], "epochs": 10, "batch_size": 40, "lr": 1e-3, "warmup_epochs": 2}


def _splits(seed=0, n_classes=4):
    return toy_splits((200, 60, 80), n_classes=n_classes, latent=8, dims=(20, 14), seed=seed)

def _train(device, seed=0, **kwargs):
    tr, va, te = _splits()
    params = resolve_params("rshnl", PARAMS)
    return train_model("rshnl", params, 16, tr, va, te, np.zeros(200, bool), seed=seed, device=device, **kwargs), te


def _test_map(result, test):
    return float(np.mean(train_module.cross_modal_maps(result.codes, test.labels)))


def test_amp_and_deterministic_leave_cpu_results_bit_identical(caplog):
    plain, _ = _train("cpu")
    try:
        with caplog.at_level(logging.INFO, logger="cmhash.train"):
            options, _ = _train("cpu", amp=True, deterministic=True)
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(plain.codes, options.codes):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_equal(plain.history, options.history)  # NaN (no weights in warm-up) counts as equal
    assert options.extra == {"amp": False, "deterministic": True}  # amp is CUDA-only: not applied
    assert "amp (mixed precision) applies to CUDA only" in caplog.text


def test_epoch_loss_is_the_mean_of_the_batch_losses(monkeypatch):
    """The loss sums kept on the device give the same per-epoch means as summing Python floats."""
    seen: list[list[float]] = []
    original = get_method_class("rshnl").training_step

    def recording_step(self, xs, labels, epoch):
        out = original(self, xs, labels, epoch)
        if len(seen) <= epoch:
            seen.append([])
        seen[epoch].append(float(out.loss.detach()))
        # 0-d tensors are accepted as terms too (they spare a GPU sync per batch)
        out.terms = {key: torch.as_tensor(value, dtype=torch.float64) for key, value in out.terms.items()}
        return out

    monkeypatch.setattr(get_method_class("rshnl"), "training_step", recording_step)
    result, _ = _train("cpu")
    expected = [sum(batch_losses) / len(batch_losses) for batch_losses in seen]
    assert result.history["loss"] == expected
    assert all(np.isfinite(result.history["loss_cal"]))


@pytest.mark.parametrize("topk", [None, 25])
@pytest.mark.cuda
@requires_cuda
def test_cuda_torch_metrics_equal_numpy(topk):
    rng = np.random.default_rng(1)
    q = np.where(rng.random((300, 64)) < 0.5, 1, -1).astype(np.int8)
    d = np.where(rng.random((2000, 64)) < 0.5, 1, -1).astype(np.int8)
    ql = (rng.random((300, 6)) < 0.3).astype(np.float32)
    dl = (rng.random((2000, 6)) < 0.3).astype(np.float32)
    expected = metrics.mean_average_precision(q, d, ql, dl, topk=topk)
    on_gpu = [torch.as_tensor(a, device="cuda") for a in (q, d, ql, dl)]
    assert metrics.mean_average_precision(*on_gpu, topk=topk, backend="torch") == pytest.approx(expected, abs=1e-9)


@pytest.mark.cuda
@requires_cuda
def test_cuda_training_validates_on_the_device(monkeypatch):
    backends: list[str] = []
    original = metrics.mean_average_precision

    def recording_map(*args, backend="numpy", **kwargs):
        backends.append(backend)
        assert all(a.is_cuda for a in args[:4]), "validation codes and labels must stay on the GPU"
        return original(*args, backend=backend, **kwargs)

    monkeypatch.setattr(metrics, "mean_average_precision", recording_map)
    result, test = _train("cuda")
    monkeypatch.setattr(metrics, "mean_average_precision", original)
    assert backends and set(backends) == {"torch"}
    assert result.device.startswith("cuda:")
    for codes in result.codes:
        assert codes.dtype == np.int8 and codes.shape == (80, 16) and set(np.unique(codes)) <= {-1, 1}
    assert all(np.isfinite(result.history["loss"]))
    assert _test_map(result, test) > 0.7  # 4 balanced classes: chance is about 0.25 (CPU, 3 seeds: 0.96-0.99)


@pytest.mark.cuda
@requires_cuda
def test_cuda_deterministic_training_repeats_bit_for_bit():
    try:
        first, _ = _train("cuda", seed=2, deterministic=True)
        second, _ = _train("cuda", seed=2, deterministic=True)
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(first.codes, second.codes):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_equal(first.history, second.history)
    assert first.extra["deterministic"] is True


@pytest.mark.cuda
@requires_cuda
def test_cuda_amp_runs_the_steps_under_bf16_autocast(monkeypatch):
    states: list[tuple[bool, torch.dtype]] = []
    original = get_method_class("rshnl").training_step

    def recording_step(self, xs, labels, epoch):
        states.append((torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")))
        return original(self, xs, labels, epoch)

    monkeypatch.setattr(get_method_class("rshnl"), "training_step", recording_step)
    result, test = _train("cuda", amp=True)
    assert states and set(states) == {(True, torch.bfloat16)}
    assert result.extra["amp"] is True
    assert all(np.isfinite(result.history["loss"]))
    assert _test_map(result, test) > 0.7


@pytest.mark.cuda
@requires_cuda
def test_cuda_stacked_runs_match_their_cpu_stack():
    """cmhash.stacked on the GPU: every member learns what the same stack learns on the CPU (to rounding)."""
    from cmhash.stacked import train_models_stacked

    tr, va, te = _splits()
    rng = np.random.default_rng(0)
    labels = [tr.labels]
    for rate in (0.4, 0.8):
        y = tr.labels.argmax(1)
        y = np.where(rng.random(len(y)) < rate, rng.integers(0, tr.labels.shape[1], len(y)), y)
        labels.append(np.eye(tr.labels.shape[1], dtype=np.uint8)[y])
    params = resolve_params("rshnl", PARAMS)
    flags = [np.zeros(200, bool)] * 3
    on_gpu = train_models_stacked("rshnl", params, 16, tr.xs, labels, va, te, flags, seed=0, device="cuda")
    on_cpu = train_models_stacked("rshnl", params, 16, tr.xs, labels, va, te, flags, seed=0, device="cpu")
    for g, c in zip(on_gpu, on_cpu):
        assert g.device.startswith("cuda:")
        assert abs(_test_map(g, te) - _test_map(c, te)) < 0.05
