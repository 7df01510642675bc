r"""Teacher -> student terms and agreement between codes (two-stage hashing: CIRH, HMAH).

* Binary-code regression: students regress the teacher's binary code ``b = sign(t)`` (sign detached; zeros count
  as +1, as our codes do; ``torch.sign`` would give 0 there, a measure-zero case for tanh outputs):
  ``L_b = sum_m mean_{i,k} (h^m_ik - b_ik)^2``.
  Hand check: ``h = [[0.5, -1.0]]``, ``t = [[2.0, 3.0]]`` -> ``b = [[1, 1]]``: ``(0.25 + 4) / 2 = 2.125``; with two
  students ``h`` and ``-h``: ``2.125 + (2.25 + 0) / 2 = 3.25``.
* Code consistency (CIRH's identity term between the two hash functions): ``L_id = mean_{i,k} (a_ik - b_ik)^2``.
  Hand check: ``a = [[1, 0]]``, ``b = [[0, 0]]``: ``0.5``.
"""

from __future__ import annotations

import torch


def binary_code_distillation(students: list[torch.Tensor], teacher: torch.Tensor) -> torch.Tensor:
    """``sum_m mean (h^m - sign(teacher))^2`` with the teacher's sign detached (zeros -> +1)."""
    b = torch.where(teacher >= 0, 1.0, -1.0).to(teacher.dtype).detach()
    return sum(((h - b) ** 2).mean() for h in students)


def code_consistency(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``mean (a - b)^2`` over all entries (both sides keep their gradient)."""
    return ((a - b) ** 2).mean()
