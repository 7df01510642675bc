"""CIRH (XizeWu/CIRH @ 0f6439d): loss terms by hand and by the published formulas, the code network's wiring,
the one-stage alternation, training behaviour."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from toy_data import toy_splits

from cmhash.losses.distillation import binary_code_distillation, code_consistency
from cmhash.losses.quantization import squared_quantization
from cmhash.losses.reconstruction import feature_reconstruction
from cmhash.losses.similarity import collaborated_graph_similarity, cosine_gram_regression
from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.methods.cirh import neighbour_mix
from cmhash.train import train_model

SMALL = {"epochs": 2, "batch_size": 32, "lr": 1e-3, "teacher_lr": 1e-3, "teacher_width": 16, "hidden": [32]}


def _make(bits=16, n=12, **params):
    torch.manual_seed(0)
    p = resolve_params("cirh", {**SMALL, **params})
    model = get_method_class("cirh")((10, 8), 3, bits, p)
    g = torch.Generator().manual_seed(1)
    xs = [torch.rand(n, d, generator=g) for d in (10, 8)]  # non-negative, like CNN / BoW features
    y = torch.nn.functional.one_hot(torch.arange(n) % 3, 3).float()
    model.on_train_start(TrainContext(xs, y))
    return model, xs, y


# ------------------------------------------------------------------ similarity S
def _official_cal_similarity(F_I, F_T, a1, a2, K):
    # XizeWu/CIRH, my_opt.py, PCIRH.cal_similarity (as published; .cuda() dropped)
    size = F_I.size(0)
    top_size = K
    F_I = F.normalize(F_I)
    S_I = F_I.mm(F_I.t())
    F_T = F.normalize(F_T)
    S_T = F_T.mm(F_T.t())
    S1 = a1 * S_I + (1 - a1) * S_T
    m, n1 = S1.sort()
    S1[torch.arange(size).view(-1, 1).repeat(1, top_size).view(-1), n1[:, :top_size].contiguous().view(-1)] = 0.
    S2 = 2.0 / (1 + torch.exp(-S1)) - 1 + torch.eye(S1.size(0))
    S2 = (S2 + S2.t()) / 2
    S = a2 * S1 + (1 - a2) * S2
    return S


def test_collaborated_similarity_hand_case_and_published_formula():
    x_img = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), dim=1)
    x_txt = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    s = collaborated_graph_similarity(x_img, x_txt, 0.5, 0.5, zeroed=1)
    c, d = (1 + 1 / math.sqrt(2)) / 2, 1 / (2 * math.sqrt(2))
    expected = torch.tensor([
        [(2 + math.tanh(0.5)) / 2, (c + math.tanh(c / 2)) / 2, 0.0],
        [(c + math.tanh(c / 2)) / 2, (2 + math.tanh(0.5)) / 2, math.tanh(d / 2) / 4],
        [0.0, d / 2 + math.tanh(d / 2) / 4, (2 + math.tanh(0.5)) / 2],
    ])
    torch.testing.assert_close(s, expected)
    torch.testing.assert_close(s, _official_cal_similarity(x_img, x_txt, 0.5, 0.5, 1))
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(40, 7, generator=g), torch.rand(40, 5, generator=g)  # distinct entries: no sort ties
    for k in (0, 5, 24):
        torch.testing.assert_close(collaborated_graph_similarity(F.normalize(a), F.normalize(b), 0.6, 0.3, k, chunk=7),
                                   _official_cal_similarity(a, b, 0.6, 0.3, k) if k else
                                   _official_cal_similarity_no_zeroing(a, b, 0.6, 0.3))


def _official_cal_similarity_no_zeroing(F_I, F_T, a1, a2):
    # the same published formula with K = 0 (its index expression needs K >= 1)
    F_I, F_T = F.normalize(F_I), F.normalize(F_T)
    S1 = a1 * F_I.mm(F_I.t()) + (1 - a1) * F_T.mm(F_T.t())
    S2 = 2.0 / (1 + torch.exp(-S1)) - 1 + torch.eye(S1.size(0))
    S2 = (S2 + S2.t()) / 2
    return a2 * S1 + (1 - a2) * S2


def test_zeroed_count_from_fraction_or_count():
    model, _, _ = _make(n=12)
    assert model.zeroed_count(1000) == 600
    assert get_method_class("cirh")((10, 8), 3, 16, resolve_params("cirh", {"zeroed": 3000})).zeroed_count(5000) == 3000
    with pytest.raises(ValueError, match="zeroed"):
        get_method_class("cirh")((10, 8), 3, 16, resolve_params("cirh", {"zeroed": 3000})).zeroed_count(1000)


# ------------------------------------------------------------------ loss terms
def test_cosine_gram_regression_hand_case_and_published_formula():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert cosine_gram_regression(a, None, torch.ones(2, 2)).item() == pytest.approx(0.5)
    g = torch.Generator().manual_seed(0)
    HI, HT, S_batch = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g), torch.rand(6, 6, generator=g)
    # XizeWu/CIRH, my_opt.py, PCIRH.loss_method (loss_ACR term) and train_Hashfunc (loss_f2 term)
    HI_norm = F.normalize(HI)
    published = F.mse_loss(S_batch, HI_norm.mm(HI_norm.t()))
    assert cosine_gram_regression(HI, None, S_batch).item() == pytest.approx(published.item(), rel=1e-6)
    published_cross = F.mse_loss(F.normalize(HI).mm(F.normalize(HT).t()), S_batch)
    assert cosine_gram_regression(HI, HT, S_batch).item() == pytest.approx(published_cross.item(), rel=1e-6)


def test_feature_reconstruction_hand_case_and_published_formula():
    d1, x1, d2, x2 = torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0]]), torch.tensor([[3.0]])
    assert feature_reconstruction([d1, d2], [x1, x2]).item() == pytest.approx(11.0)
    g = torch.Generator().manual_seed(0)
    DeI_feat, imgN, DeT_feat, txtN = (torch.randn(5, k, generator=g) for k in (4, 4, 3, 3))
    # XizeWu/CIRH, my_opt.py, PCIRH.train_method: loss_CCR without lambda1
    published = F.mse_loss(DeI_feat, imgN) + F.mse_loss(DeT_feat, txtN)
    assert feature_reconstruction([DeI_feat, DeT_feat], [imgN, txtN]).item() == pytest.approx(published.item())


def test_student_regression_terms_hand_case_and_published_formula():
    h, t = torch.tensor([[0.5, -1.0]]), torch.tensor([[2.0, 3.0]])
    assert binary_code_distillation([h], t).item() == pytest.approx(2.125)
    assert binary_code_distillation([h, -h], t).item() == pytest.approx(3.25)
    assert code_consistency(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2)).item() == pytest.approx(0.5)
    g = torch.Generator().manual_seed(0)
    hfunc_BI, hfunc_BT, H = (torch.tanh(torch.randn(6, 4, generator=g)) for _ in range(3))
    B_batch = torch.sign(H)
    # XizeWu/CIRH, my_opt.py, PCIRH.train_Hashfunc: loss_f1
    published = F.mse_loss(hfunc_BI, B_batch) + F.mse_loss(hfunc_BT, B_batch) + F.mse_loss(hfunc_BI, hfunc_BT)
    ours = binary_code_distillation([hfunc_BI, hfunc_BT], H) + code_consistency(hfunc_BI, hfunc_BT)
    assert ours.item() == pytest.approx(published.item(), rel=1e-6)
    # loss_DIS = F.mse_loss(H, B) (PCIRH.loss_method)
    assert squared_quantization(H).item() == pytest.approx(F.mse_loss(H, torch.sign(H)).item(), rel=1e-6)


def test_neighbour_mix_hand_case_and_published_formula():
    s = torch.tensor([[1.0, 0.9, 0.5, 0.1], [0.9, 1.0, 0.2, 0.3], [0.5, 0.2, 1.0, 0.4], [0.1, 0.3, 0.4, 1.0]])
    x = torch.arange(4.0).unsqueeze(1) * 10  # x_i = 10 i
    # row 0: 3rd largest is col 2, 4th col 3 -> 0.7*0 + 0.2*20 + 0.1*30 = 7
    assert neighbour_mix([x], s)[0][0].item() == pytest.approx(7.0)
    g = torch.Generator().manual_seed(0)
    S_batch = torch.rand(9, 9, generator=g) + 2 * torch.eye(9)
    img, txt = torch.randn(9, 5, generator=g), torch.randn(9, 3, generator=g)
    # XizeWu/CIRH, my_opt.py, PCIRH.NN_select and its use in train_method
    m, n1 = S_batch.sort()
    Iind1, Iind2 = n1[:, -4:-1][:, 0], n1[:, -4:-1][:, 1]
    imgN = 0.7 * img + 0.2 * img[Iind2, :] + 0.1 * img[Iind1, :]
    txtN = 0.7 * txt + 0.2 * txt[Iind2, :] + 0.1 * txt[Iind1, :]
    ours = neighbour_mix([img, txt], S_batch)
    torch.testing.assert_close(ours[0], imgN)
    torch.testing.assert_close(ours[1], txtN)
    assert neighbour_mix([img[:2]], S_batch[:2, :2])[0].shape == (2, 5)  # tiny tail batch: no index error


def test_code_network_matches_the_published_forward():
    model, xs, _ = _make()
    net = model.teacher.eval()  # eval: BN deterministic, so both forwards see identical statistics
    A = model.similarity[:6, :6]
    XI, XT = xs[0][:6], xs[1][:6]
    out = net(XI, XT, A)
    # XizeWu/CIRH, models.py, MyNet.forward, literally, with our module's layers
    VI = F.normalize(net.enc_img(XI), dim=1)
    VgcnI = torch.relu(net.bn_img(A.mm(net.gcn_img(VI))))
    VT = F.normalize(net.enc_txt(XT), dim=1)
    VgcnT = torch.relu(net.bn_txt(A.mm(net.gcn_txt(VT))))
    VC = torch.cat((VI, VT), 0)
    II = torch.eye(A.shape[0], A.shape[1])
    S_cma = torch.cat((torch.cat((A, II), 1), torch.cat((II, A), 1)), 0)
    VJ1 = net.bn_cross(S_cma.mm(net.gcn_cross(VC)))
    VJ = torch.relu(VJ1[:6, :] + VJ1[6:, :])
    HJ = net.bn_h_joint(net.head_joint(VJ))
    HI = net.bn_h_img(net.head_img(torch.cat((VgcnI, VJ), 1)))
    HT = net.bn_h_txt(net.head_txt(torch.cat((VJ, VgcnT), 1)))
    H = torch.tanh(net.bn_h(net.head_fused(torch.cat((HI, HJ, HT), 1))))
    DeI_feat = net.dec_img(H + torch.tanh(HI))
    DeT_feat = net.dec_txt(H + torch.tanh(HT))
    for key, ref in {"h_img": HI, "h_txt": HT, "h": H, "dec_img": DeI_feat, "dec_txt": DeT_feat}.items():
        torch.testing.assert_close(out[key], ref)
    assert [m.__class__.__name__ for m in net.dec_img] == ["Sequential", "Linear", "BatchNorm1d"]


def test_hash_function_architecture_and_init():
    model, xs, _ = _make(hidden=[4096])
    img, txt = model.encoders
    assert img.body[0].out_features == 4096 and txt.body[0].out_features == 8  # text width = its input width
    assert abs(img.out.weight.std().item() - 1.0) < 0.05  # N(0, 1) output layer
    assert isinstance(img.body[-1], torch.nn.Dropout) and img.body[-1].p == 0.3
    x = xs[0][:3]
    model.eval()
    torch.testing.assert_close(img(x), img(3.0 * x))  # inputs are L2-normalised


# ------------------------------------------------------------------ one stage, two optimisers
def test_one_stage_with_disjoint_optimisers_and_gradients():
    model, xs, y = _make()
    (stage,) = model.stages()
    assert stage.select_best and set(stage.optimizers) == {"teacher", "hash_functions"}
    assert stage.optimizers["teacher"].lr == model.params["teacher_lr"] and stage.optimizers["hash_functions"].lr is None
    teacher = set(map(id, stage.optimizers["teacher"].parameters(model)))
    students = set(map(id, stage.optimizers["hash_functions"].parameters(model)))
    assert not teacher & students and len(teacher) + len(students) == len(list(model.parameters()))
    # the code network's loss has no path to the hash functions and vice versa, so summing the two losses gives
    # each optimiser exactly the gradient of its own loss (the official per-epoch alternation, batch by batch)
    s_batch = model.similarity[:12, :12]
    code_loss, h, _ = model.code_loss(xs, s_batch)
    hash_loss, _ = model.hash_loss(xs, h, s_batch)
    enc, tea = list(model.encoders.parameters()), list(model.teacher.parameters())
    assert all(g is None for g in torch.autograd.grad(code_loss, enc, retain_graph=True, allow_unused=True))
    assert all(g is None for g in torch.autograd.grad(hash_loss, tea, retain_graph=True, allow_unused=True))
    out = model.training_step(xs, y, 0, index=torch.arange(12))
    assert set(out.terms) >= {"rec", "sim", "quant", "regress", "id", "hash_sim"}


def test_positional_student_target_reproduces_the_published_slice():
    model, xs, y = _make(student_target="positional", batch_size=4)
    model.on_epoch_start(TrainContext(xs, y, epoch=0))
    idx = torch.tensor([7, 2, 9, 0])
    torch.testing.assert_close(model.student_similarity(idx), model.similarity[:4, :4])
    model._batch_number = 2
    # S_batch = self.S_cmm[kk * BATCH_SIZE:, kk * BATCH_SIZE:] for the last chunk (train_Hashfunc)
    torch.testing.assert_close(model.student_similarity(idx[:4]), model.similarity[8:12, 8:12])
    aligned, _, _ = _make()
    torch.testing.assert_close(aligned.student_similarity(idx), aligned.similarity[idx][:, idx])


# ------------------------------------------------------------------ behaviour
def test_one_training_step_decreases_the_loss():
    model, xs, y = _make()
    idx = torch.arange(12)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.eval()  # dropout off so that before / after see the same network function
    before = model.training_step(xs, y, 0, index=idx).loss
    opt.zero_grad()
    before.backward()
    opt.step()
    after = model.training_step(xs, y, 0, index=idx).loss
    assert after.item() < before.item()


@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_configured_length(bits):
    model, xs, _ = _make(bits=bits)
    for h in model.encode(xs):
        assert h.shape == (12, bits)


def test_toy_run_is_deterministic_and_label_free():
    tr, va, te = toy_splits()
    params = resolve_params("cirh", SMALL)
    a = train_model("cirh", params, 16, tr, va, te, np.zeros(90, bool), seed=4, device="cpu")
    b = train_model("cirh", params, 16, tr, va, te, np.zeros(90, bool), seed=4, device="cpu")
    for x, z in zip(a.codes, b.codes):
        np.testing.assert_array_equal(x, z)
        assert x.shape == (30, 16)
    assert len(a.history["loss"]) == 2 and "loss_regress" in a.history
    assert a.joint_codes == {}  # per-modality hash functions only
