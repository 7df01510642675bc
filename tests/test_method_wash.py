"""WASH (czhangnju/WASH @ ea7d584, WASH.m + Kernelize.m): hand cases, the initial state and two iterations against
WASH.m written literally in NumPy, the exact sub-steps, the balanced completion, code length, determinism."""

import math

import numpy as np
import pytest
import torch
from toy_data import toy_splits

from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.methods.shallow import balanced_orthogonal
from cmhash.methods.wash import column_normalised, soft_threshold, top_covariance_eigenvectors
from cmhash.train import train_model

F64 = torch.float64


def _wash_iteration(X1, X2, Y, st, p, r):
    """One pass of WASH.m's loop, lines 49-87, and its hash functions, lines 90-91, literally (column convention;
    the rank-deficient branch of lines 80-82 is not reached here)."""
    beta, gamma, mu, phi, lam = p["beta"], p["gamma"], p["mu"], p["phi"], p["lam"]
    eta0, eta1, eta2, ksai = p["eta0"], p["eta1"], p["eta2"], 1.0
    V, G, E, P1, P2, F1, Yn, rho = (st[k] for k in ("V", "G", "E", "P1", "P2", "F1", "Yn", "rho"))
    n, k = Y.shape[1], G.shape[0]
    X1in = np.linalg.pinv(mu * X1 @ X1.T + lam * np.eye(X1.shape[0]))  # line 44
    X2in = np.linalg.pinv(mu * X2 @ X2.T + lam * np.eye(X2.shape[0]))  # line 45
    B = np.sign(phi * V + r * ksai * V @ Yn.T @ Yn)                      # line 49
    B[B == 0] = -1                                                       # line 50
    W0 = gamma * eta0 * G @ V.T @ np.linalg.inv(gamma * eta0 * V @ V.T + lam * np.eye(r))  # line 53
    W1 = gamma * eta1 * X1 @ V.T @ np.linalg.inv(gamma * eta1 * V @ V.T + lam * np.eye(r))  # line 54
    W2 = gamma * eta2 * X2 @ V.T @ np.linalg.inv(gamma * eta2 * V @ V.T + lam * np.eye(r))  # line 55
    S = ((rho / 2 * (Y - E + 1 / rho * F1) @ G.T + mu * (P1 @ X1 + P2 @ X2) @ G.T)
         @ np.linalg.inv((rho / 2 + 2 * mu) * G @ G.T + 1e-8 * np.eye(G.shape[0])))          # line 58
    G = np.linalg.solve((rho / 2 + 2 * mu) * S.T @ S + (gamma * eta0 + 1e-8) * np.eye(k),
                        rho / 2 * S.T @ (Y - E + 1 / rho * F1) + gamma * eta0 * W0 @ V
                        + mu * S.T @ (P1 @ X1 + P2 @ X2))                                    # line 61
    Yn = Y - E                                                           # line 63
    Yn = Yn / np.sqrt((Yn * Yn).sum(0))[None, :]                         # line 64
    P1 = (mu * S @ G @ X1.T) @ X1in                                      # line 67
    P2 = (mu * S @ G @ X2.T) @ X2in                                      # line 68
    Etp = Y - S @ G + 1 / rho * F1                                       # line 71
    E = np.sign(Etp) * np.maximum(np.abs(Etp) - beta / rho, 0)           # line 72
    Z = gamma * (eta0 * W0.T @ G + eta1 * W1.T @ X1 + eta2 * W2.T @ X2) + r * ksai * B @ Yn.T @ Yn + phi * B  # 75
    Z = Z.T                                                              # line 76
    Temp = Z.T @ Z - 1 / n * (Z.T @ np.ones((n, 1)) @ (np.ones((1, n)) @ Z))  # line 77
    _, Lmd, QQt = np.linalg.svd(Temp)                                    # line 78
    QQ = QQt.T
    idx = Lmd > 1e-6                                                     # line 79
    assert idx.all(), "the literal case must not need random columns"
    Q = QQ[:, idx]                                                       # line 80
    Pt = (Z - 1 / n * np.ones((n, 1)) @ (np.ones((1, n)) @ Z)) @ (Q @ np.linalg.inv(np.diag(np.sqrt(Lmd[idx]))))  # 81
    V = (math.sqrt(n) * Pt @ Q.T).T                                      # lines 83-84
    F1 = F1 + rho * (Y - S @ G - E)                                      # line 86
    rho = min(1e4, 1.3 * rho)                                            # line 87
    G1 = (B @ X1.T) @ np.linalg.inv(X1 @ X1.T + 1e-3 * np.eye(X1.shape[0]))  # line 90
    G2 = (B @ X2.T) @ np.linalg.inv(X2 @ X2.T + 1e-3 * np.eye(X2.shape[0]))  # line 91
    return {"B": B, "V": V, "G": G, "S": S, "E": E, "P1": P1, "P2": P2, "F1": F1, "Yn": Yn, "rho": rho,
            "W0": W0, "W1": W1, "W2": W2, "G1": G1, "G2": G2}


def _tiny(n=14, bits=4, anchors=8, **extra):
    g = torch.Generator().manual_seed(7)
    xs = [torch.randn(n, d, generator=g) for d in (6, 5)]
    y = (torch.rand(n, 5, generator=g) < 0.4).float()
    y[y.sum(1) == 0, 1] = 1.0
    torch.manual_seed(0)
    model = get_method_class("wash")((6, 5), 5, bits, resolve_params("wash", {"n_anchors": anchors, **extra}))
    model.on_train_start(TrainContext(xs, y))
    return model, xs, y


def _state(model):
    return {"V": model.latent_v.numpy().copy(), "G": model.factor_g.numpy().copy(), "E": model.noise_e.numpy().copy(),
            "P1": model.pred_p0.numpy().copy(), "P2": model.pred_p1.numpy().copy(),
            "F1": model.mult_f.numpy().copy(), "Yn": model.yhat.numpy().copy(), "rho": float(model.rho)}


# ------------------------------------------------------------------------------------------------- hand cases
def test_soft_threshold_column_normalisation_and_pca_hand_cases():
    # E = sign(T) max(|T| - tau, 0): T = [0.3, -0.05, -1], tau = 0.1 -> [0.2, 0, -0.9] (WASH.m line 72 literally)
    t = torch.tensor([0.3, -0.05, -1.0], dtype=F64)
    torch.testing.assert_close(soft_threshold(t, 0.1), torch.tensor([0.2, 0.0, -0.9], dtype=F64))
    np.testing.assert_allclose(np.sign(t.numpy()) * np.maximum(np.abs(t.numpy()) - 0.1, 0), [0.2, 0.0, -0.9])
    # columns [3, 4] and [0, 0] -> [0.6, 0.8] and [0, 0] (the zero column guarded)
    y = torch.tensor([[3.0, 0.0], [4.0, 0.0]], dtype=F64)
    torch.testing.assert_close(column_normalised(y), torch.tensor([[0.6, 0.0], [0.8, 0.0]], dtype=F64))
    # covariance of columns [1,1], [-1,-1], [2,-2], [-2,2]: eigenvectors [1,-1]/sqrt2 (variance 16/3),
    # [1,1]/sqrt2 (4/3); signs: largest-magnitude entry positive
    cols = torch.tensor([[1.0, -1.0, 2.0, -2.0], [1.0, -1.0, -2.0, 2.0]], dtype=F64)
    top = top_covariance_eigenvectors(cols, 2)
    s = 1 / math.sqrt(2)
    assert abs(float(top[0, 0])) == pytest.approx(s) and float(top[0, 0] * top[1, 0]) == pytest.approx(-0.5)
    torch.testing.assert_close(top[:, 1], torch.tensor([s, s], dtype=F64))


def test_balanced_completion_default_keeps_the_constraints_reference_does_not():
    # rank-1 Z with r = 3: two random columns fill the code; the default keeps V^T 1 = 0 and V^T V = n I
    z = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], dtype=F64).T @ torch.ones(1, 3, dtype=F64)
    n = z.shape[0]
    v = balanced_orthogonal(z, 1e-6, torch.Generator().manual_seed(0), completion="orthogonal")
    torch.testing.assert_close(v.sum(0), torch.zeros(3, dtype=F64), atol=1e-9, rtol=0)
    torch.testing.assert_close(v.T @ v, n * torch.eye(3, dtype=F64))
    vr = balanced_orthogonal(z, 1e-6, torch.Generator().manual_seed(0), completion="independent")
    assert not torch.allclose(vr.sum(0), torch.zeros(3, dtype=F64), atol=1e-6)  # WASH.m line 82: orth(randn)


# ---------------------------------------------------------------------------- init and iterations vs WASH.m
def test_initial_predictors_and_labels_follow_wash_m():
    model, xs, y = _tiny()
    x1, x2 = (phi.numpy().T for phi in model.train_features(xs))
    Y, mu, lam = y.double().numpy().T, model.params["mu"], model.params["lam"]
    for X, P in ((x1, model.pred_p0), (x2, model.pred_p1)):  # lines 39-40 (E = 0)
        literal = (mu * Y @ X.T) @ np.linalg.pinv(mu * X @ X.T + lam * np.eye(X.shape[0]))
        np.testing.assert_allclose(P.numpy(), literal, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.yhat.numpy(), Y / (np.sqrt((Y * Y).sum(0)) + 1e-8)[None, :])  # line 42
    np.testing.assert_array_equal(model.codes_b.numpy(), np.where(model.latent_v.numpy() > 0, 1.0, -1.0))  # l. 35


def test_two_iterations_match_wash_m_written_literally():
    model, xs, y = _tiny()
    x1, x2 = (phi.numpy().T for phi in model.train_features(xs))
    Y = y.double().numpy().T
    st = _state(model)
    for epoch in range(2):
        st = _wash_iteration(x1, x2, Y, st, model.params, model.bits)
        model.on_epoch_start(TrainContext(xs, y, epoch=epoch))
        np.testing.assert_array_equal(model.codes_b.numpy(), st["B"])
        for ours, key in ((model.latent_v, "V"), (model.factor_g, "G"), (model.corr_s, "S"), (model.noise_e, "E"),
                          (model.pred_p0, "P1"), (model.pred_p1, "P2"), (model.mult_f, "F1"), (model.yhat, "Yn"),
                          (model.load_w0, "W0"), (model.load_w1, "W1"), (model.load_w2, "W2")):
            np.testing.assert_allclose(ours.numpy(), st[key], rtol=1e-5, atol=1e-7, err_msg=key)
        assert float(model.rho) == pytest.approx(st["rho"])
        np.testing.assert_allclose(model.proj0.numpy(), st["G1"].T, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(model.proj1.numpy(), st["G2"].T, rtol=1e-6, atol=1e-8)
        st = _state(model)  # carry our state on, so rounding does not compound through sign()


# ------------------------------------------------------------------------------------------ exact sub-steps
def test_e_step_is_the_l1_proximal_minimiser():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(4, 5, generator=g, dtype=F64)
    tau = 0.3

    def obj(e):
        return float(tau * e.abs().sum() + 0.5 * ((e - t) ** 2).sum())

    e = soft_threshold(t, tau)
    for _ in range(10):
        assert obj(e) <= obj(e + 1e-2 * torch.randn(t.shape, generator=g, dtype=F64))


def test_s_step_minimises_the_augmented_lagrangian_in_s():
    model, xs, y = _tiny()
    model.on_epoch_start(TrainContext(xs, y, epoch=0))
    p, rho = model.params, 1.0  # epoch 0 ran with rho0 = 1
    st = _state(model)
    x1, x2 = (phi.numpy().T for phi in model.train_features(xs))
    Y = y.double().numpy().T
    # S-step of the next iteration, from the literal transcription, minimises rho/2 |T - S G|^2 + mu sum_m |P_m X_m - S G|^2
    rho = st["rho"]
    nxt = _wash_iteration(x1, x2, Y, st, p, model.bits)
    t = Y - st["E"] + st["F1"] / rho
    px = [st["P1"] @ x1, st["P2"] @ x2]
    G = st["G"]

    def lag(s):
        return rho / 2 * ((t - s @ G) ** 2).sum() + p["mu"] * sum(((q - s @ G) ** 2).sum() for q in px)

    rng = np.random.default_rng(0)
    for _ in range(5):
        assert lag(nxt["S"]) <= lag(nxt["S"] + 1e-3 * rng.standard_normal(nxt["S"].shape)) + 1e-9


# --------------------------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_the_configured_length(bits):
    model, xs, y = _tiny(bits=bits)
    model.on_epoch_start(TrainContext(xs, y, epoch=0))
    for h in model.encode(xs):
        assert h.shape == (14, bits) and torch.isfinite(h).all()


def test_two_iteration_toy_run_is_deterministic_on_cpu():
    tr, va, te = toy_splits()
    params = resolve_params("wash", {"epochs": 2, "n_anchors": 30})
    runs = [train_model("wash", params, 16, tr, va, te, np.zeros(90, bool), seed=s, device="cpu") for s in (0, 0, 1)]
    for a, b in zip(runs[0].codes, runs[1].codes):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(runs[0].codes, runs[2].codes))


def test_resume_after_a_kill_gives_the_same_codes(tmp_path, monkeypatch):
    # every iteration's state (and the random stream of its fills) lives in buffers, so a checkpoint resumes exactly
    import cmhash.methods.wash as module

    tr, va, te = toy_splits()
    params = resolve_params("wash", {"epochs": 4, "n_anchors": 30})
    flags = np.zeros(90, bool)
    ref = train_model("wash", params, 16, tr, va, te, flags, seed=3, device="cpu")
    original = module.WASH.on_epoch_start

    def killed_at_epoch_3(self, ctx):
        if ctx.epoch == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(self, ctx)

    ckpt = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(module.WASH, "on_epoch_start", killed_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_model("wash", params, 16, tr, va, te, flags, seed=3, device="cpu", checkpoint_path=ckpt,
                    checkpoint_every=2, checkpoint_key="k")
    monkeypatch.setattr(module.WASH, "on_epoch_start", original)
    resumed = train_model("wash", params, 16, tr, va, te, flags, seed=3, device="cpu", checkpoint_path=ckpt,
                          checkpoint_every=2, checkpoint_key="k")
    for a, b in zip(ref.codes, resumed.codes):
        np.testing.assert_array_equal(a, b)
    assert ref.history["val_map_mean"] == resumed.history["val_map_mean"]
