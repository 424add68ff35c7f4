"""benchmarks/auto_horizon.py: the choice made at a share of the run, by each grid run's own validation there, read
off the grid's store."""

import pytest
from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("auto_horizon")


def test_the_choice_at_a_share_of_the_run_reads_each_runs_validation_there(bench, tmp_path):
    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.grammar import parse_method
    from adaptlr.lab.jobs import Job, run_job
    from adaptlr.lab.store import Store
    from adaptlr.lab.tasks import get_task

    store, task = str(tmp_path / "bench.db"), get_task("linreg")
    steps = TF.budget_steps(task)
    for lr in TF.grid_lrs("linreg"):
        run_job(Job("linreg", parse_method(TF.grid_spec(lr)).canonical, 0, steps, task.batch_size), store)
    out = bench.horizon(store, ["linreg", "digits-mlp"], [0.5, 1.0], seeds=(0,))
    assert out["tasks"] == 1 and out["unknown"] == ["digits-mlp"]  # (no grid of digits-mlp in the store)
    with Store(store) as st:
        runs = {lr: TF.stored_run(st, task, TF.grid_spec(lr), 0, steps) for lr in TF.grid_lrs("linreg")}
        grid = runs[TF.chosen_lr(st, task, 0, steps)]["final_metric"]

        def at_half(lr):  # (the run's validation at its middle step, logged every tenth; a loss: lower is better)
            (point,) = [p for p in st.points(runs[lr]["id"]) if p["step"] == steps // 2]
            return point["val_metric"]

        early = min((lr for lr in runs if not runs[lr]["diverged"]), key=at_half)
    assert out["rows"]["linreg"] == {0.5: runs[early]["final_metric"], 1.0: grid}
    assert out["within"][1.0] == 1
