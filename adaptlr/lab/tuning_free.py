"""The tuning-free benchmark: every no-tuning method against a tuned learning-rate grid, on every lab task.

For each task, each seed and one step budget for all methods:

- **grid** (the tuned reference): AdamW + 5% warmup + cosine at lr in {1e-4, 3e-4, ..., 1e-1}, the lr chosen
  per seed on the *validation* metric at the end of the run (its compute: 7 runs);
- **AdamW 1e-3** untuned (the grid's 1e-3 run itself);
- every learning-rate-free method at its defaults: Prodigy + cosine, D-Adapt Adam + cosine, DoG, Schedule-Free
  AdamW;
- the **range test** (``adaptlr.lr_find``, 100 steps, the "steepest" suggestion) + AdamW warmup-cosine;
- **Auto** (``adaptlr.Auto``, the lab method ``auto``).

Quality is the task's metric on the **test** split at the end of the budget (accuracy for classification, loss
or MSE otherwise). The table gives medians over seeds, the ratio to the grid (loss) or the difference in
accuracy points, how many tasks land within 2% (loss) or 1 accuracy point of the grid, the mean rank per task
among all methods, and each method's compute in runs of the budget. Runs live in the lab's store, so the
benchmark resumes where it stopped. ``python benchmarks/tuning_free.py`` or ``adaptlr bench tuning-free``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .comparison import compare
from .grammar import parse_method
from .jobs import Job
from .store import Store
from .tasks import TASKS, Task, get_task
from .workers import limit_threads

__all__ = [
    "BASELINES",
    "GRID_LRS",
    "REDUCED_STEPS",
    "Bench",
    "grid_spec",
    "performance_profile",
    "range_test_lr",
    "run",
    "summarize",
    "table",
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
GRID = "grid (tuned, 7 runs)"

#: step budgets reduced from the task's default so the benchmark fits a 2-core machine (everything else: the
#: task's own budget)
REDUCED_STEPS: dict[str, int] = {"mnist1d-mlp": 2000, "mnist1d-cnn": 2000, "char-lm": 200}


def grid_spec(lr: float) -> str:
    """The canonical spec of the grid's run at ``lr``."""
    return parse_method(f"adamw(lr={lr!r}) + cosine(warmup=0.05)").canonical


def budget_steps(task: Task, steps: int | None = None) -> int:
    return int(steps or REDUCED_STEPS.get(task.name, task.steps))


def range_test_lr(task: Task, seed: int, steps: int = RANGE_TEST_STEPS) -> float:
    """The range test's "steepest" suggestion (its most confident one when steepest has none) for the
    task's model as seeded by the runner, on the task's training batches (AdamW)."""
    import adaptlr

    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    model.train()
    opt = adaptlr.AdamW(model.parameters(), lr=1e-3)
    batches = data.batches(task.batch_size, torch.Generator().manual_seed(seed + 10_000))
    result = adaptlr.lr_find(model, task.loss, batches, opt, start=1e-6, end=10.0, steps=steps)
    s = result.suggestions.get("steepest")
    try:
        lr = s.lr if s is not None else result.lr
    except ValueError:  # no suggestion at all: the default of the grid's untuned point
        lr = 1e-3
    return float(f"{lr:.3g}")


@dataclass
class Bench:
    """Where the benchmark's runs live and which ones it covers."""

    store: str = "tuning_free.db"
    tasks: Sequence[str] = field(default_factory=lambda: list(TASKS))
    seeds: Sequence[int] = (0, 1, 2)
    steps: int | None = None  # one budget for every task (default: the task's, or REDUCED_STEPS)
    extra: Mapping[str, str] = field(default_factory=dict)  # more methods: label -> spec (e.g. ablations)

    @property
    def range_file(self) -> Path:
        return Path(str(self.store) + ".rangetest.json")

    def range_lrs(self) -> dict[str, float]:
        return json.loads(self.range_file.read_text()) if self.range_file.exists() else {}

    def methods(self) -> dict[str, str]:
        return {**BASELINES, **self.extra}


def run(bench: Bench, jobs: int = 1, progress: bool = True) -> None:
    """Train every run of the benchmark that the store does not hold yet (resumable)."""
    limit_threads(1)
    found = bench.range_lrs()
    for name in bench.tasks:
        task = get_task(name)
        steps = budget_steps(task, bench.steps)
        specs = [grid_spec(lr) for lr in GRID_LRS] + list(bench.methods().values())
        compare(name, specs, list(bench.seeds), store=bench.store, jobs=jobs, steps=steps, progress=progress)
        for seed in bench.seeds:
            key = f"{name}/{seed}"
            if key not in found:
                lr = range_test_lr(task, seed)
                found = {**bench.range_lrs(), key: lr}  # merged: other processes may share the file
                bench.range_file.write_text(json.dumps(found, indent=1, sort_keys=True))
        for seed in bench.seeds:  # each seed trains at its own range test's suggestion
            spec = grid_spec(found[f"{name}/{seed}"])
            compare(name, [spec], [seed], store=bench.store, jobs=1, steps=steps, progress=progress)


def _val_cost(task: Task) -> float:
    data = task.data()
    rows = sum(int(x.shape[0]) for x, _ in data.eval_batches("val"))
    return rows / (3.0 * task.batch_size)


def summarize(bench: Bench) -> dict[str, Any]:
    """Per task and method: the test metric per seed (the grid's at its validation-chosen lr), its median,
    and the compute in runs (counted) and in wall time relative to the untuned AdamW run."""
    from adaptlr.auto import Auto

    found = bench.range_lrs()
    out: dict[str, Any] = {}
    with Store(bench.store) as st:
        for name in bench.tasks:
            task = get_task(name)
            steps = budget_steps(task, bench.steps)
            sign = 1.0 if task.higher_is_better else -1.0

            def get(spec: str, seed: int, name: str = name, steps: int = steps, task: Task = task) -> Any:
                canon = parse_method(spec).canonical
                budget = Job(name, canon, seed, steps, task.batch_size).budget
                rows = [r for r in st.runs(name, method=canon, budget=budget) if r["seed"] == seed]
                return rows[0] if rows else None

            per: dict[str, dict[str, Any]] = {}
            grid_tests, grid_lrs = [], []
            for seed in bench.seeds:
                runs = [(lr, get(grid_spec(lr), seed)) for lr in GRID_LRS]
                runs = [(lr, r) for lr, r in runs if r is not None]
                if len(runs) < len(GRID_LRS):
                    continue
                scored = [(lr, r) for lr, r in runs if r["final_val_metric"] is not None and not r["diverged"]]
                lr, r = max(scored, key=lambda t: sign * t[1]["final_val_metric"])
                grid_tests.append(r["final_metric"])
                grid_lrs.append(lr)
            per[GRID] = {"tests": grid_tests, "lrs": grid_lrs, "cost": float(len(GRID_LRS)), "wall": len(GRID_LRS)}
            labels = {**bench.methods(), RANGE_TEST: None}
            for label, spec in labels.items():
                tests, walls = [], []
                for seed in bench.seeds:
                    s = (
                        spec
                        if spec is not None
                        else (grid_spec(found[f"{name}/{seed}"]) if f"{name}/{seed}" in found else None)
                    )
                    r = get(s, seed) if s is not None else None
                    base = get(grid_spec(1e-3), seed)
                    if r is None:
                        continue
                    tests.append(r["final_metric"] if r["final_metric"] is not None and not r["diverged"] else None)
                    if base is not None and base["wall"]:
                        walls.append(r["wall"] / base["wall"])
                cost = 1.0
                if spec is not None and parse_method(spec).optimizer.name == "auto":
                    kw = parse_method(spec).optimizer_kwargs()
                    cost = Auto(**kw).planned_cost(steps, _val_cost(task))
                elif spec is None:
                    cost = 1.0 + RANGE_TEST_STEPS / steps
                per[label] = {"tests": tests, "cost": cost, "wall": statistics.median(walls) if walls else None}
            for d in per.values():
                vals = [v for v in d["tests"] if v is not None]
                ok = len(vals) == len(d["tests"]) and len(vals) > 0
                worst = -math.inf if task.higher_is_better else math.inf
                d["median"] = (
                    statistics.median([v if v is not None else worst for v in d["tests"]]) if (d["tests"]) else None
                )
                d["complete"] = ok and len(d["tests"]) == len(bench.seeds)
            out[name] = {
                "metric": task.metric,
                "higher_is_better": task.higher_is_better,
                "steps": steps,
                "methods": per,
            }
    return out


def _within(q: float | None, grid: float | None, higher: bool) -> bool:
    if q is None or grid is None or not math.isfinite(q):
        return False
    return q >= grid - 0.01 - 1e-9 if higher else q <= grid * 1.02 + 1e-12


def _badness(q: float | None, higher: bool) -> float:
    """Lower is better: the error rate for accuracy, the loss itself otherwise."""
    if q is None or not math.isfinite(q):
        return math.inf
    return 1.0 - q if higher else q


def table(summary: Mapping[str, Any]) -> str:
    """The benchmark's Markdown tables: per-task medians, then a summary per method."""
    tasks = list(summary)
    labels = list(next(iter(summary.values()))["methods"]) if summary else []
    lines = ["| task (metric, steps) | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    ranks: dict[str, list[float]] = {m: [] for m in labels}
    within: dict[str, int] = {m: 0 for m in labels}
    ratios: dict[str, list[float]] = {m: [] for m in labels}
    for t in tasks:
        s = summary[t]
        hib = s["higher_is_better"]
        grid = s["methods"][GRID]["median"]
        cells = []
        bad = {m: _badness(s["methods"][m]["median"], hib) for m in labels}
        order = sorted(bad.values())
        for m in labels:
            q = s["methods"][m]["median"]
            ranks[m].append(1 + sum(1 for b in order if b < bad[m]) + 0.5 * (sum(1 for b in order if b == bad[m]) - 1))
            if q is None or not math.isfinite(q):
                cells.append("diverged" if q is not None else "-")
                continue
            if m != GRID:
                within[m] += _within(q, grid, hib)
            if hib:
                cells.append(f"{100 * q:.1f}" + ("" if m == GRID or grid is None else f" ({100 * (q - grid):+.1f})"))
            else:
                r = q / grid if grid else math.nan
                if m != GRID:
                    ratios[m].append(r)
                cells.append(f"{q:.4g}" + ("" if m == GRID else f" ({r:.2f}x)"))
        lines.append(f"| {t} ({s['metric']}, {s['steps']}) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| method | tasks within 2% / 1 pt of the grid | geo-mean loss / grid (loss tasks) | worst loss "
        "ratio | mean rank | compute (runs, max over tasks) | wall / one run |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in labels:
        rs = [r for r in ratios[m] if math.isfinite(r) and r > 0]
        geo = math.exp(sum(math.log(r) for r in rs) / len(rs)) if rs else math.nan
        worst = max(ratios[m]) if ratios[m] else math.nan
        costs = [summary[t]["methods"][m]["cost"] for t in tasks]
        walls = [summary[t]["methods"][m]["wall"] for t in tasks if summary[t]["methods"][m]["wall"] is not None]
        w = f"{statistics.median(walls):.2f}" if walls and m != GRID else ("7" if m == GRID else "-")
        lines.append(
            f"| {m} | {'-' if m == GRID else f'{within[m]}/{len(tasks)}'} | "
            f"{'-' if m == GRID else f'{geo:.2f}'} | {'-' if m == GRID else f'{worst:.2f}'} | "
            f"{statistics.mean(ranks[m]):.2f} | {max(costs):.2f} | {w} |"
        )
    return "\n".join(lines)


def performance_profile(summary: Mapping[str, Any], path: str | Path) -> Path:
    r"""Write a performance profile (Dolan & Moré, 2002): for each method the fraction of tasks on which its
    badness (test error rate, or test loss) is within a factor :math:`\tau` of the best method's on that task,
    against :math:`\tau`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary)
    labels = list(summary[tasks[0]]["methods"])
    ratio: dict[str, list[float]] = {m: [] for m in labels}
    for t in tasks:
        hib = summary[t]["higher_is_better"]
        bad = {m: _badness(summary[t]["methods"][m]["median"], hib) for m in labels}
        best = min(bad.values())
        for m in labels:
            if bad[m] == best:
                ratio[m].append(1.0)
            else:
                ratio[m].append(bad[m] / best if best > 0 and math.isfinite(bad[m]) else math.inf)
    taus = [10 ** (i / 100) for i in range(0, 201)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in labels:
        ys = [sum(r <= tau for r in ratio[m]) / len(tasks) for tau in taus]
        ax.step(
            taus, ys, where="post", label=m, linestyle="--" if m == GRID else "-", linewidth=2.5 if m == "Auto" else 1.5
        )
    ax.set_xscale("log")
    ax.set_xlabel("tau: within this factor of the best method's test error / loss")
    ax.set_ylabel("fraction of tasks")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Tuning-free benchmark: performance profile (medians over seeds)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="adaptlr bench tuning-free", description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default="tuning_free.db")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names (default: all)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="one budget for all tasks (default: per task)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--figure", default="tuning_free_profile.png")
    ap.add_argument("--report-only", action="store_true", help="only print the table from the store")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    bench = Bench(a.store, [t for t in a.tasks.split(",") if t], tuple(range(a.seeds)), a.steps)
    if not a.report_only:
        run(bench, jobs=a.jobs, progress=not a.no_progress)
    s = summarize(bench)
    print(table(s))
    if a.figure:
        print(f"\nperformance profile: {performance_profile(s, a.figure)}")
    return 0
