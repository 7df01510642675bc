"""Seeded synthetic two-modality data for smoke tests and the tiny workflow.

Generative model: every class has a mean in a shared latent space; a sample's latent vector is the
average of the means of its classes plus unit Gaussian noise; each modality sees the latent vector
through its own fixed random linear map plus its own noise. Both modalities therefore carry the same
class information, which a hashing model can learn, while neither is a copy of the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Per-modality observation noise (standard deviation) added after the projection.
_MODALITY_NOISE = 0.5


def make_synthetic(
    n: int,
    dims: Sequence[int] = (32, 24),
    n_classes: int = 5,
    multilabel: bool = False,
    seed: int = 0,
    separation: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x0, x1, labels)``: float32 ``n x dims[0]``, float32 ``n x dims[1]``, uint8 ``n x n_classes``.

    ``separation`` is the standard deviation of the class-mean coordinates relative to the unit latent
    noise (larger = easier). Single-label data has exactly one positive per row, assigned round-robin
    before shuffling so that the classes are balanced; multi-label data has 1-3 positives per row (never
    more than ``n_classes``). The same arguments always give bit-identical arrays.
    """
    if n < 1 or n_classes < 2:
        raise ValueError(f"make_synthetic: need n >= 1 and n_classes >= 2, got n={n}, n_classes={n_classes}")
    if len(dims) != 2 or min(dims) < 1:
        raise ValueError(f"make_synthetic: dims must be two positive feature dimensions, got {list(dims)}")
    if separation < 0:
        raise ValueError(f"make_synthetic: separation must be >= 0, got {separation}")
    rng = np.random.Generator(np.random.PCG64(seed))
    # The latent space is at least as wide as the number of classes so that the class means are
    # (almost surely) linearly independent.
    latent = max(n_classes, 8)
    means = rng.normal(0.0, separation, size=(n_classes, latent))

    labels = np.zeros((n, n_classes), dtype=np.uint8)
    if multilabel:
        k = rng.integers(1, min(3, n_classes) + 1, size=n)
        # Uniform k-subsets: the k smallest of C i.i.d. uniform keys.
        ranks = np.argsort(np.argsort(rng.random((n, n_classes)), axis=1), axis=1)
        labels[ranks < k[:, None]] = 1
    else:
        classes = rng.permutation(np.arange(n) % n_classes)
        labels[np.arange(n), classes] = 1

    centre = (labels @ means) / labels.sum(axis=1, keepdims=True)
    z = centre + rng.normal(size=(n, latent))
    out = []
    for d in dims:
        proj = rng.normal(size=(latent, int(d))) / np.sqrt(latent)
        out.append((z @ proj + rng.normal(0.0, _MODALITY_NOISE, size=(n, int(d)))).astype(np.float32))
    return out[0], out[1], labels
