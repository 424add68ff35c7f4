"""The plan of a race: how many steps each rung trains, how much of the validation data each decision reads, and
what everything costs, counted in training steps and in measured seconds. This module is the one home of those
rules; the race, the commit, the Lightning and Hugging Face callbacks and the lab read them from here.

The budget is ``budget`` runs of ``steps`` training steps (1.5 by default). Beyond the one run, a share
``val_share`` of the extra budget is reserved for validation and the rest, never less, goes to the race's training
steps: validation never shrinks the race. Validation fits its share by reading a *common subset* of the
validation batches, the same batches for every candidate of a round, growing as candidates are eliminated
(:func:`validation_rows`); what a validation row costs is measured (seconds per row over seconds per training
step), not estimated.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .._validation import check_choice, check_count, check_real, duration

__all__ = [
    "FINALIST_LINEAGES",
    "RUN_LINEAGES",
    "TAILS",
    "VAL_WEIGHTS",
    "WATCH_EVERY",
    "WSD_COOLDOWN",
    "Plan",
    "late_evaluations",
    "make_plan",
    "replan_rung2",
    "rest_cost",
    "validation_rows",
    "watch_points",
]

#: the shapes of the run's schedule after its warmup (:func:`~adaptlr.auto.run_schedule`)
TAILS = ("cosine", "linear", "wsd")

#: the WSD schedule's cooldown share of the run (measured against 0.2 and 0.35 on 28 tasks, docs/auto.md)
WSD_COOLDOWN = 0.5

#: the share of the run between the points where the committed run is validated (:func:`watch_points`)
WATCH_EVERY = 0.2

#: the lineages' fixed costs the committed run pays: at its start (its optimizer built, the branch point loaded, its
#: first step) and at its end (its final state saved, the committed one loaded, its first rollback point): on linear
#: regression 2.3-3.3 steps at the start, about 4 at its first point and 2.1-2.5 at the end, where a rung-1
#: candidate's were about 3
RUN_LINEAGES = 2

#: the lineages' fixed costs a finalist pays in rung 2: its state at the branch point and its annealed branch, each
#: a state saved and a schedule set (linear regression and a model at its optimum: rung 2 cost 2.1 steps a finalist
#: more than planned with one, whose measured fixed costs were 2.2-2.4 steps)
FINALIST_LINEAGES = 2

#: the share of the validation allowance each round of decisions gets: rung 1 (every candidate), rung 2 (the
#: finalists' annealed branches: the decision of the learning rate) and the commit (end of run vs branch vs start)
VAL_WEIGHTS: dict[str, float] = {"rung1": 0.3, "rung2": 0.5, "commit": 0.2}


@dataclass(frozen=True)
class Plan:
    """The steps of a race for a run of ``steps`` steps.

    ``rung1``: steps every candidate trains from the start; ``rung2``: the step the finalists reach (the branch
    point, where the winner's run continues); ``branch``: the length of each finalist's annealed branch;
    ``warmup``: the schedule's linear warmup, in steps; ``budget``: runs of ``steps`` steps the whole of ``fit`` may
    spend; ``val_share``: the share of the budget beyond one run reserved for validation; ``watch``: the share of
    the run between the points where the committed run is validated (0: none); ``tail``, ``cooldown``: the
    schedule's shape after the warmup (:func:`~adaptlr.auto.run_schedule`: every candidate races on it, and the
    winner's run goes on with it).
    """

    steps: int
    rung1: int
    rung2: int
    branch: int
    warmup: int
    budget: float
    val_share: float
    candidates: int
    keep: int
    watch: float = WATCH_EVERY
    tail: str = "cosine"
    cooldown: float = WSD_COOLDOWN

    @property
    def val_allowance(self) -> float:
        """Validation the plan affords, in training steps."""
        return self.val_share * (self.budget - 1.0) * self.steps

    def race_steps(self, candidates: int | None = None) -> int:
        """Training steps of the race beyond the winner's own ``rung2``: every candidate's rung 1, the other
        finalists' rung 2, every finalist's branch."""
        n = self.candidates if candidates is None else candidates
        k = min(self.keep, n)
        return (n - 1) * self.rung1 + (k - 1) * (self.rung2 - self.rung1) + k * self.branch

    @classmethod
    def of(cls, saved: dict[str, Any], tail: str = "wsd", cooldown: float = WSD_COOLDOWN) -> Plan:
        """The plan saved as :meth:`as_dict`; one saved before plans held their schedule's shape takes ``tail``
        and ``cooldown`` (adaptlr 0.2 and earlier 0.3 builds: WSD)."""
        return cls(**{"tail": tail, "cooldown": cooldown, **saved})

    def __getitem__(self, name: str) -> float:  # (plan["rung2"], as when a plan was a dict)
        return self.as_dict()[name]

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def watches(self) -> list[int]:
        """The steps at which the committed run is validated (:func:`watch_points`)."""
        return watch_points(self.steps, self.watch)


def make_plan(
    steps: int,
    candidates: int,
    keep: int,
    *,
    budget: float = 1.5,
    rung1: float = 0.035,
    rung2: float = 0.10,
    branch: float = 0.025,
    warmup: float = 0.05,
    val_share: float = 0.25,
    spare: float = 0.0,
    watch: float = WATCH_EVERY,
    tail: str = "cosine",
    cooldown: float = WSD_COOLDOWN,
) -> Plan:
    r"""Scale the rung fractions so that the race's training steps take :math:`(1 - v)(B - 1) T` steps:

    .. math:: (n - 1) s_1 + (k - 1)(s_2 - s_1) + k c = (1 - v)(B - 1)\,T - \text{spare}

    (``n`` candidates, ``k`` kept, budget ``B`` runs of ``T`` steps, ``v = val_share``), with :math:`s_1 \ge 1`,
    :math:`s_2 > s_1`, :math:`c \ge 1` and :math:`s_2 \le T / 2`. ``spare`` steps are held back (for candidates
    the grid may add beyond its edges). Validation does not enter: it fits its own share (:func:`validation_rows`).
    ``warmup`` (a fraction of the run) is rounded to steps by the library's one rule
    (:func:`adaptlr._validation.duration`: ``round(warmup * steps)``, as the lab's ``cosine(warmup=...)``).
    """
    steps = check_count("steps", steps, 4)  # (a race needs s1 < s2 <= T / 2)
    n = check_count("candidates", candidates, 1)
    k = min(check_count("keep", keep, 1), n)
    budget = check_real("budget", budget, 1.0, low_open=True)
    val_share = check_real("val_share", val_share, 0.0, 1.0, high_open=True)
    s1, s2, c = _rungs(steps, n, k, (1.0 - val_share) * (budget - 1.0) * steps - spare, (rung1, rung2, branch))
    warm = duration("warmup", check_real("warmup", warmup, 0.0, 1.0, high_open=True), steps, minimum=0)
    watch = check_real("watch", watch, 0.0, 1.0)
    tail, cooldown = check_choice("tail", tail, TAILS), check_real("cooldown", cooldown, 0.0, 1.0, low_open=True)
    return Plan(
        steps, s1, s2, c, warm, budget, val_share, candidates=n, keep=k, watch=watch, tail=tail, cooldown=cooldown
    )


def _rungs(steps: int, n: int, k: int, room: float, nominal: tuple[float, float, float]) -> tuple[int, int, int]:
    """``(s1, s2, c)``: the fractions ``nominal`` scaled so that the race's training steps take ``room``."""
    rung1, rung2, branch = nominal
    unit = (n - 1) * rung1 + (k - 1) * (rung2 - rung1) + k * branch
    scale = max(0.0, room) / (unit * steps) if unit > 0 else 1.0
    s2_cap = max(2, steps // 2)
    s1 = min(max(1, int(rung1 * scale * steps)), s2_cap - 1)
    return s1, min(max(s1 + 1, int(rung2 * scale * steps)), s2_cap), max(1, int(branch * scale * steps))


def reserve(plan: Plan, nominal: tuple[float, float, float], fixed: float) -> Plan:
    """``plan`` sized again with ``fixed`` training steps held back for each lineage it races (its candidates,
    its finalists and the run, twice: :data:`RUN_LINEAGES`; what each costs beyond its steps, its optimizer built and
    its state saved and loaded, measured before rung 1 was sized); rung 1 at least 2 steps (the steps that measured
    it)."""
    n, k, t = plan.candidates, plan.keep, plan.steps
    room = (1.0 - plan.val_share) * (plan.budget - 1.0) * t - (n + k + RUN_LINEAGES) * max(0.0, fixed)
    s1, s2, c = _rungs(t, n, k, room, nominal)
    s1 = max(2, s1)
    return Plan(**{**plan.as_dict(), "rung1": s1, "rung2": max(s2, s1 + 1), "branch": c})  # type: ignore[arg-type]


def rest_cost(
    plan: Plan,
    finalists: int,
    x: float,
    c: float,
    *,
    extra: int = 0,
    overhead: float = 0.0,
    cost: float = 1.0,
    val_rest: float = 0.0,
) -> float:
    r"""What the race costs from the end of rung 1 to the end of the run, in training steps, when rung 2 is
    :math:`x = s_2 - s_1` steps long and each branch :math:`c`:

    .. math:: (k + e)(q x + q c + 2 o) + q e s_1 + q (T - s_1 - x) + 2 o + \text{val\_rest}

    ``finalists``: the racers going on (:math:`k`); ``extra``: candidates held in reserve that would race from the
    start (:math:`e`, each :math:`s_1 + x + c`); ``overhead``: what a lineage costs beyond its steps and its
    validation (:math:`o`: its optimizer built, its state saved and loaded, measured in rung 1), paid twice by each
    of them (:data:`FINALIST_LINEAGES`: the branch point and the branch) and twice by the run
    (:data:`RUN_LINEAGES`); ``cost``: what a step of theirs costs against the race's unit (:math:`q`;
    :func:`~adaptlr.auto.run_cost`); ``val_rest``: the validation still to come."""
    k, e, q, o = finalists, extra, cost, max(0.0, overhead)
    t, s1 = plan.steps, plan.rung1
    rest = q * e * s1 + q * (t - s1 - x) + RUN_LINEAGES * o + val_rest
    return (k + e) * (q * (x + c) + FINALIST_LINEAGES * o) + rest


def replan_rung2(
    plan: Plan,
    spent: float,
    val_rest: float,
    nominal: tuple[float, float, float],
    finalists: int,
    extra: int = 0,
    overhead: float = 0.0,
    cost: float = 1.0,
) -> Plan:
    r"""Rung 2 and the branch made as long as what is left of the budget allows, once rung 1 is over.

    ``spent``: what the race has cost so far, in training steps (validation included, measured); the rest
    (:func:`rest_cost`, with ``finalists``, ``extra``, ``overhead``, ``cost`` and ``val_rest`` as there) must fit
    :math:`B T - \text{spent}`, the branch kept at the ratio :math:`\rho = c / (s_2 - s_1)` of ``nominal``
    (the fractions ``(rung1, rung2, branch)``); :math:`x = s_2 - s_1` is at least 1 step and :math:`s_2 \le T / 2`.
    What validation did not use of its share goes to the race.
    """
    r1, r2, br = nominal
    rho = br / max(r2 - r1, 1e-12)
    t, left = plan.steps, plan.budget * plan.steps - spent
    parts = {"extra": extra, "overhead": overhead, "cost": cost, "val_rest": val_rest}
    base = rest_cost(plan, finalists, 0.0, 0.0, **parts)  # (the rest is linear in x, the branch at rho x)
    slope = rest_cost(plan, finalists, 1.0, rho, **parts) - base
    x = (left - base) / max(slope, 1e-12)
    x = int(min(max(1.0, x), max(1, t // 2 - plan.rung1)))
    c = max(1, int(round(rho * x)))
    return Plan(**{**plan.as_dict(), "rung2": plan.rung1 + x, "branch": c})  # type: ignore[arg-type]


def watch_points(steps: int, every: float = WATCH_EVERY) -> list[int]:
    """The steps at which the committed run is validated on the commit's rows (its best validated state kept:
    early stopping, Prechelt 1998): every ``every`` of the run, before its last step (which the commit scores).
    Those before the branch point are skipped by the run; the plan counts them all (the branch point moves)."""
    k = round(1.0 / every) if every > 0 else 0
    return sorted({int(round(i * steps / k)) for i in range(1, k)} - {0, steps}) if k > 1 else []


def late_evaluations(plan: Plan, finalists: int, extra: int) -> int:
    """Evaluations on rung 2's (the commit's) rows from rung 2 on: each finalist and ``extra`` late candidate, the
    start, the run's watch points and its end."""
    return finalists + extra + 2 + len(plan.watches())


def validation_rows(plan: Plan, total_rows: int, row_cost: float, evaluations: dict[str, int]) -> dict[str, int]:
    """Validation rows each evaluation of each round reads, within the plan's allowance.

    ``row_cost``: a validation row's measured cost in training steps; ``evaluations``: how many evaluations each
    round makes (``{"rung1": n, "rung2": k, "commit": 2}``). Rung 1 gets ``VAL_WEIGHTS["rung1"]`` of the allowance,
    split evenly over its evaluations; rung 2 and the commit read one subset (the commit compares the end of the
    run with a rung-2 branch: on the same rows), sized by the rest of the allowance over their evaluations. Each
    is at least 1 row (rung 2: at least rung 1's) and at most ``total_rows``.
    """
    allowance = plan.val_allowance
    rc = max(row_cost, 1e-12)
    first = allowance * VAL_WEIGHTS["rung1"] / (max(1, evaluations.get("rung1", 1)) * rc)
    last_count = max(1, evaluations.get("rung2", 1) + evaluations.get("commit", 0))
    last = allowance * (VAL_WEIGHTS["rung2"] + VAL_WEIGHTS["commit"]) / (last_count * rc)
    m1 = int(min(total_rows, max(1, first)))
    m2 = int(min(total_rows, max(m1, last)))
    return {"rung1": m1, "rung2": m2, "commit": m2}
