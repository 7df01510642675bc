"""cmhash: cross-modal hashing under noisy labels, as a reproducible pipeline."""

__version__ = "0.1.0"
