"""Learning-rate-free optimizers: they estimate their step size themselves.

Each declares its phases on :class:`adaptlr.optim.Optimizer`'s step protocol (a statistics phase for the global
sums, then the update phase), with one estimate per param group on request (``per_group_d=True``), sums
all-reduced over a ``process_group`` or the DTensor mesh when the parameters are sharded, and an
``effective_lr(group_index)`` readout. (Lion, AdaBelief and LAMB, which do not estimate a step size, live in
:mod:`adaptlr.optim`.)
"""

from typing import Any

from .dadapt import DAdaptAdaGrad, DAdaptAdam, DAdaptSGD
from .dog import DoG, LDoG, PolynomialDecayAverager
from .prodigy import Prodigy
from .schedulefree import ScheduleFreeAdamW, ScheduleFreeRAdam, ScheduleFreeSGD, recalibrate_batchnorm

__all__ = [
    "Prodigy",
    "DAdaptSGD",
    "DAdaptAdam",
    "DAdaptAdaGrad",
    "DoG",
    "LDoG",
    "PolynomialDecayAverager",
    "ScheduleFreeSGD",
    "ScheduleFreeAdamW",
    "ScheduleFreeRAdam",
    "recalibrate_batchnorm",
]

_MOVED = ("Lion", "AdaBelief", "LAMB")  # adaptlr < 0.3 kept them here


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import warnings

        from .. import optim

        warnings.warn(
            f"adaptlr.free.{name} moved to adaptlr.optim.{name} (also adaptlr.{name}): it does not "
            "estimate its own step size",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(optim, name)
    raise AttributeError(f"module 'adaptlr.free' has no attribute {name!r}")
