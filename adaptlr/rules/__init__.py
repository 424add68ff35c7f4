"""Update rules: the math of each optimizer, written once as a pure elementwise function.

The rules of ``torch.optim``'s optimizers live in :mod:`.classic` and :mod:`.extra`, those of the adaptive rules
from their papers' packages in :mod:`.adaptive`, the learning-rate-free methods' in ``free_*``. This package
exports every rule of the first three (each module's ``__all__``: a new rule is one function and one name there).
"""

from . import _math, adaptive, classic, extra
from . import _math as math_ops  # the rules' tiny math module (sqrt, where, ...), public under this name
from ._elementwise import elementwise
from .adaptive import *  # noqa: F403
from .classic import *  # noqa: F403
from .extra import *  # noqa: F403

__all__ = ["_math", "elementwise", "math_ops"]
__all__ += classic.__all__
__all__ += extra.__all__
__all__ += adaptive.__all__
