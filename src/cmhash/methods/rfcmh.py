r"""RFCMH: Robust Fuzzy Cross-Modal Hashing (Sun, Pu, Shi, Ren, Hu, Sun, "Learning with Admissibility: Robust Fuzzy
Hashing for Cross-Modal Retrieval with Noisy Labels", ICML 2026, PMLR 306).

Official code: github.com/XinchengSun/RFCMH @ 6e79a909e893a980bff9304a3a5eaa4ba7b63abc (the paper PDF
``34237_Learning_with_Admissibil.pdf`` is in the same commit). Files read in full: ``losses.py`` (objective:
``FARLoss``, ``get_train_category_credibility``, ``intra_loss``), ``model.py`` (``ImgNN``/``TextNN``, ``IDCM_NN`` with
the fixed class matrix ``W`` and ``membership``), ``train_model.py`` (loop: per-batch step, clipping, best-epoch
selection), ``main.py`` (hyper-parameters, Adam, scheduler, test), ``lr_scheduler.py``
(``CosineAnnealingRestartLR``), ``load_data.py`` (splits, noise), ``to_seed.py``.

Model: per modality ``z = normalize(tanh(MLP(x)))`` (:class:`~cmhash.nets.HashEncoder`, ``d -> 4096 -> 4096 -> L``,
ReLU, last layer without bias, U(-1/sqrt(d), 1/sqrt(d)) -- the code's ``ImgNN``/``TextNN``); binary codes
``sign(z)``. A fixed ``L x K`` class matrix ``W`` (buffer, never trained; drawn from the run's seed after the
encoders): ``L >= K`` the first ``K`` columns of a random orthogonal matrix, ``L < K`` unit Gaussian columns
spread by 50 repulsion steps (:func:`cmhash.losses.fuzzy.fixed_class_matrix`). Terms and their hand-checked cases:
:mod:`cmhash.losses.fuzzy` and :mod:`cmhash.losses.contrastive`.

Objective (``t_i = argmax y_i``; epochs 0-based, warm-up ``e < tp`` = the paper's ``t <= tp`` with 1-based ``t``)::

    possibility   p^m_ik = sigmoid(z^m_i . w_k / tau_m)^gamma_m                          (paper: tau_m = gamma_m = 1)
    necessity     n^m_ik = 1 - c^m_i (y_ik = 1),  p^m_{i t_i} (y_ik = 0)                  Eq. 1, c = mean top-kappa
    admissibility a^m_ik = (p + kappa n)/(1 + kappa) (y_ik = 1),  (p + n)/2 (y_ik = 0)    Eq. 2
    L_FAR   = (1/B) sum_m sum_i ||a^m_i - y_i||^2                                          Eq. 3
    w_i     = sigmoid((abar_{i t_i} - max_{k != t_i} abar_ik - delta)/T),  abar = (a^1 + a^2)/2   Eq. 4 (detached)
    L+_FAR  = sum_{i != j} min(w_i, w_j) max(0, gamma - zeta_ij z^1_i . z^2_j)             Eq. 5, zeta = +-1 same class
    L^v_intra = (1/B) sum_i l_q(p^v_ii), p^I2T_ii = softmax_j(S_ij/tau)_i, p^T2I_ii = softmax_j(S_ji/tau)_i  Eq. 6-7
    L^v_inter = (1/B) sum_i [-S_ii + tau log sum_{j != i} exp(C^v_ij/tau) + gamma]         Eq. 8-9
    L_DGSA  = sum_v (L^v_intra + L^v_inter)                                                Eq. 10
    L = L_FAR + alpha sum_v L^v_intra (warm-up),   L+_FAR + alpha L_DGSA (fine-tuning)     Eq. 11

``form: reference`` computes ``FARLoss.forward`` of the code instead (with the code's constants set in the params,
see "reference-compatible" below)::

    p^m = rownorm(sigmoid(z^m W / 0.5)^2);  n = 1 - c (label), 1 - p_{t_i} (others);
    a = clamp((p + kappa n)/(1 + kappa), 1e-6, 1 - 1e-6) for every class;  L_FAR as Eq. 3;
    w_i = sigmoid(standardise_batch(gap_i)/0.7) (delta = 0);
    L+_FAR = weighted MEAN over i != j of min(w_i, w_j) max(0, 0.2 - zeta S^_ij), S^ from normalize(tanh(z));
    L_intra = RSHNL's published contrast (all 2B - 1 other codes as negatives; its two directions coincide);
    L_inter = rfcmh_inter_loss_reference (second tanh, same-class pairs exp(0), "im" row sums, tau_e = 1);
    L = L_FAR + alpha L_intra (warm-up),  L+_FAR + alpha L_intra + L_inter (fine-tuning).

Training: Adam (betas 0.9/0.999); gradient-norm clipping 5.0 at every step (code; not in the paper); the code's LR
schedule ``CosineAnnealingRestartLR(periods [50, 50, 50], restart_weights [1, 0.7, 0.5], eta_min 1e-7)`` stepped
per epoch: ``lr(e) = eta_min + w_r (lr0 - eta_min)(1 + cos(pi (e - e_r)/50))/2`` with ``(w_r, e_r) = (1, 0)`` for
``e <= 50``, ``(0.7, 50)`` for ``51 <= e <= 100``, ``(0.5, 100)`` after (epochs 50 and 100 sit at ``eta_min``). We
declare ``cosine_restarts`` = the harness's ``cosine_restarts_weighted`` schedule (:class:`cmhash.train.CosineRestartsWeighted`,
the code's ``CosineAnnealingRestartLR``): three periods of ``lr_period = 50`` epochs with restart weights 1, 0.7,
0.5 and ``eta_min = lr_eta_min``, stepped per epoch, each period closed (``eta_min`` at epochs 50 and 100) --
identical to the code's schedule for its 150 epochs (past 150 epochs, where the code would fail, the lr stays at
``eta_min``). ``lr_schedule: constant`` switches the schedule off.

Departures of the default (paper) form from the official code -- each is the code's behaviour under
``form: reference`` plus the constants named:

1. Possibility: paper ``sigma(P(z))``; code ``sigmoid(z.w/0.5)^2`` row-normalised (``member_tau 0.5``,
   ``member_gamma 2.0``, normalisation by ``form``).
2. Necessity of non-label classes: paper (as printed, checked on the rendered PDF page) ``p_{i t_i}``; code
   ``1 - p_{i t_i}``. Both use the top-kappa mean ``c_i`` for the label class (the paper prints ``max`` and then
   says the top-kappa non-target signals are aggregated).
3. Admissibility: paper mixes ``(p + n)/2`` for non-label classes; code ``(p + kappa n)/(1 + kappa)`` for all (the
   paper's Sec. 4.8 calls kappa = 0 "admissibility derived solely from possibility", which only the code's form
   gives), clamped.
4. Reliability: code standardises the gap over the batch and uses ``delta = 0`` (paper ``delta = 0.05``).
5. ``L+_FAR``: paper sum over ``i != j`` of ``z``; code weighted mean of ``normalize(tanh(z))`` similarities.
6. ``L_intra``: paper cross-modal softmax per direction; code RSHNL's contrast over all ``2B - 1`` codes (factor 2
   for its two identical directions).
7. ``L_inter``: paper ``sum_{j != i}``, strict ``>``, ``tau = 0.7``, ``S`` of ``z`` and the transposed T2I direction;
   code: see above (``inter_tau 1.0``).
8. Weights of the total: paper ``alpha (L_intra + L_inter)``; code ``alpha L_intra + L_inter``.
9. Weight decay: paper 1e-4 (our default); code none (``weight_decay: 0``).
10. The code also computes ``L_hash = mean((|z| - 1)^2)`` per modality and only logs it; not here.

Departures of both forms from the official code (harness protocol, the same for every method):

* Evaluation: ours (test split encoded by the best-validation weights; the code does the same: query = database =
  test split, best epoch on clean validation MAP). Shuffling, noise draw and seeds are the harness's: the code's
  noise uses its own ``default_rng(10)`` regardless of ``--seed``.
* Noise: the code's ``sym`` noise switches off the positive of ``int(N r)`` rows and switches on a uniform OTHER
  column (for one-hot rows it always changes the label, dummy column included) -- our ``noise.kind: flip`` (with
  ``dummy_class_column: true`` for the 1-based XMedia/XMediaNet labels); our ``sym`` redraws over all classes.
  The kind is the config's (``noise.kind``), not this method's.
* Multi-label rows: the paper is single-label; like the code, ``t_i`` and ``zeta`` use the argmax (first
  positive), ``p_{i t_i}`` is read as ``sum_k y_ik p_ik``, and the reference ``L_inter`` mask uses label overlap.
* The code's validation pass also evaluates the loss (no step); irrelevant to training. Its DataLoader keeps a
  1-sample last batch (a step on it: ``L+_FAR = 0``); our loop drops such a batch. Its codes divide by
  ``||tanh|| + 1e-12``, :class:`~cmhash.nets.HashEncoder` by ``max(||tanh||, 1e-12)`` (same to float precision).

Interpretations (paper silent or ambiguous): ``P`` is the code's fixed ``W`` (the paper calls it a layer but never
says it is trained); the paper's single ``tau`` (0.7) is used for Eq. 4 (``weight_temperature``), Eq. 6 and Eq. 9
(``inter_tau``); clipping and the schedule follow the code (not in the paper).

Ablations (paper Table 5 / Table 8; the code has none, so these are our reading): RFCMH-1 ``warmup_epochs: 0``;
RFCMH-2 / "w/o FAR" ``use_far: false`` (no ``L_FAR``, ``L+_FAR``); RFCMH-3 / "w/o DGSA" ``use_dgsa: false`` (no
``L_intra``, ``L_inter``); RFCMH-4 ``use_necessity: false`` (``a = p``).

Defaults: the paper (Sec. 4.3, App. C.3) where it states a value -- Adam lr 1e-4, weight decay 1e-4, batch 64,
150 epochs, kappa 4, tp 3, tau 0.7, q 0.01, gamma 0.2, Delta 1, delta 0.05; alpha 0.1 (paper: 0.5 on XMedia,
0.1 on XMediaNet/INRIA-Websearch; code default 0.1) -- the code elsewhere (``W``, clipping, schedule).
Reference-compatible: ``{form: reference, delta: 0.0, inter_tau: 1.0, member_tau: 0.5, member_gamma: 2.0,
weight_decay: 0.0}``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..losses import contrastive, fuzzy
from ..nets import HashEncoder
from .base import Method, Stage, StepOutput, register

#: Peak weights of the three cosine periods (XinchengSun/RFCMH main.py: restart_weights=[1, 0.7, 0.5]).
RESTART_WEIGHTS = (1.0, 0.7, 0.5)


@register
class RFCMH(Method):
    impl = "rfcmh"
    venue = "ICML'26"
    defaults = {
        "epochs": 150,
        "batch_size": 64,
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "hidden": [4096, 4096],
        "alpha": 0.1,
        "kappa": 4,
        "warmup_epochs": 3,
        "tau": 0.7,
        "q": 0.01,
        "margin": 0.2,
        "shift": 1.0,
        "delta": 0.05,
        "weight_temperature": 0.7,
        "inter_tau": 0.7,
        "member_tau": 1.0,
        "member_gamma": 1.0,
        "form": "paper",
        "use_far": True,
        "use_dgsa": True,
        "use_necessity": True,
        "clip_grad_norm": 5.0,
        "lr_schedule": "cosine_restarts",
        "lr_period": 50,
        "lr_eta_min": 1e-7,
    }

    def __init__(
        self, in_dims: tuple[int, int], n_classes: int, bits: int, params: dict[str, Any], multilabel: bool = False
    ):
        super().__init__(in_dims, n_classes, bits, params, multilabel)
        p = self.params
        if p["form"] not in fuzzy.FORMS:
            raise ValueError(f"form must be one of {fuzzy.FORMS}, got {p['form']!r}")
        if p["lr_schedule"] not in ("cosine_restarts", "constant"):
            raise ValueError(f"lr_schedule must be cosine_restarts or constant, got {p['lr_schedule']!r}")
        if not 0.0 < p["q"] <= 1.0:
            raise ValueError(f"q must be in (0, 1], got {p['q']}")
        for key in ("tau", "inter_tau", "weight_temperature", "member_tau"):
            if p[key] <= 0:
                raise ValueError(f"{key} must be positive, got {p[key]}")
        if p["kappa"] < 0 or p["warmup_epochs"] < 0 or p["lr_period"] < 1:
            raise ValueError("kappa and warmup_epochs must be >= 0 and lr_period >= 1")
        self.encoders = torch.nn.ModuleList(HashEncoder(d, p["hidden"], bits) for d in in_dims)
        # after the encoders, from the global generator the loop has seeded (the code's order as well)
        self.register_buffer("W", fuzzy.fixed_class_matrix(bits, n_classes))

    def stages(self) -> list[Stage]:
        p = self.params
        clip = p["clip_grad_norm"] if p["clip_grad_norm"] > 0 else None
        if p["lr_schedule"] == "constant":
            return [Stage(clip_grad_norm=clip)]
        options = {"periods": [p["lr_period"]] * 3, "restart_weights": list(RESTART_WEIGHTS), "eta_min": p["lr_eta_min"]}
        return [Stage(lr_schedule="cosine_restarts_weighted", schedule_options=options, clip_grad_norm=clip)]

    def _admissibility(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        poss = fuzzy.fuzzy_membership(z, self.W, p["member_tau"], p["member_gamma"])
        if p["form"] == "reference":
            poss = fuzzy.normalise_possibility(poss)
        if not p["use_necessity"]:
            return poss.clamp(1e-6, 1.0 - 1e-6) if p["form"] == "reference" else poss
        return fuzzy.admissibility(poss, y, p["kappa"], p["form"])

    def _intra(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        p = self.params
        if p["form"] == "reference":
            return contrastive.contrastive_hash_loss([z1, z2], p["tau"], p["q"], "reference")
        return contrastive.q_contrastive_cross_modal(z1, z2, p["tau"], p["q"])

    def _inter(self, z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        if p["form"] == "reference":
            return contrastive.rfcmh_inter_loss_reference(z1, z2, y, p["margin"], p["shift"], p["inter_tau"])
        s = z1 @ z2.T
        return (contrastive.penalized_lse_margin_loss(s, p["margin"], p["shift"], p["inter_tau"])
                + contrastive.penalized_lse_margin_loss(s.T, p["margin"], p["shift"], p["inter_tau"]))

    def training_step(self, xs: list[torch.Tensor], labels: torch.Tensor, epoch: int) -> StepOutput:
        p = self.params
        z1, z2 = self.encode(xs)
        y = labels.float()
        warm = epoch < p["warmup_epochs"]
        loss = z1.new_zeros(())
        terms: dict[str, torch.Tensor] = {}
        weights = None
        if p["use_far"] and warm:
            fuzzy_loss = fuzzy.admissibility_alignment_loss(self._admissibility(z1, y), self._admissibility(z2, y), y)
            terms["fuzzy"] = fuzzy_loss.detach()
            loss = loss + fuzzy_loss
        elif p["use_far"]:
            with torch.no_grad():  # the weights are constants of the step (detached in the code as well)
                weights = fuzzy.reliability_weights(self._admissibility(z1, y), self._admissibility(z2, y), y,
                                                    p["delta"], p["weight_temperature"],
                                                    standardize=p["form"] == "reference")
            far = fuzzy.reliability_margin_loss(z1, z2, y, weights, p["margin"], p["form"])
            terms["far"] = far.detach()
            loss = loss + far
        if p["use_dgsa"]:
            intra = self._intra(z1, z2)
            terms["intra"] = intra.detach()
            if warm:
                loss = loss + p["alpha"] * intra
            else:
                inter = self._inter(z1, z2, y)
                terms["inter"] = inter.detach()
                if p["form"] == "reference":
                    loss = loss + p["alpha"] * intra + inter
                else:
                    loss = loss + p["alpha"] * (intra + inter)
        return StepOutput(loss=loss, terms=terms, weights=weights)
