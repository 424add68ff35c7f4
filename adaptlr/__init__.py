"""adaptlr: the learning rate of a PyTorch training run, adjusted for you.

- update rules (``adaptlr.Adam``, ``adaptlr.SGD``, ...): ``torch.optim.Optimizer`` classes whose math is one
  elementwise function, run by a fused one-pass Numba kernel on CPU or by foreach ops anywhere;
- learning-rate-free methods (``adaptlr.Prodigy``, ``DAdaptAdam``, ``DoG``, ``ScheduleFreeAdamW``, ...);
- schedules (:mod:`adaptlr.schedules`), feedback controllers (:mod:`adaptlr.controllers`) and the LR range
  test (:func:`adaptlr.lr_find`);
- NumPy references of every rule (:mod:`adaptlr.reference`) and a lab that compares methods (``adaptlr`` CLI).

Importing adaptlr imports torch and nothing heavy besides (Numba loads on the first fused step; matplotlib,
rich, optuna and scikit-learn only in the functions that use them).
"""

from typing import TYPE_CHECKING, Any

from . import controllers, free, optim, schedules
from .finder import LRFindResult, lr_find
from .free import *  # noqa: F403  (the learning-rate-free methods: adaptlr.free.__all__)
from .optim import *  # noqa: F403  (the optimizers: adaptlr.optim.__all__)

if TYPE_CHECKING:
    from .auto import Auto

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``adaptlr.Auto`` on first use (``adaptlr.auto`` costs a fifth of ``import adaptlr`` beyond torch)."""
    if name == "Auto":
        from .auto import Auto

        return Auto
    raise AttributeError(f"module 'adaptlr' has no attribute {name!r}")


__all__ = [
    # learning rate as a schedule, a controller, or found by a range test
    "controllers",
    "schedules",
    "lr_find",
    "LRFindResult",
    "Auto",
    "__version__",
]
# every optimizer (adaptlr.optim) and learning-rate-free method (adaptlr.free): derived, never listed twice
__all__ += optim.__all__
__all__ += free.__all__
