"""The tuning-free benchmark's tables, pure functions of :func:`adaptlr.lab.tuning_free.summarize`'s summary.

Quality is the task's metric on the **test** split at the end of the budget (accuracy for classification, loss
or MSE otherwise). :func:`table` gives medians over seeds, the ratio to the grid (loss) or the difference in
accuracy points, how many tasks land within 2% (loss) or 1 accuracy point of the grid, the mean rank per task
among all methods, and what each method costs in the two units a user pays: steps (runs of the budget, Auto's
validation counted at its measured cost) and wall time over one plain run; :func:`compute_table` gives both per
task, :func:`grid_table` the grid's choices, :func:`performance_profile` a figure."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["GRID", "compute_table", "grid_table", "hindsight", "performance_profile", "table", "within"]

#: the label of the tuned reference in a summary
GRID = "grid (tuned, 7 runs)"


def within(q: float | None, grid: float | None, higher: bool) -> bool:
    """Whether ``q`` is within 2% (a loss) or 1 point (an accuracy, ``higher``) of the grid's ``grid``."""
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
    landed: dict[str, int] = {m: 0 for m in labels}
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
                landed[m] += within(q, grid, hib)
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
        "ratio | mean rank | steps (runs, max over tasks) | wall / one run | wall / one run, max over tasks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in labels:
        rs = [r for r in ratios[m] if math.isfinite(r) and r > 0]
        geo = math.exp(sum(math.log(r) for r in rs) / len(rs)) if rs else math.nan
        worst = max(ratios[m]) if ratios[m] else math.nan
        costs = [summary[t]["methods"][m].get("steps", summary[t]["methods"][m]["cost"]) for t in tasks]
        walls = [summary[t]["methods"][m]["wall"] for t in tasks if summary[t]["methods"][m]["wall"] is not None]
        w = f"{statistics.median(walls):.2f} | {max(walls):.2f}" if walls else "- | -"
        lines.append(
            f"| {m} | {'-' if m == GRID else f'{landed[m]}/{len(tasks)}'} | "
            f"{'-' if m == GRID else f'{geo:.2f}'} | {'-' if m == GRID else f'{worst:.2f}'} | "
            f"{statistics.mean(ranks[m]):.2f} | {max(costs):.2f} | {w} |"
        )
    return "\n".join(lines + ["", hindsight(summary), "", compute_table(summary)])


def hindsight(summary: Mapping[str, Any]) -> str:
    """The best single learning rate in hindsight: the grid's run at one lr for every task of ``summary`` (AdamW +
    warmup + cosine, the lr that lands the most tasks within 2% / 1 point of the grid, chosen after seeing the
    test metric), the yardstick a method that claims to need no tuning must beat. A task whose grid did not run
    that lr (its own grid) counts as missed, as does a seed that diverged (its median taken as the worst)."""
    landed: dict[float, list[str]] = {}
    for t, s in summary.items():
        grid, hib = s["methods"][GRID], s["higher_is_better"]
        for lr, tests in (grid.get("by_lr") or {}).items():
            worst = -math.inf if hib else math.inf
            q = statistics.median([v if v is not None else worst for v in tests]) if tests else None
            landed.setdefault(lr, [])
            if within(q, grid.get("median"), hib):
                landed[lr].append(t)
    if not landed:
        return "best single lr in hindsight: - (no grid run at one lr on every seed)"
    lr = max(sorted(landed), key=lambda x: len(landed[x]))
    counts = ", ".join(f"{x:g}: {len(landed[x])}" for x in sorted(landed))
    return (
        f"best single lr in hindsight (the grid's run at one lr on every task): {lr:g}, within 2% / 1 pt on "
        f"{len(landed[lr])}/{len(summary)} (per lr: {counts})"
    )


def compute_table(summary: Mapping[str, Any]) -> str:
    """Per task and method, what a user pays, in runs of the task's budget: ``steps / wall`` (training steps,
    with Auto's validation at its measured cost when its run was timed; wall time over one plain run, the
    grid's run at its chosen lr). ``*``: the wall of a run timed beside a plain run of its own (the same load);
    ``~``: Auto's planned, not measured, step cost."""
    tasks = list(summary)
    labels = list(next(iter(summary.values()))["methods"]) if summary else []
    lines = [
        "| task (compute: steps / wall, in plain runs) | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for t in tasks:
        cells = []
        for m in labels:
            d = summary[t]["methods"][m]
            wall = "-" if d.get("wall") is None else f"{d['wall']:.2f}" + ("*" if d.get("wall_paired") else "")
            cells.append(f"{'~' if d.get('cost_how') == 'planned' else ''}{d.get('steps', d['cost']):.2f} / {wall}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grid_table(summary: Mapping[str, Any]) -> str:
    """The grid per task: its lrs, the lr chosen on validation per seed, and that run's test metric."""
    lines = ["| task (metric) | grid | chosen lr per seed | test metric per seed | median |", "|---|---|---|---|---|"]
    for t, s in summary.items():
        g = s["methods"][GRID]
        fmt = (lambda v: f"{100 * v:.1f}") if s["higher_is_better"] else (lambda v: f"{v:.4g}")
        grid = g.get("grid") or []
        span = f"{grid[0]:g} .. {grid[-1]:g}" if grid else "-"
        lrs = ", ".join(f"{x:g}" + (" (edge)" if x in (grid[0], grid[-1]) else "") for x in g.get("lrs", []))
        tests = ", ".join(fmt(v) if v is not None else "-" for v in g["tests"])
        med = fmt(g["median"]) if g.get("median") is not None else "-"
        lines.append(f"| {t} ({s['metric']}) | {span} | {lrs or '-'} | {tests or '-'} | {med} |")
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
