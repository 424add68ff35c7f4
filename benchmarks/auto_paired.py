"""Auto's commit, compared paired: one race per task and seed, then several commit runs from it, each from a
finalist's branch point, on the same batches, with the same budget left (the race's meter restored before each).

Separate runs of Auto compare variants across separate races, whose choices move with timing; here only the
varied part differs:

- ``--vary tails``: the winner's run with each tail of :data:`TAILS`;
- ``--vary finalists``: each finalist's run with Auto's own tail, and which one a rule would pick: Auto's
  ranking (``chosen``), the finalist whose *full run* validates best (an oracle that sees the end of every run:
  the most any ranking of these finalists could gain), and the next finalist above and below Auto's choice.

Prints, per task, the median test metric of each variant against the tuned grid's (its lr chosen on validation,
from a store the tuning-free benchmark filled: ``adaptlr bench tuning-free --grid-only``), then per variant the
count within 2% / 1 point and the geometric mean of Auto / grid over the loss tasks.

    python benchmarks/auto_paired.py --vary tails --tasks linreg,digits-autoencoder --store out/bench.db
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

#: name -> (shape after the branch point, its cooldown share of the run); "own": the run's own schedule, unchanged
#: (Auto's: every candidate races on it); "cosine": cosine from the branch point
TAILS: dict[str, tuple[str, float]] = {
    "the run's own schedule (default)": ("own", 0.0),
    "linear, last half": ("linear", 0.5),
    "1-sqrt, last half": ("1-sqrt", 0.5),
    "1-sqrt, last 20%": ("1-sqrt", 0.2),
    "cosine from the branch point": ("cosine", 0.0),
}
PICKS = ("chosen", "best full-run validation (oracle)", "next higher lr", "next lower lr")


def tail_commit(shape: str, share: float) -> type:
    """A :class:`~adaptlr.auto.Commit` whose run takes the given tail after the branch point (``"own"``: Auto's
    commit as it is)."""
    from adaptlr import schedules as S
    from adaptlr.auto import Commit, run_schedule

    if shape == "own":
        return Commit

    class TailCommit(Commit):  # type: ignore[misc]
        def schedule(self, lr: float | None = None) -> Any:
            plan, lr = self.race.plan, self.lr if lr is None else lr
            at = min(max(plan.rung2, plan.warmup), plan.steps - 1)
            run = run_schedule(lr, plan)
            peak, rest = run(max(at - 1, 0)), max(1, plan.steps - at)
            if shape == "cosine":
                after = S.cosine(peak, steps=rest)
            else:
                decay = max(1, min(rest, int(round(share * plan.steps))))
                after = S.wsd(peak, steps=rest, decay=decay, cooldown=shape)
            return S.join([run, after], boundaries=[at]) if at > 0 else after

    return TailCommit


def commits(name: str, seed: int, variants: Callable[[list[Any]], dict[str, Any]]) -> tuple[dict[str, Any], list]:
    """One race on ``name`` with ``seed``; then, for each ``(label, (finalist, commit class))`` of
    ``variants(finalists)``, that finalist's commit run from the race's end. Returns ``{label: (test metric,
    validation score of the committed model, lr)}`` and the finalists."""
    import torch

    from adaptlr.auto import Auto, Batches, Commit, TrainStep, build_race
    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.tasks import get_task
    from adaptlr.lab.training import val_score

    task = get_task(name)
    data, steps = task.data(), TF.budget_steps(task)
    torch.manual_seed(seed)
    model = task.model()
    model.train()
    step = TrainStep(loss_fn=task.loss, score_fn=val_score(task))
    val = list(data.eval_batches("val", size=task.batch_size))
    race = build_race(
        Auto(), model, data.batches(task.batch_size, torch.Generator().manual_seed(seed)), val, steps, step
    )
    finalists = race.run()
    taken, meter, elapsed = race.batches.taken, copy.deepcopy(race.meter), race.meter.seconds
    ahead = list(race.ahead)  # (the branches' batches, which the winner's run trains on first)
    out: dict[str, Any] = {}
    points: dict[int, list[int]] = {}
    for label, (racer, cls) in variants(finalists).items():
        m = copy.deepcopy(meter)
        m.started = time.perf_counter() - elapsed  # (the budget as the race left it)
        race.meter = race.validator.meter = m
        race.batches = Batches(data.batches(task.batch_size, torch.Generator().manual_seed(seed)))
        race.batches.skip(taken)  # (the batches the race took; then timed again, as the race's were)
        race.batches.meter = m
        race.ahead = list(ahead)
        commit: Commit = (cls or Commit)(race, copy.deepcopy(racer))
        commit.start()
        # (the watch points the budget affords are measured in seconds: one finalist's first, for all its runs)
        points.setdefault(id(racer), list(commit.points))
        commit.points = list(points[id(racer)])
        commit.finish(race.model, ended=commit.run())
        metric, _ = task.evaluate(model, data, "test")
        bad = -math.inf if task.higher_is_better else math.inf
        out[label] = (metric if math.isfinite(metric) else bad, commit.val_score, racer.lr)
    return out, finalists


def tail_variants(finalists: list[Any]) -> dict[str, Any]:
    return {label: (finalists[0], tail_commit(shape, share)) for label, (shape, share) in TAILS.items()}


def finalist_variants(finalists: list[Any]) -> dict[str, Any]:
    return {f"lr {r.lr:g}": (r, None) for r in finalists}


def picks(runs: dict[str, Any], chosen: float, hib: bool) -> dict[str, float]:
    """The test metric each rule of :data:`PICKS` gets from the finalists' runs (``lr -> (test, val, lr)``)."""
    by_lr = {lr: test for test, _, lr in runs.values()}
    lrs = sorted(by_lr)
    at = lrs.index(chosen)
    oracle = min(runs.values(), key=lambda r: (r[1], r[2]))[2]  # (the committed model's validation score)
    return {
        PICKS[0]: by_lr[chosen],
        PICKS[1]: by_lr[oracle],
        PICKS[2]: by_lr[lrs[min(at + 1, len(lrs) - 1)]],
        PICKS[3]: by_lr[lrs[max(at - 1, 0)]],
    }


def grid_test(store: str, name: str, seed: int) -> float:
    """The test metric of the grid's lr that validated best (the tuned baseline, as the benchmark chooses it)."""
    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.store import Store
    from adaptlr.lab.tasks import get_task

    task = get_task(name)
    steps = TF.budget_steps(task)
    with Store(store) as st:
        lr = TF.chosen_lr(st, task, seed, steps)
        run = TF.stored_run(st, task, TF.grid_spec(lr), seed, steps) if lr is not None else None
    if run is None:
        raise SystemExit(f"{store}: no grid runs of {name} seed {seed} (run adaptlr bench tuning-free --grid-only)")
    return run["final_metric"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vary", choices=("tails", "finalists"), default="tails")
    ap.add_argument("--tasks", default="old,stress,holdout,unseen,fresh")
    ap.add_argument("--store", default="out/bench.db", help="the tuning-free benchmark's store (the grid's runs)")
    ap.add_argument("--seeds", default="0,1,2")
    a = ap.parse_args()

    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.tasks import get_task
    from adaptlr.lab.tuning_free_tables import within
    from adaptlr.lab.workers import limit_threads

    limit_threads(1)
    seeds = [int(s) for s in a.seeds.split(",")]
    labels = list(TAILS) if a.vary == "tails" else list(PICKS)
    wins = dict.fromkeys(labels, 0)
    logs: dict[str, list[float]] = {k: [] for k in labels}
    names = TF.resolve_tasks(a.tasks)
    print("| task | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels))
    for name in names:
        hib = get_task(name).higher_is_better
        grid = statistics.median(grid_test(a.store, name, s) for s in seeds)
        per_seed = []
        for s in seeds:
            if a.vary == "tails":
                runs, _ = commits(name, s, tail_variants)
                per_seed.append({k: v[0] for k, v in runs.items()})
            else:
                runs, finalists = commits(name, s, finalist_variants)
                per_seed.append(picks(runs, finalists[0].lr, hib))
        cells = []
        for label in labels:
            v = statistics.median(r[label] for r in per_seed)
            ok = within(v, grid, hib)
            wins[label] += ok
            if not hib:
                logs[label].append(math.log(v / grid) if v > 0 and grid > 0 else math.inf)
            text = f"{100 * (v - grid):+.1f} pt" if hib else f"{v / grid:.3f}x"
            cells.append(text + ("" if ok else " ✗"))
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    for label in labels:
        geo = math.exp(statistics.fmean(logs[label])) if logs[label] else math.nan
        print(f"{label}: {wins[label]}/{len(names)} within 2% / 1 point; geometric mean Auto / grid {geo:.3f}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
