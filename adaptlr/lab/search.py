"""Hyperparameter search over a method spec's ``?`` placeholders: a grid, or Optuna.

Every trial is an ordinary run of the lab (a concrete spec such as ``adam(lr=0.00316)``) written to the same
store, so trials are never trained twice, show up in ``adaptlr report`` and make its lr-sensitivity plot.
**Trials are chosen on the validation split** (the median over seeds of the runs' final validation metric);
the test metric is left for the reports.

Optuna's study lives in an RDB storage: by default the store's own database (its SQLite file, or the
PostgreSQL database of a ``postgresql://`` store). Several processes, on one machine or many, given the same
task, spec, budget and ``storage`` share one study: ``trials`` is the study's total. Each worker takes the next
free trial slot before it asks Optuna for a trial, so the study ends with exactly ``trials`` trials whatever
the number of workers; the slots are kept in the study's database, so workers that keep their own result
stores but share a ``storage`` share them too. Slots are leased like the store's runs: a worker that dies
mid-trial leaves its slot to another, which marks the dead trial failed and runs a new one (the study then
holds ``trials`` finished trials plus the failed one). Each slot's sampler is seeded with the slot's number,
so workers explore different points (and the search repeats exactly with one worker).

>>> grid_points({"lr": (1e-3, 1e-1, True)}, 3)
[{'lr': 0.001}, {'lr': 0.01}, {'lr': 0.1}]
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._validation import check_choice, check_count
from .comparison import compare
from .grammar import SpecError, parse_method
from .store import Slot, Store, budget_key, store_url
from .tasks import get_task
from .workers import import_modules

__all__ = ["DEFAULT_RANGES", "grid_points", "objective_value", "parse_range", "tune"]

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


def _ranges(names: list[str], given: Mapping[str, tuple[float, float, bool]]) -> dict[str, tuple[float, float, bool]]:
    return {
        n: tuple(given.get(n) or given.get(n.split(".")[-1]) or DEFAULT_RANGES.get(n.split(".")[-1], (1e-4, 1.0, True)))
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


def objective_value(store: Store, task: str, spec: str, budget: str, higher_is_better: bool = True) -> float:
    """What a search ranks a spec by: the median over its finished seeds of the final **validation** metric
    (NaN when a seed diverged or no seed finished). A task without a validation split (a user's data object
    with test batches only) falls back to the final test metric, with a warning."""
    runs = store.runs(task, method=spec, budget=budget)
    if not runs or any(r["diverged"] for r in runs):
        return math.nan
    values = [r["final_val_metric"] for r in runs]
    if all(v is None for v in values):
        import warnings

        warnings.warn(
            f"task {task!r} reports no validation metric: the search selects on the test metric",
            stacklevel=2,
        )
        values = [r["final_metric"] for r in runs]
    if any(v is None or not math.isfinite(v) for v in values):
        return math.nan
    return float(np.median(values))


def _with_retries(fn: Callable[[], Any], tries: int = 5) -> Any:
    """Optuna creating its schema or study while another worker does the same can lose the race once."""
    for i in range(tries):
        try:
            return fn()
        except Exception:  # noqa: BLE001 - the last failure is raised
            if i == tries - 1:
                raise
            time.sleep(0.2 * (i + 1))
    return None


def _optuna_url(storage: str) -> str:
    """An Optuna storage URL as SQLAlchemy needs it: a path -> ``sqlite:///path``, ``postgresql://`` -> psycopg 3
    (as for stores); other URLs (``mysql://...``) unchanged."""
    scheme = storage.split("://", 1)[0] if "://" in storage else ""
    return store_url(storage) if scheme in ("", "sqlite", "postgres", "postgresql", "postgresql+psycopg") else storage


def _settle_dead_trial(study: Any, number: int) -> bool:
    """A trial whose worker died: True when it had finished anyway; else it is marked failed (False)."""
    import optuna

    for tr in study.get_trials(deepcopy=False):
        if tr.number == number:
            if tr.state.is_finished():
                return True
            with contextlib.suppress(Exception):  # finished meanwhile (say, by Optuna's own heartbeat)
                study.tell(number, state=optuna.trial.TrialState.FAIL)
            return False
    return False


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
    """Search the ``?`` arguments of ``method`` on ``task``; returns ``[(spec, validation metric), ...]``,
    best first: the median over ``seeds`` of the final validation metric (:func:`objective_value`), NaN for a
    diverged spec. With ``sampler="optuna"`` the list holds every trial of the (possibly shared) study."""
    import_modules(imports)
    t = get_task(task)
    m = parse_method(method)
    if not m.tuned:
        raise SpecError(f"{method!r} has no '?' to tune (write e.g. \"adam(lr=?)\")")
    check_count("trials", trials, 1)
    check_choice("sampler", sampler, ("grid", "optuna"))
    names = _names(m)
    rng = _ranges(names, ranges or {})
    budget_steps = int(steps or t.steps)
    budget_batch = int(batch_size or t.batch_size)
    budget = budget_key(budget_steps, budget_batch, eval=None, data=None)

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
        with Store(store, check=False) as st:
            return {s: objective_value(st, task, s, budget, t.higher_is_better) for s in specs}

    results: dict[str, float] = {}
    if sampler == "grid":
        specs = [m.fill(p).canonical for p in grid_points(rng, trials)]
        scores = score(specs)
        results = {s: scores.get(s, math.nan) for s in specs}
    else:  # optuna
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        name = study_name or f"{task}:{m.canonical}:steps={budget_steps},batch={budget_batch},seeds={seeds}"
        with contextlib.ExitStack() as stack:
            st = stack.enter_context(Store(store))  # the lab's tables first: they may share the study's database
            url = _optuna_url(storage) if storage else st.url
            # the trial slots live beside the study, so that workers with different result stores share them
            # too (in the result store when the study's database is one the store does not support)
            ours = url.startswith(("sqlite:", "postgresql+psycopg:"))
            slots = st if url == st.url or not ours else stack.enter_context(Store(url, check=False))
            rdb = _with_retries(lambda: optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}))

            def open_study(seed: int) -> Any:
                return optuna.create_study(
                    study_name=name,
                    storage=rdb,
                    load_if_exists=True,
                    direction="maximize" if t.higher_is_better else "minimize",
                    sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
                )

            study = _with_retries(lambda: open_study(0))

            def objective(trial: Any, slot: Slot) -> float:
                slots.set_slot_trial(slot, trial.number)  # whoever takes the slot over marks this trial failed
                values = {}
                for n in names:
                    lo, hi, log = rng[n]
                    values[n] = _round(trial.suggest_float(n, lo, hi, log=log))
                spec = m.fill(values).canonical
                trial.set_user_attr("spec", spec)
                value = score([spec]).get(spec, math.nan)
                if callback is not None:
                    callback(spec, value)
                if not math.isfinite(value):
                    raise optuna.TrialPruned()  # diverged: no metric
                return value

            # one trial per slot: the slots of the study's scope are shared by every worker on this store
            scope = f"optuna:{name}"
            while True:
                slot = slots.claim_slot(scope, int(trials))
                if slot is None:  # every slot done, or held by live workers (one of them may still die)
                    if slots.slots_done(scope, int(trials)):
                        break
                    time.sleep(slots.poll_interval)
                    continue
                if slot.previous_trial is not None and _settle_dead_trial(study, slot.previous_trial):
                    slots.finish_slot(slot)  # its trial had finished before its worker died
                    continue
                study = open_study(slot.number)
                with slots.keep_alive(slot):
                    try:
                        study.optimize(lambda tr, slot=slot: objective(tr, slot), n_trials=1, catch=(SpecError,))
                    except BaseException:  # interrupted or broken: the slot goes back, another worker redoes it
                        with contextlib.suppress(Exception):
                            slots.release_slot(slot)
                        raise
                slots.finish_slot(slot)
            for tr in study.get_trials(deepcopy=False):
                spec = tr.user_attrs.get("spec")
                if spec is not None and tr.state.is_finished():
                    results[spec] = float(tr.value) if tr.value is not None else math.nan
    sign = -1.0 if t.higher_is_better else 1.0
    return sorted(results.items(), key=lambda kv: (math.isnan(kv[1]), sign * kv[1] if not math.isnan(kv[1]) else 0))
