"""The range test's headline rule (issue 18) and the benchmark that chose it (benchmarks/range_test_rules.py)."""

import importlib.util
import math
from pathlib import Path

import pytest

from adaptlr.finder import LRFindResult, Suggestion


def _result(**confidences):
    lrs = [10 ** (-5 + 6 * i / 49) for i in range(50)]
    sugg = {m: Suggestion(m, lrs[i], i, c) for (m, c), i in zip(confidences.items(), (20, 25, 30), strict=False)}
    return LRFindResult(lrs=lrs, losses=[1.0] * 50, raw_losses=[1.0] * 50, diverged=False, suggestions=sugg)


def test_the_headline_is_the_minimum_rule_whatever_the_confidences():
    """issue 18: the headline was the most confident suggestion, "steepest" on digits-mlp, the worst of the three
    when trained at; the rule that trained best across the lab's tasks ("minimum") is the headline."""
    r = _result(steepest=0.9, valley=0.8, minimum=0.3)
    assert r.suggestion.method == "minimum" and r.lr == r.suggestions["minimum"].lr
    assert r.schedule(100, kind="warmup_cosine")(5) == pytest.approx(r.suggestions["minimum"].lr)
    # no "minimum" offered (its lr would fall below the tested range): the most confident of the others
    assert _result(steepest=0.4, valley=0.6).suggestion.method == "valley"
    assert _result(steepest=0.5, valley=0.5).suggestion.method == "valley"  # ties: valley first, as before


def test_cli_headline_is_the_minimum_rule(capsys, tmp_path):
    from adaptlr.lab.cli import main

    argv = ["find-lr", "--task", "digits-logreg", "--method", "adamw", "--steps", "60", "-o", str(tmp_path / "f.png")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    minimum = lines["minimum"].split()[0]  # "lr=0.0443"
    assert lines["suggested lr"].startswith(minimum.removeprefix("lr=") + " ") and "from minimum" in out


def _bench():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "range_test_rules.py"
    spec = importlib.util.spec_from_file_location("range_test_rules", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_ranks_rules_by_tasks_within_then_mean_ratio():
    b = _bench()
    # within: 1 accuracy point below the grid, 2% above its loss
    assert b.within(0.951, 0.96, True) and not b.within(0.949, 0.96, True) and b.within(0.99, 0.96, True)
    assert b.within(1.02, 1.0, False) and not b.within(1.021, 1.0, False) and not b.within(math.inf, 1.0, False)
    # ratio: error rate / the grid's (accuracy), loss / the grid's (loss)
    assert b.ratio(0.94, 0.97, True) == pytest.approx(2.0) and b.ratio(3.0, 2.0, False) == pytest.approx(1.5)

    def task(hib, grid, **rules):
        return {"higher_is_better": hib, "grid": {"median": grid}, **{r: {"median": q} for r, q in rules.items()}}

    summary = {
        "a": task(True, 0.96, steepest=0.90, valley=0.955, minimum=0.95),  # ratios 2.5, 1.125, 1.25
        "b": task(False, 1.0, steepest=1.01, valley=3.0, minimum=1.5),  # 1.01, 3.0, 1.5
        "c": task(False, 2.0, steepest=math.inf, valley=2.0, minimum=2.02),  # inf, 1.0, 1.01
    }
    # valley and minimum: 2 tasks within each; minimum first on its lower mean ratio (1.253 against 1.708)
    ranked = b.ranking(summary)
    assert [(r, n) for r, n, _ in ranked] == [("minimum", 2), ("valley", 2), ("steepest", 1)]
    assert ranked[0][2] == pytest.approx((1.25 + 1.5 + 1.01) / 3) and ranked[1][2] == pytest.approx(
        (1.125 + 3.0 + 1.0) / 3
    )
    assert math.isinf(ranked[2][2])
