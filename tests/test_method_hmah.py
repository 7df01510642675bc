"""HMAH (FutureTwT/HMAH @ 81a8b47): loss terms by hand and by the published formulas, the teacher's graphs and
wiring, the two stages (adversarial teacher with manual steps, distilled students), training behaviour."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from toy_data import toy_splits

from cmhash.losses.adversarial import lsgan_discriminator_loss, lsgan_generator_loss
from cmhash.losses.similarity import row_normalised, sigmoid_label_affinity
from cmhash.methods import TrainContext, get_method_class, resolve_params
from cmhash.methods.hmah import label_graphs
from cmhash.train import train_model

SMALL = {"epochs": 2, "teacher_epochs": 1, "batch_size": 32, "lr": 1e-3, "teacher_lr": 1e-3,
         "teacher_hidden": [16], "common_dim": 16, "embedding_dim": 12, "teacher_text_hidden": [16],
         "hidden": [16], "text_hidden": [16], "generator_steps": 2}


def _make(bits=16, n=12, **params):
    torch.manual_seed(0)
    p = resolve_params("hmah", {**SMALL, **params})
    model = get_method_class("hmah")((10, 8), 3, bits, p)
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(n, d, generator=g) for d in (10, 8)]
    y = torch.nn.functional.one_hot(torch.arange(n) % 3, 3).float()
    y[0, 1] = 1.0  # one multi-label row
    model.on_train_start(TrainContext(xs, y))
    return model, xs, y


def _sgd_step(model, lr=0.05):
    opts = {}

    def step(loss, name):
        opts.setdefault(name, torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr))
        opts[name].zero_grad()
        loss.backward()
        opts[name].step()
    return step


# ------------------------------------------------------------------ published helpers, literally
def _official_affinity_tag_multi(tag1, tag2):
    # FutureTwT/HMAH, utils/utils.py, affinity_tag_multi + normalize + zero2eps (as published)
    def zero2eps(x):
        x[x == 0] = 1
        return x

    def normalize(affinity):
        col_sum = zero2eps(np.sum(affinity, axis=1)[:, np.newaxis])
        row_sum = zero2eps(np.sum(affinity, axis=0))
        out_affnty = affinity / col_sum
        in_affnty = np.transpose(affinity / row_sum)
        return in_affnty, out_affnty

    aff = np.matmul(tag1, tag2.T)
    affinity_matrix = np.float32(aff)
    affinity_matrix = 1 / (1 + np.exp(-affinity_matrix))
    affinity_matrix = 2 * affinity_matrix - 1
    in_aff, out_aff = normalize(affinity_matrix)
    return in_aff, out_aff, affinity_matrix, normalize


# ------------------------------------------------------------------ graphs
def test_label_affinity_and_row_normalisation_hand_cases_and_published_formula():
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t, u = 2 / (1 + math.exp(-1)) - 1, 2 / (1 + math.exp(-2)) - 1
    torch.testing.assert_close(sigmoid_label_affinity(y), torch.tensor([[t, 0, t], [0, t, t], [t, t, u]]))
    torch.testing.assert_close(row_normalised(torch.tensor([[1.0, 3.0], [0.0, 0.0]])),
                               torch.tensor([[0.25, 0.75], [0.0, 0.0]]))
    _, _, y12 = _make()
    labels = y12.numpy()
    _, aff_norm, aff_label, normalize = _official_affinity_tag_multi(labels, labels)
    # train.py, train_teacher: the cross-modal graph
    aff_cross_1 = np.hstack((np.eye(aff_label.shape[0]), aff_label))
    aff_cross_2 = np.hstack((aff_label, np.eye(aff_label.shape[0])))
    aff_cross = np.vstack((aff_cross_1, aff_cross_2))
    _, aff_cross_norm = normalize(aff_cross)
    a, adj, cross = label_graphs(y12)
    np.testing.assert_allclose(a.numpy(), aff_label, rtol=1e-6)
    np.testing.assert_allclose(adj.numpy(), aff_norm, rtol=1e-6)
    np.testing.assert_allclose(cross.numpy(), aff_cross_norm, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ adversarial terms
def test_lsgan_terms_hand_case_and_published_formula():
    d_real, d_fake = torch.tensor([[1.0], [0.0]]), torch.tensor([[0.5], [-1.0]])
    assert lsgan_discriminator_loss(d_real, d_fake).item() == pytest.approx(1.125)
    assert lsgan_generator_loss(d_fake).item() == pytest.approx(2.125)
    loss_l2 = torch.nn.MSELoss()
    # FutureTwT/HMAH, train.py, train_teacher: loss_D and generator_loss
    dc_loss_real = loss_l2(d_real, torch.ones(d_real.shape[0], 1))
    dc_loss_fake = loss_l2(d_fake, torch.zeros(d_fake.shape[0], 1))
    assert lsgan_discriminator_loss(d_real, d_fake).item() == pytest.approx((dc_loss_fake + dc_loss_real).item())
    assert lsgan_generator_loss(d_fake).item() == pytest.approx(loss_l2(d_fake, torch.ones(2, 1)).item())


def test_teacher_generator_loss_matches_the_published_formula():
    model, xs, y = _make()
    model.eval()  # dropout off: both evaluations see the same network function
    ours, _ = model.teacher_generator_loss(xs, y)
    p = model.params
    hash, _ = model.teacher(xs[0], xs[1], y)
    _, _, aff_label, _ = _official_affinity_tag_multi(y.numpy(), y.numpy())
    aff_label = torch.tensor(aff_label)
    loss_l2 = torch.nn.MSELoss()
    # FutureTwT/HMAH, train.py, train_teacher: the generator step
    hash_norm = F.normalize(hash)
    B = torch.sign(hash)
    d_fake = model.discriminator(hash)
    generator_loss = loss_l2(d_fake, torch.ones(d_fake.shape[0], 1))
    sign_loss = loss_l2(hash, B)
    construct_loss = loss_l2(hash_norm.mm(hash_norm.t()), aff_label)
    loss_G = generator_loss * p["adversarial_weight"] + sign_loss * p["sign_weight"] + construct_loss * p["similarity_weight"]
    assert ours.item() == pytest.approx(loss_G.item(), rel=1e-5)
    assert (p["similarity_weight"], p["adversarial_weight"]) == (100.0, 1.0)
    assert resolve_params("hmah", {})["sign_weight"] == 0.001 and resolve_params("hmah", {})["generator_steps"] == 5


def test_teacher_forward_matches_the_published_wiring():
    model, xs, y = _make(bits=16)
    t = model.teacher.eval()
    hash, _ = t(xs[0], xs[1], y)
    _, adj, cross = label_graphs(y)
    # FutureTwT/HMAH, model.py, HGCN.forward (+ layers.py GraphConvolution.forward: adj (x W), no dropout in eval)
    img_common = t.img_net(xs[0])
    txt_common = t.txt_net(t.embedding(xs[1]))
    img_gcn_1 = torch.mm(adj, torch.mm(img_common, t.gc_img.weight))
    txt_gcn_1 = torch.mm(adj, torch.mm(txt_common, t.gc_txt.weight))
    comb_1 = torch.mm(cross, torch.mm(torch.cat((img_common, txt_common), 0), t.gc_cross.weight))
    img_z, img_sp_z = t.heads[0](img_gcn_1), t.heads[1](comb_1[:12, :])
    txt_z, txt_sp_z = t.heads[2](txt_gcn_1), t.heads[3](comb_1[12:, :])
    torch.testing.assert_close(hash, torch.cat((img_z, img_sp_z, txt_z, txt_sp_z), 1))
    assert t.gc_img.weight.shape == (16, 4)  # common_dim x bits / 4
    with pytest.raises(ValueError, match="multiple of 4"):
        get_method_class("hmah")((10, 8), 3, 18, resolve_params("hmah", SMALL))


# ------------------------------------------------------------------ students
def test_student_loss_matches_the_published_formula():
    model, xs, y = _make(bits=16)
    model.eval()
    g = torch.Generator().manual_seed(3)
    hash_tea = torch.tanh(torch.randn(12, 16, generator=g))
    with torch.no_grad():
        model.fusion.uniform_(0.2, 0.8, generator=g)
    ours, _ = model.student_loss(xs, hash_tea)
    nbits = 16
    loss_l2 = torch.nn.MSELoss()
    img_hash, txt_hash = model.encoders[0](xs[0]), model.encoders[1](xs[1])
    # FutureTwT/HMAH, model.py HashFusion.forward and train.py train_student: b_loss, s_loss
    fusion_hash = img_hash.mul(model.fusion) + txt_hash.mul(1 - model.fusion)
    img_stu_norm, txt_stu_norm, fusion_norm = F.normalize(img_hash), F.normalize(txt_hash), F.normalize(fusion_hash)
    hash_tea_norm = F.normalize(hash_tea)
    img_tea_norm = F.normalize(hash_tea[:, :int(nbits / 2)])
    txt_tea_norm = F.normalize(hash_tea[:, int(nbits / 2):])
    B = torch.sign(hash_tea)
    b_loss = loss_l2(img_hash, B) + loss_l2(txt_hash, B) + loss_l2(fusion_hash, B)
    s_loss = loss_l2(img_stu_norm.mm(img_stu_norm.t()), img_tea_norm.mm(img_tea_norm.t())) + \
        loss_l2(txt_stu_norm.mm(txt_stu_norm.t()), txt_tea_norm.mm(txt_tea_norm.t())) + \
        loss_l2(fusion_norm.mm(fusion_norm.t()), hash_tea_norm.mm(hash_tea_norm.t())) + \
        loss_l2(img_stu_norm.mm(txt_stu_norm.t()), hash_tea_norm.mm(hash_tea_norm.t()))
    assert ours.item() == pytest.approx((b_loss * 1 + s_loss * 1).item(), rel=1e-5)
    torch.testing.assert_close(model.encode_fused(xs), fusion_hash)


def test_student_optimiser_groups_follow_the_code():
    model, _, _ = _make()
    students = model.stages()[1].optimizers["students"]
    groups = students.parameters(model)
    lr = model.params["lr"]
    assert [g.get("lr", lr) for g in groups] == [lr, 10 * lr, lr, 0.01 * lr]
    ids = {id(p) for g in groups for p in g["params"]}
    assert ids == {id(p) for p in [*model.encoders.parameters(), model.fusion]}


# ------------------------------------------------------------------ stages and hooks
def test_two_stages_and_their_epochs():
    model, _, _ = _make(epochs=7, teacher_epochs=3)
    teacher, students = model.stages()
    assert (teacher.name, teacher.epochs, teacher.select_best) == ("teacher", 3, False)
    assert (students.name, students.epochs, students.select_best) == ("students", 4, True)
    assert set(teacher.optimizers) == {"teacher", "discriminator"}
    defaults = resolve_params("hmah", {})
    assert (defaults["epochs"], defaults["teacher_epochs"], defaults["batch_size"]) == (40, 20, 1024)
    with pytest.raises(ValueError, match="student epoch"):
        _make(epochs=3, teacher_epochs=3)[0].stages()


def test_teacher_step_alternates_discriminator_and_generator():
    model, xs, y = _make(dropout=0.0)  # no dropout: the train-mode loss is a deterministic function
    calls = []
    sgd = _sgd_step(model)

    def step(loss, name):
        calls.append(name)
        sgd(loss, name)
    before, _ = model.teacher_generator_loss(xs, y)
    out = model.training_step(xs, y, 0, index=torch.arange(12), step=step)
    assert calls == ["discriminator"] + ["teacher"] * model.params["generator_steps"]
    assert set(out.terms) == {"disc", "gen", "sign", "sim"}
    after, _ = model.teacher_generator_loss(xs, y)
    assert after.item() < before.item()
    with pytest.raises(ValueError, match="step="):
        model.training_step(xs, y, 0)


def test_student_stage_distils_frozen_teacher_codes_computed_in_order():
    model, xs, y = _make(batch_size=5)  # 12 rows -> teacher batches of 5, 5, 2 with their own label graphs
    students = model.stages()[1]
    model.on_stage_start(students, TrainContext(xs, y))
    model.teacher.eval()
    with torch.no_grad():
        expected = torch.cat([model.teacher(xs[0][s:s + 5], xs[1][s:s + 5], y[s:s + 5])[0] for s in (0, 5, 10)])
    torch.testing.assert_close(model.teacher_codes, expected)
    assert not any(p.requires_grad for p in [*model.teacher.parameters(), *model.discriminator.parameters()])
    model.train()
    idx = torch.tensor([3, 0, 11, 7])
    calls = []
    sgd = _sgd_step(model)

    def step(loss, name):
        calls.append(name)
        sgd(loss, name)
    # train mode throughout: the students have no dropout, so their batch-statistics output is deterministic
    before, _ = model.student_loss([x[idx] for x in xs], model.teacher_codes[idx])
    out = model.training_step([x[idx] for x in xs], y[idx], 1, index=idx, step=step)
    assert calls == ["students"] and set(out.terms) == {"stu_b", "stu_s"}
    after, _ = model.student_loss([x[idx] for x in xs], model.teacher_codes[idx])
    assert after.item() < before.item()


def test_student_batchnorm_frozen_from_freeze_bn_epoch():
    model, xs, y = _make(epochs=10, teacher_epochs=2, freeze_bn_epoch=5)
    bns = [m for m in model.encoders.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    for epoch, frozen in ((2, False), (6, False), (7, True), (9, True)):
        model.train()
        model.on_epoch_start(TrainContext(xs, y, epoch=epoch))
        assert all(m.training is not frozen for m in bns), epoch


# ------------------------------------------------------------------ behaviour
@pytest.mark.parametrize("bits", [8, 32])
def test_codes_have_configured_length(bits):
    model, xs, _ = _make(bits=bits)
    for h in [*model.encode(xs), model.encode_fused(xs)]:
        assert h.shape == (12, bits)


def test_toy_run_is_deterministic_and_stores_fused_codes():
    tr, va, te = toy_splits()
    params = resolve_params("hmah", SMALL)
    a = train_model("hmah", params, 16, tr, va, te, np.zeros(90, bool), seed=4, device="cpu")
    b = train_model("hmah", params, 16, tr, va, te, np.zeros(90, bool), seed=4, device="cpu")
    assert list(a.joint_codes) == ["fused"]
    for x, z in zip([*a.codes, a.joint_codes["fused"]], [*b.codes, b.joint_codes["fused"]]):
        np.testing.assert_array_equal(x, z)
        assert x.shape == (30, 16)
    assert a.best_epoch == 1  # the teacher epoch never competes for the best epoch
    assert len(a.history["loss"]) == 2
