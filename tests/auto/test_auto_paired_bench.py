"""benchmarks/auto_paired.py pairs its commits: every commit run starts from the same race, state, batches and
budget, so two identical tails end in the same model and different tails in different ones; the finalists' runs
are told apart and each rule picks from them."""

import math

import pytest
from _benchmarks import load_benchmark


@pytest.fixture
def bench(monkeypatch):
    return load_benchmark("auto_paired")


def test_identical_tails_end_identically_and_other_tails_differ(bench, monkeypatch):
    monkeypatch.setattr(bench, "TAILS", {"a": ("linear", 0.5), "a again": ("linear", 0.5), "cosine": ("cosine", 0.0)})
    out, _ = bench.commits("linreg", 0, bench.tail_variants)
    assert set(out) == {"a", "a again", "cosine"}
    assert all(math.isfinite(test) and math.isfinite(val) for test, val, _ in out.values())
    assert out["a"] == out["a again"]  # (same state, batches and budget: bit-identical)
    assert out["cosine"][0] != out["a"][0]


def test_each_finalist_runs_once_and_the_rules_pick_among_them(bench):
    out, finalists = bench.commits("linreg", 0, bench.finalist_variants)
    assert sorted(lr for _, _, lr in out.values()) == sorted(r.lr for r in finalists) and len(finalists) >= 2
    picked = bench.picks(out, finalists[0].lr, hib=False)
    tests = {lr: test for test, _, lr in out.values()}
    assert picked["chosen"] == tests[finalists[0].lr]
    best_val = min(out.values(), key=lambda r: r[1])
    assert picked["best full-run validation (oracle)"] == best_val[0]
    assert set(picked.values()) <= set(tests.values())


def test_the_tail_commit_takes_the_named_cooldown(bench):
    from adaptlr.auto import make_plan

    plan = make_plan(200, candidates=7, keep=3, tail="wsd")  # (a constant lr to the branch point)

    class Race:
        pass

    race = Race()
    race.plan = plan
    for shape, share in (("linear", 0.5), ("1-sqrt", 0.2)):
        cls = bench.tail_commit(shape, share)
        commit = cls.__new__(cls)  # (only its schedule is asked for)
        commit.race, commit.lr = race, 0.1
        s = commit.schedule()
        start = 200 - int(round(share * 200))
        assert s(start - 1) == pytest.approx(0.1)  # (constant to the cooldown)
        f = 0.5  # half-way through the cooldown
        mid = s(start + int(f * share * 200))
        assert mid == pytest.approx(0.1 * (1 - f if shape == "linear" else 1 - math.sqrt(f)), rel=0.02)
