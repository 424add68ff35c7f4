"""The lab: train small real models under many learning-rate methods and show which works best.

>>> from adaptlr import lab
>>> lab.parse_method("adam(lr=3e-3) + cosine(warmup=0.05)").canonical
'adam(lr=0.003) + cosine(warmup=0.05)'

Modules: :mod:`~adaptlr.lab.tasks` (models and bundled data), :mod:`~adaptlr.lab.methods` (the spec grammar),
:mod:`~adaptlr.lab.runner` (parallel training), :mod:`~adaptlr.lab.store` (SQLite results),
:mod:`~adaptlr.lab.report` (tables and figures), :mod:`~adaptlr.lab.search` (tuning), :mod:`~adaptlr.lab.cli`.
Heavy libraries (matplotlib, rich, optuna, scikit-learn, mnist1d) are imported only when used.
"""

from .methods import Method, SpecError, available_methods, parse_method, register_optimizer
from .runner import compare, train
from .store import Store
from .tasks import TASKS, Task, get_task, register_task

__all__ = [
    "TASKS",
    "Method",
    "SpecError",
    "Store",
    "Task",
    "available_methods",
    "compare",
    "get_task",
    "parse_method",
    "register_optimizer",
    "register_task",
    "train",
]
