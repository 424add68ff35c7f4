r"""Float64 NumPy references of the learning-rate-free methods (oracles and teaching code).

Each class holds a list of parameter arrays ``x`` (one group) and takes ``step(grads)``. They are written from
the papers' formulas in the form the reference packages implement them (the packages'
quirks are noted where they matter), with no speed tricks, so that a reader can follow the math:

* :class:`Prodigy` -- Mishchenko & Defazio (2023), Algorithm 4 as in ``prodigyopt`` 1.1.
* :class:`DAdaptSGD`, :class:`DAdaptAdam`, :class:`DAdaptAdaGrad` -- Defazio & Mishchenko (2023), as in
  ``dadaptation`` 3.2.
* :class:`DoG`, :class:`LDoG` -- Ivgi, Hinder & Carmon (2023), as in ``dog-optimizer`` 1.0.3, and
  :class:`PolynomialDecayAverager` (Shamir & Zhang, 2013).
* :class:`ScheduleFreeSGD`, :class:`ScheduleFreeAdamW`, :class:`ScheduleFreeRAdam` -- Defazio et al.
  (2024), as in ``schedulefree`` 1.4.

One module per method family, as in :mod:`adaptlr.free` (``prodigy``, ``dadapt``, ``dog``, ``schedulefree``).
(Lion, AdaBelief and LAMB, which estimate no step size, moved to :mod:`adaptlr.reference` in adaptlr 0.3, beside
their torch.optim neighbours; ``reference.free.Lion`` still resolves, with a ``DeprecationWarning``.)

Notation: ``x`` the parameters, ``g`` the gradient, ``x0`` the initial point, ``d`` the distance estimate
``D ~ ||x0 - x*||``.

>>> import numpy as np
>>> x = np.array([1.0, -2.0])
>>> opt = Prodigy([x])  # leave lr = 1: d is the step size's scale, estimated
>>> for _ in range(3):
...     opt.step([2 * x])  # the gradient of ||x||^2
>>> bool(opt.d > opt.d0)  # the estimate grows from d0 while the gradients keep pointing the same way
True
"""

from typing import Any

from .dadapt import DAdaptAdaGrad, DAdaptAdam, DAdaptSGD
from .dog import DoG, LDoG, PolynomialDecayAverager
from .prodigy import Prodigy
from .schedulefree import ScheduleFreeAdamW, ScheduleFreeRAdam, ScheduleFreeSGD

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
]

_MOVED = ("Lion", "AdaBelief", "LAMB")  # adaptlr < 0.3 kept their references here


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import warnings

        from .. import _adaptive

        warnings.warn(
            f"adaptlr.reference.free.{name} moved to adaptlr.reference.{name}: it does not estimate its own step size",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_adaptive, name)
    raise AttributeError(f"module 'adaptlr.reference.free' has no attribute {name!r}")
