"""DSCMH (sunyuan-cs/DSCMH-AAAI-2024 @ 0d89b88, DSCMH-aaai2024-demo/spl/DSCMH_3.m): hand cases, one iteration
against DSCMH_3.m written literally in NumPy (reference mode) and with the three corrections (default), the
exact sub-steps, code length, determinism."""

import math

import numpy as np
import pytest
import torch
from toy_data import toy_splits

from cmhash.losses.selfpaced import logistic_self_paced_weights
from cmhash.losses.similarity import scaled_gram_residual
from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.methods.shallow import procrustes
from cmhash.train import train_model

F64 = torch.float64


def _mapminmax(x):  # MATLAB mapminmax(x, 0, 1) of a row vector (a constant row maps to 0)
    x = np.asarray(x, dtype=float)
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def _my_orth(z):  # myOrth.m is not in the repository: the SVD polar factor its use implies
    p, _, rt = np.linalg.svd(z, full_matrices=False)
    return p @ rt


def _dscmh3_iteration(X1, X2, trainL, st, alpha, bit, lam, cmm=15.0, pace=1.2, corrected=False):
    """One pass of DSCMH_3.m's loop (lines 42-100) and its hash functions (lines 105-106), literally.
    ``corrected``: our default's three changes (marked)."""
    B, V1, R1_SPLs, R1_SPLb, R2_SPLb = st["B"], st["V1"], st["R1_SPLs"], st["R1_SPLb"], st["R2_SPLb"]
    g1s, g1b, g2b = st["gammas"]
    databaseL = trainL / np.sqrt(np.maximum(1e-14, (trainL**2).sum(1)))[:, None]  # line 12, NormalizeFea(.., 1)
    SPLsXT1 = R1_SPLs[:, None] * V1.T                                   # line 42
    U1 = (X1.T @ SPLsXT1) @ np.linalg.inv(V1 @ SPLsXT1)                 # line 43 (A / B = A inv(B))
    U2 = (X2.T @ SPLsXT1) @ np.linalg.inv(V1 @ SPLsXT1)                 # line 44
    SPLsXB1 = R1_SPLs[:, None] * X1                                     # line 47
    SPLbXU1 = R1_SPLb[:, None] * U1                                     # line 48
    SPLbXU2 = R2_SPLb[:, None] * U2                                     # line 49
    second = (R1_SPLs[:, None] * X2) @ SPLbXU2 if corrected else SPLsXB1 @ SPLbXU2  # corrected: X2, not X1
    ZV1 = (SPLsXB1 @ SPLbXU1 + second) + bit * databaseL @ (databaseL.T @ (alpha * B.T))  # line 50
    V1 = _my_orth(ZV1).T                                                # line 51
    B = np.sign(bit * (alpha * V1) @ databaseL @ databaseL.T)           # line 54
    if corrected:
        B[B == 0] = -1
    LOSS1_s = R1_SPLb[:, None] * (X1.T - U1 @ V1)                       # line 57
    L1_SPLs = np.array([np.linalg.norm(LOSS1_s[:, ind]) for ind in range(LOSS1_s.shape[1])])  # lines 58-60
    L_SPLs = _mapminmax(L1_SPLs) * cmm                                  # line 61
    R_SPLs = np.array([(1 + np.exp(-g1s)) / (1 + np.exp(v - g1s)) for v in L_SPLs])  # lines 62-66
    g1s = pace * g1s                                                    # line 67
    if corrected:
        R1_SPLs = R_SPLs  # corrected: the instance weights are used
    out = {}
    for name, X, U, g in (("R1_SPLb", X1, U1, g1b), ("R2_SPLb", X2, U2, g2b)):
        LOSS_b = (X.T - U @ V1) * R1_SPLs[None, :]                      # lines 76 / 89
        if corrected:  # corrected: the residual of kernel dimension ind (row), not of sample ind (column)
            L_b = np.array([np.linalg.norm(LOSS_b[ind, :]) for ind in range(LOSS_b.shape[0])])
        else:
            L_b = np.array([np.linalg.norm(LOSS_b[:, ind]) for ind in range(LOSS_b.shape[0])])  # lines 77-79 / 90-92
        L_b = _mapminmax(L_b) * cmm                                      # lines 80 / 93
        out[name] = np.array([(1 + np.exp(-g)) / (1 + np.exp(v - g)) for v in L_b])  # lines 81-85 / 94-98
    P1 = np.linalg.solve(X1.T @ X1 + lam * np.eye(X1.shape[1]), X1.T @ B.T).T   # line 105
    P2 = np.linalg.solve(X2.T @ X2 + lam * np.eye(X2.shape[1]), X2.T @ B.T).T   # line 106
    return {"B": B, "V1": V1, "U1": U1, "U2": U2, "R1_SPLs": R1_SPLs, "R_SPLs": R_SPLs, "P1": P1, "P2": P2,
            "gammas": (g1s, pace * g1b, pace * g2b), **out}


def _tiny(reference_compatible, n=12, bits=3, anchors=5):
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(n, d, generator=g) for d in (7, 4)]
    y = (torch.rand(n, 4, generator=g) < 0.4).float()
    y[y.sum(1) == 0, 0] = 1.0
    torch.manual_seed(0)
    params = resolve_params("dscmh", {"n_anchors": anchors, "reference_compatible": reference_compatible,
                                      "alpha": 0.5})
    model = get_method_class("dscmh")((7, 4), 4, bits, params)
    model.on_train_start(TrainContext(xs, y))
    return model, xs, y


def _state(model):
    return {"B": model.codes_b.numpy().copy(), "V1": model.latent_v.numpy().copy(),
            "R1_SPLs": model.inst_w.numpy().copy(), "R1_SPLb": model.feat_w0.numpy().copy(),
            "R2_SPLb": model.feat_w1.numpy().copy(), "gammas": tuple(model.gammas.tolist())}


# ------------------------------------------------------------------------------------------------- hand cases
def test_logistic_self_paced_weights_hand_case():
    w = logistic_self_paced_weights(torch.tensor([1.0, 2.0, 3.0], dtype=F64), gamma=8.0, scale=15.0)
    expected = [1.0, (1 + math.exp(-8)) / (1 + math.exp(-0.5)), (1 + math.exp(-8)) / (1 + math.exp(7))]
    torch.testing.assert_close(w, torch.tensor(expected, dtype=F64))
    assert expected[1] == pytest.approx(0.622668, abs=1e-6) and expected[2] == pytest.approx(0.000911, abs=1e-6)
    # the same case through DSCMH_3.m lines 61-66 written literally
    literal = [(1 + np.exp(-8.0)) / (1 + np.exp(v - 8.0)) for v in _mapminmax([1.0, 2.0, 3.0]) * 15.0]
    np.testing.assert_allclose(w.numpy(), literal)
    torch.testing.assert_close(logistic_self_paced_weights(torch.full((3,), 2.0, dtype=F64), 8.0, 15.0),
                               torch.ones(3, dtype=F64))


def test_procrustes_and_gram_residual_hand_cases():
    z = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(procrustes(z), torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=F64))
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=F64)
    u = torch.tensor([[1.0], [-1.0], [1.0]], dtype=F64)
    assert float(scaled_gram_residual(u, u, a, 1.0)) == pytest.approx(4.0)
    g = torch.Generator().manual_seed(0)
    a, u, w = (torch.randn(6, c, generator=g, dtype=F64) for c in (3, 2, 2))
    brute = ((2.5 * a @ a.T - u @ w.T) ** 2).sum()
    torch.testing.assert_close(scaled_gram_residual(u, w, a, 2.5), brute)


def test_b_step_hand_case():
    # B = sgn(k alpha V Lhat Lhat^T): V = [0.6, -0.8, 0], labels [1,0],[0,1],[1,0] -> V Lhat = [0.6, -0.8],
    # (V Lhat) Lhat^T = [0.6, -0.8, 0.6] -> B = [1, -1, 1]
    v = np.array([[0.6, -0.8, 0.0]])
    lhat = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    literal = np.sign(1 * (1e-3 * v) @ lhat @ lhat.T)  # DSCMH_3.m line 54
    np.testing.assert_array_equal(literal, [[1.0, -1.0, 1.0]])


# -------------------------------------------------------------------------------- iterations vs DSCMH_3.m
@pytest.mark.parametrize("reference_compatible", [True, False])
def test_two_iterations_match_dscmh3_written_literally(reference_compatible):
    model, xs, y = _tiny(reference_compatible)
    x1, x2 = (phi.numpy() for phi in model.train_features(xs))
    st = _state(model)
    p = model.params
    for epoch in range(2):
        st = _dscmh3_iteration(x1, x2, y.double().numpy(), st, p["alpha"], model.bits, p["lam"],
                               corrected=not reference_compatible)
        model.on_epoch_start(TrainContext(xs, y, epoch=epoch))
        # V is unique up to nothing (Procrustes of a full-rank Z); compare everything the next iteration reads
        np.testing.assert_allclose(model.latent_v.numpy(), st["V1"], atol=1e-10)
        np.testing.assert_array_equal(model.codes_b.numpy(), st["B"])
        np.testing.assert_allclose(model.dict0.numpy(), st["U1"], atol=1e-8)
        np.testing.assert_allclose(model.dict1.numpy(), st["U2"], atol=1e-8)
        np.testing.assert_allclose(model.feat_w0.numpy(), st["R1_SPLb"], atol=1e-12)
        np.testing.assert_allclose(model.feat_w1.numpy(), st["R2_SPLb"], atol=1e-12)
        np.testing.assert_allclose(model.inst_w.numpy(), st["R1_SPLs"], atol=1e-12)
        np.testing.assert_allclose(model.gammas.numpy(), st["gammas"])
        np.testing.assert_allclose(model.proj0.numpy(), st["P1"].T, atol=1e-8)
        np.testing.assert_allclose(model.proj1.numpy(), st["P2"].T, atol=1e-8)
    if reference_compatible:  # DSCMH_3.m: computed (R_SPLs) but never applied
        assert np.all(model.inst_w.numpy() == 1.0) and not np.allclose(st["R_SPLs"], 1.0)
    else:
        assert not np.allclose(model.inst_w.numpy(), 1.0)


# ------------------------------------------------------------------------------------------ exact sub-steps
def test_b_step_is_the_exact_minimiser_of_the_similarity_term():
    # with V V^T = I, ||V^T B||^2 = tr(B^T B) is fixed, so sgn(k alpha V Lhat Lhat^T) minimises the term: brute force
    g = torch.Generator().manual_seed(1)
    v = procrustes(torch.randn(4, 2, generator=g, dtype=F64)).T  # k=2, n=4, orthonormal rows
    lhat = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]],
                                                      dtype=F64), dim=1)
    b = torch.where(2 * (v @ lhat) @ lhat.T > 0, 1.0, -1.0).to(F64)
    best = float(scaled_gram_residual(v.T, b.T, lhat, 2.0))
    for bits in range(2**8):
        cand = torch.tensor([1.0 if bits >> i & 1 else -1.0 for i in range(8)], dtype=F64).reshape(2, 4)
        assert best <= float(scaled_gram_residual(v.T, cand.T, lhat, 2.0)) + 1e-9


def test_u_step_is_the_exact_weighted_least_squares_minimiser():
    model, xs, y = _tiny(False)
    model.on_epoch_start(TrainContext(xs, y, epoch=0))
    x1 = model.train_features(xs)[0]
    s, f, v = model.inst_w, model.feat_w0, model.latent_v
    u = torch.linalg.solve(v @ (s[:, None] * v.T), (x1.T @ (s[:, None] * v.T)).T).T

    def rec(uu):
        return float((f[:, None] * (x1.T - uu @ v) ** 2 * s[None, :]).sum())

    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        assert rec(u) < rec(u + 1e-3 * torch.randn(u.shape, generator=g, dtype=F64))


# --------------------------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_the_configured_length(bits):
    model, xs, y = _tiny(False, bits=bits)
    model.on_epoch_start(TrainContext(xs, y, epoch=0))
    for h in model.encode(xs):
        assert h.shape == (12, bits) and h.dtype == torch.float32


def test_reports_the_applied_instance_weights():
    for ref in (True, False):
        model, xs, y = _tiny(ref)
        model.on_epoch_start(TrainContext(xs, y, epoch=0))
        w = model.training_step(xs, y, 0, index=torch.arange(12)).weights
        torch.testing.assert_close(w, model.inst_w.float())
        assert bool((w == 1).all()) is ref


def test_two_iteration_toy_run_is_deterministic_on_cpu():
    tr, va, te = toy_splits()
    params = resolve_params("dscmh", {"epochs": 2, "n_anchors": 30})
    runs = [train_model("dscmh", params, 16, tr, va, te, np.zeros(90, bool), seed=s, device="cpu") for s in (0, 0, 1)]
    for a, b in zip(runs[0].codes, runs[1].codes):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(runs[0].codes, runs[2].codes))


def test_resume_after_a_kill_gives_the_same_codes(tmp_path, monkeypatch):
    # every iteration's state (and the random stream of its fills) lives in buffers, so a checkpoint resumes exactly
    import cmhash.methods.dscmh as module

    tr, va, te = toy_splits()
    params = resolve_params("dscmh", {"epochs": 4, "n_anchors": 30})
    flags = np.zeros(90, bool)
    ref = train_model("dscmh", params, 16, tr, va, te, flags, seed=3, device="cpu")
    original = module.DSCMH.on_epoch_start

    def killed_at_epoch_3(self, ctx):
        if ctx.epoch == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(self, ctx)

    ckpt = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(module.DSCMH, "on_epoch_start", killed_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_model("dscmh", params, 16, tr, va, te, flags, seed=3, device="cpu", checkpoint_path=ckpt,
                    checkpoint_every=2, checkpoint_key="k")
    monkeypatch.setattr(module.DSCMH, "on_epoch_start", original)
    resumed = train_model("dscmh", params, 16, tr, va, te, flags, seed=3, device="cpu", checkpoint_path=ckpt,
                          checkpoint_every=2, checkpoint_key="k")
    for a, b in zip(ref.codes, resumed.codes):
        np.testing.assert_array_equal(a, b)
    assert ref.history["val_map_mean"] == resumed.history["val_map_mean"]
