r"""Feedback controllers: each observes a metric and owns a multiplicative factor on the learning rate.

Effective lr of a group = schedule(step) x the product of the controllers' factors, so warmup, cosine
decay and reduce-on-plateau work together::

    opt = adaptlr.SGD(model.parameters(), lr=schedules.warmup(schedules.cosine(0.1, 9_000), 1_000))
    plateau = controllers.ReduceOnPlateau(opt, patience=3)
    ...
    plateau.observe(val_loss)
"""

from ._base import Controller
from .divergence import DivergenceGuard, LossScale, TrainingDiverged
from .hypergradient import Hypergradient
from .loss_trend import LossTrend
from .plateau import ReduceOnPlateau

__all__ = [
    "Controller",
    "DivergenceGuard",
    "Hypergradient",
    "LossScale",
    "LossTrend",
    "ReduceOnPlateau",
    "TrainingDiverged",
]
