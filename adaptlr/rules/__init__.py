"""Update rules: the math of each optimizer, written once as a pure elementwise function."""

from . import _math
from ._elementwise import elementwise
from .classic import adadelta, adagrad, adam, adamax, gradient, nadam, radam, rmsprop, sgd
from .extra import (
    adafactor_precondition,
    adafactor_second_moment,
    asgd,
    decayed_step,
    muon_momentum,
    newton_schulz,
    rprop,
    sparse_adam,
)

__all__ = [
    "_math",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "elementwise",
    "gradient",
    "nadam",
    "radam",
    "rmsprop",
    "sgd",
    "adafactor_precondition",
    "adafactor_second_moment",
    "asgd",
    "decayed_step",
    "muon_momentum",
    "newton_schulz",
    "rprop",
    "sparse_adam",
]
