"""Method registry: importing this package registers every implementation."""

from . import (  # noqa: F401  (registration side effect)
    ce_baseline,
    cirh,
    cmmq,
    dgcpn,
    dhaph,
    dhrl,
    dscmh,
    hcch,
    hmah,
    mian,
    nacd,
    nsrmh,
    rch,
    rfcmh,
    rshnl,
    scbch,
    seha,
    ucch,
    wash,
)
from .base import (
    REGISTRY,
    Method,
    OptimizerSpec,
    Stage,
    StepOutput,
    TrainContext,
    get_method_class,
    register,
    resolve_params,
)

__all__ = ["REGISTRY", "Method", "OptimizerSpec", "Stage", "StepOutput", "TrainContext", "get_method_class", "register", "resolve_params"]
