"""benchmarks/auto_choice.py: a logged race holds what Auto's rule chose from, the rule reproduces the logged choice,
and each rule's choice is judged on the grid's outcome at that lr (a choice off the grid leaves its task out)."""

import json
import math

import pytest
from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("auto_choice")


def _record(task, seed, chosen, scores, start=1.0):
    """A logged race whose finalists scored ``scores`` (lr -> score) on two validation batches of 10 rows."""
    finalists = [{"lr": lr, "scores": [[5, s + 0.1], [10, s]], "parts": [[s, 10], [s, 10]]} for lr, s in scores.items()]
    return {
        "task": task,
        "seed": seed,
        "lr": chosen,
        "tie": 0.02,
        "step": 10,
        "start": {"score": start, "parts": [[start, 10], [start, 10]]},
        "finalists": finalists,
    }


@pytest.mark.parametrize("budget", [1.5, 2.0])
def test_a_logged_race_reproduces_autos_choice(bench, budget):
    record = json.loads(json.dumps(bench.race("linreg", 0, budget)))  # (through JSON, as a log file holds it)
    assert record["budget"] == budget
    assert record["finalists"] and all(len(f["scores"]) >= 2 for f in record["finalists"])
    assert record["lr"] in [f["lr"] for f in record["finalists"]]
    finalists, start = bench._racers(record)
    assert bench.RULES["auto"](finalists, start, record["tie"], None) == record["lr"]
    assert math.isfinite(record["start"]["score"])


def test_each_rule_is_judged_on_the_grids_outcome(bench):
    grid_runs = {1e-3: 0.50, 1e-2: 0.30, 1e-1: 0.20}  # (a loss: lower is better; the grid takes 0.1)
    records = [
        # near-tied finalists: Auto takes the lowest lr within reach, the lowest score is the largest lr
        _record("t", s, 1e-2, {1e-2: 0.300, 1e-1: 0.299, 1e-3: 0.6})
        for s in (0, 1, 2)
    ]
    out = bench.judge(records, lambda task, seed, lr: grid_runs.get(lr), lambda task: 0.20, lambda task: False)
    assert out["mismatch"] == 0 and out["tasks"] == 1 and out["unknown"] == []
    assert out["rows"]["t"] == {
        "auto": 0.30,
        "lowest score": 0.20,
        "largest within reach": 0.20,
        "best finalist in hindsight": 0.20,
    }
    assert out["within"] == {"auto": 0, "lowest score": 1, "largest within reach": 1, "best finalist in hindsight": 1}


def test_a_choice_off_the_grid_leaves_its_task_out_and_a_mismatch_is_counted(bench):
    # Auto's rule takes 0.32 (past the grid's edge: no stored run), not the logged 0.1: a mismatch is counted
    records = [_record("t", 0, 1e-1, {1e-1: 0.3, 3.2e-1: 0.2})]
    out = bench.judge(records, lambda task, seed, lr: {1e-1: 0.3}.get(lr), lambda t: 0.3, lambda t: False)
    assert out["tasks"] == 0 and out["unknown"] == ["t"] and out["mismatch"] == 1


def test_fill_trains_the_grids_schedule_at_the_lrs_the_store_lacks(bench, tmp_path):
    store = str(tmp_path / "bench.db")
    records = [_record("linreg", 0, 1e-1, {1e-1: 0.3, 0.32: 0.2})]  # (0.32: past the default grid's edge)
    assert bench.fill(records, store) == 2 and bench.fill(records, store) == 0  # (what is stored is not trained again)
    outcome, _ = bench._store_outcomes(store)
    assert math.isfinite(outcome("linreg", 0, 0.32)) and math.isfinite(outcome("linreg", 0, 1e-1))
    assert outcome("linreg", 0, 1e-2) is None and outcome("linreg", 1, 0.32) is None
