"""Random CLI arguments and method specs (issue 9): every `adaptlr compare` either is refused before any
training (exit code 2, one line on stderr, no store written) or trains every run it was asked for (exit code
0, each run in the store with its points); it never fails half-way (exit code 1) or prints a traceback."""

import math
import uuid

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adaptlr.lab.cli import main
from adaptlr.lab.store import Store


def _mostly(good, bad, one_in=5):
    """``good``, except one time in ``one_in``: ``bad`` (so that most draws get as far as training)."""
    return st.integers(0, 2 * one_in - 1).flatmap(lambda k: bad if k in (1, one_in) else good)  # not at the ends:
    # hypothesis favours the ends of a range


_value = _mostly(
    st.sampled_from([0.05, 0.01, 0.9, 0.5, 1e-3, 0.0, 1.0, 2, 3, 0.3]),
    st.sampled_from([-1.0, -0.1, 2.5, 1e9, float("inf"), float("nan"), True, "x", (0.9,), None, -3]),
)
_OPTIMIZERS = ["sgd", "momentum", "adam", "adamw", "rmsprop", "adagrad", "nadam", "prodigy", "dog", "sgdd"]
_OPT_ARGS = ["lr", "lr", "lr", "weight_decay", "momentum", "eps", "betas", "nesterov", "d_coef", "lrr"]
_SCHEDULES = {
    "cosine": ["warmup", "final"],
    "linear": ["warmup", "final"],
    "warmup": ["steps"],
    "step": ["every", "gamma"],
    "wsd": ["warmup", "decay", "cooldown"],
    "one_cycle": ["pct_start", "div_factor"],
    "constant": [],
}
_PLATEAU = ["patience", "factor", "threshold", "cooldown", "min_lr"]


def _fmt(v):
    return (
        repr(v)
        if not (isinstance(v, float) and not math.isfinite(v))
        else {"inf": "1e999", "-inf": "-1e999"}.get(str(v), "1e999 - 1e999")
    )


@st.composite
def _term(draw, name, names):
    picked = sorted(set(draw(st.lists(st.sampled_from(names), max_size=2)))) if names else []
    if not picked:
        return name
    return f"{name}(" + ", ".join(f"{k}={_fmt(draw(_value))}" for k in picked) + ")"


@st.composite
def method_specs(draw):
    parts = [draw(_term(draw(st.sampled_from(_OPTIMIZERS)), _OPT_ARGS))]
    sched = draw(st.none() | st.sampled_from(sorted(_SCHEDULES)))
    if sched:
        parts.append(draw(_term(sched, _SCHEDULES[sched])))
    if draw(st.booleans()):
        parts.append(draw(_term("plateau", _PLATEAU)))
    return " + ".join(parts)


_count = _mostly(st.sampled_from(["1", "2"]), st.sampled_from(["0", "-2", "x", "1.5"]))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    method=method_specs(),
    seeds=_count,
    steps=_mostly(st.sampled_from(["1", "2", "4"]), st.sampled_from(["0", "-5"])),
    batch=_mostly(st.sampled_from([None, "8"]), st.sampled_from(["0", "-1"])),
)
# (a CI run drew this: the CLI validated the schedule at the run's 1 step, the comparison at 1,000, and refused
# after the store was created)
@example(method="sgd + wsd(warmup=0.9)", seeds="1", steps="1", batch=None)
def test_compare_is_refused_up_front_or_trains_everything(tmp_path_factory, capsys, method, seeds, steps, batch):
    store = tmp_path_factory.mktemp("fuzz") / f"{uuid.uuid4().hex}.db"
    argv = [
        "compare",
        "--task",
        "linreg",
        "--methods",
        method,
        "--seeds",
        seeds,
        "--steps",
        steps,
        "--store",
        str(store),
        "--no-progress",
        "--no-report",
    ]
    if batch is not None:
        argv += ["--batch-size", batch]
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    assert code in (0, 2), (argv, code, out, err)
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("adaptlr compare"), err
        assert not store.exists()  # refused before the store was created, so nothing was trained into it
        return
    n = int(seeds)
    assert f"{n} runs trained, 0 already in" in out and "0 failed" in out, out
    with Store(str(store)) as st_:
        runs = st_.runs("linreg")
        assert len(runs) == n and all(r["status"] == "done" for r in runs)
        for r in runs:
            points = st_.points(r["id"])
            assert points and points[-1]["step"] <= int(steps)
            assert r["diverged"] or points[-1]["step"] == int(steps)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=method_specs())
def test_random_method_specs_validate_or_raise_a_spec_error(method):
    """`Method.validate` is the up-front check: it either passes, and then building the method for a real run
    works, or it raises `SpecError` (never another exception)."""
    import torch

    from adaptlr.lab import SpecError, parse_method

    try:
        m = parse_method(method).validate(total_steps=4)
    except SpecError as e:
        assert str(e)
        return
    build = m.build(torch.nn.Linear(3, 1).parameters(), 4)
    assert build.optimizer.param_groups and all(c is not None for c in build.controllers)
    assert parse_method(m.canonical) == m
