"""The tuning-free benchmark's stress and holdout tasks: each builds, trains, has train / validation / test
splits, is deterministic by seed, and has the property it was built for."""

import math

import pytest
import torch

from adaptlr.lab import data as D
from adaptlr.lab import tasks_stress as S
from adaptlr.lab.tasks import TASKS, get_task
from adaptlr.lab.training import train

NEW = list(S.STRESS + S.HOLDOUT)
SLOW = {"charlm-bigval", "finetune"}  # 3,072 held-out windows per evaluation; pretraining in the data factory


def _rows(data, split):
    return sum(int(x.shape[0]) for x, _ in data.eval_batches(split))


def test_sets_are_registered_and_disjoint():
    assert set(NEW) <= set(TASKS)
    assert len(set(S.STRESS) | set(S.HOLDOUT)) == 8 and not set(S.STRESS) & set(S.HOLDOUT)
    for name, lrs in S.GRIDS.items():
        assert name in S.STRESS and len(lrs) == 7
        assert all(b / a == pytest.approx(10**0.5, rel=0.06) for a, b in zip(lrs, lrs[1:], strict=False))
    assert min(S.GRIDS["linreg-bigLR"]) < 0.1 < max(S.GRIDS["linreg-bigLR"])
    assert max(S.GRIDS["tinylr"]) <= 1e-4


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NEW])
def test_task_trains_has_three_splits_and_is_deterministic(name):
    task = get_task(name)
    data = task.data()
    x, y = next(data.batches(task.batch_size, torch.Generator().manual_seed(0)))
    assert x.shape[0] == task.batch_size and y.shape[0] == task.batch_size
    assert _rows(data, "val") > 0 and _rows(data, "test") > 0
    lrs = S.GRIDS.get(name, (1e-3,))
    spec = f"adamw(lr={lrs[len(lrs) // 2]}) + cosine(warmup=0.05)"  # the middle of the task's grid
    runs = [train(task, spec, seed, steps=4, eval_every=4, log_every=1) for seed in (0, 0, 1)]
    for r in runs:
        assert not r["diverged"] and r["points"][-1]["step"] == 4
        assert math.isfinite(r["final_metric"]) and math.isfinite(r["final_val_metric"])
    losses = [[p["train_loss"] for p in r["points"]] for r in runs]
    assert losses[0] == losses[1]  # the same seed: the same run
    assert losses[0] != losses[2]  # another seed: another run (init or batches)


def test_splits_are_disjoint_where_rows_are_drawn():
    for name in ("linreg-bigLR", "tinylr", "near-optimum", "holdout-lstm-sines", "holdout-conv1d-waves"):
        d = get_task(name).data()
        rows = {tuple(r.flatten().tolist()) for r in torch.cat([d.x_train, d.x_val, d.x_test])}
        assert len(rows) == len(d.x_train) + len(d.x_val) + len(d.x_test), name


def test_charlm_bigval_validation_is_large_against_its_budget():
    task = get_task("charlm-bigval")
    data = task.data()
    assert _rows(data, "val") == S.BIGVAL_WINDOWS >= 2400
    assert _rows(data, "test") == 512
    # one validation pass at a third of a training step per row: more than 8% of the budget
    assert S.BIGVAL_WINDOWS / (3 * task.batch_size) > 0.08 * task.steps
    text = D.load_shakespeare()
    x, y = next(data.eval_batches("val"))
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(x[0], text.val[: text.block])


def test_feature_scales_of_the_extreme_lr_tasks():
    big = get_task("linreg-bigLR").data()
    tiny = get_task("tinylr").data()
    assert big.x_train.std().item() == pytest.approx(0.1, rel=0.05)
    assert tiny.x_train.std().item() == pytest.approx(S.TINY_SCALE, rel=0.05)
    # the least-squares weights that fit the small features are large, those of the huge ones tiny
    w_big, _ = S.least_squares(big.x_train, big.y_train)
    assert w_big.abs().mean().item() > 3.0
    torch.manual_seed(0)
    first = get_task("tinylr").model()[0]
    pre = first(tiny.x_train)
    assert 0.05 < pre.std().item() < 2.0  # the init puts pre-activations at the targets' scale


def test_least_squares_matches_numpy():
    np = pytest.importorskip("numpy")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 3, generator=g), torch.randn(50, 1, generator=g)
    w, b = S.least_squares(x, y)
    a = np.c_[x.double().numpy(), np.ones(50)]
    ref = np.linalg.lstsq(a, y.double().numpy(), rcond=None)[0]
    assert np.allclose(w.numpy().ravel(), ref[:3, 0], atol=1e-6) and abs(b.item() - ref[3, 0]) < 1e-6


def test_near_optimum_starts_at_the_least_squares_fit():
    task = get_task("near-optimum")
    d = task.data()
    w, b = S.least_squares(d.x_train, d.y_train)
    torch.manual_seed(0)
    model = task.model()
    assert (model.weight - w).abs().max().item() < 0.1 and (model.bias - b).abs().item() < 0.1
    start, _ = task.evaluate(model, d, "val")
    residual = (d.y_val - d.x_val @ w.T - b).pow(2).mean().item()
    assert start == pytest.approx(residual, rel=0.02)
    assert residual > 3.0  # label noise std 2: the floor is ~4, and the fit is already there


def test_finetune_starts_from_deterministic_pretrained_weights():
    before = torch.get_rng_state()
    S.pretrained_digits_mlp.cache_clear()
    a = S.pretrained_digits_mlp()
    assert torch.equal(torch.get_rng_state(), before)  # pretraining leaves the global RNG alone
    S.pretrained_digits_mlp.cache_clear()
    b = S.pretrained_digits_mlp()
    assert all(torch.equal(a[k], b[k]) for k in a)
    task = get_task("finetune")
    d = task.data()
    torch.manual_seed(0)
    pretrained = task.model()
    acc, _ = get_task("digits-mlp").evaluate(pretrained, d, "val")
    torch.manual_seed(0)
    fresh = S.mlp([64, 128, 10])
    acc_fresh, _ = get_task("digits-mlp").evaluate(fresh, d, "val")
    assert acc > 0.8 > 0.3 > acc_fresh  # the pretrained weights already solve most of the shifted task


def test_diabetes_outliers_only_in_training_and_validation():
    d = get_task("holdout-diabetes-outliers").data()
    assert d.y_test.abs().max().item() < 4.0  # standardised clean targets
    assert d.y_train.abs().max().item() > 5.0 and len(d.x_test) == 88


# ---- the benchmark's task sets, method selection and compute report ----------------------------------------


def test_task_sets_resolve_in_order_once():
    from adaptlr.lab import tuning_free as TF

    sets = TF.task_sets()
    assert sets["stress"] == list(S.STRESS) and sets["holdout"] == list(S.HOLDOUT)
    assert "linreg" in sets["old"] and not set(sets["old"]) & set(NEW) and len(sets["old"]) == 12
    assert TF.resolve_tasks("linreg,stress,linreg") == ["linreg", *S.STRESS]
    assert TF.resolve_tasks("all") == list(TASKS)
    with pytest.raises(KeyError, match="did you mean 'tinylr'"):
        TF.resolve_tasks("tinyl")
    with pytest.raises(ValueError, match="names no task"):
        TF.resolve_tasks(",")
    assert TF.grid_lrs("tinylr") == S.GRIDS["tinylr"] and TF.grid_lrs("linreg") == TF.GRID_LRS
    assert TF.Bench().tasks == sets["old"] + sets["stress"]  # the holdout set only when asked for


def test_parse_methods_labels_and_validation():
    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.grammar import SpecError
    from adaptlr.lab.tuning_free_cli import parse_methods

    got = parse_methods(["auto(budget=1.5)", "plain=adamw(lr=0.01)"])
    assert got == {"auto(budget=1.5)": "auto(budget=1.5)", "plain": "adamw(lr=0.01)"}
    with pytest.raises(ValueError, match="twice or reserved"):
        parse_methods(["a=sgd(lr=0.1)", "a=sgd(lr=0.2)"])
    with pytest.raises(SpecError):
        parse_methods(["nosuchoptimizer(lr=1)"])
    with pytest.raises(ValueError, match="twice or reserved"):
        parse_methods([f"{TF.ORACLE}=sgd(lr=0.1)"])


def test_compute_table_marks_paired_walls_and_planned_costs():
    from adaptlr.lab import tuning_free as TF

    def m(cost, wall, how="counted", paired=False, steps=None):
        d = {"tests": [1.0], "median": 1.0, "cost": cost, "cost_how": how, "wall": wall, "wall_paired": paired}
        return d if steps is None else {**d, "steps": steps}

    summary = {
        "t": {
            "metric": "mse",
            "higher_is_better": False,
            "steps": 10,
            "methods": {
                TF.GRID: m(7.0, 6.5),
                "Auto": m(1.5, 1.42, "measured", True, steps=1.3),
                "B": m(1.5, None, "planned"),
            },
        }
    }
    rows = [line for line in TF.compute_table(summary).splitlines() if line.startswith("| t |")]
    assert rows == ["| t | 7.00 / 6.50 | 1.30 / 1.42* | ~1.50 / - |"]
    text = TF.table(summary)
    auto = next(line for line in text.splitlines() if line.startswith("| Auto |"))
    assert auto.split("|")[6:9] == [" 1.30 ", " 1.42 ", " 1.42 "]  # compute, wall median, wall max


@pytest.mark.slow
def test_methods_only_reuses_the_grid_and_times_a_plain_run_beside_each(tmp_path, monkeypatch):
    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.store import Store

    monkeypatch.setattr(TF, "GRID_LRS", (1e-3, 1e-1))
    grid_only = TF.Bench(str(tmp_path / "b.db"), ["linreg"], (0, 1), steps=30)
    TF.run(grid_only, progress=False, grid_only=True)
    with Store(grid_only.store) as st:
        grid_ids = {r["id"] for r in st.runs("linreg")}
    assert len(grid_ids) == 4 and not grid_only.timing_file.exists()
    bench = TF.Bench(grid_only.store, ["linreg"], (0, 1), steps=30, methods_only={"SGD": "sgd(lr=0.05)"})
    TF.run(bench, progress=False)
    with Store(bench.store) as st:
        runs = {(r["method"], r["seed"]): r for r in st.runs("linreg")}
    assert grid_ids <= {r["id"] for r in runs.values()} and len(runs) == 6  # the grid's runs reused
    timing = bench.timings()
    s = TF.summarize(bench)["linreg"]["methods"]
    assert list(s) == [TF.GRID, "SGD"]  # no baselines, no range test
    ratios = []
    for seed in (0, 1):
        rec = timing[f"linreg/{seed}/sgd(lr=0.05)"]
        assert rec["wall"] == pytest.approx(runs[("sgd(lr=0.05)", seed)]["wall"])
        assert rec["plain_lr"] == s[TF.GRID]["lrs"][seed] and rec["plain_wall"] > 0
        ratios.append(rec["wall"] / rec["plain_wall"])
    assert s["SGD"]["wall"] == pytest.approx(sum(ratios) / 2) and s["SGD"]["wall_paired"]
    assert s["SGD"]["cost"] == 1.0 and s["SGD"]["cost_how"] == "counted"
    chosen = [runs[(TF.grid_spec(lr), seed)] for seed, lr in enumerate(s[TF.GRID]["lrs"])]
    grid_walls = [
        sum(runs[(TF.grid_spec(x), seed)]["wall"] for x in TF.GRID_LRS) / c["wall"] for seed, c in enumerate(chosen)
    ]
    assert s[TF.GRID]["wall"] == pytest.approx(sum(grid_walls) / 2) and s[TF.GRID]["cost"] == 2.0
    TF.run(bench, progress=False)  # nothing left to train: the timings stay as they were
    assert bench.timings() == timing
    assert "| linreg (mse) | 0.001 .. 0.1 |" in TF.grid_table(TF.summarize(bench))


def test_a_method_that_crashes_counts_as_failed_not_missing(tmp_path, monkeypatch):
    from adaptlr.lab import tuning_free as TF

    monkeypatch.setattr(TF, "GRID_LRS", (1e-3, 1e-1))
    real = TF.run_job

    def run_job(job, store):
        if job.method.startswith("sgd"):
            raise RuntimeError("boom")
        return real(job, store)

    monkeypatch.setattr(TF, "run_job", run_job)
    bench = TF.Bench(str(tmp_path / "c.db"), ["linreg"], (0,), steps=20, methods_only={"SGD": "sgd(lr=0.05)"})
    with pytest.warns(UserWarning, match="linreg/0/sgd.*RuntimeError: boom"):
        TF.run(bench, progress=False)
    assert bench.timings() == {"linreg/0/sgd(lr=0.05)": {"error": "RuntimeError: boom"}}
    s = TF.summarize(bench)["linreg"]["methods"]["SGD"]
    assert s["tests"] == [None] and s["median"] == math.inf and not s["complete"]


def test_auto_cost_is_planned_and_its_steps_measured():
    from adaptlr.auto import Auto
    from adaptlr.lab import tuning_free as TF

    task = get_task("linreg")
    planned = Auto().planned_cost(40, TF._val_cost(task))
    extras = [{"cost": 1.42}, {"cost": 1.51}, {"cost": 1.38}]
    assert TF._method_cost("auto", [], extras, task, 40) == (planned, 1.42, "measured")
    assert TF._method_cost("auto", [], [{}], task, 40) == (planned, planned, "planned")
    runs = [{"steps_done": 40}, {"steps_done": 10}, {"steps_done": 40}]  # one diverged at step 10
    assert TF._method_cost("sgd(lr=0.1)", runs, [{}] * 3, task, 40) == (1.0, 1.0, "counted")
    assert TF._method_cost(None, [], [], task, 40) == (3.5, 3.5, "counted")  # the range test: 100 steps + 1 run
