r"""RCH / NRCH: Robust Contrastive Cross-modal Hashing with Noisy Labels (L. Wang et al., ACM MM 2024, pp. 5752-5760).

Official code: ``github.com/LonganWANG-cs/NRCH`` @ ``b190e9760ece1e585d59d7142df1333fe09c6b59`` (read in full):
``NRCH.py`` (``Robust_Loss`` = the RCH objective, ``get_loss`` = the DNS selector, ``train``), ``network.py``
(``ImgModule``, ``TxtModule``), ``utils/tools.py`` (data, ``DataList``, MAP), ``noise/generate.py`` (noise).
The code and README call the method NRCH, its loss RCH and its selector DNS (Dynamic Noise Separator).
Paper text: not found (searched the stored web pages for the title, "NRCH", "Dynamic Noise Separator"; no PDF in
the repository); the README only describes the framework. So every equation below is the code's, and the defaults
follow the code.

Networks (``network.py``): per modality an MLP with biases and PyTorch's default initialisation (image
``d -> 8192 -> 8192 -> L``, text ``d -> 8192 -> L``: our ``hidden`` / ``text_hidden``), ``z = tanh(o) / ||tanh(o)||``.
Class proxies ``W in R^{C x L}``, ``orthogonal_`` initialised (gain 1), used only through ``tanh(W)``.

DNS (``get_loss``), at the start of every epoch on the whole training split, without gradient; ``y`` the noisy
multi-hot labels, ``yhat = 2y - 1`` (:func:`cmhash.losses.proxy.proxy_regression_errors`,
:func:`~cmhash.losses.proxy.worst_positive_error`)::

    e_ik = (yhat_ik - z^1_i . tanh(w_k))^2 + (yhat_ik - z^2_i . tanh(w_k))^2,     l_i = max_k y_ik e_ik,
    l~_i = (l_i - min l + 1e-8) / (max l - min l + 1e-8),
    pi_i = posterior of the lower-mean component of a 2-component GMM fitted to l~ (max_iter 10, tol 0.5,
           reg_covar 5e-4: :func:`cmhash.losses.selection.gmm_two_components_kmeans_init`),
    selected_i = 1[pi_i >= threshold] from epoch ``select_from_epoch`` (0-based) on; every sample before.

Step, on the selected rows of the batch only (``B'`` of them; a batch with none takes no step, as in the code);
``u = tanh(z^1)``, ``v = tanh(z^2)`` (a second tanh, as the code), ``T_ij = 1[y_i . y_j > 0]`` with ``T_ii = 0``
(:mod:`cmhash.losses.shifted_contrastive` for ``r``; :func:`cmhash.losses.quantization.magnitude_quantization_per_sample`
for ``Q``)::

    r_i = 2 [ -S_ii + tau log sum_j exp(C~^te_ij (1 - T_ij) / tau) + mu ],   S = u v^T   (directions = "code")
    Q_i = mean_k (|u_ik| - 1/sqrt(L))^2 + mean_k (|v_ik| - 1/sqrt(L))^2
    L_RCH = mean_i [ lambda r_i + (1 - lambda) Q_i ]
    L_W   = mean_{i,k} [ (yhat_ik - sg(z^1_i) . tanh(w_k))^2 + (yhat_ik - sg(z^2_i) . tanh(w_k))^2 ]
    L = L_RCH + L_W

``C~^te`` keeps ``S_ij`` where ``S_ij >= S_ii - mu`` and shifts it by ``-Delta`` elsewhere, with the diagonal
``max(S_ii, 0)``. The hash networks learn only from ``L_RCH``; the labels reach them only through ``T`` (pairs that
share a noisy label are not negatives: their exponent is multiplied by 0, a constant ``e^0`` in the sum) and through
the selection; ``L_W`` (codes detached, ``sg``) trains only the proxies, which DNS scores with.
Defaults (``NRCH.py``): ``lambda`` 0.6, ``mu`` (margin) 0.2, ``Delta`` (shift) 1, ``tau`` 1, threshold 0.3,
selection from the 20th epoch (``epoch + 1 >= 20``, i.e. 0-based ``select_from_epoch`` 19), RMSprop lr 1e-5,
weight decay 1e-5 (PyTorch defaults otherwise), batch 128, 100 epochs.

Single-label data (multi-hot rows with one 1, as our shipped data): the same formulas, nothing changes; ``T`` is
the same-noisy-class indicator, ``l_i`` the error of the one labelled class ``e_{i, c_i}``, ``L_W`` regresses
``+1`` for the labelled class and ``-1`` for the others.

Departures from the code (defaults reproduce the code otherwise):

- ``select_from_epoch``: the code's absolute epoch 19 of its 100-epoch schedule, exposed as a parameter (default
  19 = the published value; it is not rescaled when ``epochs`` is shorter).
- ``directions``: the code builds the column-direction costs ``C^im`` (threshold ``S_jj - mu``) but its second term
  reuses the row log-sum of ``C~^te``, so the loss is twice the row direction (``"code"``, default, since the paper
  could not be read). ``"bidirectional"`` uses ``C~^im`` with a column log-sum for the second term.
- The GMM: scikit-learn's ``GaussianMixture`` (unseeded, k-means++-started k-means initialisation) replaced by a
  NumPy EM on the same schedule whose initial partition is the exact optimal 1-d 2-means split (deterministic).
  On well-separated data the two agree to 1e-15; on a skewed unimodal sample scikit-learn's k-means reached a
  different partition for some seeds (posteriors differing by up to 0.07). Constant DNS scores select every sample.
- Two RMSprop optimisers (image net + W, text net) with identical settings -> one RMSprop over all parameters
  (RMSprop is per-parameter: the same updates).
- The DNS pass encodes the split in chunks of 1024 rows (code: its shuffled training loader, batch 128) under
  ``no_grad``; the values are the same up to float rounding. It is skipped before ``select_from_epoch``, where the
  code fits the GMM but keeps every sample (threshold 0). The unused linear threshold schedule
  (``num_gradual``) is not implemented. The selection mask is logged as the per-sample weight (the code logs
  the selection's precision against the clean labels).
- Protocol (as for every method here): best epoch on the validation split, every epoch (the code evaluates the
  TEST queries every 20th epoch and keeps the best checkpoint: selection on the test set); queries/database as
  the dataset's protocol; our loop drops a 1-sample tail batch and shuffles with its seeded generator (the code
  sets no seed at all).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..losses.proxy import proxy_regression_errors, worst_positive_error
from ..losses.quantization import magnitude_quantization_per_sample
from ..losses.selection import gmm_two_components_kmeans_init
from ..losses.shifted_contrastive import rch_contrastive_per_sample
from ..losses.similarity import label_similarity
from ..nets import mlp
from .base import Method, OptimizerSpec, Stage, StepOutput, TrainContext, register


@register
class RCH(Method):
    impl = "rch"
    venue = "ACM MM'24"
    uses_index = True
    defaults = {
        "epochs": 100,
        "batch_size": 128,
        "lr": 1e-5,
        "weight_decay": 1e-5,
        "hidden": [8192, 8192],
        "text_hidden": [8192],
        "lambda": 0.6,
        "margin": 0.2,
        "shift": 1.0,
        "tau": 1.0,
        "threshold": 0.3,
        "select_from_epoch": 19,
        "gmm_max_iter": 10,
        "gmm_tol": 0.5,
        "gmm_reg_covar": 5e-4,
        "directions": "code",
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        if p["directions"] not in ("code", "bidirectional"):
            raise ValueError(f"rch: directions must be 'code' or 'bidirectional', got {p['directions']!r}")
        widths = [p["hidden"], p["text_hidden"]]
        self.nets = nn.ModuleList(mlp(d, widths[m], bits, last_bias=True) for m, d in enumerate(in_dims))
        self.proxies = nn.Parameter(nn.init.orthogonal_(torch.empty(n_classes, bits), gain=1.0))
        self.register_buffer("selected", torch.zeros(0, dtype=torch.bool))

    def stages(self) -> list[Stage]:
        return [Stage(optimizers={"main": OptimizerSpec(kind="rmsprop")})]

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [nn.functional.normalize(torch.tanh(net(x)), dim=1) for net, x in zip(self.nets, xs)]

    def on_train_start(self, ctx: TrainContext) -> None:
        labels = ctx.labels
        self.selected = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)

    @torch.no_grad()
    def dns_scores(self, xs: list[torch.Tensor], labels: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """``l_i = max_k y_ik (e^1_ik + e^2_ik)`` over the whole split (before min-max normalisation)."""
        out = []
        for start in range(0, labels.shape[0], chunk):
            codes = self.encode([x[start:start + chunk] for x in xs])
            y = labels[start:start + chunk]
            errors = sum(proxy_regression_errors(z, self.proxies, y) for z in codes)
            out.append(worst_positive_error(errors, y))
        return torch.cat(out)

    def on_epoch_start(self, ctx: TrainContext) -> None:
        xs, labels, epoch = ctx.xs, ctx.labels, ctx.epoch
        p = self.params
        if epoch < p["select_from_epoch"]:
            self.selected = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
            return
        scores = self.dns_scores(xs, labels).double().cpu().numpy()
        span = scores.max() - scores.min()
        if not np.isfinite(span) or span <= 0:
            prob = np.ones_like(scores)
        else:
            normed = (scores - scores.min() + 1e-8) / (span + 1e-8)
            post, means, _, _ = gmm_two_components_kmeans_init(
                normed, max_iter=p["gmm_max_iter"], tol=p["gmm_tol"], reg_covar=p["gmm_reg_covar"])
            prob = post[:, int(np.argmin(means))]
        self.selected = torch.as_tensor(prob >= p["threshold"], device=labels.device)

    def training_step(
        self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int, index: torch.Tensor | None = None
    ) -> StepOutput:
        p = self.params
        if index is None or self.selected.numel() == 0:
            sel = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
        else:
            sel = self.selected[index]
        weights = sel.to(torch.float32)
        if not bool(sel.any()):
            zero = torch.zeros((), device=labels.device)
            return StepOutput(loss=zero, terms={"rch": zero, "quant": zero, "proxy": zero}, weights=weights)
        y = labels[sel]
        z1, z2 = self.encode([x[sel] for x in xs])
        u, v = torch.tanh(z1), torch.tanh(z2)
        t = label_similarity(y, y).to(u.dtype)
        t.fill_diagonal_(0.0)
        r = rch_contrastive_per_sample(u, v, t, p["margin"], p["shift"], p["tau"], p["directions"])
        q = magnitude_quantization_per_sample(u) + magnitude_quantization_per_sample(v)
        l_rch = (p["lambda"] * r + (1.0 - p["lambda"]) * q).mean()
        l_w = (proxy_regression_errors(z1.detach(), self.proxies, y)
               + proxy_regression_errors(z2.detach(), self.proxies, y)).mean()
        return StepOutput(loss=l_rch + l_w,
                          terms={"rch": r.mean().detach(), "quant": q.mean().detach(), "proxy": l_w.detach()},
                          weights=weights)
