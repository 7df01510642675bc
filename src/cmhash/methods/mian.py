r"""MIAN: Modality-Invariant Asymmetric Networks for Cross-Modal Hashing (Zhang, Luo, Zhu, Lu, Shen; IEEE TKDE
35(5):5091-5104, 2023, doi 10.1109/TKDE.2022.3144352).

Sources. Paper: only the abstract could be read (the stored corpora hold no full text; searched the title, the
method name and its key phrases): an intra-modal asymmetric network (query-vs-all pairwise similarities of one
modality, "probabilistic asymmetric learning"), an inter-modal asymmetric network (inner products between two
different hash embeddings) and a modality alignment network that distils redundancy-free visual features and
"maximizes the conditional bottleneck information between different modalities". Official code:
E-Galois/MIAN @ ``eea7e79`` (2022-04-06; code from 2022-03-04). Files read: ``MICH.py`` (class ``MICH``: the three
losses ``train_lab_net``/``train_txt_net``/``train_img_net``, the alternating loop, ``generate_code``, the unused
``calc_labnet_loss``/``calc_loss``), ``tnet.py`` (``LabelNet``, ``ImageNet``, ``TextNet``, initialisation),
``setting.py`` (hyperparameters, learning-rate tables, split), ``ops.py`` (``calc_neighbor``), ``load_data.py``,
``Main.py``, ``utils/calc_hammingranking.py``, README.

Model. A label net ``h^L = W y`` (one linear map, no bias; the code's ``Conv2d(1, K, (1, C))``; no tanh in the
code, ``label_tanh: true`` adds one), an image net and a text net: per modality an MLP on the given features
(ours; the code fine-tunes VGG-11 and a multi-scale text CNN with LRN) whose last layer gives the semantic
feature, with heads on it: hash code ``h^m = tanh(V^m f^m)``, label prediction ``yhat^m = sigmoid(Q^m f^m)``.
Image: the last layer gives ``(mu, s)`` (mean and log-variance, the code's ``Linear(25088, 2d)`` split) and
``f^1 = relu(mu + exp(s/2) eps)``, ``eps ~ N(0, I)`` (``bottleneck: sampled``); text: ``f^2 = relu(.)``.
``g(f^1) = G f^1 + c`` predicts the text feature (the alignment head, ``cross_feature``).

Stored whole-training-set state (the asymmetric part; buffers, so checkpoints carry them): the latest codes
``U^1`` (image, the code's ``F``), ``U^2`` (text, ``G``), ``U^L`` (label net, ``H``), ``N_train x K``, and the latest
text features ``T`` (``FG``, ``N_train x d``), all started N(0, 1) as the code; every step first overwrites the
batch's rows with the current (detached) values, as the code does. Targets
``B = sign(alpha_v U^1 + alpha_t U^2 + eta U^L)`` (``sign(0) = 0``).

Per batch (rows ``idx``, ``S_ji = 1[y_j . y_i > 0]`` between ALL stored training labels -- the noisy ones -- and
the batch, ``b = B[idx]``), every term a sum divided by the batch size (the code sums)::

    P(U, h) = 1/B sum_{j,i} softplus(theta_ji) - S_ji theta_ji,  theta = U h^T / 2      (pair_form: nll)
    P(U, h) = 1/B sum_{j,i} (0.999 S_ji theta_ji - softplus(theta_ji))^2                 (pair_form: squared)
    L_label = P(U^1, h^L) + P(U^2, h^L) + eta/B |b - h^L|^2
    L_text  = P(U^L, h^2) + P(U^2, h^2) + alpha_t/B |b - h^2|^2 + gamma/B |y - yhat^2|^2
    L_image = P(U^L, h^1) + P(U^1, h^1) + alpha_v/B |b - h^1|^2 + gamma/B |y - yhat^1|^2
              + mi/B [ sum BCE_logits(g(f^1), sigmoid(stopgrad t)) + sigma KL ],
              KL = -1/2 sum (1 + s - mu^2 - exp(s))                         (to N(0, I); ``s = 0`` in ``mean`` mode)
    L = L_label + L_text + L_image

with ``t`` the batch's text features (``align_target``). Weights (the code's): ``alpha_v`` 0.01, ``alpha_t`` 0.99,
``eta`` 100, ``gamma`` 0.01, ``mi`` 50, ``sigma`` 0.01. Terms: :func:`cmhash.losses.similarity.asymmetric_pair_nll`,
:func:`cmhash.losses.similarity.asymmetric_pair_squared`, :func:`cmhash.losses.bottleneck.bottleneck_alignment_loss`.

Hand check of ``P`` (nll): ``U = [[2,0],[0,2],[2,0]]``, ``h = [[1,0]]``, ``S = [[1],[0],[1]]``: ``theta = [1, 0, 1]``,
so ``P = 2 (log(1 + e) - 1) + log 2``; squared (``S`` already scaled): ``2 (1 - log(1 + e))^2 + (log 2)^2``.

Paper vs code, and what the defaults follow:

- ``pair_form``: the code trains with the squared difference of ``S theta`` and ``softplus(theta)`` (``S`` scaled by
  0.999); the paper's term is a likelihood ("probabilistic asymmetric learning"), and the code's own unused
  helpers ``calc_loss``/``calc_labnet_loss`` compute the negative log-likelihood. Default ``nll`` (paper, without
  the 0.999); ``squared`` = the code.
- Where the abstract is silent the defaults follow the code, with our earlier choices as options:
  ``label_tanh: false`` (the code's linear label net; ``true``: ``tanh(W y)``); ``targets: per_epoch`` (the code
  recomputes ``B`` once per pass of a network, here once per epoch, at its start; ``per_step``: from the stored
  rows after this step's overwrite); ``bottleneck: sampled`` (the code's reparameterised feature and full KL;
  ``mean``: ``f^1 = relu(mu)``, ``KL = |mu|^2 / 2``).
- ``align_target: current`` (default): ``t`` = the batch's text features of this step, detached. The code reads
  the stored ``FG`` rows, written by the latest text pass (which finished before the image pass started): in
  joint training the latest text features of the batch ARE this step's. ``stored``: the rows as stored before
  this step (the sample's previous visit, one epoch old; N(0, 1) before the first), the literal reading.

Defaults: the code's weights (above); ``hidden: [4096, 512]`` (the last width is the semantic feature, the code's
``SEMANTIC_EMBED = 512``; its text net is 4096 -> 512). The code's batch is 64 and its learning rates are per net
(below); the shared ``batch_size``/``lr`` apply here.

Departures from the code (all modes):

- Training: the three nets are trained jointly by one optimiser at the shared learning rate, one loss per
  batch, each epoch a permutation. The code alternates per outer epoch (30): label net 10 then 5 passes, text
  and image nets 15, 7, 5 passes, each stage early-stopped when its pass loss stops falling, each net with its
  own Adam and a geometric schedule (``lr_lab = 10^-(2 + k/2)``, ``lr_txt = 10^-(3.5 + k/2)``,
  ``lr_img = 10^-(4.5 + k/2)``, the table entry moving one step per outer epoch), each pass ``N // 64`` random
  batches of 64 (drawn with replacement across iterations).
- Encoding: ``f^1 = relu(mu)`` (deterministic codes); the code samples ``eps`` at test time too.
- Scaling: each summed term divided by the batch size (the code sums); with Adam this mostly rescales the step.
- Initialisation: PyTorch's default (the code draws every head, the label net and the image ``feature`` layer
  from N(0, 0.01^2), which keeps the codes near 0 where the pair gradients vanish).
- Backbones: MLPs on the given features (the code fine-tunes ImageNet-pretrained VGG-11 on raw images and uses a
  pyramid text CNN with local response normalisation); labels are the noisy ones (the code uses clean labels).
- Evaluation: the shared protocol (best epoch on the validation split); the code evaluates the test queries
  against the training set as database after every outer epoch, without model selection.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..losses.bottleneck import bottleneck_alignment_loss, reparameterised_relu
from ..losses.similarity import asymmetric_pair_nll, asymmetric_pair_squared, label_similarity
from ..nets import mlp
from .base import Method, StepOutput, TrainContext, register

# the pair term's name as earlier callers import it from this module
asymmetric_pair_loss = asymmetric_pair_nll
__all__ = ["MIAN", "asymmetric_pair_loss", "bottleneck_alignment_loss"]

PAIR_FORMS = ("nll", "squared")
TARGETS = ("per_epoch", "per_step")
BOTTLENECKS = ("sampled", "mean")
ALIGN_TARGETS = ("current", "stored")


class _Branch(nn.Module):
    """MLP whose last layer gives the feature's pre-activation ``mu`` (with ``variational``: ``(mu, s)``, twice as
    wide); heads on the feature ``f``: hash code ``tanh(V f)`` and label prediction ``sigmoid(Q f)``. PyTorch's
    default initialisation (see the module docstring)."""

    def __init__(self, in_dim: int, hidden: list[int], bits: int, n_classes: int, variational: bool = False):
        super().__init__()
        if not hidden:
            raise ValueError("mian: 'hidden' needs at least one layer (its last width is the semantic feature)")
        self.width = int(hidden[-1])
        self.variational = variational
        self.trunk = mlp(in_dim, hidden[:-1], self.width * (2 if variational else 1))
        self.hash = nn.Linear(self.width, bits)
        self.label = nn.Linear(self.width, n_classes)

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(mu, log-variance)``; the log-variance is ``None`` for a deterministic branch."""
        out = self.trunk(x)
        if not self.variational:
            return out, None
        return out[:, : self.width], out[:, self.width :]

    def heads(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tanh(self.hash(f)), torch.sigmoid(self.label(f))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(torch.relu(self.moments(x)[0]))[0]


@register
class MIAN(Method):
    impl = "mian"
    venue = "TKDE'23"
    uses_index = True
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": [4096, 512],  # the code's text net 4096 -> 512 (SEMANTIC_EMBED = 512, the feature width)
        "alpha_v": 0.01,
        "alpha_t": 0.99,
        "eta": 100.0,
        "gamma": 0.01,
        "mi": 50.0,
        "sigma": 0.01,
        "pair_form": "nll",
        "label_tanh": False,
        "targets": "per_epoch",
        "bottleneck": "sampled",
        "align_target": "current",
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        for key, allowed in (("pair_form", PAIR_FORMS), ("targets", TARGETS), ("bottleneck", BOTTLENECKS),
                             ("align_target", ALIGN_TARGETS)):
            if p[key] not in allowed:
                raise ValueError(f"mian: {key} must be one of {allowed}, got {p[key]!r}")
        hidden = list(p["hidden"])
        self.branches = nn.ModuleList([
            _Branch(in_dims[0], hidden, bits, n_classes, variational=p["bottleneck"] == "sampled"),
            _Branch(in_dims[1], hidden, bits, n_classes),
        ])
        self.label_net = nn.Linear(n_classes, bits, bias=False)  # the code's label net: one linear map
        width = int(hidden[-1])
        self.predict_text = nn.Linear(width, width)  # modality alignment: text feature from the image's
        for name in ("stored_image", "stored_text", "stored_label", "epoch_targets"):
            self.register_buffer(name, torch.zeros(0, bits))
        self.register_buffer("stored_text_feature", torch.zeros(0, width))
        self.register_buffer("train_labels", torch.zeros(0, n_classes))

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [branch.encode(x) for branch, x in zip(self.branches, xs)]

    def label_codes(self, y: torch.Tensor) -> torch.Tensor:
        """``h^L = W y`` (``tanh(W y)`` with ``label_tanh``)."""
        h = self.label_net(y)
        return torch.tanh(h) if self.params["label_tanh"] else h

    @torch.no_grad()
    def on_train_start(self, ctx: TrainContext) -> None:
        labels = ctx.labels
        n, dev = labels.shape[0], labels.device
        self.stored_image, self.stored_text, self.stored_label = (
            torch.randn(n, self.bits, device=dev) for _ in range(3))  # the code's N(0, 1) start
        self.stored_text_feature = torch.randn(n, self.predict_text.in_features, device=dev)
        self.train_labels = labels.to(torch.float32).clone()
        self.epoch_targets = self.targets(torch.arange(n, device=dev))

    def targets(self, index: torch.Tensor) -> torch.Tensor:
        """``sign(alpha_v U^1 + alpha_t U^2 + eta U^L)`` of the rows ``index``, from the stored codes now."""
        p = self.params
        mix = (p["alpha_v"] * self.stored_image[index] + p["alpha_t"] * self.stored_text[index]
               + p["eta"] * self.stored_label[index])
        return torch.sign(mix)

    @torch.no_grad()
    def on_epoch_start(self, ctx: TrainContext) -> None:
        labels = ctx.labels
        if self.stored_image.shape[0]:
            self.epoch_targets = self.targets(torch.arange(self.stored_image.shape[0], device=labels.device))

    def _pair(self, stored: torch.Tensor, h: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
        if self.params["pair_form"] == "squared":
            return asymmetric_pair_squared(stored, h, 0.999 * sim)
        return asymmetric_pair_nll(stored, h, sim)

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None
    ) -> StepOutput:
        if index is None:
            raise ValueError("mian: training_step needs index= (rows of the batch in the training split)")
        p = self.params
        y = labels.to(torch.float32)
        image, text = self.branches
        mu1, log_var1 = image.moments(xs[0])
        f1 = reparameterised_relu(mu1, log_var1) if log_var1 is not None else torch.relu(mu1)
        h1, yhat1 = image.heads(f1)
        f2 = torch.relu(text.moments(xs[1])[0])
        h2, yhat2 = text.heads(f2)
        hl = self.label_codes(y)
        stored_feature = self.stored_text_feature[index].clone()
        # the batch's rows of the stored state hold the current values before the comparison (as the code)
        self.stored_image[index] = h1.detach()
        self.stored_text[index] = h2.detach()
        self.stored_label[index] = hl.detach()
        self.stored_text_feature[index] = f2.detach()
        sim = label_similarity(self.train_labels, y)
        b = self.epoch_targets[index] if p["targets"] == "per_epoch" else self.targets(index)

        def quant(h: torch.Tensor) -> torch.Tensor:
            return (b - h).pow(2).sum() / h.shape[0]

        pair_label = self._pair(self.stored_image, hl, sim) + self._pair(self.stored_text, hl, sim)
        pair_image = self._pair(self.stored_label, h1, sim) + self._pair(self.stored_image, h1, sim)
        pair_text = self._pair(self.stored_label, h2, sim) + self._pair(self.stored_text, h2, sim)
        q = p["eta"] * quant(hl) + p["alpha_v"] * quant(h1) + p["alpha_t"] * quant(h2)
        lab = (y - yhat1).pow(2).sum(dim=1).mean() + (y - yhat2).pow(2).sum(dim=1).mean()
        target = stored_feature if p["align_target"] == "stored" else f2
        align = bottleneck_alignment_loss(self.predict_text(f1), target, mu1, p["sigma"], log_var1)
        loss = pair_label + pair_image + pair_text + q + p["gamma"] * lab + p["mi"] * align
        return StepOutput(loss=loss, terms={
            "pair_label": pair_label.detach(),
            "pair_image": pair_image.detach(),
            "pair_text": pair_text.detach(),
            "quant": q.detach(),
            "label": lab.detach(),
            "align": align.detach(),
        })
