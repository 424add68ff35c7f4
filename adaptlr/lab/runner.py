"""Train tasks x methods x seeds, in parallel processes, into a :class:`~adaptlr.lab.store.Store`: the names,
re-exported from where they live.

- :mod:`adaptlr.lab.training`: the training loop (:func:`train`, :class:`Interrupted`);
- :mod:`adaptlr.lab.jobs`: one run trained under a claim in the store (:class:`Job`, :func:`run_job`);
- :mod:`adaptlr.lab.comparison`: comparisons, inline or in worker processes (:func:`plan`, :func:`compare`,
  :class:`CompareResult`);
- :mod:`adaptlr.lab.workers`: the processes that train (:func:`limit_threads`, :func:`import_modules`, dying
  with the parent);
- :mod:`adaptlr.lab.progress`: the progress bars.

>>> from adaptlr.lab.runner import train
>>> result = train("linreg", "sgd(lr=0.05)", seed=0, steps=50)
>>> result["diverged"], result["points"][-1]["step"]
(False, 50)
"""

from __future__ import annotations

from .comparison import CompareResult, compare, plan
from .jobs import Job, run_job
from .training import DIVERGE_FACTOR, Interrupted, train
from .workers import PR_SET_PDEATHSIG, import_modules, limit_threads

__all__ = [
    "DIVERGE_FACTOR",
    "PR_SET_PDEATHSIG",
    "CompareResult",
    "Interrupted",
    "Job",
    "compare",
    "import_modules",
    "limit_threads",
    "plan",
    "run_job",
    "train",
]
