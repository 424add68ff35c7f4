"""A candidate of a race (:class:`Racer`) and the rules that order candidates: :func:`regime` (where the best
stands against the start), :func:`rank_finalists` (the near-tie rule), and :func:`set_schedule` (a candidate's
schedule on its inner optimizer, times each group's ``lr_scale``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..controllers import LossScale
from ._grid import LR_SCALE

__all__ = [
    "Racer",
    "blind",
    "order_finalists",
    "rank_finalists",
    "regime",
    "run_cost",
    "set_schedule",
    "stalled",
    "survivors",
]


@dataclass
class Racer:
    """One candidate learning rate: its scores ``(step, score)``, the train losses of its lineage, and why it
    is out (``diverged``; ``note``)."""

    lr: float
    steps: int = 0
    scores: list[tuple[int, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    diverged: bool = False
    note: str = ""
    parts: list[list[float]] = field(default_factory=list, repr=False)  # its last score's batches, [mean, rows]
    rule: LossScale = field(default_factory=LossScale, repr=False)
    seconds: float = 0.0  # the seconds of its timed steps (each lineage's first left out: :class:`Meter`)
    timed: int = 0

    @property
    def score(self) -> float:
        return self.scores[-1][1] if self.scores else math.inf

    @property
    def key(self) -> str:
        return f"lr{self.lr:.6g}"


def run_cost(racers: list[Racer], meter: Any) -> float:
    """What a step of ``racers`` costs against the race's unit (``meter``: a :class:`~adaptlr.auto.Meter`,
    :attr:`~adaptlr.auto.Meter.step_seconds`): the least of their mean steps over it, at least 1. A step's seconds may
    depend on the lr (an RBF network's steps cost half as much again at lr 1 as at 1e-3), and the run goes on at
    the winner's; the least of the finalists' is what every finalist shows. The largest of them was what a
    machine whose speed changes during the race shows: on an LSTM whose steps cost the same at every lr, with the
    machine's other core busy, some candidates' steps took 0.8 ms and others' 1.5-2.3 ms, and the largest
    finalist's made rung 2 one step long in half the races. Never below 1: a race's first steps are often its
    slowest (caches still cold), and a plan that trusted its cheaper later steps overspent (a first fit of linear
    regression in a process: 1.8 runs where the budget was 1.5). 1.0 when fewer than two steps of each were
    timed. Times what Auto's loop adds to a step (:attr:`~adaptlr.auto.Meter.loop_cost`): the run's steps are
    taken in it."""
    means = [r.seconds / r.timed for r in racers if r.timed >= 2]
    lr_cost = max(1.0, meter.relative(min(means))) if len(means) == len(racers) and means else 1.0
    return lr_cost * meter.loop_cost


def regime(best: float, start: float, tie: float) -> str:
    """Where a race's best score stands against the start's: ``"improved"`` (below it by more than ``tie``,
    relative; also when the start is unknown), ``"stalled"`` (within ``tie`` of it: the race's horizon saw no
    progress) or ``"hurt"`` (above it by more: every candidate made the model worse)."""
    if not math.isfinite(start) or best < start - tie * abs(start):
        return "improved"
    return "stalled" if best <= start + tie * abs(start) else "hurt"


def survivors(racers: list[Racer], start: float | Racer, tie: float) -> list[Racer]:
    """Rung 1's racers that did not diverge, best first: by score; but when the best stalled at the ``start``'s
    score (:func:`stalled`: the race's horizon saw no progress, as in a fine-tune from a good start or on a
    plateau), the largest learning rates within ``tie`` of the best first: a longer run moves further, so
    near-ties go up."""
    alive = sorted((r for r in racers if not r.diverged), key=lambda r: r.score)
    if not alive or not stalled(alive[:1], tie, start):
        return alive
    near = sorted((r for r in alive if r.score <= alive[0].score + tie * abs(alive[0].score)), key=lambda r: -r.lr)
    return near + [r for r in alive if r not in near]


def paired_se(a: Racer, b: Racer) -> float:
    """The standard error of ``a``'s score minus ``b``'s, from their last scores' batches (the same rows, paired
    batch by batch, weighted by rows); 0 when they were not scored on the same batches, or on one."""
    if len(a.parts) != len(b.parts) or len(a.parts) < 2 or any(p[1] != q[1] for p, q in zip(a.parts, b.parts)):
        return 0.0
    w = [p[1] for p in a.parts]
    d = [p[0] - q[0] for p, q in zip(a.parts, b.parts)]
    mean = sum(x * k for x, k in zip(d, w)) / sum(w)
    var = sum(k * (x - mean) ** 2 for x, k in zip(d, w)) / sum(w)
    return math.sqrt(var / (len(d) - 1)) if math.isfinite(var) else 0.0


def blind(finalists: list[Racer], tie: float, start: Racer) -> bool:
    """Whether the race cannot tell its ``finalists`` from the ``start`` (scored on the same rows): the best
    beats it by no more than ``tie`` (relative) or one standard error of their paired difference."""
    best = min(finalists, key=lambda r: r.score)
    if not math.isfinite(start.score):
        return False
    return best.score >= start.score - max(tie * abs(start.score), paired_se(best, start))


def rank_finalists(finalists: list[Racer], tie: float, start: float | Racer = math.inf) -> list[Racer]:
    """Finalists best first: the lowest score, except that among the scores within reach of it -- ``tie``
    (relative), or one standard error of the paired difference on the same rows (:func:`paired_se`), whichever
    is wider: the one-standard-error rule of Breiman et al. (1984) -- the lowest learning rate goes first (the
    best lr of a short horizon over-estimates that of the full run), or, when the best stalled at the
    ``start``'s score (:func:`regime`; given the start as a :class:`Racer` scored on the same rows, also when
    the best beats it by less than one standard error: :func:`blind`), the largest (the horizon saw no
    progress: a longer run moves further)."""
    best = min(finalists, key=lambda r: r.score)
    near = [r for r in finalists if r.score <= best.score + max(tie * abs(best.score), paired_se(r, best))]
    if stalled(finalists, tie, start):
        first = max(near, key=lambda r: r.lr)
    else:
        first = min(near, key=lambda r: r.lr)
    return [first] + sorted((r for r in finalists if r is not first), key=lambda r: r.score)


def stalled(finalists: list[Racer], tie: float, start: float | Racer) -> bool:
    """Whether the best of ``finalists`` saw no progress from the ``start``: within ``tie`` of it
    (:func:`regime`), or, the start given as a scored :class:`Racer`, better by less than one standard error
    of their paired difference (:func:`blind`; not when every finalist made the model worse)."""
    score = start.score if isinstance(start, Racer) else start
    where = regime(min(r.score for r in finalists), score, tie)
    return where == "stalled" or (where == "improved" and isinstance(start, Racer) and blind(finalists, tie, start))


def order_finalists(finalists: list[Racer], tie: float, start: Racer, step: int) -> tuple[list[Racer], str | None]:
    """:func:`rank_finalists`, and what to say when no finalist's annealed branch (scored at ``step``) improved
    on the ``start`` (the model as it came in, scored on the same rows), or improved by less than one standard
    error of the paired difference (the race could not tell the candidates from the start: a guess)."""
    ranked = rank_finalists(finalists, tie, start)
    best, where = ranked[0], regime(min(r.score for r in ranked), start.score, tie)
    noise = paired_se(min(ranked, key=lambda r: r.score), start)
    if where == "improved" and stalled(ranked, tie, start):
        return ranked, (
            f"the race's best (validation {min(r.score for r in ranked):.4g} at step {step}) is within the noise "
            f"of the start's score ({start.score:.4g}, standard error {noise:.2g} on the same rows): at this "
            f"horizon the candidates could not be told from the start; the largest learning rate within reach of "
            f"the best was taken ({best.lr:g}), as a longer run moves further (a larger budget races longer)"
        )
    if where == "improved":
        return ranked, None
    why = (
        "the largest learning rate within tie of the best was taken, as a longer run moves further "
        if where == "stalled"
        else "every candidate made the model worse; the lowest near the best was taken "
    )
    return ranked, f"no finalist's annealed branch improved on the start ({start.score:.4g}) by step {step} " + (
        f"({where}): {why}({ranked[0].lr:g})"
    )


def set_schedule(
    opt: torch.optim.Optimizer, schedule: Any, scales: list[float] | None = None, pop: bool = False
) -> list[float]:
    """Give every group of a raced optimizer ``schedule`` times its ``lr_scale`` (``set_lr``; the scales are the
    race's, in its groups' :data:`LR_SCALE` key, unless given); ``pop`` removes that key from the groups (a
    framework's optimizer, whose checkpoint should not carry it). Returns the scales."""
    from .. import schedules as S

    out = []
    for i, g in enumerate(opt.param_groups):
        own = g.pop(LR_SCALE, 1.0) if pop else g.get(LR_SCALE, 1.0)
        scale = float(own if scales is None else scales[i])
        out.append(scale)
        opt.set_lr(schedule if scale == 1.0 else S.scale(schedule, scale), group_index=i)  # type: ignore[attr-defined]
    return out
