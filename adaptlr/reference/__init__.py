"""Float64 NumPy reference implementations of the classic update rules: test oracles and teaching code.

Each class is written from the paper's formulas and follows ``torch.optim``'s semantics exactly (same names,
defaults, hyperparameters and state names); they share no code with adaptlr's torch optimizers, so they
can test them. Parameters are float64 ``numpy.ndarray`` objects updated in place by ``step(grads)``;
``state`` is a list of per-parameter dicts (``step`` is an int, the rest float64 arrays).

>>> import numpy as np
>>> from adaptlr import reference
>>> theta = np.zeros(2)
>>> opt = reference.Adam([theta], lr=0.1)
>>> for _ in range(200):
...     opt.step([2 * (theta - np.array([1.0, -1.0]))])  # gradient of |theta - (1, -1)|^2
>>> print(np.round(theta, 2))
[ 1. -1.]
"""

from ._adadelta import Adadelta
from ._adafactor import Adafactor
from ._adagrad import Adagrad
from ._adam import Adam, AdamW
from ._adamax import Adamax
from ._asgd import ASGD
from ._base import ReferenceOptimizer
from ._lbfgs import LBFGS
from ._muon import Muon
from ._nadam import NAdam
from ._radam import RAdam
from ._rmsprop import RMSprop
from ._rprop import Rprop
from ._sgd import SGD
from ._sparse_adam import SparseAdam

__all__ = [
    "SGD",
    "Adagrad",
    "RMSprop",
    "Adadelta",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "RAdam",
    "ASGD",
    "Adafactor",
    "LBFGS",
    "Muon",
    "Rprop",
    "SparseAdam",
    "ReferenceOptimizer",
]
