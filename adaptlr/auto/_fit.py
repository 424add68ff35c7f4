"""Auto: train with no learning rate to choose, by racing a learning-rate grid on held-out data.

See :class:`Auto` for the algorithm and ``docs/auto.md`` for where each part comes from and what it earns.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._validation import check_bool, check_count, check_nonfinite, check_real

__all__ = ["DEFAULT_LRS", "Auto", "AutoResult", "Racer", "fit"]

#: the half-decade grid the racers start from (the grid the benchmark's tuned baseline searches)
DEFAULT_LRS: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)

Batch = Any
LossFn = Callable[[torch.Tensor, Any], torch.Tensor]


def _wsd(step: int, peak: float, total: int, warmup: int, decay: int) -> float:
    """The warmup-stable-decay multiplier schedule: linear warmup from ``peak / warmup`` to ``peak`` over the
    first ``warmup`` steps, constant ``peak``, then a linear cooldown to 0 over the last ``decay`` steps.
    ``step`` counts completed steps (0 for the first step)."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if decay > 0 and step >= total - decay:
        return peak * max(0.0, (total - step) / decay)
    return peak


@dataclass
class Racer:
    """One candidate learning rate: its lineage's state (``None`` once eliminated), scores and cost."""

    lr: float
    state: dict[str, Any] | None = None
    steps: int = 0
    scores: list[tuple[int, float]] = field(default_factory=list)  # (rung step, validation score)
    losses: list[float] = field(default_factory=list)  # train loss of each step of this lineage
    diverged: bool = False

    @property
    def score(self) -> float:
        return self.scores[-1][1] if self.scores else math.inf


@dataclass
class AutoResult:
    """What :meth:`Auto.fit` did. ``lr``: the learning rate it committed to (the peak of the winner's
    schedule); ``cost``: every training step, branch step and held-out evaluation it spent, in units of one
    training run of ``steps`` steps (a held-out evaluation counted as ``val_cost`` steps); ``racers``: every
    candidate with its validation scores; ``optimizer``: the winner's optimizer (its state after the last step,
    so training can go on); ``val_score``: the committed model's validation score; ``committed``: ``"final"``
    (the model at the end of the run) or ``"branch"`` (an annealed race branch that validated better), or
    ``"race"`` after ``fit(race_only=True)``: the model holds the winner's state at the branch point (step
    ``plan["rung2"]``), ``optimizer`` its optimizer there, ``val_score`` the winner's annealed-branch score and
    ``branch`` that annealed branch's model state (for ``keep_best``; None otherwise), ``cost`` the race's."""

    lr: float
    cost: float
    steps: int
    racers: list[Racer]
    optimizer: torch.optim.Optimizer
    val_score: float
    committed: str
    cost_steps: float
    plan: dict[str, int]
    branch: dict[str, torch.Tensor] | None = None

    def effective_lr(self) -> float:
        """The committed learning rate (the peak of the winner's warmup-stable-decay schedule)."""
        return self.lr


class Auto:
    r"""Training without a learning rate to choose: successive halving of a learning-rate grid on held-out
    data, on warmup-stable-decay (WSD) schedules whose survivors *continue* instead of restarting.

    With a budget of :math:`T` steps, grid :math:`\Lambda` (default :math:`10^{-4} \dots 10^{-1}`, seven
    half-decades), warmup :math:`w = \lceil 0.05 T \rceil`, cooldown :math:`d = 0.2 T`, the schedule of candidate
    :math:`\eta` is :math:`\eta_t = \eta \cdot \mathrm{wsd}(t)` (linear warmup, constant, linear decay to 0), and
    the inner optimizer is AdamW (:math:`\beta = (0.9, 0.999)`, weight decay :math:`\lambda = 0.01`). Let
    :math:`V(\theta)` be the validation objective (lower is better).

    1. **Rung 1** (at :math:`s_1`): every :math:`\eta \in \Lambda` trains from the same initial state
       :math:`\theta_0` for :math:`s_1` steps on the *same* minibatches (common random numbers). Score:
       :math:`V(\theta^\eta_{s_1})`. Diverged candidates (non-finite loss, or 100x the first) are out. Keep
       the ``keep`` best.
    2. **Rung 2** (at :math:`s_2`): survivors continue (same batches) to :math:`s_2`; each branches a copy that
       anneals linearly to 0 over :math:`c` steps, scored :math:`V(\text{branch})` (an annealed model is what
       the run will end with, so a constant-lr model's noise does not decide), then the branch is dropped.
    3. **Choice**: the lowest branch score wins, except that a *lower* learning rate whose score is within
       ``tie`` (relative) of the best is preferred: the best learning rate of a short horizon over-estimates
       that of the full horizon (it shrinks as training gets longer), so near-ties go down.
    4. **Continue**: the winner's rung-2 state trains on to :math:`T` on its WSD schedule (no restart: its race
       steps are part of its run). The committed model is the end of the run, or the winner's annealed
       rung-2 branch if that validates better (``keep_best``; a guard against late overfitting).

    Cost, counted in training steps: :math:`T + (|\Lambda| - 1)\,s_1 + (k - 1)(s_2 - s_1) + k\,c` plus
    ``val_cost`` per held-out evaluation (:math:`|\Lambda| + k + 1` of them); the rung fractions are scaled so
    that this is at most ``budget`` :math:`\times T` (1.5 by default; when the evaluations alone leave no room,
    the races shrink to one step per rung and :meth:`fit` warns that the cost exceeds the budget). The inner
    optimizer's step is AdamW's (plus setting one float per group).

    Args:
        lrs: the candidate learning rates (peak of each WSD schedule).
        budget: the most compute spent, in units of one training run of ``steps`` steps.
        keep: candidates kept after rung 1.
        rung1, rung2, branch: the rung steps and the branch cooldown as fractions of ``steps`` before scaling
            to the budget (defaults 0.035, 0.10, 0.025).
        warmup, cooldown: fractions of ``steps`` for the WSD warmup and final cooldown (0.05, 0.2).
        tie: relative tolerance of the near-tie rule (0.02).
        keep_best: commit an annealed race branch when it validates better than the end of the run.
        weight_decay, betas, eps: the inner AdamW's (0.01, (0.9, 0.999), 1e-8).
        nonfinite: the inner optimizer's non-finite-gradient policy (``None``, ``"raise"`` or ``"skip"``).
        optimizer: the inner optimizer class (default ``adaptlr.AdamW``), called as
            ``optimizer(params, lr=..., weight_decay=..., betas=..., eps=..., nonfinite=...)``.

    Example::

        auto = Auto()
        result = auto.fit(model, F.cross_entropy, train_batches, val_batches, steps=1000)
        result.lr, result.cost   # the committed learning rate; compute in units of one run (<= 1.5)
    """

    def __init__(
        self,
        lrs: Sequence[float] = DEFAULT_LRS,
        budget: float = 1.5,
        keep: int = 3,
        rung1: float = 0.035,
        rung2: float = 0.10,
        branch: float = 0.025,
        warmup: float = 0.05,
        cooldown: float = 0.2,
        tie: float = 0.02,
        keep_best: bool = True,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        nonfinite: str | None = None,
        optimizer: type[torch.optim.Optimizer] | None = None,
    ) -> None:
        lrs = tuple(check_real(f"lrs[{i}]", x, 0.0, low_open=True) for i, x in enumerate(lrs))
        if not lrs:
            raise ValueError("Invalid lrs: () (expected at least one learning rate)")
        self.lrs = tuple(sorted(lrs))
        self.budget = check_real("budget", budget, 1.0, low_open=True)  # (one run plus the races)
        self.keep = check_count("keep", keep, 1, len(lrs))
        # fractions of the run, in [0, 1):
        self.rung1 = check_real("rung1", rung1, 0.0, 1.0, high_open=True)
        self.rung2 = check_real("rung2", rung2, 0.0, 1.0, high_open=True)
        self.branch = check_real("branch", branch, 0.0, 1.0, high_open=True)
        self.warmup = check_real("warmup", warmup, 0.0, 1.0, high_open=True)
        self.cooldown = check_real("cooldown", cooldown, 0.0, 1.0, high_open=True)
        if not rung1 < rung2:
            raise ValueError(f"Invalid rungs: rung1={rung1} must be below rung2={rung2}")
        self.tie = check_real("tie", tie, 0.0, 1.0, high_open=True)
        self.keep_best = check_bool("keep_best", keep_best)
        self.weight_decay = float(weight_decay)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.nonfinite = check_nonfinite(nonfinite)
        self.optimizer = optimizer

    # ---- the plan ------------------------------------------------------------------------------------
    def plan(self, steps: int, val_cost: float = 0.0) -> dict[str, int]:
        """The rung steps ``s1``, ``s2``, the branch length ``c``, warmup and cooldown for a run of ``steps``,
        with the rung fractions scaled (up or down) so that the planned cost is ``budget`` runs when every
        candidate survives to its rung."""
        steps = check_count("steps", steps, 1)
        n, k = len(self.lrs), self.keep
        evals = (n + k + (1 if self.keep_best else 0)) * float(val_cost)
        unit = (n - 1) * self.rung1 + (k - 1) * (self.rung2 - self.rung1) + k * self.branch
        room = (self.budget - 1.0) * steps - evals
        scale = max(0.0, room / (unit * steps)) if unit > 0 else 0.0
        s1 = max(1, int(self.rung1 * scale * steps))
        s2 = max(s1 + 1, int(self.rung2 * scale * steps))
        c = max(1, int(self.branch * scale * steps))
        s2 = min(s2, steps)
        s1 = min(s1, s2)

        # the one-step minimums can overshoot a tiny budget: shorten rung 2 (then rung 1) until it fits
        def over() -> float:
            return n * s1 + k * (s2 - s1 + c) + steps - s2 + evals - self.budget * steps

        while over() > 1e-9 and s2 > s1 + 1:
            s2 -= 1
        while over() > 1e-9 and s1 > 1:
            s1 -= 1
            s2 -= 1
        return {
            "steps": steps,
            "rung1": s1,
            "rung2": s2,
            "branch": c,
            "warmup": int(math.ceil(self.warmup * steps)),
            "cooldown": int(round(self.cooldown * steps)),
        }

    def planned_cost(self, steps: int, val_cost: float = 0.0) -> float:
        """The most :meth:`fit` spends (in runs of ``steps`` steps) when no candidate diverges."""
        p = self.plan(steps, val_cost)
        n, k = len(self.lrs), min(self.keep, len(self.lrs))
        total = n * p["rung1"] + k * (p["rung2"] - p["rung1"]) + k * p["branch"] + (steps - p["rung2"])
        total += (n + k + (1 if self.keep_best else 0)) * val_cost
        return total / steps

    # ---- the loop ------------------------------------------------------------------------------------
    def fit(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train: Iterable[Batch] | Iterator[Batch],
        val: Callable[[nn.Module], float] | Sequence[Batch],
        steps: int,
        *,
        val_cost: float | None = None,
        params: Iterable[Any] | None = None,
        on_step: Callable[[int, float, float, bool], None] | None = None,
        race_only: bool = False,
    ) -> AutoResult:
        """Train ``model`` for a budget of ``steps`` steps and commit the chosen model into it.

        ``train`` yields ``(inputs, targets)`` minibatches (an iterator is consumed; an iterable such as a
        ``DataLoader`` is re-iterated when it runs out); the loss of a batch is ``loss_fn(model(inputs),
        targets)``. ``val`` is either a function ``model -> float`` (lower is better; called in eval mode, under
        ``torch.no_grad``) with its cost ``val_cost`` in training steps, or a sequence of ``(inputs, targets)``
        batches whose mean ``loss_fn`` is the score (then ``val_cost`` defaults to the number of validation
        rows over three training batches: a forward pass costs about a third of a training step).
        ``params``: parameters or param groups for the inner optimizer (default ``model.parameters()``; a
        group's own ``weight_decay`` is kept and its optional ``lr_scale`` multiplies the raced lr).
        ``on_step(step, loss, lr, live)``: called for every step of the winner's lineage: ``live=False`` for
        the race steps, replayed once the winner is known, ``live=True`` afterwards (the model then holds
        that step's parameters).

        ``race_only=True`` stops at the branch point instead of continuing the winner: the model is left with
        the winner's parameters and buffers after ``plan["rung2"]`` steps and the result's ``committed`` is
        ``"race"`` (the Lightning callback :class:`adaptlr.integrations.lightning.AutoLR` continues from there).

        Everything the races do to the model is undone: the model ends with the committed parameters and
        buffers, and in the train/eval mode it came in with.
        """
        steps = int(steps)
        stream = _stream(train)
        first = next(stream)
        batch_rows = _rows(first)
        if callable(val):
            score_fn = val
            vcost = float(val_cost or 0.0)
        else:
            val_batches = list(val)
            score_fn = _mean_loss(loss_fn, val_batches)
            vrows = sum(_rows(b) for b in val_batches)
            vcost = float(val_cost) if val_cost is not None else vrows / (3.0 * max(1, batch_rows))
        p = self.plan(steps, vcost)
        planned = self.planned_cost(steps, vcost)
        if planned > self.budget + 1e-9:
            warnings.warn(
                f"Auto: {len(self.lrs) + self.keep + 1} validation passes of {vcost:.3g} steps each leave no room "
                f"for races within budget={self.budget} of {steps} steps; the minimal races cost {planned:.2f} "
                "runs (use a smaller validation set or a longer run)",
                stacklevel=2,
            )
        groups = _groups(model, params)
        was_training = model.training
        model.train()
        theta0 = _copy_module_state(model)
        cost = 0.0
        pending: list[Batch] = [first]

        def take(n: int) -> list[Batch]:
            while len(pending) < n:
                pending.append(next(stream))
            out = pending[:n]
            del pending[:n]
            return out

        def run(racer: Racer, opt: torch.optim.Optimizer, batches: list[Batch], total: int) -> None:
            nonlocal cost
            first_loss = racer.losses[0] if racer.losses else None
            for b in batches:
                lr = _wsd(racer.steps, racer.lr, total, p["warmup"], p["cooldown"])
                _set_lr(opt, lr)
                loss = _train_step(model, opt, loss_fn, b)
                cost += 1
                racer.steps += 1
                racer.losses.append(loss)
                if first_loss is None:
                    first_loss = abs(loss) if math.isfinite(loss) else 1.0
                if not math.isfinite(loss) or abs(loss) > 100.0 * max(first_loss, 1e-12):
                    racer.diverged = True
                    return

        def evaluate() -> float:
            nonlocal cost
            cost += vcost
            model.eval()
            try:
                with torch.no_grad():
                    v = float(score_fn(model))
            finally:
                model.train()
            return v if math.isfinite(v) else math.inf

        racers = [Racer(lr) for lr in self.lrs]
        # rung 1: every candidate from theta0 on the same batches
        rung1 = take(p["rung1"])
        for r in racers:
            _load_module_state(model, theta0)
            opt = self._make(groups, r.lr)
            run(r, opt, rung1, steps)
            if not r.diverged:
                r.scores.append((r.steps, evaluate()))
                r.state = {"model": _copy_module_state(model), "opt": copy.deepcopy(opt.state_dict())}
        alive = sorted((r for r in racers if not r.diverged), key=lambda r: r.score)[: self.keep]
        for r in racers:
            if r not in alive:
                r.state = None
        if not alive:
            _load_module_state(model, theta0)
            model.train(was_training)
            raise FloatingPointError(f"Auto: every candidate learning rate diverged within {p['rung1']} steps")
        # rung 2: survivors continue on the same batches, then an annealed branch of each is scored
        rung2 = take(p["rung2"] - p["rung1"])
        branch_batches = take(p["branch"])  # every branch anneals on the same fresh batches
        branches: dict[float, dict[str, Any]] = {}
        for r in alive:
            opt = self._restore(model, groups, r)
            run(r, opt, rung2, steps)
            if r.diverged:
                r.state = None
                continue
            r.state = {"model": _copy_module_state(model), "opt": copy.deepcopy(opt.state_dict())}
            peak = _wsd(r.steps - 1, r.lr, steps, p["warmup"], p["cooldown"])
            for i, b in enumerate(branch_batches):  # the branch anneals linearly from the current lr to 0
                _set_lr(opt, peak * (p["branch"] - i) / (p["branch"] + 1))
                _train_step(model, opt, loss_fn, b)
                cost += 1
            r.scores.append((r.steps, evaluate()))
            if self.keep_best:
                branches[r.lr] = _copy_module_state(model)
        finalists = [r for r in alive if not r.diverged]
        if not finalists:
            finalists = alive  # every survivor diverged in rung 2: fall back on the rung-1 states
            for r in finalists:
                r.diverged = False
        winner = self._choose(finalists)
        for r in racers:
            if r is not winner:
                r.state = None
        if on_step is not None:
            for i, loss in enumerate(winner.losses):
                on_step(i + 1, loss, _wsd(i, winner.lr, steps, p["warmup"], p["cooldown"]), False)
        # continue the winner to the end of its schedule
        opt = self._restore(model, groups, winner)
        winner.state = None
        if race_only:
            model.train(was_training)
            return AutoResult(
                lr=winner.lr,
                cost=cost / steps,
                steps=steps,
                racers=racers,
                optimizer=opt,
                val_score=winner.score,
                committed="race",
                cost_steps=cost,
                plan=p,
                branch=branches.get(winner.lr),
            )
        first_loss = winner.losses[0] if winner.losses else None
        while winner.steps < steps:
            lr = _wsd(winner.steps, winner.lr, steps, p["warmup"], p["cooldown"])
            _set_lr(opt, lr)
            loss = _train_step(model, opt, loss_fn, take(1)[0])
            cost += 1
            winner.steps += 1
            winner.losses.append(loss)
            if on_step is not None:
                on_step(winner.steps, loss, lr, True)
            if first_loss is None:
                first_loss = abs(loss) if math.isfinite(loss) else 1.0
            if not math.isfinite(loss) or abs(loss) > 100.0 * max(first_loss, 1e-12):
                winner.diverged = True
                break
        committed, val_score = "final", math.inf
        if self.keep_best and winner.lr in branches:
            val_score = evaluate()
            if val_score > winner.score or winner.diverged:
                _load_module_state(model, branches[winner.lr])
                committed, val_score = "branch", winner.score
        model.train(was_training)
        return AutoResult(
            lr=winner.lr,
            cost=cost / steps,
            steps=steps,
            racers=racers,
            optimizer=opt,
            val_score=val_score,
            committed=committed,
            cost_steps=cost,
            plan=p,
        )

    def _choose(self, finalists: list[Racer]) -> Racer:
        best = min(finalists, key=lambda r: r.score)
        lower = [r for r in finalists if r.lr < best.lr and r.score <= best.score + self.tie * abs(best.score)]
        return min(lower, key=lambda r: r.lr) if lower else best

    def _make(self, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
        cls = self.optimizer
        if cls is None:
            from adaptlr import AdamW as cls
        gs = []
        for g in groups:
            g = dict(g)
            g["adaptlr_auto_lr_scale"] = float(g.pop("lr_scale", 1.0))
            gs.append(g)
        kwargs: dict[str, Any] = {"lr": lr, "weight_decay": self.weight_decay, "betas": self.betas, "eps": self.eps}
        if self.nonfinite is not None:
            kwargs["nonfinite"] = self.nonfinite
        return cls(gs, **kwargs)

    def _restore(self, model: nn.Module, groups: list[dict[str, Any]], r: Racer) -> torch.optim.Optimizer:
        assert r.state is not None
        _load_module_state(model, r.state["model"])
        opt = self._make(groups, r.lr)
        opt.load_state_dict(r.state["opt"])
        return opt


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train: Iterable[Batch] | Iterator[Batch],
    val: Callable[[nn.Module], float] | Sequence[Batch],
    steps: int,
    **options: Any,
) -> AutoResult:
    """:meth:`Auto.fit` with the default algorithm; ``options`` are :class:`Auto`'s arguments plus ``fit``'s
    keyword arguments (``val_cost``, ``params``, ``on_step``, ``race_only``)."""
    fit_keys = ("val_cost", "params", "on_step", "race_only")
    fit_kwargs = {k: options.pop(k) for k in fit_keys if k in options}
    return Auto(**options).fit(model, loss_fn, train, val, steps, **fit_kwargs)


# ---- helpers ---------------------------------------------------------------------------------------
def _stream(train: Iterable[Batch] | Iterator[Batch]) -> Iterator[Batch]:
    if isinstance(train, Iterator):
        return train

    def again() -> Iterator[Batch]:
        for epoch in itertools.count():
            empty = True
            for b in train:
                empty = False
                yield b
            if empty:
                raise ValueError(f"Auto: the training data is empty (epoch {epoch})")

    return again()


def _rows(batch: Batch) -> int:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(x.shape[0]) if hasattr(x, "shape") and len(x.shape) else 1


def _mean_loss(loss_fn: LossFn, batches: list[Batch]) -> Callable[[nn.Module], float]:
    def score(model: nn.Module) -> float:
        total, rows = 0.0, 0
        for x, y in batches:
            k = _rows((x, y))
            total += float(loss_fn(model(x), y)) * k
            rows += k
        return total / max(rows, 1)

    return score


def _groups(model: nn.Module, params: Iterable[Any] | None) -> list[dict[str, Any]]:
    items = list(model.parameters() if params is None else params)
    if not items:
        raise ValueError("Auto: no parameters to train")
    if isinstance(items[0], dict):
        return [dict(g, params=list(g["params"])) for g in items]
    return [{"params": items}]


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("adaptlr_auto_lr_scale", 1.0)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: LossFn, batch: Batch) -> float:
    x, y = batch
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _copy_module_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _load_module_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for k, v in model.state_dict().items():
            v.copy_(state[k])
