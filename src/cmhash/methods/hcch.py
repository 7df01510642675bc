r"""HCCH: Hierarchical Consensus Cross-modal Hashing (Sun et al., TMM 2024; MATLAB code sunyuan-cs/HCCH).

Shallow supervised: one consensus binary code per training pair shared by both modalities, learned by the
alternating discrete optimisation of :class:`.shallow.ShallowHashing` with unit weights and the noisy labels
as given::

    J = |Y - B G|^2 + nu sum_m |B - Phi_m W_m|^2 + lam (|G|^2 + sum_m |W_m|^2),   B in {-1,+1}^{N x K}

Departures / guesses: the paper's hierarchical (two-layer) consensus between modality-specific and common
latent spaces is collapsed into the single common code ``B`` with label regression ``G`` (the SDH form);
RBF anchor features (500 anchors) as the MATLAB demos; ``nu`` = ``lam`` = 1 and 10 iterations are guesses.
No noise handling (as the original).
"""

from __future__ import annotations

from .base import register
from .shallow import ShallowHashing


@register
class HCCH(ShallowHashing):
    impl = "hcch"
    venue = "TMM'24"
    defaults = dict(ShallowHashing.defaults)
