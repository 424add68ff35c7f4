"""Reports from the store: per-task tables and figures, and a performance profile over tasks.

All numbers come from the raw logged points (not from the runs' cached summaries):

- **final** metric: the metric of a run's last evaluated point; **best**: the best evaluated metric;
- **steps to target** / **time to target**: the step (and wall time) of the first evaluated point whose metric
  reaches the target (``>=`` for accuracy, ``<=`` for losses); a run that never reaches it counts as infinite,
  so the median over seeds is finite only when at least half of the seeds reach the target;
- **wall s**: the run's whole wall time, as its summary records it: everything the method spent, so Auto's race,
  its annealed branches and its held-out evaluations count (a fixed method's clock starts after its first
  step, so a one-off kernel compilation does not); **steps/s**: the steps the run delivered (its budget, unless
  it diverged) divided by that wall time, so a method that trains several candidates before committing to
  one is as slow here as it is on the clock;
- spreads are the median and the interquartile range (25th-75th percentile, linear interpolation) over seeds.

**A diverged run is never ranked above a finished one.** A run diverged when the runner marked it so, or
when its last logged point has a non-finite train loss or metric. Its *final* metric is then the worst value
there is (``-inf`` for accuracy, ``+inf`` for a loss), not the last finite one it logged before blowing up,
and it counts as never reaching the target. So the medians, the order of the table (best final first), the
performance profile, the lr-sensitivity curves and ``adaptlr tune``'s best all see it as the worst result;
tables show such a value as ``diverged``. Its *best* metric stays what it reached before.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .grammar import SpecError, parse_method
from .store import Store

__all__ = ["MethodSummary", "profile", "report", "run_stats", "summarize"]


@dataclass
class MethodSummary:
    """One row of a task's table."""

    task: str
    method: str
    budget: str
    runs: int
    final: tuple[float, float, float]  # median, q25, q75
    best: tuple[float, float, float]
    steps_to_target: float  # median over seeds (inf: not reached by at least half)
    time_to_target: float
    reached: int
    steps_per_s: float  # median over seeds of steps delivered / total wall
    diverged: int
    metric: str
    higher_is_better: bool
    target: float | None
    reference: dict[str, float] | None = None  # published results for the task (e.g. the MNIST-1D paper's)
    wall: float = math.nan  # median over seeds of the run's total wall time in seconds


def _quantile(a: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted ``a`` by linear interpolation (numpy's default), where an infinite end
    of the interval is the limit (a value between x and +inf at a fraction > 0 is +inf, never nan)."""
    pos = q * (len(a) - 1)
    i = math.floor(pos)
    frac = pos - i
    lo, hi = a[i], a[min(i + 1, len(a) - 1)]
    if frac == 0 or lo == hi:
        return float(lo)
    if math.isinf(lo):
        return float(lo)
    if math.isinf(hi):
        return float(hi)
    return float(lo + (hi - lo) * frac)


def _q(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, q25, q75) over the values; ``None`` and nan (no evaluation) are left out, infinities (a
    diverged run's worst value) count."""
    a = sorted(float(v) for v in values if v is not None and not math.isnan(v))
    if not a:
        return (math.nan, math.nan, math.nan)
    return _quantile(a, 0.5), _quantile(a, 0.25), _quantile(a, 0.75)


def _median_inf(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float))) if values else math.inf


def ended_diverged(points: Sequence[dict[str, Any]], flagged: bool = False) -> bool:
    """Whether a run diverged: marked so by the runner, or its last point has a non-finite (stored as
    ``None``) train loss or metric, or a non-finite number."""
    if flagged:
        return True
    if not points:
        return False
    last = points[-1]
    for key in ("train_loss", "metric"):
        v = last.get(key)
        if v is None or not math.isfinite(v):
            return True
    return False


def run_stats(
    points: Sequence[dict[str, Any]],
    higher_is_better: bool,
    target: float | None,
    diverged: bool = False,
    wall: float | None = None,
) -> dict[str, Any]:
    """final / best metric, steps and time to ``target``, wall time and steps/s of one run, from its points.

    ``wall``: the run's total wall time (its summary's); steps/s is the last point's step over it. Without
    it (a run written without a summary), the points' own span: steps between the first and the last point
    over the time between them, which leaves out whatever a method spent before its first logged point.
    A run that diverged (``diverged``, or see :func:`ended_diverged`) gets the worst final metric (``-inf``
    when higher is better, else ``+inf``) and never reaches the target."""
    evals = [p for p in points if p["metric"] is not None and math.isfinite(p["metric"])]
    diverged = ended_diverged(points, diverged)
    final = evals[-1]["metric"] if evals else math.nan
    if diverged:
        final = -math.inf if higher_is_better else math.inf
    best = (max if higher_is_better else min)((p["metric"] for p in evals), default=math.nan)
    hit = None
    if target is not None and not diverged:
        hit = next((p for p in evals if (p["metric"] >= target if higher_is_better else p["metric"] <= target)), None)
    sps = math.nan
    if wall is not None and points and wall > 0:
        sps = points[-1]["step"] / wall
    elif len(points) >= 2 and points[-1]["wall"] > points[0]["wall"]:
        sps = (points[-1]["step"] - points[0]["step"]) / (points[-1]["wall"] - points[0]["wall"])
    return {
        "final": final,
        "best": best,
        "steps_to_target": hit["step"] if hit else math.inf,
        "time_to_target": hit["wall"] if hit else math.inf,
        "steps_per_s": sps,
        "wall": math.nan if wall is None else float(wall),
        "diverged": diverged,
    }


def summarize(
    store: Store | str, task: str | None = None, *, target: float | None = None, budget: str | None = None
) -> dict[str, list[MethodSummary]]:
    """``{task: [MethodSummary, ...]}`` over the store's finished runs (one row per method and budget), sorted
    best final metric first. ``target`` overrides the tasks' own targets."""
    st = Store(store) if isinstance(store, str) else store
    try:
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for r in st.runs(task, budget=budget):
            groups[(r["task"], r["method"], r["budget"])].append(r)
        out: dict[str, list[MethodSummary]] = defaultdict(list)
        for (t, m, b), runs in groups.items():
            cfg = runs[0]["config"]
            hib = bool(cfg.get("higher_is_better", True))
            tgt = target if target is not None else cfg.get("target")
            stats = [run_stats(st.points(r["id"]), hib, tgt, bool(r["diverged"]), r["wall"]) for r in runs]
            out[t].append(
                MethodSummary(
                    t,
                    m,
                    b,
                    len(runs),
                    _q([s["final"] for s in stats]),
                    _q([s["best"] for s in stats]),
                    _median_inf([s["steps_to_target"] for s in stats]),
                    _median_inf([s["time_to_target"] for s in stats]),
                    sum(math.isfinite(s["steps_to_target"]) for s in stats),
                    _q([s["steps_per_s"] for s in stats])[0],
                    sum(bool(x["diverged"]) for x in stats),
                    cfg.get("metric", "metric"),
                    hib,
                    tgt,
                    cfg.get("reference") or None,
                    _q([s["wall"] for s in stats])[0],
                )
            )
        for rows in out.values():
            rows.sort(key=lambda s: (math.isnan(s.final[0]), -s.final[0] if s.higher_is_better else s.final[0]))
        return dict(sorted(out.items()))
    finally:
        if isinstance(store, str):
            st.close()


def _fmt_q(q: tuple[float, float, float], metric: str) -> str:
    if math.isnan(q[0]):
        return "—"
    if math.isinf(q[0]):
        return "diverged"

    def one(v: float) -> str:
        if math.isinf(v):
            return "div."
        return f"{100 * v:.1f}" if metric == "accuracy" else f"{v:.4g}"

    if metric == "accuracy":
        return f"{one(q[0])}% [{one(q[1])}, {one(q[2])}]"
    return f"{one(q[0])} [{one(q[1])}, {one(q[2])}]"


def _fmt_wall(seconds: float) -> str:
    return f"{seconds:.3g}" if math.isfinite(seconds) else "—"


def table(rows: Sequence[MethodSummary], title: str | None = None) -> Any:
    """A rich ``Table`` of a task's summaries."""
    from rich.table import Table

    r0 = rows[0]
    arrow = "↑" if r0.higher_is_better else "↓"
    tgt = (
        f"{100 * r0.target:.0f}%"
        if r0.target is not None and r0.metric == "accuracy"
        else f"{r0.target:.3g}"
        if r0.target is not None
        else "—"
    )
    ref = ""
    if r0.reference and r0.metric in r0.reference:
        v = r0.reference[r0.metric]
        ref = f"; published: {100 * v:.0f}%" if r0.metric == "accuracy" else f"; published: {v:.4g}"
    title = title or f"{r0.task}  ({r0.budget}; median [IQR] over seeds{ref})"
    t = Table(title=title, title_justify="left")
    t.add_column("method", style="bold", no_wrap=True)
    t.add_column("n", justify="right")
    t.add_column(f"final {r0.metric} {arrow}", justify="right")
    t.add_column(f"best {r0.metric} {arrow}", justify="right")
    t.add_column(f"steps to {tgt}", justify="right")
    t.add_column(f"time to {tgt}", justify="right")
    t.add_column("wall s", justify="right")
    t.add_column("steps/s", justify="right")
    t.add_column("diverged", justify="right")
    for r in rows:
        t.add_row(
            r.method,
            str(r.runs),
            _fmt_q(r.final, r.metric),
            _fmt_q(r.best, r.metric),
            f"{r.steps_to_target:.0f} ({r.reached}/{r.runs})"
            if math.isfinite(r.steps_to_target)
            else f"— ({r.reached}/{r.runs})",
            f"{r.time_to_target:.2f}s" if math.isfinite(r.time_to_target) else "—",
            _fmt_wall(r.wall),
            f"{r.steps_per_s:.0f}" if math.isfinite(r.steps_per_s) else "—",
            str(r.diverged) if r.diverged else "0",
        )
    return t


def markdown(rows: Sequence[MethodSummary]) -> str:
    """The same table as GitHub markdown (for a README)."""
    r0 = rows[0]
    head = (
        f"| method | n | final {r0.metric} | best {r0.metric} | steps to target | time to target | wall s "
        "| steps/s | diverged |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| `{r.method}` | {r.runs} | {_fmt_q(r.final, r.metric)} | {_fmt_q(r.best, r.metric)} | "
        + (f"{r.steps_to_target:.0f} ({r.reached}/{r.runs})" if math.isfinite(r.steps_to_target) else "—")
        + " | "
        + (f"{r.time_to_target:.2f}s" if math.isfinite(r.time_to_target) else "—")
        + f" | {_fmt_wall(r.wall)} | {r.steps_per_s:.0f} | {r.diverged} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def curves(store: Store, task: str, budget: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per method: the seeds (one row each), steps and per-seed arrays of train loss, test metric and effective
    lr on common steps."""
    by_method: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    seeds: dict[str, list[int]] = defaultdict(list)
    for r in store.runs(task, budget=budget):
        by_method[r["method"]].append(store.points(r["id"]))
        seeds[r["method"]].append(int(r["seed"]))
    out = {}
    for m, runs in by_method.items():
        steps = sorted(set.intersection(*(set(p["step"] for p in pts) for pts in runs)))
        if not steps:
            continue
        idx = [{p["step"]: p for p in pts} for pts in runs]

        def col(key: str, steps: list[int] = steps, idx: list[dict[int, dict[str, Any]]] = idx) -> np.ndarray:
            return np.array([[np.nan if d[s][key] is None else d[s][key] for s in steps] for d in idx], dtype=float)

        evals = sorted(set.intersection(*(set(p["step"] for p in pts if p["metric"] is not None) for pts in runs)))
        out[m] = {
            "seed": np.array(seeds[m]),
            "step": np.array(steps),
            "train_loss": col("train_loss"),
            "lr": col("lr"),
            "eff_lr": col("eff_lr"),
            "eval_step": np.array(evals),
            "metric": col("metric", evals),
        }
    return out


def sensitivity(rows: Sequence[MethodSummary]) -> dict[str, list[tuple[float, tuple[float, float, float]]]]:
    """Methods that differ only in the optimizer's lr, grouped: ``{spec without lr: [(lr, final q), ...]}``
    (only groups with at least two learning rates). A diverged median is infinite (the worst value), so
    it is never drawn as a good lr."""
    groups: dict[str, list[tuple[float, tuple[float, float, float]]]] = defaultdict(list)
    for r in rows:
        try:
            m = parse_method(r.method)
        except SpecError:
            continue
        lr = m.optimizer.kwargs.get("lr")
        if isinstance(lr, (int, float)):
            groups[m.without("lr")].append((float(lr), r.final))
    return {k: sorted(v) for k, v in groups.items() if len(v) >= 2}


def profile(summaries: dict[str, list[MethodSummary]], by: str = "steps") -> dict[str, Any]:
    """AlgoPerf-style performance profile (Dolan & Moré, 2002; Dahl et al., 2023): for each method, the
    fraction of tasks on which it reaches the target within ``tau`` times the fastest method's steps (or wall
    time, ``by="time"``). Returns ``{"taus": array, "rho": {method: array}, "ratios": ...}``; a method not run
    on a task counts as not reaching it."""
    methods = sorted({r.method for rows in summaries.values() for r in rows})
    ratios: dict[str, list[float]] = {m: [] for m in methods}
    for rows in summaries.values():
        cost = {r.method: (r.steps_to_target if by == "steps" else r.time_to_target) for r in rows}
        best = min((c for c in cost.values() if math.isfinite(c)), default=math.inf)
        for m in methods:
            c = cost.get(m, math.inf)
            ratios[m].append(c / best if math.isfinite(c) and math.isfinite(best) and best > 0 else math.inf)
    finite = [x for v in ratios.values() for x in v if math.isfinite(x)]
    top = max(4.0, max(finite, default=1.0) * 1.1)
    taus = np.unique(np.concatenate([np.geomspace(1.0, top, 200), finite]))  # exact at every ratio
    n = max(len(summaries), 1)
    rho = {m: np.array([sum(r <= t for r in ratios[m]) / n for t in taus]) for m in methods}
    return {"taus": taus, "rho": rho, "ratios": ratios, "by": by}


def _write_atomic(path: Path, text: str) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _is_lr_free(spec: str) -> bool:
    from .catalog import is_lr_free

    try:
        return is_lr_free(parse_method(spec).optimizer.name)
    except SpecError:
        return False


def report(
    store: Store | str = "runs.db",
    tasks: Sequence[str] | None = None,
    *,
    out: str | Path | None = "out",
    target: float | None = None,
    console: Any = None,
    figures: bool = True,
    markdown_path: str | Path | None = None,
) -> dict[str, list[MethodSummary]]:
    """Print a table per task and write its figures (curves, lr, sensitivity) plus ``profile.png`` to ``out``.

    Returns the summaries; writes nothing when ``out`` is None or ``figures`` is false.
    """
    st = Store(store) if isinstance(store, str) else store
    try:
        names = list(tasks) if tasks else st.tasks()
        summaries: dict[str, list[MethodSummary]] = {}
        for t in names:
            summaries.update(summarize(st, t, target=target))
        if console is None:
            from rich.console import Console

            console = Console()
        for rows in summaries.values():
            by_budget: dict[str, list[MethodSummary]] = defaultdict(list)
            for r in rows:
                by_budget[r.budget].append(r)
            for group in by_budget.values():
                console.print(table(group))
        written = []
        if figures and out is not None and summaries:
            from .. import plotting

            out = Path(out)
            out.mkdir(parents=True, exist_ok=True)
            for t, rows in summaries.items():
                budget = rows[0].budget
                same = [r for r in rows if r.budget == budget]
                cv = curves(st, t, budget)
                free = {m for m in cv if _is_lr_free(m)}
                if cv:
                    written.append(
                        plotting.lab_curves(
                            cv,
                            out / f"{t}_curves.png",
                            task=t,
                            metric=same[0].metric,
                            target=same[0].target,
                            dashed=free,
                        )
                    )
                    written.append(plotting.lab_lr(cv, out / f"{t}_lr.png", task=t, dashed=free))
                sens = sensitivity(same)
                if sens:
                    written.append(
                        plotting.lab_sensitivity(sens, out / f"{t}_sensitivity.png", task=t, metric=same[0].metric)
                    )
            written.append(plotting.lab_profile(profile(summaries), out / "profile.png"))
            console.print("figures: " + ", ".join(str(p) for p in written))
        if markdown_path is not None:
            text = "\n".join(f"### {t}\n\n{markdown(rows)}" for t, rows in summaries.items())
            _write_atomic(Path(markdown_path), text)
        return summaries
    finally:
        if isinstance(store, str):
            st.close()
