"""Auto's choice of learning rate, judged cheaply on the grid's own runs: races only, outcomes from the grid's store.

Every candidate races on the run's own schedule (cosine by default, the grid's), so Auto's run at an lr of the
grid is the grid's stored run at that lr (up to Auto's commit, which may keep a better-validated earlier state, and
its weight-decay cap above lr 0.1): what a rule choosing among the finalists would land on is known without training
it, one yardstick for every rule. Two steps:

- ``--log FILE``: race each task and seed (``Auto.fit(..., race_only=True)``, the lab's model, batches and
  validation split, as the benchmark's Auto runs), and write every race's finalists (lr, scores, per-batch
  validation parts), the start's score on the same rows and Auto's choice, one JSON line each (a race costs about
  0.4 runs; ``--budget B`` races Auto of a budget of ``B`` runs, about ``0.8 (B - 1)`` runs each: what a larger
  budget buys the choice);
- ``--judge FILE``: for each rule of :data:`RULES` (a function of the finalists, the start and the tie), its
  choice in every logged race and the grid's run at that lr; per task the median over seeds against the grid's
  (within 2% / 1 point), and per rule the count. ``auto`` is Auto's own rule (it must reproduce every logged
  choice: the count of those it does not is printed), ``best finalist in hindsight`` the most any rule over these
  finalists could land on. A choice off the grid (past its edges) has no stored run until ``--fill FILE`` trains the
  grid's schedule at the logged finalists' lrs past the grid (the grid's own choice reads its grid's lrs only);
  until then its task is left out.

What any choice made early in the run could know, from the grid's store alone: ``benchmarks/auto_horizon.py``.

    python benchmarks/auto_choice.py --log out/races.jsonl --tasks old,stress --store out/bench.db
    python benchmarks/auto_choice.py --fill out/races.jsonl --store out/bench.db   # (optional)
    python benchmarks/auto_choice.py --judge out/races.jsonl --store out/bench.db
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any

Rule = Callable[[list[Any], Any, float, Callable[[float], float]], float]


def race(name: str, seed: int, budget: float = 1.5) -> dict[str, Any]:
    """One race-only fit of Auto (``budget`` runs) on task ``name`` with ``seed`` (the lab's set-up), as a
    JSON-able record."""
    import warnings

    import torch

    from adaptlr.auto import Auto
    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.tasks import get_task
    from adaptlr.lab.training import val_score

    task = get_task(name)
    data, steps = task.data(), TF.budget_steps(task)
    torch.manual_seed(seed)
    model = task.model()
    model.train()
    batches = data.batches(task.batch_size, torch.Generator().manual_seed(seed))
    val = list(data.eval_batches("val", size=task.batch_size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = Auto(budget=budget).fit(
            model, task.loss, batches, val, steps, score_fn=val_score(task), race_only=True
        )
    r = result.commit.race
    r.store.close()  # (a race-only fit leaves its racer states open for the commit; none follows)
    finalists = [x for x in r.racers if not x.diverged and len(x.scores) >= 2]
    return {
        "task": name,
        "seed": seed,
        "lr": result.lr,
        "tie": r.tie,
        "budget": budget,
        "step": r.plan.rung2,
        "start": {"score": r.start_score2, "parts": r.start_parts},
        "finalists": [{"lr": x.lr, "scores": x.scores, "parts": x.parts} for x in finalists],
    }


def _racers(record: dict[str, Any]) -> tuple[list[Any], Any]:
    from adaptlr.auto import Racer

    finalists = [Racer(f["lr"], scores=[tuple(s) for s in f["scores"]], parts=f["parts"]) for f in record["finalists"]]
    start = Racer(0.0, scores=[(0, record["start"]["score"])], parts=record["start"]["parts"])
    return finalists, start


def _auto(finalists: list[Any], start: Any, tie: float, outcome: Callable[[float], float]) -> float:
    from adaptlr.auto import rank_finalists

    return rank_finalists(finalists, tie, start)[0].lr  # (Auto's order: its first is the choice)


def _lowest(finalists: list[Any], start: Any, tie: float, outcome: Callable[[float], float]) -> float:
    return min(finalists, key=lambda r: r.score).lr


def _largest_within_reach(finalists: list[Any], start: Any, tie: float, outcome: Callable[[float], float]) -> float:
    from adaptlr.auto import paired_se

    best = min(finalists, key=lambda r: r.score)
    near = [r for r in finalists if r.score <= best.score + max(tie * abs(best.score), paired_se(r, best))]
    return max(near, key=lambda r: r.lr).lr


def _hindsight(finalists: list[Any], start: Any, tie: float, outcome: Callable[[float], float]) -> float:
    return min(finalists, key=lambda r: outcome(r.lr)).lr  # (outcome: lower is better, whatever the metric)


#: label -> rule (finalists, start, tie, outcome) -> lr; ``outcome(lr)`` (lower is better) only for hindsight
RULES: dict[str, Rule] = {
    "auto": _auto,
    "lowest score": _lowest,
    "largest within reach": _largest_within_reach,
    "best finalist in hindsight": _hindsight,
}


def _loss(outcome: Callable[[str, int, float], float | None], task: str, seed: int, sign: float, lr: float) -> float:
    v = outcome(task, seed, lr)
    return math.inf if v is None else sign * v


def judge(
    records: list[dict[str, Any]],
    outcome: Callable[[str, int, float], float | None],
    grid: Callable[[str], float],
    higher: Callable[[str], bool],
    rules: dict[str, Rule] = RULES,
) -> dict[str, Any]:
    """Each rule's choice in every race and its outcome (``outcome(task, seed, lr)``: the grid's test metric at
    ``lr``, None off the grid); per task the median over its seeds against ``grid(task)`` (within 2% / 1 point).
    Returns ``{"within": {rule: n}, "tasks": n judged, "unknown": tasks left out, "mismatch": races where
    ``auto`` is not the logged choice, "rows": {task: {rule: median}}}``."""
    from adaptlr.lab.tuning_free_tables import within

    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_task[rec["task"]].append(rec)
    counts, rows, unknown, mismatch = dict.fromkeys(rules, 0), {}, [], 0
    for task, recs in by_task.items():
        sign = -1.0 if higher(task) else 1.0
        medians: dict[str, float] = {}
        for label, rule in rules.items():
            values = []
            for rec in recs:
                finalists, start = _racers(rec)
                lr = rule(finalists, start, rec["tie"], functools.partial(_loss, outcome, task, rec["seed"], sign))
                if label == "auto" and not math.isclose(lr, rec["lr"], rel_tol=1e-9):
                    mismatch += 1
                values.append(outcome(task, rec["seed"], lr))
            if None in values:
                break
            medians[label] = statistics.median(values)
        if len(medians) < len(rules):
            unknown.append(task)
            continue
        rows[task] = medians
        for label, v in medians.items():
            counts[label] += within(v, grid(task), higher(task))
    return {"within": counts, "tasks": len(rows), "unknown": unknown, "mismatch": mismatch, "rows": rows}


def _grid_lr(name: str, lr: float) -> float:
    """``lr`` as the grid spells it when it is one of the grid's (the race's and the grid's roundings agree to 1%)."""
    from adaptlr.lab import tuning_free as TF

    return next((g for g in TF.grid_lrs(name) if abs(math.log10(g / lr)) < 0.005), lr)


def fill(records: list[dict[str, Any]], store: str) -> int:
    """Train the grid's schedule (``adamw(lr) + cosine(warmup=0.05)``, the same seed and budget) at every
    finalist's lr that ``store`` does not hold -- a candidate past the grid's edge --, so that ``--judge`` leaves
    no task out; the grid's own choice reads its grid's lrs only, so these runs do not change it. Returns the
    runs trained."""
    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.grammar import parse_method
    from adaptlr.lab.jobs import Job, run_job
    from adaptlr.lab.store import Store
    from adaptlr.lab.tasks import get_task

    todo = []
    with Store(store) as st:
        for rec in records:
            task = get_task(rec["task"])
            steps = TF.budget_steps(task)
            for lr in sorted({_grid_lr(task.name, f["lr"]) for f in rec["finalists"]}):
                job = Job(task.name, parse_method(TF.grid_spec(lr)).canonical, rec["seed"], steps, task.batch_size)
                if job not in todo and TF.stored_run(st, task, TF.grid_spec(lr), rec["seed"], steps) is None:
                    todo.append(job)
    for job in todo:
        run_job(job, store)
    return len(todo)


def _store_outcomes(store: str) -> tuple[Callable[[str, int, float], float | None], Callable[[str], float]]:
    """The grid's schedule's test metric at an lr (a diverged run: the worst value; None: not in the store, see
    :func:`fill`), and the tuned grid's median."""
    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.store import Store
    from adaptlr.lab.tasks import get_task

    st = Store(store)

    def outcome(name: str, seed: int, lr: float) -> float | None:
        task = get_task(name)
        run = TF.stored_run(st, task, TF.grid_spec(_grid_lr(name, lr)), seed, TF.budget_steps(task))
        if run is None:
            return None
        return run["final_metric"] if not run["diverged"] else (-math.inf if task.higher_is_better else math.inf)

    def grid(name: str) -> float:
        task = get_task(name)
        steps = TF.budget_steps(task)
        chosen = [(s, TF.chosen_lr(st, task, s, steps)) for s in (0, 1, 2)]
        return statistics.median(TF.stored_run(st, task, TF.grid_spec(g), s, steps)["final_metric"] for s, g in chosen)

    return outcome, grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--log", help="race every task and seed, one JSON line a race, to this file (appended)")
    mode.add_argument("--judge", help="judge every rule on the races logged in this file")
    mode.add_argument("--fill", help="train the grid's schedule at the finalists' lrs past the grid (this log's)")
    ap.add_argument("--tasks", default="old,stress,holdout,unseen,fresh")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", type=float, default=1.5, help="Auto's budget, in runs, for --log (default 1.5)")
    ap.add_argument("--store", default="out/bench.db", help="the tuning-free benchmark's store (the grid's runs)")
    a = ap.parse_args()

    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.tasks import get_task
    from adaptlr.lab.workers import limit_threads

    if a.log:
        limit_threads(1)
        for name in TF.resolve_tasks(a.tasks):
            for s in (int(x) for x in a.seeds.split(",")):
                with open(a.log, "a") as f:
                    f.write(json.dumps(race(name, s, a.budget)) + "\n")
        return
    with open(a.judge or a.fill) as f:
        records = [json.loads(line) for line in f if line.strip()]
    if a.fill:
        limit_threads(1)
        print(f"{fill(records, a.store)} runs of the grid's schedule trained past the grid's edges")
        return
    outcome, grid = _store_outcomes(a.store)
    out = judge(records, outcome, grid, lambda t: get_task(t).higher_is_better)
    print(
        f"{out['tasks']} tasks judged ({len(out['unknown'])} with a choice off the grid left out); Auto's rule "
        f"differs from the logged choice in {out['mismatch']} races"
    )
    for label, n in out["within"].items():
        print(f"  {label}: {n}/{out['tasks']} within 2% / 1 point of the grid")


if __name__ == "__main__":
    main()
