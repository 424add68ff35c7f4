"""The tuning-free benchmark: every no-tuning method against a tuned learning-rate grid, on every lab task.

For each task, each seed and one step budget for all methods:

- **grid** (the tuned reference): AdamW + 5% warmup + cosine at 7 lrs in half-decade steps (1e-4 .. 1e-1, or
  the task's own grid in :data:`adaptlr.lab.tasks_stress.GRIDS` when its best lr lies outside that), the lr
  chosen per seed on the *validation* metric at the end of the run (its compute: 7 runs);
- **AdamW 1e-3** untuned; the lr-free methods at defaults: Prodigy and D-Adapt Adam + cosine, DoG, Schedule-Free AdamW;
- the **range test** (``adaptlr.lr_find``, 100 steps, its headline suggestion ``result.lr``) + AdamW warmup-cosine;
- **Auto** (``adaptlr.Auto``, the lab method ``auto``);
- with ``--oracle``, **Auto at the grid's lr** (:data:`ORACLE`: the grid's choice per seed as Auto's only
  candidate): what Auto's race, run and commit reach when the choice is the grid's, the ceiling of its choice.

Under every table, the best single lr in hindsight (the grid's run at one lr on every task).

Tasks (``--tasks``): the original twelve (``old``), the ``stress`` tasks and a ``holdout`` set
(:mod:`adaptlr.lab.tasks_stress`). Quality is the test metric at the end of the budget; compute is counted in
steps and in wall time over **one plain run** (the grid's run at its chosen lr; a method run trained by
:func:`run` is timed against a plain run of its own right after it, on the same load); the tables are
:mod:`adaptlr.lab.tuning_free_tables`. Runs live in the lab's store, so the benchmark resumes where it stopped;
``--methods`` runs only the given methods (Auto variants, say) against a store whose grid is trained already.
The sets of :data:`HELD_OUT` are held out. ``python benchmarks/tuning_free.py`` or ``adaptlr bench tuning-free``
(:mod:`adaptlr.lab.tuning_free_cli`).
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import tasks_attic, tasks_cellar, tasks_final, tasks_fresh, tasks_novel, tasks_sealed, tasks_unseen, tasks_vault
from . import tasks_belfry as tasks_belfry  # a line of its own: the one above is full
from . import tasks_garret as tasks_garret
from . import tasks_loft as tasks_loft
from . import tasks_spire as tasks_spire
from . import tasks_turret as tasks_turret
from .comparison import compare
from .grammar import parse_method
from .jobs import Job, run_job
from .store import Store
from .tasks import TASKS, Task, get_task
from .tasks_stress import GRIDS, HOLDOUT, STRESS
from .training import train
from .tuning_free_tables import GRID, compute_table, grid_table, performance_profile, table
from .workers import limit_threads

__all__ = [
    "BASELINES",
    "GRID_LRS",
    "ORACLE",
    "REDUCED_STEPS",
    "Bench",
    "chosen_lr",
    "compute_table",
    "grid_lrs",
    "grid_spec",
    "grid_table",
    "oracle_spec",
    "performance_profile",
    "range_test_lr",
    "resolve_tasks",
    "run",
    "stored_run",
    "summarize",
    "table",
    "task_sets",
]

GRID_LRS: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
RANGE_TEST_STEPS = 100

#: the no-tuning methods: label -> spec (the range test is added per seed, its lr found first)
BASELINES: dict[str, str] = {
    "AdamW 1e-3 (untuned)": "adamw(lr=0.001) + cosine(warmup=0.05)",
    "Prodigy + cosine": "prodigy + cosine(warmup=0.05)",
    "D-Adapt Adam + cosine": "dadapt_adam + cosine(warmup=0.05)",
    "DoG": "dog",
    "Schedule-Free AdamW": "schedulefree_adamw",
    "Auto": "auto",
}
RANGE_TEST = "range test + cosine"
#: the ceiling of Auto's choice: Auto raced on the grid's own lr alone (per seed), the rest of Auto as it is
ORACLE = "Auto at the grid's lr"

#: step budgets reduced from the task's default so the benchmark fits a 2-core machine (others: the task's own)
REDUCED_STEPS: dict[str, int] = {"mnist1d-mlp": 2000, "mnist1d-cnn": 2000, "char-lm": 200}
#: the held-out sets' modules, in the order ``--tasks`` lists them; each names its set by its suffix in capitals
HELD_OUT = (tasks_unseen, tasks_fresh, tasks_final, tasks_novel, tasks_sealed, tasks_vault, tasks_cellar, tasks_attic)
HELD_OUT += (tasks_loft, tasks_garret, tasks_turret, tasks_belfry)
HELD_OUT += (tasks_spire,)


def grid_lrs(task: str) -> tuple[float, ...]:
    """The grid of ``task``: its own (``GRIDS`` of :mod:`adaptlr.lab.tasks_stress` or of a held-out set's ``tasks_*``
    module, for tasks whose best lr lies outside the default grid) or :data:`GRID_LRS`."""
    return {k: v for g in (GRIDS, *(m.GRIDS for m in HELD_OUT)) for k, v in g.items()}.get(task, GRID_LRS)


def grid_spec(lr: float) -> str:
    """The canonical spec of the grid's run at ``lr``."""
    return parse_method(f"adamw(lr={lr!r}) + cosine(warmup=0.05)").canonical


def oracle_spec(lr: float) -> str:
    """Auto with the grid's chosen ``lr`` as its only candidate (no extension): its race, run, tail and commit as
    they are, the choice made by the grid (:data:`ORACLE`). What it misses, Auto's choice cannot win back."""
    return parse_method(f"auto(lrs=({lr!r},), extend=0)").canonical


def budget_steps(task: Task, steps: int | None = None) -> int:
    return int(steps or REDUCED_STEPS.get(task.name, task.steps))


def range_test_lr(task: Task, seed: int, steps: int = RANGE_TEST_STEPS) -> float:
    """The range test's headline suggestion (``result.lr``: the rule that came closest to the tuned grid across
    the lab's tasks, ``docs/range_test.md``) for the task's model as seeded by the runner, on the task's training
    batches (AdamW); 1e-3 when it suggests nothing."""
    import adaptlr

    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    model.train()
    opt = adaptlr.AdamW(model.parameters(), lr=1e-3)
    batches = data.batches(task.batch_size, torch.Generator().manual_seed(seed + 10_000))
    result = adaptlr.lr_find(model, task.loss, batches, opt, start=1e-6, end=10.0, steps=steps)
    try:
        lr = result.lr
    except ValueError:  # no suggestion at all: the default of the grid's untuned point
        lr = 1e-3
    return float(f"{lr:.3g}")


#: the original twelve tasks, which Auto was built on (a fixed list: tasks registered later do not join it)
OLD: tuple[str, ...] = tuple(
    "linreg digits-logreg digits-mlp mnist-mlp mnist-cnn mnist1d-mlp mnist1d-cnn char-lm adding-gru digits-autoencoder "
    "illcond-regression digits-resnet".split()
)


def task_sets() -> dict[str, list[str]]:
    """The sets ``--tasks`` knows besides task names, by name: ``old`` (the first twelve) and those of the docstring."""
    held = {m.__name__.rpartition("_")[2]: getattr(m, m.__name__.rpartition("_")[2].upper()) for m in HELD_OUT}
    return {k: list(v) for k, v in dict(old=OLD, stress=STRESS, holdout=HOLDOUT, **held).items()}


def resolve_tasks(text: str) -> list[str]:
    """Task names from a comma-separated list of task names and set names (:func:`task_sets`' and ``all``), in
    order, each once; an unknown name raises ``KeyError`` with a did-you-mean."""
    sets = {**task_sets(), "all": list(TASKS)}
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        for name in sets.get(part) or [get_task(part).name]:
            if name not in out:
                out.append(name)
    if not out:
        raise ValueError(f"--tasks {text!r} names no task (give task names or one of {', '.join(sets)})")
    return out


@dataclass
class Bench:
    """Where the benchmark's runs live and which ones it covers. ``methods``: when given, the only methods besides the
    grid (label -> spec; no baselines, no range test): e.g. Auto variants against a store whose grid is trained."""

    store: str = "tuning_free.db"
    tasks: Sequence[str] = field(default_factory=lambda: task_sets()["old"] + task_sets()["stress"])
    seeds: Sequence[int] = (0, 1, 2)
    steps: int | None = None  # one budget for every task (default: the task's, or REDUCED_STEPS)
    extra: Mapping[str, str] = field(default_factory=dict)  # more methods: label -> spec (e.g. ablations)
    methods_only: Mapping[str, str] | None = None
    oracle: bool = False  # also run :data:`ORACLE` (Auto at each seed's chosen lr: the ceiling of its choice)

    @property
    def range_file(self) -> Path:
        return Path(str(self.store) + ".rangetest.json")

    @property
    def timing_file(self) -> Path:
        """Per run of a method trained by :func:`run`: its summary's extras (Auto's measured cost) and the wall
        time of one plain run (the grid's chosen lr) timed right after it, on the same machine and load."""
        return Path(str(self.store) + ".timing.json")

    def range_lrs(self) -> dict[str, float]:
        return json.loads(self.range_file.read_text()) if self.range_file.exists() else {}

    def timings(self) -> dict[str, dict[str, Any]]:
        return json.loads(self.timing_file.read_text()) if self.timing_file.exists() else {}

    def methods(self) -> dict[str, str]:
        return dict(self.methods_only) if self.methods_only is not None else {**BASELINES, **self.extra}

    @property
    def range_test(self) -> bool:
        return self.methods_only is None


def _job(task: Task, spec: str, seed: int, steps: int) -> Job:
    return Job(task.name, parse_method(spec).canonical, seed, steps, task.batch_size)


def _merge_json(path: Path, key: str, value: Any) -> None:
    """Add ``key`` to the JSON object in ``path`` (re-read first: other processes may share the file)."""
    found = json.loads(path.read_text()) if path.exists() else {}
    found[key] = value
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(found, indent=1, sort_keys=True))
    tmp.replace(path)


def chosen_lr(st: Store, task: Task, seed: int, steps: int) -> float | None:
    """The grid's lr for ``seed``: the best final validation metric among its runs that did not diverge (None
    until every grid run is in the store, or when all diverged)."""
    sign = 1.0 if task.higher_is_better else -1.0
    runs = [(lr, stored_run(st, task, grid_spec(lr), seed, steps)) for lr in grid_lrs(task.name)]
    if any(r is None for _, r in runs):
        return None
    scored = [(lr, r) for lr, r in runs if r["final_val_metric"] is not None and not r["diverged"]]
    return max(scored, key=lambda t: sign * t[1]["final_val_metric"])[0] if scored else None


def stored_run(st: Store, task: Task, spec: str, seed: int, steps: int) -> dict[str, Any] | None:
    """The store's run of ``spec`` on ``task`` with ``seed`` and a budget of ``steps`` (None: not run yet)."""
    job = _job(task, spec, seed, steps)
    rows = [r for r in st.runs(task.name, method=job.method, budget=job.budget) if r["seed"] == seed]
    return rows[0] if rows else None


def _time_methods(bench: Bench, task: Task, steps: int, progress: bool) -> None:
    """Train the bench's methods on ``task`` one run at a time, each followed by one plain run (the grid's
    chosen lr, not stored) whose wall time is the pair's reference; both go to :attr:`Bench.timing_file`. The
    :data:`ORACLE`, when asked for, runs at each seed's chosen lr (its own spec per seed)."""
    per_seed = [dict.fromkeys(bench.seeds, spec) for spec in bench.methods().values()]
    if bench.oracle:
        with Store(bench.store) as st:
            found = {seed: chosen_lr(st, task, seed, steps) for seed in bench.seeds}
        per_seed.append({seed: oracle_spec(lr) for seed, lr in found.items() if lr is not None})
    for specs in per_seed:
        for seed, spec in specs.items():
            job = _job(task, spec, seed, steps)
            key = f"{task.name}/{seed}/{job.method}"
            try:
                summary = run_job(job, bench.store)
            except Exception as e:  # a method that crashes is a result: its run counts as failed
                _merge_json(bench.timing_file, key, {"error": f"{type(e).__name__}: {e}"})
                warnings.warn(f"tuning-free bench: {key} failed: {type(e).__name__}: {e}", stacklevel=2)
                continue
            if summary is None:  # in the store already (or another worker's): its stored wall is used
                continue
            with Store(bench.store) as st:
                lr = chosen_lr(st, task, seed, steps)
            rec = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) or v is None}
            if lr is not None:
                plain = train(task, grid_spec(lr), seed, steps=steps)
                rec.update(plain_wall=plain["wall"], plain_lr=lr)
            _merge_json(bench.timing_file, key, rec)
            if progress:
                print(f"{task.name} s{seed} {job.method}: wall {rec['wall']:.2f}s, plain {rec.get('plain_wall')}")


def run(bench: Bench, jobs: int = 1, progress: bool = True, grid_only: bool = False) -> None:
    """Train every run of the benchmark that the store does not hold yet (resumable): the grid (in ``jobs``
    processes), then the methods (one at a time, each timed against one plain run right after it), then the
    range test's runs. ``grid_only``: the grid alone (to pre-compute a store for later method runs)."""
    limit_threads(1)
    for name in bench.tasks:
        task = get_task(name)
        steps = budget_steps(task, bench.steps)
        grid = [grid_spec(lr) for lr in grid_lrs(name)]
        compare(name, grid, list(bench.seeds), store=bench.store, jobs=jobs, steps=steps, progress=progress)
        if grid_only:
            continue
        _time_methods(bench, task, steps, progress)
        if not bench.range_test:
            continue
        found = bench.range_lrs()
        for seed in bench.seeds:
            if f"{name}/{seed}" not in found:
                _merge_json(bench.range_file, f"{name}/{seed}", range_test_lr(task, seed))
        found = bench.range_lrs()
        for seed in bench.seeds:  # each seed trains at its own range test's suggestion
            spec = grid_spec(found[f"{name}/{seed}"])
            compare(name, [spec], [seed], store=bench.store, jobs=1, steps=steps, progress=progress)


def _val_cost(task: Task) -> float:
    data = task.data()
    rows = sum(int(x.shape[0]) for x, _ in data.eval_batches("val"))
    return rows / (3.0 * task.batch_size)


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _method_cost(
    spec: str | None, runs: Sequence[Mapping[str, Any]], extras: Sequence[Mapping[str, Any]], task: Task, steps: int
) -> tuple[float, float, str]:
    """(cost, steps, how), in runs of the budget. ``cost``: what the method plans or is counted to spend (Auto:
    :meth:`~adaptlr.auto.Auto.planned_cost`; the range test: its steps and one run; the others: the steps
    trained). ``steps``: what it spent, measured (Auto's own cost, validation at its timed cost per row, when
    :func:`run` trained it), else ``cost``. ``how``: ``"measured"``, ``"planned"`` or ``"counted"``."""
    if spec is None:
        return 1.0 + RANGE_TEST_STEPS / steps, 1.0 + RANGE_TEST_STEPS / steps, "counted"
    method = parse_method(spec)
    is_auto = method.optimizer.name == "auto"
    if is_auto:
        from adaptlr.auto import Auto

        cost = Auto(**method.optimizer_kwargs()).planned_cost(steps, _val_cost(task))
    else:
        done = [r["steps_done"] / steps for r in runs if r.get("steps_done") is not None]
        cost = statistics.median(done) if done else 1.0
    measured = [float(e["cost"]) for e in extras if isinstance(e.get("cost"), (int, float))]
    if measured:
        return cost, statistics.median(measured), "measured"
    return cost, cost, "planned" if is_auto else "counted"


def _grid_summary(st: Store, task: Task, seeds: Sequence[int], steps: int) -> tuple[dict[str, Any], dict[int, Any]]:
    """The grid's entry of a task's summary, and per seed its chosen run (the "one plain run")."""
    lrs = grid_lrs(task.name)
    chosen: dict[int, tuple[float, dict[str, Any]]] = {}
    tests, costs, walls = [], [], []
    for seed in seeds:
        lr = chosen_lr(st, task, seed, steps)
        if lr is None:
            continue
        runs = [stored_run(st, task, grid_spec(x), seed, steps) for x in lrs]
        best = runs[lrs.index(lr)]
        chosen[seed] = (lr, best)
        tests.append(best["final_metric"])
        costs.append(sum(r["steps_done"] for r in runs) / steps)
        if best["wall"]:
            walls.append(sum(r["wall"] for r in runs) / best["wall"])
    # per lr, its runs' test metrics (None where one diverged): the best single lr in hindsight
    fixed = {x: [stored_run(st, task, grid_spec(x), s, steps) for s in seeds] for x in lrs}
    entry = {
        "tests": tests,
        "by_lr": {x: [None if r["diverged"] else r["final_metric"] for r in rs] for x, rs in fixed.items() if all(rs)},
        "lrs": [chosen[s][0] for s in seeds if s in chosen],
        "grid": list(lrs),
        "cost": _median(costs) or float(len(lrs)),
        "steps": _median(costs) or float(len(lrs)),
        "cost_how": "counted",
        "wall": _median(walls),
        "wall_paired": False,
    }
    return entry, chosen


def _method_summary(
    st: Store,
    task: Task,
    specs: Mapping[int, str | None],
    label_spec: str | None,
    steps: int,
    timings: Mapping[str, Any],
    chosen: Mapping[int, Any],
) -> dict[str, Any]:
    """One method's entry of a task's summary; ``specs``: its spec per seed (the range test's differ)."""
    tests, walls, paired, runs, extras = [], [], [], [], []
    for seed, spec in specs.items():
        r = stored_run(st, task, spec, seed, steps) if spec is not None else None
        if r is None:
            if spec is not None and "error" in timings.get(f"{task.name}/{seed}/{parse_method(spec).canonical}", {}):
                tests.append(None)  # it crashed: failed, not missing
            continue
        runs.append(r)
        tests.append(r["final_metric"] if r["final_metric"] is not None and not r["diverged"] else None)
        extra = timings.get(f"{task.name}/{seed}/{parse_method(spec).canonical}", {})
        extras.append(extra)
        if extra.get("plain_wall") and extra.get("wall") is not None:
            walls.append(extra["wall"] / extra["plain_wall"])
            paired.append(True)
        elif seed in chosen and chosen[seed][1]["wall"]:
            walls.append(r["wall"] / chosen[seed][1]["wall"])
            paired.append(False)
    cost, spent, how = _method_cost(label_spec, runs, extras, task, steps)
    entry: dict[str, Any] = {
        "tests": tests,
        "cost": cost,
        "steps": spent,
        "cost_how": how,
        "wall": _median(walls),
        "wall_paired": bool(paired) and all(paired),
    }
    lrs = [e["auto_lr"] for e in extras if isinstance(e.get("auto_lr"), (int, float))]
    if lrs:
        entry["lrs"] = lrs
    return entry


def summarize(bench: Bench) -> dict[str, Any]:
    """Per task and method: the test metric per seed (the grid's at its validation-chosen lr), its median, the compute
    in runs of the budget (``cost``: planned or counted; ``steps``: measured where it could be, Auto's validation at its
    timed cost included; ``cost_how``: ``"measured"``, ``"planned"`` or ``"counted"``, see :func:`_method_cost`) and the
    wall time in plain runs (``wall``, median over seeds: the run's wall over that of the grid's run at the chosen lr,
    or over the plain run timed right after it when :func:`run` trained it; ``wall_paired`` says which)."""
    found = bench.range_lrs()
    timings = bench.timings()
    out: dict[str, Any] = {}
    with Store(bench.store) as st:
        for name in bench.tasks:
            task = get_task(name)
            steps = budget_steps(task, bench.steps)
            grid, chosen = _grid_summary(st, task, bench.seeds, steps)
            per: dict[str, dict[str, Any]] = {GRID: grid}
            for label, spec in bench.methods().items():
                specs = dict.fromkeys(bench.seeds, spec)
                per[label] = _method_summary(st, task, specs, spec, steps, timings, chosen)
            if bench.oracle:
                specs = {s: oracle_spec(chosen[s][0]) if s in chosen else None for s in bench.seeds}
                first = next((v for v in specs.values() if v is not None), None)
                per[ORACLE] = _method_summary(st, task, specs, first, steps, timings, chosen)
            if bench.range_test:
                specs = {s: grid_spec(found[f"{name}/{s}"]) if f"{name}/{s}" in found else None for s in bench.seeds}
                per[RANGE_TEST] = _method_summary(st, task, specs, None, steps, timings, chosen)
            for d in per.values():
                vals = [v for v in d["tests"] if v is not None]
                worst = -math.inf if task.higher_is_better else math.inf
                d["median"] = _median([v if v is not None else worst for v in d["tests"]])
                d["complete"] = len(vals) == len(d["tests"]) == len(bench.seeds)
            out[name] = dict(metric=task.metric, higher_is_better=task.higher_is_better, steps=steps, methods=per)
    return out
