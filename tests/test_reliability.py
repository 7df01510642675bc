"""Faults: interrupted trainings resume bit-identically; killed jobs never leave a trusted output."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from toy_data import toy_splits

from cmhash.methods import resolve_params
from cmhash.methods import rshnl as rshnl_module
from cmhash.store import atomic_h5
from cmhash.train import train_model

REPO = Path(__file__).resolve().parents[1]



PARAMS = resolve_params("rshnl", {"hidden": [32], "center_hidden": [32], "epochs": 6, "batch_size": 32,
                                  "lr": 1e-2, "warmup_epochs": 2})


def test_resumed_training_is_bit_identical(tmp_path, monkeypatch):
    tr, va, te = toy_splits()
    flags = np.zeros(90, bool)
    ref = train_model("rshnl", PARAMS, 16, tr, va, te, flags, seed=5, device="cpu")

    ckpt = tmp_path / "checkpoint.pt"
    original = rshnl_module.RSHNL.training_step

    def crash_at_epoch_4(self, xs, labels, epoch):
        if epoch == 4:
            raise KeyboardInterrupt("simulated kill")
        return original(self, xs, labels, epoch)

    monkeypatch.setattr(rshnl_module.RSHNL, "training_step", crash_at_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        train_model("rshnl", PARAMS, 16, tr, va, te, flags, seed=5, device="cpu",
                    checkpoint_path=ckpt, checkpoint_every=2, checkpoint_key="k")
    assert ckpt.exists()
    monkeypatch.setattr(rshnl_module.RSHNL, "training_step", original)
    resumed = train_model("rshnl", PARAMS, 16, tr, va, te, flags, seed=5, device="cpu",
                          checkpoint_path=ckpt, checkpoint_every=2, checkpoint_key="k")
    for a, b in zip(ref.codes, resumed.codes):
        np.testing.assert_array_equal(a, b)
    assert ref.history["val_map_mean"] == resumed.history["val_map_mean"]
    assert ref.best_epoch == resumed.best_epoch


def test_checkpoint_of_another_config_is_ignored(tmp_path, monkeypatch):
    tr, va, te = toy_splits()
    flags = np.zeros(90, bool)
    ckpt = tmp_path / "checkpoint.pt"
    train_model("rshnl", {**PARAMS, "epochs": 4}, 16, tr, va, te, flags, seed=5, device="cpu",
                checkpoint_path=ckpt, checkpoint_every=2, checkpoint_key="old")
    assert ckpt.exists()  # written after epoch 2 of 4 and left behind by the direct call
    ref = train_model("rshnl", PARAMS, 16, tr, va, te, flags, seed=5, device="cpu")
    fresh = train_model("rshnl", PARAMS, 16, tr, va, te, flags, seed=5, device="cpu",
                        checkpoint_path=ckpt, checkpoint_every=0, checkpoint_key="new")
    for a, b in zip(ref.codes, fresh.codes):
        np.testing.assert_array_equal(a, b)


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError):
        with atomic_h5(target, "metrics") as f:
            f.create_dataset("x", data=np.zeros(3))
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


SLOW = {
    "checkpoint_every": 5,
    "datasets": {"toy": {"format": "synthetic", "modalities": {"image": "img", "text": "txt"},
                         "synthetic": {"n": 400, "dims": [16, 12], "n_classes": 4, "seed": 1, "separation": 3.0},
                         "split": {"train_fraction": 0.6, "val_fraction": 0.1, "seed": 0}}},
    "methods": {"RSHNL": {"per_dataset": {"toy": {"hidden": [256, 256], "center_hidden": [32], "epochs": 60,
                                                  "batch_size": 32, "lr": 1e-3, "gamma": 3.0, "warmup_epochs": 2}}}},
    "experiments": {"killme": {"datasets": ["toy"], "methods": ["RSHNL"], "noise": [0.4], "bits": [8, 16], "seeds": [0]}},
}
EVAL = "results/runs/toy/sym/RSHNL/seed0/noise0.4_bits8-16"  # the group's metrics files, evaluated in one job
GROUP = "results/train/toy/sym/RSHNL/seed0/noise0.4_bits8-16"  # both code lengths in one job: 8, then 16


def _cmd(workdir):
    cfg = workdir / "slow.yaml"
    cfg.write_text(yaml.safe_dump(SLOW))
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    return [snakemake, "killme", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--cores", "1", "--configfile", str(cfg)]


@pytest.mark.workflow
def test_sigkill_mid_training_then_rerun_equals_uninterrupted(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    killed.mkdir()
    clean.mkdir()
    proc = subprocess.Popen(_cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    partial = killed / (GROUP + ".partial")
    ckpt = partial / "noise0.4_bits16.checkpoint.pt"  # the 8-bit run is finished by then
    deadline = time.time() + 240
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert ckpt.exists(), "training never reached its first checkpoint"
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and the training script, no chance to clean up
    proc.wait()
    assert not (killed / GROUP).exists() and not (killed / EVAL).exists()
    assert not list(partial.glob("*.tmp.h5"))
    assert (partial / "noise0.4_bits8.h5").exists()  # the finished member survives the kill

    # a SIGKILLed Snakemake leaves its directory lock behind; the user runs --unlock once (see README)
    unlock = subprocess.run(_cmd(killed) + ["--unlock"], check=False, capture_output=True, text=True, timeout=120)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    rerun = subprocess.run(_cmd(killed), check=False, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (killed / "logs/train/toy/sym/RSHNL/seed0/noise0.4_bits8-16.log").read_text()
    assert "RSHNL/toy/noise0.4/8bits/seed0 already trained" in log  # kept, not retrained
    assert "resuming from" in log
    assert not partial.exists() and not list((killed / GROUP).glob("*.checkpoint.pt"))
    full = subprocess.run(_cmd(clean), check=False, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    for member in ("noise0.4_bits8.h5", "noise0.4_bits16.h5"):
        with h5py.File(killed / EVAL / member) as a, h5py.File(clean / EVAL / member) as b:
            for key in ("codes/image", "codes/text"):
                np.testing.assert_array_equal(a[key][()], b[key][()])
    assert (killed / "results/tables/killme.csv").read_text() == (clean / "results/tables/killme.csv").read_text()


def test_report_refuses_results_of_another_config():
    import pandas as pd

    from cmhash.report.results import check_config_hashes

    df = pd.DataFrame({"path": ["a/metrics.h5", "a/metrics.h5", "b/metrics.h5"], "config_hash": ["h1", "h1", "old"]})
    check_config_hashes(df, {"a/metrics.h5": "h1"})  # b is not part of the check
    with pytest.raises(ValueError, match=r"b/metrics.h5 \(config hash old, current config h2\)"):
        check_config_hashes(df, {"a/metrics.h5": "h1", "b/metrics.h5": "h2"})
