"""Optimizers: ``torch.optim.Optimizer`` classes built from the elementwise rules in :mod:`adaptlr.rules`."""

from ._adadelta import Adadelta
from ._adagrad import Adagrad
from ._adam import Adam, Adamax, AdamW
from ._base import Optimizer
from ._nadam import NAdam, RAdam
from ._rmsprop import RMSprop
from ._sgd import SGD

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "Optimizer", "RAdam", "RMSprop"]
