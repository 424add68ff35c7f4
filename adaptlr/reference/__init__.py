"""Float64 NumPy reference implementations of the classic update rules: test oracles and teaching code.

Each class is written from the paper's formulas and follows ``torch.optim``'s semantics exactly (same names,
defaults, hyperparameters and state names); they share no code with adaptlr's torch optimizers, so they
can test them. Parameters are float64 ``numpy.ndarray`` objects updated in place by ``step(grads)``;
``state`` is a list of per-parameter dicts (``step`` is an int, the rest float64 arrays). Lion, AdaBelief and
LAMB follow their packages instead (a copy of the parameters, ``x``; see ``_adaptive.py``), and the
learning-rate-free methods live in :mod:`adaptlr.reference.free`.

>>> import numpy as np
>>> from adaptlr import reference
>>> theta = np.zeros(2)
>>> opt = reference.Adam([theta], lr=0.1)
>>> for _ in range(200):
...     opt.step([2 * (theta - np.array([1.0, -1.0]))])  # gradient of |theta - (1, -1)|^2
>>> print(np.round(theta, 2))
[ 1. -1.]
"""

import importlib
import pkgutil

from ._base import ReferenceOptimizer

#: every reference optimizer by its class name: the classes named in the ``__all__`` of each private module of this
#: package (``_adam.py``: ``Adam``, ``AdamW``), collected here, so a new reference is one new module
REGISTRY: dict[str, type] = {}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("_") and _info.name != "_base":
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        REGISTRY.update({n: getattr(_module, n) for n in _module.__all__ if isinstance(getattr(_module, n), type)})
globals().update(REGISTRY)

__all__ = [*REGISTRY, "ReferenceOptimizer"]
