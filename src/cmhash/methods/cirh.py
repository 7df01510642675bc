r"""CIRH: Correlation-Identity Reconstruction Hashing, unsupervised (Zhu, Wu, Li, Zhang, Guan, Shen: "Work Together:
Correlation-Identity Reconstruction Hashing for Unsupervised Cross-Modal Retrieval", IEEE TKDE 2022,
doi 10.1109/TKDE.2022.3218656).

Official code: github.com/XizeWu/CIRH @ 0f6439d3cad0240ea4a9924ff168aa2cef3b3b1e (2021-12-02; the code came in one
upload, b6d16f3). Read: ``models.py`` (``MyNet`` = the graph network that produces the training codes, ``Img_Net``
/ ``Txt_Net`` = the hash functions), ``my_opt.py`` (``PCIRH``: ``cal_similarity``, ``NN_select``,
``train_method`` + ``loss_method`` = the code-learning pass, ``train_Hashfunc`` = the hash-function pass),
``main_mir.py`` / ``main_nus.py`` / ``main_coco.py`` (defaults, epoch loop), ``load_data.py``, ``utils.py``.
Paper: only the abstract was found (no full text); everything below is from the code, so "paper" defaults
cannot be told apart from code defaults except where the code is plainly a bug (item 2 of the departures).

Labels are ignored (``uses_labels = False``): codes do not depend on the noise rate for a fixed seed.

**Whole-training-set similarity** (once, :func:`~cmhash.losses.similarity.collaborated_graph_similarity`), from the
row-L2-normalised training features ``X_I, X_T`` (``G`` = cosine gram)::

    S1 = a1 G(X_I) + (1 - a1) G(X_T);   per row the K smallest entries of S1 set to 0 (rows only: S1 asymmetric)
    S2 = sym(2 / (1 + exp(-S1)) - 1 + I),  sym(M) = (M + M^T) / 2;   S = a2 S1 + (1 - a2) S2

and per mini-batch ``S_B = S[idx, idx]``.

**Code network** ("teacher", ``MyNet``; never used at test time), on the batch's RAW features mixed with two of
their batch neighbours: with ``n3(i), n4(i)`` the columns of the 3rd and 4th largest entries of row ``i`` of ``S_B``
(the largest is ``i`` itself; the 2nd is skipped, as in ``NN_select``), ``x~_i = 0.7 x_i + 0.2 x_n3(i) + 0.1 x_n4(i)``
for both modalities with the same neighbours. Then (BN = BatchNorm1d, W = width 512, L = bits)::

    V_I = l2norm(ReLU(BN(Lin(x~_I))))           V_T likewise
    G_I = ReLU(BN(S_B Lin(V_I)))                G_T likewise (intra-modal GCN, raw S_B, no degree norm)
    U = BN([[S_B, I], [I, S_B]] Lin([V_I; V_T]))   (2B rows);   J = ReLU(U[:B] + U[B:])   (cross-modal GCN)
    H_J = BN(Lin(J));  H_I = BN(Lin([G_I, J]));  H_T = BN(Lin([J, G_T]));  H = tanh(BN(Lin([H_I, H_J, H_T])))
    D_I = BN(Lin(ReLU(BN(Lin(H + tanh H_I)))))  D_T likewise (decoders back to x~_I, x~_T)

    L_code = lambda1 [mse(D_I, x~_I) + mse(D_T, x~_T)]                              (loss_CCR)
           + lambda2 [mse(G(H_I), S_B) + mse(G(H_T), S_B) + mse(G(H), S_B)]        (loss_ACR)
           + mse(H, sign H)                                                       (loss_DIS)

(``mse`` = mean over all entries; :func:`~cmhash.losses.reconstruction.feature_reconstruction`,
:func:`~cmhash.losses.similarity.cosine_gram_regression`, :func:`~cmhash.losses.quantization.squared_quantization`).

**Hash functions** ("students", the encoders evaluated): ``h_I = tanh(Lin(Dropout_0.3(ReLU(Lin(x^_I)))))`` with
``x^`` the row-L2-normalised features, hidden width 4096 for the image net and ``d_T`` (the text input width) for
the text net, the output layer's weight drawn from N(0, 1). With ``b = sign(H)`` of the same samples::

    L_hash = mse(h_I, b) + mse(h_T, b) + mse(h_I, h_T)                                  (loss_f1)
           + beta [mse(G(h_I, h_T), S_c) + mse(G(h_I), S_c) + mse(G(h_T), S_c)]           (beta loss_f2)

(:func:`~cmhash.losses.distillation.binary_code_distillation`, :func:`~cmhash.losses.distillation.code_consistency`).

**Schedule.** The official loop alternates inside every epoch: one pass of code-network steps over the shuffled
training batches (storing ``b = sign(H)`` of each batch, computed before that batch's step), then one pass of
hash-function steps over the same batches in the same order with those stored codes. Because the code network's
loss never involves the hash functions, and each hash-function batch uses exactly the codes its batch got in the
first pass, this equals taking both steps on each batch in turn, which is what we do: one stage, both losses of a
batch summed and back-propagated once, two Adam optimisers (``teacher`` over ``MyNet`` at ``teacher_lr``,
``hash_functions`` over both hash nets at ``lr``; the parameter sets are disjoint, so each gets exactly the
gradient of its own loss). So there are no separate teacher / student epoch counts: ``epochs`` is the official
``NUM_EPOCH`` (each epoch = one code pass + one hash-function pass). The code network trains during the epochs
that select the best validation epoch, as in the official code; there is no teacher-only stage to skip.

**Defaults** = ``main_mir.py`` (MIRFlickr): ``epochs`` 60, ``batch_size`` 512, ``teacher_lr`` 1e-3 (LR_MyNet),
``lr`` 1e-4 (LR_IMG = LR_TXT), ``lambda1`` 10, ``lambda2`` 1, ``beta`` 0.01, ``a1`` 0.6, ``a2`` 0.6, K 3000, dropout
0.3. Other published settings: NUS-WIDE a1 = a2 = 0.5, K 3300, teacher_lr 1e-4, 120 epochs; COCO a1 0.1, a2 0.3,
lr 5e-4, 100 epochs. Adam, default betas, no weight decay, no schedule, no clipping.

**Departures from the official code** (defaults follow the code except item 2):

1. ``K`` (entries zeroed per row of ``S1``) is an absolute count in the code (3000 / 3300 / 3000), which needs a
   training set larger than K. Ours: ``zeroed_fraction`` (default 0.6) of the training size unless ``zeroed`` >= 0
   gives the count. 0.6 = 3000 / 5000 assumes the 5000-pair MIRFlickr training set of this line of work (DJSRH,
   DGCPN; the size is not in CIRH's code); ``zeroed: 3000`` reproduces the code on a 5000-row training set.
2. The hash-function similarity target: the code slices ``S_c`` by the batch's POSITION in the epoch
   (``S_cmm[k*512:(k+1)*512]`` of the original order) while the batch holds the shuffled samples, so ``S_c`` is
   unrelated to the batch except on its diagonal -- an indexing bug. Default ``student_target: batch`` uses the
   batch's own block ``S[idx, idx]``; ``student_target: positional`` reproduces the code.
3. Evaluation (all methods alike): best epoch by validation MAP@all of both directions, every epoch; the code
   evaluates mAP@50 on the test queries against the database every 10 epochs and keeps the best test checkpoint.
4. Batching: the shared loop drops a 1-sample tail batch (BatchNorm cannot run on it); the code keeps it. A batch
   of fewer than 4 rows (only a tail) takes the neighbours at the deepest ranks it has (``NN_select`` would fail).
5. ``sign``: ours maps 0 to +1 (the package convention); ``torch.sign`` gives 0 (measure-zero for tanh outputs).
6. The similarity matrix ``S`` (N x N) is derived state, rebuilt from the training split in ``on_train_start``
   (also on resume), not a checkpointed buffer.
7. Widths are parameters (``teacher_width`` 512, ``hidden`` [4096] for the image net, ``text_hidden`` [0] = the text
   input width); a longer ``hidden`` list stacks Linear-ReLU blocks, the dropout stays before the output layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..losses.distillation import binary_code_distillation, code_consistency
from ..losses.quantization import squared_quantization
from ..losses.reconstruction import feature_reconstruction
from ..losses.similarity import collaborated_graph_similarity, cosine_gram_regression
from .base import Method, OptimizerSpec, Stage, StepOutput, TrainContext, register

#: ``NN_select`` / ``train_method``: weights of the sample and of its 3rd and 4th most similar batch neighbours.
MIX_WEIGHTS = (0.7, 0.2, 0.1)


def neighbour_mix(xs: list[torch.Tensor], s_batch: torch.Tensor) -> list[torch.Tensor]:
    """``x~_i = 0.7 x_i + 0.2 x_n3(i) + 0.1 x_n4(i)``, ``n_r(i)`` = column of the r-th largest entry of row ``i`` of
    ``s_batch`` (the same neighbours for every modality; ranks clipped to the batch size for tiny batches)."""
    n = s_batch.shape[0]
    order = s_batch.argsort(dim=1, stable=True)  # ascending, as torch.sort in NN_select
    third, fourth = order[:, -min(3, n)], order[:, -min(4, n)]
    w0, w3, w4 = MIX_WEIGHTS
    return [w0 * x + w3 * x[third] + w4 * x[fourth] for x in xs]


class CodeNetwork(nn.Module):
    """CIRH's ``MyNet``: intra- and cross-modal GCNs over the batch similarity, fused code ``H``, decoders."""

    def __init__(self, d_img: int, d_txt: int, bits: int, width: int):
        super().__init__()

        def block(d_in: int, d_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out), nn.ReLU())

        def decoder(d_out: int) -> nn.Sequential:
            return nn.Sequential(block(bits, width), nn.Linear(width, d_out), nn.BatchNorm1d(d_out))

        self.enc_img, self.enc_txt = block(d_img, width), block(d_txt, width)
        self.gcn_img, self.gcn_txt, self.gcn_cross = (nn.Linear(width, width) for _ in range(3))
        self.bn_img, self.bn_txt, self.bn_cross = (nn.BatchNorm1d(width) for _ in range(3))
        self.head_joint = nn.Linear(width, bits)
        self.head_img, self.head_txt = nn.Linear(2 * width, bits), nn.Linear(2 * width, bits)
        self.head_fused = nn.Linear(3 * bits, bits)
        self.bn_h_img, self.bn_h_txt, self.bn_h_joint, self.bn_h = (nn.BatchNorm1d(bits) for _ in range(4))
        self.dec_img, self.dec_txt = decoder(d_img), decoder(d_txt)

    def forward(self, x_img: torch.Tensor, x_txt: torch.Tensor, adj: torch.Tensor) -> dict[str, torch.Tensor]:
        relu = torch.relu
        v_img = nn.functional.normalize(self.enc_img(x_img), dim=1)
        v_txt = nn.functional.normalize(self.enc_txt(x_txt), dim=1)
        g_img = relu(self.bn_img(adj @ self.gcn_img(v_img)))
        g_txt = relu(self.bn_txt(adj @ self.gcn_txt(v_txt)))
        n = adj.shape[0]
        eye = torch.eye(n, dtype=adj.dtype, device=adj.device)
        cross_adj = torch.cat([torch.cat([adj, eye], 1), torch.cat([eye, adj], 1)], 0)
        u = self.bn_cross(cross_adj @ self.gcn_cross(torch.cat([v_img, v_txt], 0)))
        joint = relu(u[:n] + u[n:])
        h_joint = self.bn_h_joint(self.head_joint(joint))
        h_img = self.bn_h_img(self.head_img(torch.cat([g_img, joint], 1)))
        h_txt = self.bn_h_txt(self.head_txt(torch.cat([joint, g_txt], 1)))
        h = torch.tanh(self.bn_h(self.head_fused(torch.cat([h_img, h_joint, h_txt], 1))))
        return {"h_img": h_img, "h_txt": h_txt, "h": h,
                "dec_img": self.dec_img(h + torch.tanh(h_img)), "dec_txt": self.dec_txt(h + torch.tanh(h_txt))}


class HashFunction(nn.Module):
    """``Img_Net`` / ``Txt_Net``: (Linear-ReLU)+ -> Dropout -> Linear (weight ~ N(0, 1)) -> tanh, on L2-normalised
    inputs."""

    def __init__(self, d_in: int, hidden: list[int], bits: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        d = d_in
        for width in hidden:
            width = d_in if width == 0 else width
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.body = nn.Sequential(*layers, nn.Dropout(dropout))
        self.out = nn.Linear(d, bits)
        nn.init.normal_(self.out.weight, mean=0.0, std=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(self.body(nn.functional.normalize(x, dim=1))))


@register
class CIRH(Method):
    impl = "cirh"
    venue = "TKDE'22"
    uses_labels = False
    uses_index = True
    defaults = {
        "epochs": 60, "batch_size": 512, "lr": 1e-4, "teacher_lr": 1e-3,
        "lambda1": 10.0, "lambda2": 1.0, "beta": 0.01, "a1": 0.6, "a2": 0.6,
        "zeroed_fraction": 0.6, "zeroed": -1,
        "teacher_width": 512, "hidden": [4096], "text_hidden": [0], "dropout": 0.3,
        "student_target": "batch",
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        if p["student_target"] not in ("batch", "positional"):
            raise ValueError(f"cirh: student_target must be 'batch' or 'positional', got {p['student_target']!r}")
        if not 0.0 <= p["zeroed_fraction"] < 1.0:
            raise ValueError(f"cirh: zeroed_fraction must be in [0, 1), got {p['zeroed_fraction']}")
        d_img, d_txt = in_dims
        self.teacher = CodeNetwork(d_img, d_txt, bits, p["teacher_width"])
        self.encoders = nn.ModuleList([HashFunction(d_img, p["hidden"], bits, p["dropout"]),
                                       HashFunction(d_txt, p["text_hidden"], bits, p["dropout"])])
        self.similarity: torch.Tensor | None = None  # N x N, derived in on_train_start (not checkpointed)
        self._batch_number = 0

    def zeroed_count(self, n: int) -> int:
        """``K`` for a training split of ``n`` rows (``zeroed`` if >= 0, else ``round(zeroed_fraction n)``)."""
        k = self.params["zeroed"] if self.params["zeroed"] >= 0 else round(self.params["zeroed_fraction"] * n)
        if k >= n:
            raise ValueError(f"cirh: zeroed={k} entries per row, but the training split has only {n} rows; "
                             "use a smaller `zeroed` or set zeroed: -1 and zeroed_fraction")
        return int(k)

    def on_train_start(self, ctx: TrainContext) -> None:
        xs = ctx.xs
        p = self.params
        normed = [nn.functional.normalize(x, dim=1) for x in xs]
        self.similarity = collaborated_graph_similarity(normed[0], normed[1], p["a1"], p["a2"],
                                                        self.zeroed_count(xs[0].shape[0]))

    def stages(self) -> list[Stage]:
        return [Stage(name="train", optimizers={
            "teacher": OptimizerSpec(lr=self.params["teacher_lr"], parameters=lambda m: m.teacher.parameters()),
            "hash_functions": OptimizerSpec(parameters=lambda m: m.encoders.parameters()),
        })]

    def on_epoch_start(self, ctx: TrainContext) -> None:
        self._batch_number = 0

    def student_similarity(self, index: torch.Tensor) -> torch.Tensor:
        """The hash functions' target: the batch's block of ``S`` (``batch``) or the code's positional block."""
        if self.params["student_target"] == "batch":
            return self.similarity[index][:, index]
        start = self._batch_number * int(self.params["batch_size"])
        return self.similarity[start : start + index.numel(), start : start + index.numel()]

    def code_loss(self, xs: list[torch.Tensor], s_batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """``(L_code, H, terms)`` of the code network on the batch's neighbour-mixed raw features."""
        p = self.params
        mixed = neighbour_mix(xs, s_batch)
        out = self.teacher(mixed[0], mixed[1], s_batch)
        rec = feature_reconstruction([out["dec_img"], out["dec_txt"]], mixed)
        sim = sum(cosine_gram_regression(out[k], None, s_batch) for k in ("h_img", "h_txt", "h"))
        quant = squared_quantization(out["h"])
        loss = p["lambda1"] * rec + p["lambda2"] * sim + quant
        return loss, out["h"], {"rec": rec.detach(), "sim": sim.detach(), "quant": quant.detach(), "code": loss.detach()}

    def hash_loss(self, xs: list[torch.Tensor], h: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``L_hash`` of the hash functions: regress ``b = sign(H)`` (detached), agree, preserve ``target``."""
        codes = self.encode(xs)
        regress = binary_code_distillation(codes, h)
        ident = code_consistency(codes[0], codes[1])
        sim = (cosine_gram_regression(codes[0], codes[1], target) + cosine_gram_regression(codes[0], None, target)
               + cosine_gram_regression(codes[1], None, target))
        loss = regress + ident + self.params["beta"] * sim
        return loss, {"regress": regress.detach(), "id": ident.detach(), "hash_sim": sim.detach(),
                      "hash": loss.detach()}

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None
    ) -> StepOutput:
        if self.similarity is None:
            raise RuntimeError("cirh: on_train_start must run before training_step (it builds the similarity S)")
        if index is None:
            raise ValueError("cirh: training_step needs index= (rows of the batch in the training split)")
        code_loss, h, code_terms = self.code_loss(xs, self.similarity[index][:, index])
        # b = sign(H) of this batch, computed before this batch's step (as the code stores it in train_method)
        hash_loss, hash_terms = self.hash_loss(xs, h, self.student_similarity(index))
        self._batch_number += 1
        return StepOutput(loss=code_loss + hash_loss, terms={**code_terms, **hash_terms})
