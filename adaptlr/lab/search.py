"""Hyperparameter search over a method spec's ``?`` placeholders: a grid, or Optuna.

Every trial is an ordinary run of the lab (a concrete spec such as ``adam(lr=0.00316)``) written to the same
store, so trials are never trained twice, show up in ``adaptlr report`` and make its lr-sensitivity plot.
Optuna's study lives in an RDB storage: by default the store's own SQLite file; pass
``storage="postgresql://..."`` so that several machines share one study (each with its own result store, or
one shared file system).

>>> grid_points({"lr": (1e-3, 1e-1, True)}, 3)
[{'lr': 0.001}, {'lr': 0.01}, {'lr': 0.1}]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .methods import SpecError, parse_method
from .report import summarize
from .runner import compare, import_modules
from .store import Store
from .tasks import get_task

__all__ = ["DEFAULT_RANGES", "grid_points", "parse_range", "tune"]

#: (low, high, log scale) by argument name; other arguments default to (1e-4, 1, log).
DEFAULT_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (1e-4, 1.0, True),
    "weight_decay": (1e-5, 1e-1, True),
    "momentum": (0.0, 0.99, False),
    "eps": (1e-10, 1e-6, True),
    "warmup": (0.0, 0.2, False),
    "final": (0.0, 0.1, False),
    "patience": (1, 10, False),
    "factor": (0.1, 0.9, False),
    "d_coef": (0.1, 10.0, True),
}


def _round(x: float, digits: int = 3) -> float:
    """Round to ``digits`` significant digits (so that trial specs read well and repeat exactly)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")


def parse_range(text: str) -> tuple[str, tuple[float, float, bool]]:
    """``"lr=1e-4:1e-1"`` (log scale) or ``"momentum=0.5:0.99:lin"`` -> (name, (low, high, log))."""
    try:
        name, rng = text.split("=", 1)
        parts = rng.split(":")
        low, high = float(parts[0]), float(parts[1])
        log = (parts[2] if len(parts) > 2 else ("log" if low > 0 else "lin")) == "log"
    except (ValueError, IndexError):
        raise ValueError(f"Invalid range {text!r}: expected name=low:high[:log|lin]") from None
    if not low < high or (log and low <= 0):
        raise ValueError(f"Invalid range {text!r}: need low < high (and low > 0 on a log scale)")
    return name.strip(), (low, high, log)


def _ranges(
    names: list[str], given: Mapping[str, tuple[float, float, bool]]
) -> dict[str, tuple[float, float, bool]]:
    return {
        n: tuple(
            given.get(n)
            or given.get(n.split(".")[-1])
            or DEFAULT_RANGES.get(n.split(".")[-1], (1e-4, 1.0, True))
        )
        for n in names
    }


def grid_points(ranges: Mapping[str, tuple[float, float, bool]], trials: int) -> list[dict[str, float]]:
    """About ``trials`` points: ``round(trials ** (1/k))`` values per argument (at least 2), log- or
    linearly spaced, in a full grid."""
    k = max(1, len(ranges))
    per = max(2, int(round(trials ** (1 / k))))
    axes = []
    for lo, hi, log in ranges.values():
        vals = np.geomspace(lo, hi, per) if log else np.linspace(lo, hi, per)
        axes.append([_round(float(v)) for v in vals])
    return [dict(zip(ranges, combo, strict=True)) for combo in itertools.product(*axes)]


def _names(method: Any) -> list[str]:
    terms = method.terms
    tuned = method.tuned
    plain = [k for _, k in tuned]
    return [f"{terms[i].name}.{k}" if plain.count(k) > 1 else k for i, k in tuned]


def tune(
    task: str,
    method: str,
    trials: int = 8,
    *,
    sampler: str = "grid",
    seeds: int = 1,
    store: str = "runs.db",
    storage: str | None = None,
    study_name: str | None = None,
    jobs: int = 1,
    steps: int | None = None,
    batch_size: int | None = None,
    ranges: Mapping[str, tuple[float, float, bool]] | None = None,
    progress: bool = True,
    console: Any = None,
    callback: Callable[[str, float], None] | None = None,
    imports: Sequence[str] = (),
) -> list[tuple[str, float]]:
    """Search the ``?`` arguments of ``method`` on ``task``; returns ``[(spec, median final metric), ...]``,
    best first (the objective is the median over ``seeds`` of the final test metric)."""
    import_modules(imports)
    t = get_task(task)
    m = parse_method(method)
    if not m.tuned:
        raise SpecError(f"{method!r} has no '?' to tune (write e.g. \"adam(lr=?)\")")
    names = _names(m)
    rng = _ranges(names, ranges or {})
    budget_steps = steps or t.steps
    budget_batch = batch_size or t.batch_size

    def score(specs: list[str]) -> dict[str, float]:
        compare(
            task,
            specs,
            seeds,
            store=store,
            jobs=jobs,
            steps=budget_steps,
            batch_size=budget_batch,
            progress=progress,
            console=console,
            imports=imports,
        )
        rows = summarize(store, task).get(task, [])
        return {
            r.method: r.final[0]
            for r in rows
            if r.budget.startswith(f"steps={budget_steps},batch={budget_batch}")
        }

    results: dict[str, float] = {}
    if sampler == "grid":
        specs = [m.fill(p).canonical for p in grid_points(rng, trials)]
        scores = score(specs)
        results = {s: scores.get(s, math.nan) for s in specs}
    elif sampler == "optuna":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=study_name
            or f"{task}:{m.canonical}:steps={budget_steps},batch={budget_batch},seeds={seeds}",
            storage=storage or f"sqlite:///{store}",
            load_if_exists=True,
            direction="maximize" if t.higher_is_better else "minimize",
            sampler=optuna.samplers.TPESampler(seed=0),
        )

        def objective(trial: Any) -> float:
            values = {}
            for n in names:
                lo, hi, log = rng[n]
                values[n] = _round(trial.suggest_float(n, lo, hi, log=log))
            spec = m.fill(values).canonical
            trial.set_user_attr("spec", spec)
            value = score([spec]).get(spec, math.nan)
            results[spec] = value
            if callback is not None:
                callback(spec, value)
            if not math.isfinite(value):
                raise optuna.TrialPruned()  # diverged: no metric
            return value

        with Store(store):  # create the lab's tables first: both live in one file
            pass
        study.optimize(objective, n_trials=trials, catch=(SpecError,))
    else:
        raise ValueError(f"Invalid sampler: {sampler!r} (expected 'grid' or 'optuna')")
    sign = -1.0 if t.higher_is_better else 1.0
    return sorted(
        results.items(), key=lambda kv: (math.isnan(kv[1]), sign * kv[1] if not math.isnan(kv[1]) else 0)
    )
