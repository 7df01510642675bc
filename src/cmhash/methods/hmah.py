r"""HMAH: "Teacher-Student Learning: Efficient Hierarchical Message Aggregation Hashing for Cross-Modal Retrieval"
(Tan, Zhu, Li, Zhang, Han; IEEE TMM 2022, doi 10.1109/TMM.2022.3177901).

Official code: github.com/FutureTwT/HMAH @ 81a8b47150c00dc2b2ccc54229d08ca423a5a5c0 (2022-06-07, README only; last
code change c4e163d, 2021-09-01). Read: ``model.py`` (``HGCN`` teacher, ``Discriminator``, ``StudentImgNet``,
``StudentTxtNet``, ``HashFusion``), ``layers.py`` (``GraphConvolution``), ``train.py`` (``train_teacher``,
``train_student``, ``test``: objective and both loops), ``utils/utils.py`` (``affinity_tag_multi``, ``normalize``),
``utils/datasets.py``, ``train_coco.sh``, README. Paper: not found in full text (no copy reachable); everything
below is from the code, so the defaults follow the code.

Supervised (``uses_labels = True``): the teacher's graphs are built from the (noisy) training labels; the
students never see labels.

**Stage 1, teacher** (``teacher_epochs`` epochs, ``select_best = False``). Per shuffled batch with labels ``Y``::

    A = 2 sigmoid(Y Y^T) - 1;   A_n = rownorm(A);   C_n = rownorm([[I, A], [A, I]])          (2B x 2B)
    E_I = MLP_I(x_I)  (d_I -> 2048 -> 1024 -> 512, Linear-BN-tanh);  E_T = MLP_T(Emb(x_T))  (Emb: d_T -> 300,
          then 300 -> 512 -> 512, Linear-BN-tanh)
    GC(X, M) = M (dropout_0.5(X) W)   (W 512 x K/4, xavier normal, no bias, identity activation)
    P_I = GC_I(E_I, A_n),  P_T = GC_T(E_T, A_n),  [Q_I; Q_T] = GC_x([E_I; E_T], C_n)
    H = [tanh(Lin(P_I)), tanh(Lin(Q_I)), tanh(Lin(P_T)), tanh(Lin(Q_T))]      (B x K, K = bits, four K/4 heads)

    discriminator D: K -> 64 -> 32 -> 1 (ReLU), prior z ~ N(0, I) (B x K):
      one step   L_D = mean (D(z) - 1)^2 + mean D(H)^2                       (LSGAN, H detached)
      then 5 steps (a fresh forward each)
                 L_G = g mean (D(H) - 1)^2 + b mse(H, sign H) + s mse(G(H), A),   G = cosine gram

(:mod:`cmhash.losses.adversarial`, :func:`~cmhash.losses.quantization.squared_quantization`,
:func:`~cmhash.losses.similarity.cosine_gram_regression`; ``g`` 1, ``b`` 0.001, ``s`` 100; note ``G(H)`` is
matched to the UN-normalised ``A``.)

**Between the stages** (``on_stage_start`` of ``students``): the teacher in eval mode encodes the training split
once, in its original order, in consecutive batches of ``batch_size`` with each batch's own label graph; the
continuous codes ``T`` (N x K) are stored and the teacher and discriminator are frozen.

**Stage 2, students** (``epochs - teacher_epochs`` epochs). ``h_I = S_I(x_I)`` (d_I -> 2048 -> 512 -> K),
``h_T = S_T(Emb'(x_T))`` (d_T -> 300 -> 512 -> K), every layer Linear-BN-tanh; fused code ``f = w * h_I + (1 - w) * h_T``
with a learnable per-bit ``w`` (initialised 0.5). With ``b = sign(T)``, ``T_I = T[:, :K/2]``, ``T_T = T[:, K/2:]``::

    L_b = mse(h_I, b) + mse(h_T, b) + mse(f, b)
    L_s = mse(G(h_I), G(T_I)) + mse(G(h_T), G(T_T)) + mse(G(f), G(T)) + mse(G(h_I, h_T), G(T))
    L = 1 * L_b + 1 * L_s

(:func:`~cmhash.losses.distillation.binary_code_distillation`). One Adam over the students at ``lr``, the text
embedding at 10 x ``lr`` and ``w`` at 0.01 x ``lr``; from the 6th student epoch on (``freeze_bn_epoch`` 5) every
BatchNorm of the students uses its running statistics.

**Epochs.** ``epochs`` is the whole run: the first ``teacher_epochs`` train the teacher, the remaining
``epochs - teacher_epochs`` the students. Defaults 40 and 20 give the code's defaults (``--tea_epochs 20``,
``--stu_epochs 20``); ``train_coco.sh`` runs 100 + 100 (``epochs: 200, teacher_epochs: 100``).

**Retrieval codes.** The official ``test`` encodes queries per modality (``sign h_I``, ``sign h_T``) but BOTH retrieval
databases with the fused code ``sign f`` of the pair. Our protocol is the same for every method: per-modality
codes for queries and database (I->T searches text codes, T->I image codes), best epoch on the validation split.
The fused code is also declared (:meth:`encode_fused`), so the loop stores ``sign f`` of the test / database
splits beside the per-modality codes; it never enters model selection.

**Defaults** = the code's argparse: batch 1024, Adam 1e-4 for teacher, discriminator (``--GD_lr``) and students
(``--stu_lr``), dropout 0.5, ``emb_lr_factor`` 10, ``fusion_lr_factor`` 0.01, 5 generator steps per
discriminator step, seed handling ours.

**Departures from the official code:**

1. Text embedding: the code initialises ``Emb`` (teacher and text student) with pre-trained word vectors of the
   dataset's tag vocabulary (``models/*_weights.pkl``, only Flickr / NUS-WIDE / COCO); ours uses PyTorch's default
   init (no word vectors exist for our datasets). The layer, its width (``embedding_dim`` 300) and its 10 x lr stay.
2. Labels: the code builds the teacher's graphs from clean labels; ours from the training labels it is given
   (noisy in our experiments).
3. Student batches: the code feeds the students the same unshuffled batches every epoch; ours are the shared
   loop's seeded shuffle (the teacher codes are looked up by row, so each sample keeps its own target).
   The teacher codes are computed in unshuffled batches as in the code.
4. Evaluation: see "Retrieval codes"; the code has no validation and keeps the last epoch, and reports MAP of
   the fused database in MATLAB (mAP@500 in the README).
5. ``sign``: ours maps 0 to +1 (package convention; ``torch.sign`` gives 0).
6. The shared loop drops a 1-sample tail batch (BatchNorm cannot train on it); the code keeps it.
7. Widths are parameters (``teacher_hidden`` [2048, 1024], ``common_dim`` 512, ``teacher_text_hidden`` [512],
   ``hidden`` [2048, 512] for the image student, ``text_hidden`` [512]); defaults = the code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..losses.adversarial import lsgan_discriminator_loss, lsgan_generator_loss
from ..losses.distillation import binary_code_distillation
from ..losses.quantization import squared_quantization
from ..losses.similarity import cosine_gram, cosine_gram_regression, row_normalised, sigmoid_label_affinity
from .base import Method, OptimizerSpec, Stage, StepOutput, TrainContext, register


def label_graphs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(A, rownorm(A), rownorm([[I, A], [A, I]]))`` of a batch's multi-hot labels (``affinity_tag_multi``)."""
    a = sigmoid_label_affinity(labels)
    eye = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    cross = torch.cat([torch.cat([eye, a], 1), torch.cat([a, eye], 1)], 0)
    return a, row_normalised(a), row_normalised(cross)


def tanh_mlp(d_in: int, widths: list[int]) -> nn.Sequential:
    """Linear -> BatchNorm1d -> tanh for every width (HMAH's teacher and student bodies)."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(d_in, width), nn.BatchNorm1d(width), nn.Tanh()]
        d_in = width
    return nn.Sequential(*layers)


class GraphConvolution(nn.Module):
    """``M (dropout(X) W)``: xavier-normal ``W``, no bias, identity activation (``layers.py``)."""

    def __init__(self, d_in: int, d_out: int, dropout: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        nn.init.xavier_normal_(self.weight)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return adj @ (nn.functional.dropout(x, self.dropout, self.training) @ self.weight)


class Teacher(nn.Module):
    """HMAH's ``HGCN``: per-modality tanh MLPs, intra- and cross-modal GCNs on the label graph, four K/4 heads."""

    def __init__(self, d_img: int, d_txt: int, bits: int, p: dict[str, Any]):
        super().__init__()
        common, quarter = p["common_dim"], bits // 4
        self.img_net = tanh_mlp(d_img, [*p["teacher_hidden"], common])
        self.embedding = nn.Linear(d_txt, p["embedding_dim"])
        self.txt_net = tanh_mlp(p["embedding_dim"], [*p["teacher_text_hidden"], common])
        self.gc_img, self.gc_txt, self.gc_cross = (GraphConvolution(common, quarter, p["dropout"]) for _ in range(3))
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(quarter, quarter), nn.Tanh()) for _ in range(4))

    def forward(self, x_img: torch.Tensor, x_txt: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(H, A)``: the teacher code of the batch and its label affinity (the similarity target)."""
        a, adj, cross = label_graphs(labels)
        e_img, e_txt = self.img_net(x_img), self.txt_net(self.embedding(x_txt))
        n = x_img.shape[0]
        both = self.gc_cross(torch.cat([e_img, e_txt], 0), cross)
        parts = [self.gc_img(e_img, adj), both[:n], self.gc_txt(e_txt, adj), both[n:]]
        return torch.cat([head(z) for head, z in zip(self.heads, parts)], 1), a


class TextStudent(nn.Module):
    """``StudentTxtNet``: embedding Linear(d_T, 300), then Linear-BN-tanh layers to K."""

    def __init__(self, d_txt: int, bits: int, p: dict[str, Any]):
        super().__init__()
        self.embedding = nn.Linear(d_txt, p["embedding_dim"])
        self.body = tanh_mlp(p["embedding_dim"], [*p["text_hidden"], bits])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.embedding(x))


@register
class HMAH(Method):
    impl = "hmah"
    venue = "TMM'22"
    uses_index = True
    manual_optimization = True
    defaults = {
        "epochs": 40, "teacher_epochs": 20, "batch_size": 1024, "lr": 1e-4, "teacher_lr": 1e-4,
        "dropout": 0.5, "similarity_weight": 100.0, "adversarial_weight": 1.0, "sign_weight": 0.001,
        "generator_steps": 5, "student_sign_weight": 1.0, "student_similarity_weight": 1.0,
        "emb_lr_factor": 10.0, "fusion_lr_factor": 0.01, "freeze_bn_epoch": 5,
        "teacher_hidden": [2048, 1024], "common_dim": 512, "embedding_dim": 300, "teacher_text_hidden": [512],
        "hidden": [2048, 512], "text_hidden": [512],
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        if bits % 4:
            raise ValueError(f"hmah: bits must be a multiple of 4 (four teacher heads of bits/4), got {bits}")
        p = self.params
        if p["generator_steps"] < 1:
            raise ValueError(f"hmah: generator_steps must be >= 1, got {p['generator_steps']}")
        d_img, d_txt = in_dims
        self.teacher = Teacher(d_img, d_txt, bits, p)
        self.discriminator = nn.Sequential(nn.Linear(bits, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                                           nn.Linear(32, 1))
        self.encoders = nn.ModuleList([tanh_mlp(d_img, [*p["hidden"], bits]), TextStudent(d_txt, bits, p)])
        self.fusion = nn.Parameter(torch.full((1, bits), 0.5))
        self.register_buffer("teacher_codes", torch.zeros(0, bits))

    # ------------------------------------------------------------------ stages
    def student_epochs(self) -> int:
        return int(self.params["epochs"]) - int(self.params["teacher_epochs"])

    def stages(self) -> list[Stage]:
        p = self.params
        if p["teacher_epochs"] < 0 or self.student_epochs() < 1:
            raise ValueError(f"hmah: epochs ({p['epochs']}) is the whole run, teacher_epochs ({p['teacher_epochs']}) "
                             "of it for the teacher; it must leave at least one student epoch")
        lr = p["lr"]
        return [
            Stage(name="teacher", epochs=int(p["teacher_epochs"]), select_best=False, optimizers={
                "teacher": OptimizerSpec(lr=p["teacher_lr"], parameters=lambda m: m.teacher.parameters()),
                "discriminator": OptimizerSpec(lr=p["teacher_lr"], parameters=lambda m: m.discriminator.parameters()),
            }),
            Stage(name="students", epochs=self.student_epochs(), optimizers={
                "students": OptimizerSpec(parameters=lambda m: m.student_parameter_groups(lr)),
            }),
        ]

    def student_parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """The code's one Adam: text body and image student at ``lr``, text embedding at ``emb_lr_factor`` x,
        fusion weights at ``fusion_lr_factor`` x."""
        txt = self.encoders[1]
        return [{"params": list(txt.body.parameters())},
                {"params": list(txt.embedding.parameters()), "lr": lr * self.params["emb_lr_factor"]},
                {"params": list(self.encoders[0].parameters())},
                {"params": [self.fusion], "lr": lr * self.params["fusion_lr_factor"]}]

    def on_train_start(self, ctx: TrainContext) -> None:
        xs = ctx.xs
        self.teacher_codes = torch.zeros(xs[0].shape[0], self.bits, device=xs[0].device)

    @torch.no_grad()
    def compute_teacher_codes(self, xs: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """Continuous teacher codes of the training split: eval mode, original order, consecutive batches of
        ``batch_size``, each with its own label graph (``train_student``'s preprocessing)."""
        was_training = self.teacher.training
        self.teacher.eval()
        size = int(self.params["batch_size"])
        parts = [self.teacher(xs[0][s : s + size], xs[1][s : s + size], labels[s : s + size])[0]
                 for s in range(0, xs[0].shape[0], size)]
        self.teacher.train(was_training)
        return torch.cat(parts)

    def on_stage_start(self, stage: Stage, ctx: TrainContext) -> None:
        xs, labels = ctx.xs, ctx.labels
        if stage.name == "students":
            self.teacher_codes = self.compute_teacher_codes(xs, labels)
            self.teacher.requires_grad_(False)
            self.discriminator.requires_grad_(False)

    def on_epoch_start(self, ctx: TrainContext) -> None:
        epoch = ctx.epoch
        # the loop has just called train(); from student epoch freeze_bn_epoch on, BN uses running statistics
        if epoch - int(self.params["teacher_epochs"]) >= int(self.params["freeze_bn_epoch"]):
            for module in self.encoders.modules():
                if isinstance(module, nn.BatchNorm1d):
                    module.eval()

    # ------------------------------------------------------------------ codes
    def fuse(self, h_img: torch.Tensor, h_txt: torch.Tensor) -> torch.Tensor:
        return h_img * self.fusion + h_txt * (1.0 - self.fusion)

    def encode_fused(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """``f = w * h_I + (1 - w) * h_T``: the official code's database code (see the module docstring)."""
        return self.fuse(*self.encode(xs))

    def encode_joint(self, xs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"fused": self.encode_fused(xs)}

    # ------------------------------------------------------------------ losses
    def teacher_generator_loss(self, xs: list[torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        p = self.params
        h, a = self.teacher(xs[0], xs[1], labels)
        adv = lsgan_generator_loss(self.discriminator(h))
        sign = squared_quantization(h)
        sim = cosine_gram_regression(h, None, a)
        loss = p["adversarial_weight"] * adv + p["sign_weight"] * sign + p["similarity_weight"] * sim
        return loss, {"gen": adv.detach(), "sign": sign.detach(), "sim": sim.detach()}

    def student_loss(self, xs: list[torch.Tensor], teacher: torch.Tensor) -> tuple[torch.Tensor, dict]:
        p = self.params
        h_img, h_txt = self.encode(xs)
        fused = self.fuse(h_img, h_txt)
        half = self.bits // 2
        b_loss = binary_code_distillation([h_img, h_txt, fused], teacher)
        g_all = cosine_gram(teacher)
        s_loss = (cosine_gram_regression(h_img, None, cosine_gram(teacher[:, :half]))
                  + cosine_gram_regression(h_txt, None, cosine_gram(teacher[:, half:]))
                  + cosine_gram_regression(fused, None, g_all)
                  + cosine_gram_regression(h_img, h_txt, g_all))
        loss = p["student_sign_weight"] * b_loss + p["student_similarity_weight"] * s_loss
        return loss, {"stu_b": b_loss.detach(), "stu_s": s_loss.detach()}

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int,
                      index: torch.Tensor | None = None, step: Any = None) -> StepOutput:
        if step is None:
            raise ValueError("hmah: manual optimisation; training_step needs step= (the training loop passes it)")
        if epoch < int(self.params["teacher_epochs"]):
            h, _ = self.teacher(xs[0], xs[1], labels)
            real = torch.randn_like(h)
            d_loss = lsgan_discriminator_loss(self.discriminator(real), self.discriminator(h.detach()))
            step(d_loss, "discriminator")
            for _ in range(int(self.params["generator_steps"])):
                g_loss, terms = self.teacher_generator_loss(xs, labels)
                step(g_loss, "teacher")
            return StepOutput(loss=(d_loss + g_loss).detach(), terms={"disc": d_loss.detach(), **terms})
        if index is None:
            raise ValueError("hmah: the student stage needs index= (rows of the batch in the training split)")
        loss, terms = self.student_loss(xs, self.teacher_codes[index])
        step(loss, "students")
        return StepOutput(loss=loss.detach(), terms=terms)
