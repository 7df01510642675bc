"""Hyperparameter checking shared by the method classes and the torch-free registry view: the base defaults every
method has, and the type and range checks config values go through (:func:`check_params`)."""

from __future__ import annotations

import math
from typing import Any

#: Hyperparameters every method has (``cmhash.methods.Method.defaults``); a class's ``defaults`` override them.
BASE_DEFAULTS: dict[str, Any] = {
    "epochs": 150,
    "batch_size": 256,
    "lr": 1e-4,
    "weight_decay": 0.0,
}

#: Shared hyperparameters the training loop cannot run with outside these ranges: (test, requirement).
_VALID_RANGE: dict[str, tuple[Any, str]] = {
    "epochs": (lambda v: v >= 1, ">= 1"),
    "batch_size": (lambda v: v >= 2,
                   ">= 2 (losses compare samples within a batch; 1-sample batches are skipped)"),
    "lr": (lambda v: v > 0, "> 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
}


def check_params(impl: str, defaults: dict[str, Any], params: dict[str, Any], where: str = "params") -> dict[str, Any]:
    """``defaults`` (an implementation's, base ones included) updated with ``params``; unknown keys, wrong types
    and out-of-range shared values raise ``ValueError`` naming ``where.<key>``."""
    out = dict(defaults)
    for key, value in params.items():
        if key not in defaults:
            raise ValueError(f"{where}.{key}: unknown hyperparameter for method '{impl}'; known: {sorted(defaults)}")
        out[key] = _coerce(value, defaults[key], f"{where}.{key}")
        if key in _VALID_RANGE and not _VALID_RANGE[key][0](out[key]):
            raise ValueError(f"{where}.{key}: must be {_VALID_RANGE[key][1]}, got {value!r}")
    return out


def _coerce(value: Any, default: Any, where: str) -> Any:
    # ValueError, not TypeError, for a wrong type too: cmhash.config turns ValueErrors into config errors
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{where}: expected a list of integers, got {value!r}")
        return list(value)
    return value
