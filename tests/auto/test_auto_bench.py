"""The tuning-free benchmark's arithmetic (within-2% / 1-point counts, ranks, ratios, profile) on a summary
built by hand, and its grid choice on validation from a real (tiny) store."""

import pytest

from adaptlr.lab import tuning_free as TF


def _summary():
    def m(median, cost=1.0, wall=1.0):
        return {"tests": [median], "median": median, "cost": cost, "wall": wall, "complete": True}

    return {
        "reg": {
            "metric": "mse",
            "higher_is_better": False,
            "steps": 10,
            "methods": {TF.GRID: m(1.0, 7.0, 7.0), "A": m(1.01), "B": m(1.5), "Auto": m(0.99, 1.5, 1.4)},
        },
        "cls": {
            "metric": "accuracy",
            "higher_is_better": True,
            "steps": 10,
            "methods": {TF.GRID: m(0.95, 7.0, 7.0), "A": m(0.935), "B": m(0.945), "Auto": m(0.96, 1.5, 1.3)},
        },
    }


def test_table_counts_ratios_and_ranks():
    text = TF.table(_summary())
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| task") and not line.startswith("| method")
    }
    assert rows["reg (mse, 10)"] == ["1", "1.01 (1.01x)", "1.5 (1.50x)", "0.99 (0.99x)"]
    assert rows["cls (accuracy, 10)"] == ["95.0", "93.5 (-1.5)", "94.5 (-0.5)", "96.0 (+1.0)"]
    # A: within 2% on reg, 1.5 points short on cls; B: 50% worse on reg, within a point on cls
    assert rows["A"][0] == "1/2" and rows["B"][0] == "1/2" and rows["Auto"][0] == "2/2"
    assert rows["Auto"][3] == "1.00"  # best on both tasks: mean rank 1
    assert rows[TF.GRID][3] == "2.00"  # second to Auto on both tasks
    assert rows["B"][1] == "1.50" and rows["Auto"][4] == "1.50"


def test_best_single_lr_in_hindsight():
    """One lr for every task, the one landing the most within 2% / 1 point; a seed that diverged is the worst
    value, and a task whose grid never ran that lr misses it."""
    from adaptlr.lab.tuning_free_tables import hindsight

    s = _summary()
    s["reg"]["methods"][TF.GRID]["by_lr"] = {1e-3: [1.0, 1.01, 1.5], 1e-2: [1.0, None, None], 1e-1: [1.2, 1.3, 1.1]}
    s["cls"]["methods"][TF.GRID]["by_lr"] = {1e-3: [0.949, 0.93, 0.95], 1e-2: [0.96, 0.96, 0.96]}
    line = hindsight(s)
    # 1e-3: reg's median 1.01 lands, cls's 94.9 lands; 1e-2: reg's median is a divergence; 1e-1: not run on cls
    assert "0.001, within 2% / 1 pt on 2/2" in line and "0.01: 1" in line and "0.1: 0" in line
    assert "best single lr in hindsight" in TF.table(s)
    del s["reg"]["methods"][TF.GRID]["by_lr"], s["cls"]["methods"][TF.GRID]["by_lr"]
    assert "no grid run" in hindsight(s)


def test_performance_profile_figure(tmp_path):
    pytest.importorskip("matplotlib")
    path = TF.performance_profile(_summary(), tmp_path / "p.png")
    assert path.exists() and path.stat().st_size > 5000


def test_grid_chosen_on_validation_from_the_store(tmp_path, monkeypatch):
    """A tiny benchmark run end to end: the grid's lr per seed is the best *validation* metric's; the oracle is
    Auto with that lr as its only candidate."""
    monkeypatch.setattr(TF, "GRID_LRS", (1e-3, 1e-1))
    monkeypatch.setattr(TF, "BASELINES", {"Auto": "auto(lrs=(0.001, 0.1), keep=1)"})
    monkeypatch.setattr(TF, "RANGE_TEST_STEPS", 20)
    bench = TF.Bench(str(tmp_path / "b.db"), ["linreg"], (0,), steps=40, oracle=True)
    TF.run(bench, progress=False)
    s = TF.summarize(bench)["linreg"]["methods"]
    from adaptlr.lab.store import Store

    with Store(bench.store) as st:
        runs = {r["method"]: r for r in st.runs("linreg")}
    vals = {lr: runs[TF.grid_spec(lr)]["final_val_metric"] for lr in TF.GRID_LRS}
    chosen = min(vals, key=vals.get)
    assert s[TF.GRID]["lrs"] == [chosen]
    assert s[TF.GRID]["tests"] == [runs[TF.grid_spec(chosen)]["final_metric"]]
    assert s["Auto"]["cost"] <= 1.5 and s[TF.RANGE_TEST]["cost"] == pytest.approx(1.5)
    assert "linreg (mse, 40)" in TF.table(TF.summarize(bench))
    assert s[TF.GRID]["by_lr"] == {lr: [runs[TF.grid_spec(lr)]["final_metric"]] for lr in TF.GRID_LRS}
    oracle = runs[TF.oracle_spec(chosen)]
    assert s[TF.ORACLE]["tests"] == [oracle["final_metric"]] and TF.ORACLE in TF.table(TF.summarize(bench))
    assert oracle["method"] == f"auto(extend=0, lrs=({chosen!r},))"
