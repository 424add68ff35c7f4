"""What :meth:`adaptlr.Auto.fit` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ._commit import Commit
from ._plan import Plan
from ._racer import Racer

__all__ = ["AutoResult"]


@dataclass
class AutoResult:
    """What :meth:`Auto.fit` did.

    ``lr``: the committed peak learning rate; ``lrs``: every learning rate tried (the grid and its extensions);
    ``racers``: every candidate with its scores; ``committed``: what the model holds, ``"final"`` (the end of the
    run), ``"watch"`` (the run's best validated state at one of its watch points: early stopping), ``"branch"``
    (the winner's annealed race branch validated better), ``"start"`` (nothing validated better than the model
    as it came in) or ``"race"`` (``race_only``: the winner at the branch point); ``val_score``: its validation
    score; ``watched``: ``(step, score)`` at each watch point of the run, on the commit's rows; ``optimizer``:
    the winner's inner optimizer (its state after the last step);
    ``schedule``: the run's lr schedule (set on ``optimizer``); ``plan``: the race's :class:`Plan`.
    Cost: ``cost`` in runs of ``steps`` steps (training steps, plus validation at its measured cost per row, or
    the ``val_cost`` given); ``train_steps`` (gradient evaluations, counting accumulation as one step);
    ``seconds`` (wall time of ``fit``) and ``wall`` (those seconds in runs: over ``steps`` times the seconds
    of a training step, :attr:`Meter.step_seconds`; ``warm_seconds``: the first step's, whose one-off costs a
    plain run pays too);
    ``phase_seconds``: the wall time of each phase, ``"rung1"``, ``"rung2"`` (with its branches) and ``"run"``;
    ``warnings``: every turn a user should know of (also raised as
    ``UserWarning``). ``commit``: with ``race_only``, the :class:`Commit` to :meth:`~Commit.finish` later."""

    lr: float
    lrs: list[float]
    racers: list[Racer]
    optimizer: torch.optim.Optimizer
    committed: str
    val_score: float
    plan: Plan
    steps: int
    cost: float
    train_steps: int
    seconds: float
    wall: float
    schedule: Any
    warnings: list[str] = field(default_factory=list)
    commit: Commit | None = None
    warm_seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    watched: list[tuple[int, float]] = field(default_factory=list)

    @property
    def cost_steps(self) -> float:
        """The cost in training steps (``cost * steps``)."""
        return self.cost * self.steps

    def effective_lr(self) -> float:
        return self.lr
