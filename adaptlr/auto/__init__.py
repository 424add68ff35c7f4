"""Training without tuning: :class:`Auto` races a learning-rate grid on held-out data with successive halving,
continues the winner and commits the best validated model. Its pieces are public so that the Lightning and
Hugging Face callbacks, the lab and the benchmark build on them: the plan (:class:`Plan`, :func:`make_plan`), the
user's step (:class:`TrainStep`), the race (:class:`Race`, :func:`build_race`), the commit (:class:`Commit`), and
where racer states live (:class:`StateStore`).

>>> import torch
>>> from torch.nn import functional as F
>>> from adaptlr.auto import Auto
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.randn(512, 4, generator=g); y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
>>> train = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 384, 32)]
>>> val = [(x[384:], y[384:])]
>>> _ = torch.manual_seed(0); model = torch.nn.Linear(4, 1)
>>> result = Auto().fit(model, F.mse_loss, train, val, steps=200, val_cost=1.0)
>>> result.cost <= 1.5, result.lr in result.lrs
(True, True)
"""

from ._auto import Auto
from ._commit import Commit
from ._fit import build_race, result_of
from ._grid import DEFAULT_LRS, GRIDS, LR_SCALE, check_optimizer, default_lrs
from ._meter import Meter
from ._plan import WATCH_EVERY, Plan, make_plan, replan_rung2, reserve, rest_cost, validation_rows, watch_points
from ._race import Race
from ._racer import Racer, paired_se, rank_finalists, regime, run_cost, set_schedule, stalled
from ._result import AutoResult
from ._schedules import TAILS, branch_schedule, run_schedule
from ._step import Batches, TrainStep, move, rows
from ._store import StateStore
from ._validate import Validator

__all__ = [
    "DEFAULT_LRS",
    "GRIDS",
    "LR_SCALE",
    "TAILS",
    "WATCH_EVERY",
    "Auto",
    "AutoResult",
    "Batches",
    "Commit",
    "Meter",
    "Plan",
    "Race",
    "Racer",
    "StateStore",
    "TrainStep",
    "Validator",
    "branch_schedule",
    "build_race",
    "check_optimizer",
    "default_lrs",
    "fit",
    "make_plan",
    "move",
    "paired_se",
    "rank_finalists",
    "regime",
    "replan_rung2",
    "rest_cost",
    "reserve",
    "result_of",
    "rows",
    "run_cost",
    "run_schedule",
    "set_schedule",
    "stalled",
    "validation_rows",
    "watch_points",
]


def fit(model, *args, **options):  # type: ignore[no-untyped-def]
    """:meth:`Auto.fit` with ``Auto(**auto_options)``: ``options`` are :class:`Auto`'s arguments plus ``fit``'s
    keyword arguments."""
    import inspect

    fit_keys = set(inspect.signature(Auto.fit).parameters) - {"self", "model", "args"}
    fit_kwargs = {k: options.pop(k) for k in list(options) if k in fit_keys}
    return Auto(**options).fit(model, *args, **fit_kwargs)
