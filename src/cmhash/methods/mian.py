r"""MIAN: Modality-Invariant Asymmetric Networks for Cross-Modal Hashing (Zhang, Luo, Zhu, Lu, Shen; TKDE 2023,
35(5):5091-5104; public code E-Galois/MIAN, read for facts, not copied).

The paper's abstract names three parts: an intra-modal asymmetric network (query-vs-all pairwise similarities
of one modality, "probabilistic asymmetric learning"), an inter-modal asymmetric network (inner products
between two different hash embeddings) and a modality alignment network (a bottleneck that maximises the
conditional information between the modalities). The published code trains three networks -- a label net
``h^L = tanh(W y)`` (one linear map), an image net and a text net -- and keeps every training sample's latest
code of each (``U^1, U^2, U^L``, ``N_train x K``, started from N(0, 1)), so a mini-batch is compared with the
whole training set (asymmetric).

Per batch (``B`` rows ``idx``; ``S_ji = 1[y_j . y_i > 0]`` between ALL stored training labels and the batch,
the labels being the noisy ones) the batch's rows of ``U`` are first overwritten with the current (detached)
codes (as the code does), then, with codes ``h = tanh(.)`` in ``[-1, 1]^K``, the pairwise negative
log-likelihood

    P(U, h) = 1/B sum_{j, i} softplus(theta_ji) - S_ji theta_ji,      theta = U h^T / 2

and the target codes ``b = sign(alpha_v U^1 + alpha_t U^2 + eta U^L)`` (batch rows)::

    L = P(U^1, h^L) + P(U^2, h^L)                                        (label net)
      + P(U^L, h^1) + P(U^1, h^1) + P(U^L, h^2) + P(U^2, h^2)            (inter + intra, image and text)
      + 1/B [eta |b - h^L|^2 + alpha_v |b - h^1|^2 + alpha_t |b - h^2|^2]   (quantisation)
      + gamma * mean_i sum_m |y_i - yhat_i^m|^2                          (label prediction, sigmoid heads)
      + mi * 1/B [ sum BCE(g(f^1), sigmoid(stopgrad f^2)) + sigma sum_i |mu_i^1|^2 / 2 ]   (alignment)

``f^m = relu(mu^m)`` is each branch's last hidden feature (``mu^m`` its pre-activation), ``g`` a linear map
predicting the text feature from the image feature (the modality alignment network). Every term is a sum
over its elements divided by the batch size, which keeps the published code's balance between the terms
(it sums); the weights are the code's: ``alpha_v`` 0.01, ``alpha_t`` 0.99, ``eta`` 100, ``gamma`` 0.01,
``mi`` 50, ``sigma`` 0.01.

Hand check of ``P`` (:func:`asymmetric_pair_loss`): ``U = [[2,0],[0,2],[2,0]]``, ``h = [[1,0]]``,
``S = [[1],[0],[1]]``: ``theta = [1, 0, 1]``, so ``P = 2 (log(1 + e) - 1) + log 2`` (one batch row).

Departures and guesses:

- The code squares ``S theta - softplus(theta)`` (an MSE between them); we use the negative log-likelihood
  that "probabilistic" names (as DCMH).
- The code alternates the three networks (label net 10, text and image nets 15 passes per epoch, each with its
  own learning-rate schedule and early stop); here all three are trained jointly by the shared loop. The
  joint system starts slowly (the label net's codes must grow before the targets ``b`` mean anything):
  ``per_dataset.mfeat`` uses 60 epochs; a learning rate above ~1e-3 collapses every code to one corner.
- The code's variational bottleneck samples ``f = relu(mu + sigma eps)``; we use ``mu`` (deterministic, so a
  step's loss is reproducible) and the KL term reduces to ``|mu|^2 / 2``.
- PyTorch's default initialisation of the heads (the code's N(0, 0.01) leaves every code near 0, where
  the pairwise gradients vanish, for longer than our training lasts).
- Backbones: MLPs on the given features (RSHNL's tables freeze the original backbones anyway).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..losses.similarity import label_similarity
from ..nets import mlp
from .base import Method, StepOutput, register


def asymmetric_pair_loss(stored: torch.Tensor, codes: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
    """``1/B sum_{j,i} softplus(theta_ji) - S_ji theta_ji`` with ``theta = stored @ codes.T / 2`` (``N x B``)."""
    theta = 0.5 * stored @ codes.T
    return (F.softplus(theta) - sim * theta).sum() / codes.shape[0]


def bottleneck_alignment_loss(
    predicted: torch.Tensor, target_feature: torch.Tensor, mu: torch.Tensor, sigma: float
) -> torch.Tensor:
    """``1/B sum [BCE_logits(predicted, sigmoid(stopgrad target))] + sigma/B sum_i |mu_i|^2 / 2``."""
    bce = F.binary_cross_entropy_with_logits(predicted, torch.sigmoid(target_feature.detach()), reduction="sum")
    return (bce + sigma * 0.5 * mu.pow(2).sum()) / predicted.shape[0]


class _Branch(nn.Module):
    """MLP whose last layer gives ``mu`` (pre-ReLU), feature ``f = relu(mu)``; heads on ``f``: hash code
    ``tanh(W f + b)`` and label prediction ``sigmoid(V f + c)``; heads initialised N(0, 0.01) as the code."""

    def __init__(self, in_dim: int, hidden: list[int], bits: int, n_classes: int):
        super().__init__()
        if not hidden:
            raise ValueError("mian: 'hidden' needs at least one layer (its last width is the semantic feature)")
        self.trunk = mlp(in_dim, hidden[:-1], hidden[-1])
        self.hash = nn.Linear(hidden[-1], bits)
        self.label = nn.Linear(hidden[-1], n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mu = self.trunk(x)
        f = torch.relu(mu)
        return mu, f, torch.tanh(self.hash(f)), torch.sigmoid(self.label(f))


@register
class MIAN(Method):
    impl = "mian"
    venue = "TKDE'23"
    uses_index = True
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": [4096, 4096],
        "alpha_v": 0.01,
        "alpha_t": 0.99,
        "eta": 100.0,
        "gamma": 0.01,
        "mi": 50.0,
        "sigma": 0.01,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        self.branches = nn.ModuleList(_Branch(d, list(p["hidden"]), bits, n_classes) for d in in_dims)
        self.label_net = nn.Linear(n_classes, bits, bias=False)  # the code's label net: one linear map
        width = int(p["hidden"][-1])
        self.predict_text = nn.Linear(width, width)  # modality alignment: text feature from the image's
        for name in ("stored_image", "stored_text", "stored_label"):
            self.register_buffer(name, torch.zeros(0, bits))
        self.register_buffer("train_labels", torch.zeros(0, n_classes))

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [branch(x)[2] for branch, x in zip(self.branches, xs)]

    @torch.no_grad()
    def on_train_start(
        self, xs: list[torch.Tensor], labels: torch.Tensor, clean_labels: torch.Tensor | None = None
    ) -> None:
        n, dev = labels.shape[0], labels.device
        self.stored_image, self.stored_text, self.stored_label = (
            torch.randn(n, self.bits, device=dev) for _ in range(3))  # the code's N(0, 1) start
        self.train_labels = labels.to(torch.float32).clone()

    def targets(self, index: torch.Tensor) -> torch.Tensor:
        """``sign(alpha_v U^1 + alpha_t U^2 + eta U^L)`` of the rows ``index``."""
        p = self.params
        mix = (p["alpha_v"] * self.stored_image[index] + p["alpha_t"] * self.stored_text[index]
               + p["eta"] * self.stored_label[index])
        return torch.where(mix >= 0, 1.0, -1.0)

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None
    ) -> StepOutput:
        if index is None:
            raise ValueError("mian: training_step needs index= (rows of the batch in the training split)")
        p = self.params
        y = labels.to(torch.float32)
        (mu1, f1, h1, yhat1), (_, f2, h2, yhat2) = (branch(x) for branch, x in zip(self.branches, xs))
        hl = torch.tanh(self.label_net(y))
        # the batch's rows of the stored codes hold the current codes before the comparison (as the code)
        self.stored_image[index] = h1.detach()
        self.stored_text[index] = h2.detach()
        self.stored_label[index] = hl.detach()
        sim = label_similarity(self.train_labels, y)
        b = self.targets(index)

        def pair(stored: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
            return asymmetric_pair_loss(stored, h, sim)

        def quant(h: torch.Tensor) -> torch.Tensor:
            return (b - h).pow(2).sum() / h.shape[0]

        pair_label = pair(self.stored_image, hl) + pair(self.stored_text, hl)
        pair_image = pair(self.stored_label, h1) + pair(self.stored_image, h1)
        pair_text = pair(self.stored_label, h2) + pair(self.stored_text, h2)
        q = p["eta"] * quant(hl) + p["alpha_v"] * quant(h1) + p["alpha_t"] * quant(h2)
        lab = (y - yhat1).pow(2).sum(dim=1).mean() + (y - yhat2).pow(2).sum(dim=1).mean()
        align = bottleneck_alignment_loss(self.predict_text(f1), f2, mu1, p["sigma"])
        loss = pair_label + pair_image + pair_text + q + p["gamma"] * lab + p["mi"] * align
        return StepOutput(loss=loss, terms={
            "pair_label": pair_label.detach(),
            "pair_image": pair_image.detach(),
            "pair_text": pair_text.detach(),
            "quant": q.detach(),
            "label": lab.detach(),
            "align": align.detach(),
        })
