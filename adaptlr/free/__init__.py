"""Learning-rate-free optimizers: they estimate their step size themselves.

Each is a rule on adaptlr's engines (a reduction phase for the global sums, then the update phase), with one
estimate per param group on request (``per_group_d=True``), sums all-reduced over a ``process_group`` when the
parameters are sharded, and an ``effective_lr(group_index)`` readout.
"""

from .adaptive import LAMB, AdaBelief, Lion
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
    "Lion",
    "AdaBelief",
    "LAMB",
]
