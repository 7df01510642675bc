"""HCCH (sunyuan-cs/HCCH @ a332e6f, utils/HSPCH.m, utils/hash_const.m, utils/eig1.m): hand cases, one iteration
against HSPCH.m written literally in NumPy, the exact PR-step of the ``generalized`` option, code length,
determinism."""

import math

import numpy as np
import pytest
import torch
from toy_data import toy_splits

from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.methods.hcch import MATLAB_EPS, first_layer, l21_reweighting
from cmhash.methods.shallow import balanced_orthogonal, sgn
from cmhash.train import train_model

F64 = torch.float64


def _sgn(x):  # utils/sgn.m: z(x<=0) = -1; z(x>0) = 1
    return np.where(x > 0, 1.0, -1.0)


def _hash_const(C, b, n):
    """utils/hash_const.m lines 3-25, literally (the random branch, lines 18-23, is not reached here)."""
    tmpcjc = C @ C.T - 1 / n * C @ np.ones((n, 1)) @ np.ones((n, 1)).T @ C.T  # line 3
    D, V = np.linalg.eigh(tmpcjc)  # line 4: eig of a symmetric matrix
    index_D = np.argsort(-D)        # line 5
    D, V = D[index_D], V[:, index_D]  # lines 6-7
    r = b
    for rr in range(b):  # lines 8-13
        if D[rr] < 1e-5:
            r = rr
            break
    assert r == b, "the literal case must not need random columns"
    Dh = np.diag(D[:r] ** 0.5)  # lines 14-15
    U = (C.T @ V[:, :r] - 1 / n * np.ones((n, 1)) @ (np.ones((n, 1)).T @ C.T @ V[:, :r])) @ np.linalg.inv(Dh)  # l. 16
    result = math.sqrt(n) * U @ V.T  # line 24
    return _sgn(result.T)            # line 25


def _eig1(A, c):
    """utils/eig1.m with isMax = isSym = 1: A = max(A, A'), eigenvectors of the c largest eigenvalues."""
    A = np.maximum(A, A.T)
    d, v = np.linalg.eigh(A)  # MATLAB eig of an exactly symmetric matrix: the symmetric solver
    idx = np.argsort(-d)
    return v[:, idx[:c]]


def _hspch_iteration(X1, X2, trainLabel, st, alpha, beta, lam, bit):
    """One pass of utils/HSPCH.m's loop, lines 41-60, literally."""
    B1, B2, H, P1, P2, R1, R2 = (st[k] for k in ("B1", "B2", "H", "P1", "P2", "R1", "R2"))
    n, r = X1.shape[0], P1.shape[1]
    YYT = trainLabel @ trainLabel.T                                   # line 35
    B1 = _sgn(X1 @ P1 @ R1 + alpha * bit * YYT @ H)                   # line 41
    B2 = _sgn(X2 @ P2 @ R2 + beta * bit * YYT @ H)                    # line 42
    H_C = (alpha * bit * YYT @ B1 + beta * bit * YYT @ B2).T          # line 43
    H = _hash_const(H_C, bit, n).T                                    # line 44
    out = {"B1": B1, "B2": B2, "H": H}
    for m, (X, B, P, R) in enumerate(((X1, B1, P1, R1), (X2, B2, P2, R2)), start=1):
        PR = P @ R                                                    # lines 47-48
        v = np.sqrt((PR * PR).sum(1) + np.finfo(float).eps)           # lines 49-50
        M = np.diag(1 / (2 * v))                                      # lines 51-52
        St = X.T @ X + lam * M                                        # lines 53-54
        Sb = X.T @ B @ B.T @ X                                        # lines 55-56
        P = _eig1(np.linalg.solve(St, Sb), r)                         # lines 57-58
        R = np.linalg.solve(P.T @ St @ P, P.T @ X.T @ B)              # lines 59-60
        out[f"P{m}"], out[f"R{m}"] = P, R
    return out


def _tiny(n=10, bits=3, anchors=6, hidden=3, **extra):
    g = torch.Generator().manual_seed(5)
    xs = [torch.randn(n, d, generator=g) for d in (7, 5)]
    y = (torch.rand(n, 6, generator=g) < 0.5).float()
    y[y.sum(1) == 0, 0] = 1.0
    torch.manual_seed(0)
    params = resolve_params("hcch", {"n_anchors": anchors, "hidden_dim": hidden, **extra})
    model = get_method_class("hcch")((7, 5), 6, bits, params)
    model.on_train_start(TrainContext(xs, y))
    return model, xs, y


def _state(model):
    return {"B1": model.codes_b1.numpy().copy(), "B2": model.codes_b2.numpy().copy(), "H": model.codes_h.numpy().copy(),
            "P1": model.layer_p0.numpy().copy(), "P2": model.layer_p1.numpy().copy(),
            "R1": model.layer_r0.numpy().copy(), "R2": model.layer_r1.numpy().copy()}


# ------------------------------------------------------------------------------------------------- hand cases
def test_sgn_l21_weights_and_consensus_hand_cases():
    torch.testing.assert_close(sgn(torch.tensor([-1.0, 0.0, 2.0])), torch.tensor([-1.0, -1.0, 1.0]))
    # M = diag(1 / (2 sqrt(||PR_i||^2 + eps))): rows [3, 4] and [0, 0] -> [1/10, 1/(2 sqrt(eps))]
    w = l21_reweighting(torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=F64))
    torch.testing.assert_close(w, torch.tensor([0.1, 1 / (2 * math.sqrt(MATLAB_EPS))], dtype=F64))
    # hash_const of C^T = [1,2,3,4]^T (n = 4, k = 1): J C^T = [-1.5,-0.5,0.5,1.5], C J C^T = 5,
    # H = sgn(2 J C^T / sqrt(5)) = [-1,-1,1,1]
    c_t = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=F64)
    h = sgn(balanced_orthogonal(c_t, 1e-5, torch.Generator(), fill="uniform"))
    torch.testing.assert_close(h, torch.tensor([[-1.0], [-1.0], [1.0], [1.0]], dtype=F64))
    np.testing.assert_array_equal(_hash_const(c_t.numpy().T, 1, 4).T, h.numpy())  # literally, hash_const.m


# ---------------------------------------------------------------------------------- iterations vs HSPCH.m
def test_two_iterations_match_hspch_written_literally():
    model, xs, y = _tiny()
    x1, x2 = (phi.numpy() for phi in model.train_features(xs))
    st = _state(model)
    p = model.params
    for epoch in range(2):
        st = _hspch_iteration(x1, x2, y.double().numpy(), st, p["alpha"], p["beta"], p["lam"], model.bits)
        model.on_epoch_start(TrainContext(xs, y, epoch=epoch))
        np.testing.assert_array_equal(model.codes_b1.numpy(), st["B1"])
        np.testing.assert_array_equal(model.codes_b2.numpy(), st["B2"])
        np.testing.assert_array_equal(model.codes_h.numpy(), st["H"])
        # P is defined up to a basis of its eigenspace; P R (the hash function) is not
        for m in (1, 2):
            np.testing.assert_allclose(getattr(model, f"proj{m - 1}").numpy(), st[f"P{m}"] @ st[f"R{m}"],
                                       rtol=1e-6, atol=1e-6)
        # carry our P, R on (their signs are arbitrary; both codes then read the same P R)
        st.update({f"P{m}": getattr(model, f"layer_p{m - 1}").numpy().copy() for m in (1, 2)})
        st.update({f"R{m}": getattr(model, f"layer_r{m - 1}").numpy().copy() for m in (1, 2)})


# ------------------------------------------------------------------------------------------ exact PR-step
def test_generalized_first_layer_is_the_exact_pr_minimiser_and_collapses_when_r_covers_the_bits():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 6, generator=g, dtype=F64)
    b = sgn(torch.randn(20, 2, generator=g, dtype=F64))
    m_diag = torch.rand(6, generator=g, dtype=F64) + 0.5
    st = x.T @ x + 0.1 * torch.diag(m_diag)
    xtb = x.T @ b

    def fit(pr):  # ||B - X PR||^2 + lam tr(PR^T M PR): the reweighted PR objective for fixed M
        return float(((b - x @ pr) ** 2).sum() + 0.1 * (m_diag[:, None] * pr * pr).sum())

    p1 = first_layer(st, xtb @ xtb.T, 1, "generalized")  # r = 1 < k = 2: a true two-layer restriction
    torch.testing.assert_close(p1.T @ st @ p1, torch.eye(1, dtype=F64))
    pr = p1 @ torch.linalg.solve(p1.T @ st @ p1, p1.T @ xtb)
    for _ in range(5):
        q = p1 + 0.05 * torch.randn(p1.shape, generator=g, dtype=F64)
        assert fit(pr) <= fit(q @ torch.linalg.solve(q.T @ st @ q, q.T @ xtb)) + 1e-12
    p3 = first_layer(st, xtb @ xtb.T, 3, "generalized")  # r = 3 >= rank(Sb) = 2: P R = St^{-1} X^T B
    torch.testing.assert_close(p3 @ torch.linalg.solve(p3.T @ st @ p3, p3.T @ xtb), torch.linalg.solve(st, xtb))


def test_generalized_option_runs_and_keeps_binary_codes():
    model, xs, y = _tiny(p_step="generalized")
    model.on_epoch_start(TrainContext(xs, y, epoch=0))
    assert set(model.codes_h.unique().tolist()) <= {-1.0, 1.0}
    with pytest.raises(ValueError, match="p_step"):
        get_method_class("hcch")((7, 5), 6, 3, resolve_params("hcch", {"p_step": "svd"}))


# --------------------------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_the_configured_length(bits):
    model, xs, y = _tiny(bits=bits, anchors=8, hidden=4)
    model.on_epoch_start(TrainContext(xs, y, epoch=0))
    for h in model.encode(xs):
        assert h.shape == (10, bits) and torch.isfinite(h).all()


def test_two_iteration_toy_run_is_deterministic_on_cpu():
    tr, va, te = toy_splits()
    params = resolve_params("hcch", {"epochs": 2, "n_anchors": 30, "hidden_dim": 20})
    runs = [train_model("hcch", params, 16, tr, va, te, np.zeros(90, bool), seed=s, device="cpu") for s in (0, 0, 1)]
    for a, b in zip(runs[0].codes, runs[1].codes):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(runs[0].codes, runs[2].codes))


def test_resume_after_a_kill_gives_the_same_codes(tmp_path, monkeypatch):
    # every iteration's state (and the random stream of its fills) lives in buffers, so a checkpoint resumes exactly
    import cmhash.methods.hcch as module

    tr, va, te = toy_splits()
    params = resolve_params("hcch", {"epochs": 4, "n_anchors": 30, "hidden_dim": 20})
    flags = np.zeros(90, bool)
    ref = train_model("hcch", params, 16, tr, va, te, flags, seed=3, device="cpu")
    original = module.HCCH.on_epoch_start

    def killed_at_epoch_3(self, ctx):
        if ctx.epoch == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(self, ctx)

    ckpt = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(module.HCCH, "on_epoch_start", killed_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_model("hcch", params, 16, tr, va, te, flags, seed=3, device="cpu", checkpoint_path=ckpt,
                    checkpoint_every=2, checkpoint_key="k")
    monkeypatch.setattr(module.HCCH, "on_epoch_start", original)
    resumed = train_model("hcch", params, 16, tr, va, te, flags, seed=3, device="cpu", checkpoint_path=ckpt,
                          checkpoint_every=2, checkpoint_key="k")
    for a, b in zip(ref.codes, resumed.codes):
        np.testing.assert_array_equal(a, b)
    assert ref.history["val_map_mean"] == resumed.history["val_map_mean"]
