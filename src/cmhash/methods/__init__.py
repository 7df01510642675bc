"""Method registry: importing this package registers every implementation."""

from . import ce_baseline, rshnl  # noqa: F401  (registration side effect)
from .base import REGISTRY, Method, StepOutput, get_method_class, register, resolve_params

__all__ = ["REGISTRY", "Method", "StepOutput", "get_method_class", "register", "resolve_params"]
