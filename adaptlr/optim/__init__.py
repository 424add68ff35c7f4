"""Optimizers: ``torch.optim.Optimizer`` classes built from the elementwise rules in :mod:`adaptlr.rules`.

``__all__`` lists the optimizers (and their base class); the package root exports exactly these
(``adaptlr.Adam``, ...), so a new optimizer is one import and one name here. The step protocol that optimizers
are built on -- :class:`Phase`, :class:`GroupStep` (what the hooks receive), ``ENGINE_DOC`` (the engine arguments'
documentation) and :func:`locals_of` -- is importable from here too, for optimizers outside this package
(:mod:`adaptlr.free`).
"""

from ._adadelta import Adadelta
from ._adafactor import Adafactor
from ._adagrad import Adagrad
from ._adam import Adam, Adamax, AdamW
from ._adaptive import LAMB, AdaBelief, Lion
from ._asgd import ASGD
from ._base import ENGINE_DOC as ENGINE_DOC
from ._base import GroupStep as GroupStep
from ._base import Optimizer
from ._lbfgs import LBFGS
from ._muon import Muon
from ._nadam import NAdam, RAdam
from ._phase import Phase as Phase
from ._rmsprop import RMSprop
from ._rprop import Rprop
from ._sgd import SGD
from ._sharding import locals_of as locals_of
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
