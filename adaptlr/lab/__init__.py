"""The lab: train small real models under many learning-rate methods and show which works best.

>>> from adaptlr import lab
>>> lab.parse_method("adam(lr=3e-3) + cosine(warmup=0.05)").canonical
'adam(lr=0.003) + cosine(warmup=0.05)'

Modules: :mod:`~adaptlr.lab.tasks` (models and bundled data), :mod:`~adaptlr.lab.tasks_stress` (the tuning-free
benchmark's stress and holdout tasks; ``tasks_unseen``, ``tasks_fresh``, ``tasks_final``, ``tasks_novel``,
``tasks_sealed``, ``tasks_vault``, ``tasks_cellar``, ``tasks_attic``, ``tasks_loft``, ``tasks_garret``,
``tasks_turret``, ``tasks_belfry``, ``tasks_spire``: its held-out sets); method specs: :mod:`~adaptlr.lab.terms` (a
spec's pieces), :mod:`~adaptlr.lab.schedule_terms` (the schedule terms), :mod:`~adaptlr.lab.catalog` (the names a spec
may use), :mod:`~adaptlr.lab.grammar` (the spec grammar), :mod:`~adaptlr.lab.build` (a method's optimizer); runs:
:mod:`~adaptlr.lab.training` (the training loop), :mod:`~adaptlr.lab.jobs` (one run under a claim in the store),
:mod:`~adaptlr.lab.comparison` (comparisons, in parallel processes), :mod:`~adaptlr.lab.workers` (the processes that
train), :mod:`~adaptlr.lab.store` (SQLite or PostgreSQL results); :mod:`~adaptlr.lab.report` (tables and figures),
:mod:`~adaptlr.lab.search` (tuning), :mod:`~adaptlr.lab.cli`.
Heavy libraries (matplotlib, rich, optuna, scikit-learn, mnist1d) are imported only when used.
"""

from .catalog import available_methods, register_optimizer
from .comparison import compare
from .grammar import Method, SpecError, parse_method
from .store import Store
from .tasks import TASKS, Task, get_task, register_task
from .tasks_attic import ATTIC  # importing it registers the attic tasks
from .tasks_belfry import BELFRY  # importing it registers the belfry tasks
from .tasks_cellar import CELLAR  # importing it registers the cellar tasks
from .tasks_final import FINAL  # importing it registers the final tasks
from .tasks_fresh import FRESH  # importing it registers the fresh tasks
from .tasks_garret import GARRET  # importing it registers the garret tasks
from .tasks_loft import LOFT  # importing it registers the loft tasks
from .tasks_novel import NOVEL  # importing it registers the novel tasks
from .tasks_sealed import SEALED  # importing it registers the sealed tasks
from .tasks_spire import SPIRE  # importing it registers the spire tasks
from .tasks_stress import HOLDOUT, STRESS  # importing it registers the stress and holdout tasks
from .tasks_turret import TURRET  # importing it registers the turret tasks
from .tasks_unseen import UNSEEN  # importing it registers the unseen tasks
from .tasks_vault import VAULT  # importing it registers the vault tasks
from .training import train

__all__ = [
    "ATTIC",
    "BELFRY",
    "CELLAR",
    "FINAL",
    "FRESH",
    "GARRET",
    "HOLDOUT",
    "LOFT",
    "NOVEL",
    "SEALED",
    "SPIRE",
    "STRESS",
    "TASKS",
    "TURRET",
    "UNSEEN",
    "VAULT",
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
