r"""Which range-test suggestion to trust: each rule of :func:`adaptlr.lr_find` trained at, on every lab task.

For each task and seed: the range test (AdamW, lr from 1e-6 to 10 over 100 batches, as ``adaptlr find-lr``
runs it) gives three suggestions (``steepest``, ``valley``, ``minimum`` = lowest-loss lr / 10); each is
trained for the task's budget with AdamW + 5% warmup + cosine, against the tuned 7-point grid of the
tuning-free benchmark (:mod:`adaptlr.lab.tuning_free`: the same specs, the same reduced budgets, the same grid per
task, its lr chosen per seed on the validation metric). Quality is the test metric at the end of the budget, median over
seeds; a rule is "within" on a task when its median is within 1 accuracy point (accuracy) or 2% (loss) of the
grid's. A seed where a rule offers no suggestion trains at 1e-3 (the untuned default) and is counted.

Runs live in a lab store and the suggestions in a JSON file beside it, so the script resumes where it stopped::

    OMP_NUM_THREADS=1 python benchmarks/range_test_rules.py --store out/range_test_rules.db
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import adaptlr
from adaptlr.lab.comparison import compare
from adaptlr.lab.grammar import parse_method
from adaptlr.lab.jobs import Job
from adaptlr.lab.store import Store
from adaptlr.lab.tasks import TASKS, get_task
from adaptlr.lab.tuning_free import budget_steps, grid_lrs, grid_spec

RULES = ("steepest", "valley", "minimum")
FALLBACK_LR = 1e-3
#: cheapest first, so that a run cut short covers as many tasks as it can
ORDER = (
    "linreg",
    "digits-logreg",
    "digits-mlp",
    "digits-autoencoder",
    "illcond-regression",
    "mnist-mlp",
    "digits-resnet",
    "adding-gru",
    "char-lm",
    "mnist-cnn",
    "mnist1d-mlp",
    "mnist1d-cnn",
    "linreg-bigLR",
    "tinylr",
    "near-optimum",
    "finetune",
    "holdout-diabetes-outliers",
    "holdout-conv1d-waves",
    "holdout-lstm-sines",
    "charlm-bigval",
)


def suggestions(task_name: str, seed: int, steps: int = 100) -> dict[str, float | None]:
    """Each rule's lr (3 significant digits, as the tuning-free benchmark rounds it; ``None``: not offered)
    from the range test of the task's model as the runner seeds it, on its training batches (AdamW)."""
    task = get_task(task_name)
    data = task.data()
    torch.manual_seed(seed)
    model = task.model()
    opt = adaptlr.AdamW(model.parameters(), lr=1e-3)
    batches = data.batches(task.batch_size, torch.Generator().manual_seed(seed))
    result = adaptlr.lr_find(model, task.loss, batches, opt, start=1e-6, end=10.0, steps=steps)
    return {r: float(f"{result.suggestions[r].lr:.3g}") if r in result.suggestions else None for r in RULES}


class Cache:
    """The suggestions found so far, ``{"task/seed": {rule: lr}}``, in a JSON file written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, dict[str, float | None]]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, task: str, seed: int) -> dict[str, float | None]:
        key = f"{task}/{seed}"
        found = self.read()
        if key not in found:
            found = {**self.read(), key: suggestions(task, seed)}
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(found, indent=1, sort_keys=True))
            tmp.replace(self.path)
        return found[key]


def lr_of(found: dict[str, float | None], rule: str) -> float:
    lr = found.get(rule)
    return FALLBACK_LR if lr is None else lr


def run(store: str, tasks: Sequence[str], seeds: Sequence[int], progress: bool = True) -> None:
    """Train every run not yet in ``store``: per task, the rules' lrs first, then the grid."""
    torch.set_num_threads(1)
    cache = Cache(Path(store + ".rules.json"))
    for name in tasks:
        steps = budget_steps(get_task(name))
        for seed in seeds:
            found = cache.get(name, seed)
            specs = sorted({grid_spec(lr_of(found, r)) for r in RULES})
            compare(name, specs, [seed], store=store, jobs=1, steps=steps, progress=progress)
        compare(
            name,
            [grid_spec(lr) for lr in grid_lrs(name)],
            list(seeds),
            store=store,
            jobs=1,
            steps=steps,
            progress=progress,
        )


def summarize(store: str, tasks: Sequence[str], seeds: Sequence[int]) -> dict[str, Any]:
    """Per task (only tasks with every run done): the grid's and each rule's test metric per seed, the lrs
    trained, their medians and how many seeds a rule offered nothing."""
    found = Cache(Path(store + ".rules.json")).read()
    out: dict[str, Any] = {}
    with Store(store) as st:
        for name in tasks:
            task = get_task(name)
            steps = budget_steps(task)
            sign = 1.0 if task.higher_is_better else -1.0

            def get(lr: float, seed: int, name: str = name, steps: int = steps, bs: int = task.batch_size) -> Any:
                canon = parse_method(grid_spec(lr)).canonical
                rows = [r for r in st.runs(name, method=canon, budget=Job(name, canon, seed, steps, bs).budget)]
                return next((r for r in rows if r["seed"] == seed), None)

            def test(row: Any, worst: float = -sign * math.inf) -> float:
                ok = row["final_metric"] is not None and not row["diverged"]
                return float(row["final_metric"]) if ok else worst

            per: dict[str, dict[str, Any]] = {m: {"tests": [], "lrs": [], "missing": 0} for m in ("grid", *RULES)}
            complete = True
            for seed in seeds:
                grid = [(lr, get(lr, seed)) for lr in grid_lrs(name)]
                rules = found.get(f"{name}/{seed}")
                if any(r is None for _, r in grid) or rules is None:
                    complete = False
                    break
                scored = [(lr, r) for lr, r in grid if r["final_val_metric"] is not None and not r["diverged"]]
                lr, r = max(scored, key=lambda t: sign * t[1]["final_val_metric"])
                per["grid"]["tests"].append(float(r["final_metric"]))
                per["grid"]["lrs"].append(lr)
                for rule in RULES:
                    row = get(lr_of(rules, rule), seed)
                    if row is None:
                        complete = False
                        break
                    per[rule]["tests"].append(test(row))
                    per[rule]["lrs"].append(lr_of(rules, rule))
                    per[rule]["missing"] += rules.get(rule) is None
            if not complete:
                continue
            for d in per.values():
                d["median"] = statistics.median(d["tests"])
            out[name] = {"metric": task.metric, "higher_is_better": task.higher_is_better, "steps": steps, **per}
    return out


def within(q: float, grid: float, higher_is_better: bool) -> bool:
    """Within 1 accuracy point (accuracy) or 2% (loss) of the grid."""
    if not math.isfinite(q):
        return False
    return q >= grid - 0.01 - 1e-9 if higher_is_better else q <= grid * 1.02 + 1e-12


def ratio(q: float, grid: float, higher_is_better: bool) -> float:
    """Badness against the grid's: error rate / grid's error rate (accuracy), loss / grid's loss (loss)."""
    if not math.isfinite(q):
        return math.inf
    bad, ref = (1.0 - q, 1.0 - grid) if higher_is_better else (q, grid)
    return bad / ref if ref > 0 else (1.0 if bad <= 0 else math.inf)


def ranking(summary: dict[str, Any]) -> list[tuple[str, int, float]]:
    """The rules, best first: (rule, tasks within, mean ratio); more tasks within wins, then the lower mean."""
    rows = []
    for rule in RULES:
        n = sum(within(s[rule]["median"], s["grid"]["median"], s["higher_is_better"]) for s in summary.values())
        rs = [ratio(s[rule]["median"], s["grid"]["median"], s["higher_is_better"]) for s in summary.values()]
        rows.append((rule, n, statistics.mean(rs) if rs else math.nan))
    return sorted(rows, key=lambda t: (-t[1], t[2]))


def _cell(q: float, grid: float, hib: bool) -> str:
    if not math.isfinite(q):
        return "diverged"
    if hib:
        return f"{100 * q:.1f} ({100 * (q - grid):+.1f})"
    return f"{q:.4g} ({q / grid:.2f}x)"


def _lrs(lrs: list[float]) -> str:
    return "/".join(f"{lr:.3g}" for lr in lrs)


def table(summary: dict[str, Any]) -> str:
    """Markdown: per task the grid's median and each rule's (difference in points, or loss ratio), the lrs
    per seed; then each rule's count of tasks within and mean ratio of error (or loss) to the grid's."""
    head = "| task (metric, steps) | grid (lr per seed) | " + " | ".join(f"{r} (lr per seed)" for r in RULES) + " |"
    lines = [head, "|---" * (len(RULES) + 2) + "|"]
    for name, s in summary.items():
        hib, g = s["higher_is_better"], s["grid"]["median"]
        cells = [(f"{100 * g:.1f}" if hib else f"{g:.4g}") + f" ({_lrs(s['grid']['lrs'])})"]
        for r in RULES:
            miss = f", {s[r]['missing']} none" if s[r]["missing"] else ""
            cells.append(f"{_cell(s[r]['median'], g, hib)} ({_lrs(s[r]['lrs'])}{miss})")
        lines.append(f"| {name} ({s['metric']}, {s['steps']}) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| rule | tasks within 1 pt / 2% of the grid | mean error (or loss) / grid's | worst | seeds with no suggestion |",
        "|---|---|---|---|---|",
    ]
    for rule, n, mean in ranking(summary):
        worst = max(ratio(s[rule]["median"], s["grid"]["median"], s["higher_is_better"]) for s in summary.values())
        none = sum(s[rule]["missing"] for s in summary.values())
        lines.append(f"| {rule} | {n}/{len(summary)} | {mean:.2f} | {worst:.2f} | {none} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default="out/range_test_rules.db")
    ap.add_argument(
        "--tasks", default=",".join(t for t in ORDER if t in TASKS) + "".join(f",{t}" for t in TASKS if t not in ORDER)
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--report-only", action="store_true", help="only print the table from the store")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    tasks = [t for t in a.tasks.split(",") if t]
    for t in tasks:
        get_task(t)  # an unknown name fails before any training
    seeds = tuple(range(a.seeds))
    Path(a.store).parent.mkdir(parents=True, exist_ok=True)
    if not a.report_only:
        for t in tasks:  # one task at a time, its table printed as soon as it is complete
            run(a.store, [t], seeds, progress=not a.no_progress)
            print(table(summarize(a.store, tasks, seeds)), flush=True)
    s = summarize(a.store, tasks, seeds)
    missing = [t for t in tasks if t not in s]
    print(table(s))
    if missing:
        print(f"\nnot yet measured: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
