"""The two-view toy data the training tests share (importable from tests: pytest puts this folder on sys.path).

Gaussian classes in a latent space seen through one fixed random linear projection per view, so both views
carry the class and neither is a copy of the other; the same projections for every split.
"""

from __future__ import annotations

import numpy as np

from cmhash.train import SplitData


def toy_splits(
    sizes: tuple[int, int, int] = (90, 30, 30),
    n_classes: int = 3,
    latent: int = 6,
    dims: tuple[int, int] = (10, 8),
    seed: int = 0,
) -> tuple[SplitData, SplitData, SplitData]:
    """Train, validation and test splits of ``sizes`` rows (float32 features, one-hot labels)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_classes, latent)) * 3
    projections = [rng.standard_normal((latent, d)) for d in dims]

    def split(n: int) -> SplitData:
        y = rng.integers(0, n_classes, n)
        z = centers[y] + rng.standard_normal((n, latent))
        return SplitData([(z @ p).astype(np.float32) for p in projections], np.eye(n_classes, dtype=np.uint8)[y])

    train, val, test = (split(n) for n in sizes)
    return train, val, test


def toy_batch(n: int = 12, dims: tuple[int, int] = (10, 8), c: int = 3, seed: int = 0, float_labels: bool = False):
    """One mini-batch for method unit tests: standard-normal features of both views (generator seeded with
    ``seed``) and one-hot labels cycling through ``c`` classes (int64, or float32 with ``float_labels``)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, d, generator=g) for d in dims]
    y = torch.nn.functional.one_hot(torch.arange(n) % c, c)
    return xs, (y.to(torch.float32) if float_labels else y)
