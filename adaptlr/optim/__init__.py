"""Optimizers: ``torch.optim.Optimizer`` classes built from the elementwise rules in :mod:`adaptlr.rules`."""

from ._adadelta import Adadelta
from ._adafactor import Adafactor
from ._adagrad import Adagrad
from ._adam import Adam, Adamax, AdamW
from ._adaptive import LAMB, AdaBelief, Lion
from ._asgd import ASGD
from ._base import Optimizer
from ._lbfgs import LBFGS
from ._muon import Muon
from ._nadam import NAdam, RAdam
from ._phase import Phase
from ._rmsprop import RMSprop
from ._rprop import Rprop
from ._sgd import SGD
from ._sparse_adam import SparseAdam

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "Optimizer",
    "Phase",
    "RAdam",
    "RMSprop",
    # the rest of torch.optim
    "ASGD",
    "LBFGS",
    "Adafactor",
    "Muon",
    "Rprop",
    "SparseAdam",
    # adaptive rules from their papers' packages
    "AdaBelief",
    "LAMB",
    "Lion",
]
