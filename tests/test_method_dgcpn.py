"""DGCPN (methods/dgcpn.py): the whole-training-set target and the batch loss by hand and against the official
formulas (Atmegal/DGCPN @ 9f62c56, train_div.py), the three updates per batch against the official sequence,
one step decreasing the loss, code length, the SGD stage, and determinism / label independence of a 2-epoch
toy run."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from toy_data import toy_splits

from cmhash.losses.similarity import coherence_preserving_loss, graph_neighbour_target
from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.train import SplitData, StageRunner, train_model


def _model(bits=8, n=12, **extra):
    params = resolve_params("dgcpn", {"hidden": [16], "batch_size": 4, "epochs": 2, **extra})
    torch.manual_seed(0)
    model = get_method_class("dgcpn")((10, 8), 3, bits, params)
    g = torch.Generator().manual_seed(1)
    xs = [torch.rand(n, 10, generator=g), torch.rand(n, 8, generator=g)]  # non-negative, like the code's features
    y = torch.nn.functional.one_hot(torch.arange(n) % 3, 3).float()
    model.on_train_start(TrainContext(xs, y))
    return model, xs, y


# ---------------------------------------------------------------- target S
def test_target_hand_case():
    x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    s = graph_neighbour_target(x, x.clone(), text_weight=0.3, graph_weight=0.5, k=2, scale=1.0)
    torch.testing.assert_close(s, torch.tensor([[1.0, -0.4, 0.0], [-0.4, 1.0, -0.2], [0.0, -0.2, 1.0]]))


@pytest.mark.parametrize("k,a1,a2,scale", [(20, 0.01, 0.3, 40.0), (7, 0.5, 0.6, 3.0)])
def test_target_equals_published_cal_similarity(k, a1, a2, scale):
    g = torch.Generator().manual_seed(0)
    f_i, f_t = torch.rand(50, 12, generator=g), torch.rand(50, 9, generator=g)
    ours = graph_neighbour_target(f_i, f_t, a1, a2, k, scale)
    # Atmegal/DGCPN train_div.py Session.cal_similarity, written literally (knn_number = N - k):
    batch_size = f_i.size(0)
    F_I = F.normalize(f_i)
    S_I = F_I.mm(F_I.t())
    F_T = F.normalize(f_t)
    S_T = F_T.mm(F_T.t())
    S_pair = a1 * S_T + (1 - a1) * S_I
    pro = F_T.mm(F_T.t()) * a1 + F_I.mm(F_I.t()) * (1.0 - a1)
    size = batch_size
    top_size = batch_size - k
    m, n1 = pro.sort()
    pro[torch.arange(size).view(-1, 1).repeat(1, top_size).view(-1), n1[:, :top_size].contiguous().view(-1)] = 0.0
    pro[torch.arange(size).view(-1), n1[:, -1:].contiguous().view(-1)] = 0.0
    pro = pro / pro.sum(1).view(-1, 1)
    pro_dis = pro.mm(pro.t())
    pro_dis = pro_dis * scale
    S = S_pair * (1 - a2) + pro_dis * a2
    S = S * 2.0 - 1
    torch.testing.assert_close(ours, S)


def test_target_rejects_too_few_neighbours():
    with pytest.raises(ValueError, match="k must be"):
        graph_neighbour_target(torch.rand(5, 3), torch.rand(5, 2), 0.01, 0.3, k=1, scale=1.0)


def test_method_target_uses_fractions_of_the_training_set():
    model, xs, _ = _model(n=20)  # k = round(0.4 * 20) = 8, scale = 0.8 * 20 = 16
    torch.testing.assert_close(model.target, graph_neighbour_target(xs[0], xs[1], 0.01, 0.3, 8, 16.0))
    assert "target" not in model.state_dict()  # derived, rebuilt by on_train_start


# ---------------------------------------------------------------- loss
def test_loss_hand_case():
    loss, parts = coherence_preserving_loss(
        torch.tensor([[1.0], [-1.0]]), torch.tensor([[1.0], [1.0]]), torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    assert parts["pair"].item() == pytest.approx(3.25)
    assert parts["dis"].item() == pytest.approx(3.0)
    assert parts["cons"].item() == pytest.approx(8.0)
    assert loss.item() == pytest.approx(14.25)


@pytest.mark.parametrize("K,dw,cw", [(1.5, 1.0, 1.0), (1.0, 0.5, 2.0)])
def test_loss_equals_published_loss_cal(K, dw, cw):
    g = torch.Generator().manual_seed(2)
    code_I, code_T = torch.tanh(torch.randn(6, 8, generator=g)), torch.tanh(torch.randn(6, 8, generator=g))
    S = torch.rand(6, 6, generator=g) * 2 - 1
    I = torch.eye(6)
    ours, _ = coherence_preserving_loss(code_I, code_T, S, K, dw, cw)
    # Atmegal/DGCPN train_div.py Session.loss_cal, written literally (.cuda() dropped):
    B_I = F.normalize(code_I)
    B_T = F.normalize(code_T)
    BI_BI = B_I.mm(B_I.t())
    BT_BT = B_T.mm(B_T.t())
    BI_BT = B_I.mm(B_T.t())
    diagonal = BI_BT.diagonal()
    all_1 = torch.rand(BT_BT.size(0)).fill_(1)  # the code has an extra pair of parentheses here
    loss_pair = F.mse_loss(diagonal, K * all_1)
    loss_dis_1 = F.mse_loss(BT_BT * (1 - I), S * (1 - I))
    loss_dis_2 = F.mse_loss(BI_BT * (1 - I), S * (1 - I))
    loss_dis_3 = F.mse_loss(BI_BI * (1 - I), S * (1 - I))
    loss_cons = F.mse_loss(BI_BT, BI_BI) + F.mse_loss(BI_BT, BT_BT) + F.mse_loss(BI_BI, BT_BT) + \
        F.mse_loss(BI_BT, BI_BT.t())
    published = loss_pair + (loss_dis_1 + loss_dis_2 + loss_dis_3) * dw + loss_cons * cw
    assert ours.item() == pytest.approx(published.item(), rel=1e-6)


# ---------------------------------------------------------------- the three updates per batch
def test_three_updates_equal_the_published_training_step():
    model, xs, y = _model()
    ref = copy.deepcopy(model)
    idx = torch.tensor([1, 4, 6, 10])
    img, txt = (x[idx] for x in xs)
    (stage,) = model.stages()
    runner = StageRunner(model, stage, 0, 2, model.params, 3)
    p = model.params
    opt_I = torch.optim.SGD(ref.encoders[0].parameters(), lr=p["lr"], momentum=p["momentum"],
                            weight_decay=p["weight_decay"])
    opt_T = torch.optim.SGD(ref.encoders[1].parameters(), lr=p["lr"], momentum=p["momentum"],
                            weight_decay=p["weight_decay"])
    S = ref.target[idx, :][:, idx]

    def loss_cal(code_I, code_T):
        return coherence_preserving_loss(code_I, code_T, S, p["pair_target"], p["dis_weight"], p["cons_weight"])[0]

    for batch in range(2):  # two batches: SGD momentum buffers carried over
        torch.manual_seed(10 + batch)  # the same dropout masks in both runs
        model.training_step([img, txt], y[idx], 0, index=idx, step=runner.manual_step)
        torch.manual_seed(10 + batch)
        # Atmegal/DGCPN train_div.py Session.train, one batch, written literally:
        code_I = ref.encoders[0](img)
        code_T = ref.encoders[1](txt)
        loss = loss_cal(code_I, code_T)
        opt_I.zero_grad()
        opt_T.zero_grad()
        loss.backward(retain_graph=True)
        opt_I.step()
        opt_T.step()
        code_I = ref.encoders[0](img)
        code_T = ref.encoders[1](txt)
        loss_i = loss_cal(code_I, code_T.sign().detach())
        opt_I.zero_grad()
        loss_i.backward(retain_graph=True)
        opt_I.step()
        loss_t = loss_cal(code_I.sign().detach(), code_T)
        opt_T.zero_grad()
        loss_t.backward()
        opt_T.step()
    for ours, published in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(ours, published, rtol=1e-5, atol=1e-6)


def test_stage_is_two_sgds_over_the_two_nets():
    model, _, _ = _model()
    (stage,) = model.stages()
    assert set(stage.optimizers) == {"image", "text"}
    for m, name in enumerate(("image", "text")):
        spec = stage.optimizers[name]
        assert spec.kind == "sgd" and spec.options == {"momentum": 0.9}
        assert {id(q) for q in spec.parameters(model)} == {id(q) for q in model.encoders[m].parameters()}
    assert stage.clip_grad_norm is None and stage.lr_schedule == "constant"
    assert model.manual_optimization and not model.uses_labels


# ---------------------------------------------------------------- behaviour
def test_one_step_decreases_the_loss():
    model, xs, y = _model(bits=16, dropout=0.0)
    idx = torch.arange(12)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = model.training_step(xs, y, 0, index=idx).loss  # no step=: the joint loss L(C_I, C_T)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = model.training_step(xs, y, 0, index=idx).loss
    assert after.item() < before.item()


@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_configured_length(bits):
    model, xs, _ = _model(bits=bits)
    model.eval()
    for h in model.encode(xs):
        assert h.shape == (12, bits)
        assert h.abs().max() < 1


def test_text_output_layer_init():
    model, _, _ = _model(hidden=[256], bits=64)
    w = model.encoders[1].out.weight
    assert w.std().item() == pytest.approx(0.3, rel=0.05)
    assert model.encoders[0].out.weight.abs().max().item() <= 1 / 16  # PyTorch default U(+-1/sqrt(256))


def test_two_epoch_toy_run_is_deterministic_and_label_free():
    tr, va, te = toy_splits()
    params = resolve_params("dgcpn", {"hidden": [32], "epochs": 2})
    a = train_model("dgcpn", params, 16, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    b = train_model("dgcpn", params, 16, tr, va, te, np.zeros(90, bool), seed=3, device="cpu")
    other = SplitData(tr.xs, np.roll(tr.labels, 7, axis=0))
    c = train_model("dgcpn", params, 16, other, va, te, np.ones(90, bool), seed=3, device="cpu")
    for x, y, z in zip(a.codes, b.codes, c.codes):
        assert x.shape == (30, 16)
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
